//! `strata manifest inspect REF`: the manifest or index the registry holds for REF,
//! printed as docker prints it (the registry's bytes, indented with tabs, keys in their
//! order).

use anyhow::{bail, Result};

use super::Ctx;
use crate::cli::ManifestInspectArgs;

pub fn inspect(ctx: &Ctx, args: &ManifestInspectArgs) -> Result<()> {
    let reference = super::parse_reference(&args.reference)?;
    let Some(manifest) = super::registry(ctx, true).fetch_manifest(&reference)? else {
        bail!("no such manifest: {reference}");
    };
    println!("{}", indent_json(&manifest.bytes));
    Ok(())
}

/// Go's `json.Indent(buf, raw, "", "\t")`: the same tokens in the same order, one member
/// or element per line, tab-indented.
fn indent_json(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.trim().chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n('\t', depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}') | Some(']')) {
                    out.extend(chars.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::indent_json;

    #[test]
    fn indents_like_go_json_indent() {
        let raw = br#"{"schemaVersion":2,"layers":[],"config":{"digest":"sha256:a\"b","size":1},"x":[1,2]}"#;
        assert_eq!(
            indent_json(raw),
            "{\n\t\"schemaVersion\": 2,\n\t\"layers\": [],\n\t\"config\": {\n\t\t\"digest\": \"sha256:a\\\"b\",\n\t\t\"size\": 1\n\t},\n\t\"x\": [\n\t\t1,\n\t\t2\n\t]\n}"
        );
    }
}
