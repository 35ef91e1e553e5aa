use super::*;

#[test]
fn placeholder() {
    assert!(parse_lines("FROM x").is_ok());
}
