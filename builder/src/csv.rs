//! One comma-separated record, read as Go's `encoding/csv` reads one (what BuildKit and
//! buildx use for `--mount`, `--output`, `--cache-to` and the like): fields separated by
//! commas, a field in double quotes may hold commas (`"name=a,b"`), `""` inside quotes is
//! one quote.

/// The fields of `record`, or `None` when a quote is never closed (each caller words that
/// error the way its own tool does).
pub fn fields(record: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = record.chars().peekable();
    let mut is_quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if is_quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' => is_quoted = !is_quoted,
            ',' if !is_quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    if is_quoted {
        return None;
    }
    fields.push(field);
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::fields;

    #[test]
    fn quotes_group_commas_and_double_quotes_escape() {
        assert_eq!(
            fields(r#"type=bind,"target=/a,b",x="""q""""#),
            Some(vec![
                "type=bind".to_string(),
                "target=/a,b".to_string(),
                "x=\"q\"".to_string()
            ])
        );
        assert_eq!(fields(""), Some(vec![String::new()]));
        assert_eq!(fields(r#"a,"b"#), None);
    }
}
