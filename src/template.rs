//! docker's `--format`: a Go text/template (through `gtmpl`) run on one JSON object per
//! row, with the functions docker's CLI adds (`json`, `join`, `split`, `lower`, `upper`,
//! `title`, `pad`, `truncate`).
//!
//! The format string is read as docker's `formatter.Format` reads it: `table` alone is the
//! command's default table, `json` is `{{json .}}`, `table TEMPLATE` renders TEMPLATE per
//! row under a header row (the same template run on the column titles) and aligns the
//! tab-separated cells like docker's tabwriter; anything else is a template printed once
//! per row. A field the row does not have is an error (`can't evaluate field`), as it is
//! on docker's typed rows; a template that does not parse is one too.
//!
//! One difference remains: a list or map printed whole (`{{.RepoTags}}`) comes out in
//! gtmpl's notation, not Go's `[a b]`; `{{json .RepoTags}}`, `{{join .RepoTags ","}}`,
//! `{{range}}` and `{{index}}` print as docker does.

use anyhow::Result;
use gtmpl::{Context, Func, FuncError, Template, Value};

use crate::output::format_table;

/// How the user asked a list to be printed.
pub enum Format {
    /// No `--format`, or `--format table`: the command's own table.
    Default,
    /// A template, from `json` or written by the user.
    Template(Box<RowTemplate>),
}

impl Format {
    /// Reads `--format`; a template that does not parse is an error naming it.
    pub fn parse(format: Option<&str>) -> Result<Format> {
        match format {
            None | Some("") | Some("table") => Ok(Format::Default),
            Some(text) => Ok(Format::Template(Box::new(RowTemplate::parse(text)?))),
        }
    }
}

/// A template run once per row, with docker's header row when it came as `table …`.
pub struct RowTemplate {
    row: Template,
    header: Option<Template>,
    source: String,
}

/// A `--format` template that does not parse or does not fit the row it runs on; docker
/// calls both "template parsing error".
#[derive(Debug)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "template parsing error: {}", self.0)
    }
}

impl std::error::Error for TemplateError {}

impl RowTemplate {
    /// docker's `Format.templateString`: `json` → `{{json .}}`, a `table` prefix dropped
    /// (and remembered), surrounding blanks trimmed, `\t` and `\n` typed as two characters
    /// turned into a tab and a newline.
    pub fn parse(format: &str) -> Result<RowTemplate, TemplateError> {
        let (is_table, text) = match format {
            "json" => (false, "{{json .}}".to_string()),
            other => {
                let (is_table, rest) = match other.strip_prefix("table") {
                    Some(rest) => (true, rest),
                    None => (false, other),
                };
                let text = rest
                    .trim_matches(' ')
                    .replace("\\t", "\t")
                    .replace("\\n", "\n");
                (is_table, text)
            }
        };
        let row = compile(&text, ROW_FUNCS)?;
        let header = if is_table {
            Some(compile(&text, HEADER_FUNCS)?)
        } else {
            None
        };
        Ok(RowTemplate {
            row,
            header,
            source: text,
        })
    }

    /// The template run on one row (an object; nested objects and arrays allowed).
    pub fn render(&self, row: &serde_json::Value) -> Result<String, TemplateError> {
        self.row
            .render(&Context::from(to_gtmpl(row)))
            .map_err(|e| self.exec_error(e))
    }

    /// Every row rendered, one line each; under `table`, the header row first (the template
    /// run on `headers`, field name → column title) and the cells aligned.
    pub fn render_all(
        &self,
        headers: &[(&str, &str)],
        rows: &[serde_json::Value],
    ) -> Result<String, TemplateError> {
        let lines = rows
            .iter()
            .map(|r| self.render(r))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(header) = &self.header else {
            return Ok(lines.iter().map(|l| format!("{l}\n")).collect());
        };
        let titles = Value::Map(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect(),
        );
        // Like docker, a header that cannot render (a function on a title) is left empty.
        let title_line = header.render(&Context::from(titles)).unwrap_or_default();
        let table: Vec<Vec<String>> = std::iter::once(title_line)
            .chain(lines)
            .flat_map(|text| {
                text.split('\n')
                    .map(|l| l.split('\t').map(str::to_string).collect())
                    .collect::<Vec<Vec<String>>>()
            })
            .collect();
        Ok(format_table(&table))
    }

    fn exec_error(&self, err: gtmpl::error::ExecError) -> TemplateError {
        match err {
            gtmpl::error::ExecError::NoFiledFor(field, receiver) => {
                let mut fields: Vec<&str> = match &receiver {
                    Value::Object(o) | Value::Map(o) => o.keys().map(String::as_str).collect(),
                    _ => Vec::new(),
                };
                fields.sort_unstable();
                TemplateError(format!(
                    "executing {:?}: can't evaluate field {field} (fields: {})",
                    self.source,
                    fields.join(", ")
                ))
            }
            other => TemplateError(format!("executing {:?}: {other}", self.source)),
        }
    }
}

fn compile(text: &str, funcs: &[(&str, Func)]) -> Result<Template, TemplateError> {
    let mut template = Template::default();
    template.add_funcs(funcs);
    template
        .parse(text)
        .map_err(|e| TemplateError(format!("{text:?}: {e}")))?;
    Ok(template)
}

/// JSON → template value. Objects become `Object`s, on which a missing field is an error.
fn to_gtmpl(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::from(u),
            (None, Some(i), _) => Value::from(i),
            (None, None, Some(f)) => Value::from(f),
            _ => Value::Nil,
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(to_gtmpl).collect()),
        serde_json::Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), to_gtmpl(v))).collect())
        }
    }
}

/// Template value → JSON, for the `json` function.
fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u.into()
            } else if let Some(i) = n.as_i64() {
                i.into()
            } else {
                n.as_f64().map(serde_json::Value::from).unwrap_or_default()
            }
        }
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Object(o) | Value::Map(o) => {
            let sorted: std::collections::BTreeMap<_, _> =
                o.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
    }
}

const ROW_FUNCS: &[(&str, Func)] = &[
    ("json", json),
    ("join", join),
    ("split", split),
    ("lower", lower),
    ("upper", upper),
    ("title", title),
    ("pad", pad),
    ("truncate", truncate),
];

/// docker's `HeaderFunctions`: on the header row each function returns the title as is.
const HEADER_FUNCS: &[(&str, Func)] = &[
    ("json", first),
    ("join", first),
    ("split", first),
    ("lower", first),
    ("upper", first),
    ("title", first),
    ("pad", first),
    ("truncate", first),
];

fn arg(args: &[Value], i: usize, name: &str) -> Result<Value, FuncError> {
    args.get(i)
        .cloned()
        .ok_or_else(|| FuncError::AtLeastXArgs(name.to_string(), i + 1))
}

fn string_arg(args: &[Value], i: usize, name: &str) -> Result<String, FuncError> {
    match arg(args, i, name)? {
        Value::String(s) => Ok(s),
        other => Ok(other.to_string()),
    }
}

fn int_arg(args: &[Value], i: usize, name: &str) -> Result<usize, FuncError> {
    match arg(args, i, name)? {
        Value::Number(n) => n
            .as_u64()
            .map(|u| u as usize)
            .ok_or(FuncError::UnableToConvertFromValue),
        _ => Err(FuncError::UnableToConvertFromValue),
    }
}

fn first(args: &[Value]) -> Result<Value, FuncError> {
    arg(args, 0, "header")
}

fn json(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(to_json(&arg(args, 0, "json")?).to_string()))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = string_arg(args, 1, "join")?;
    let text = match arg(args, 0, "join")? {
        Value::Array(items) => items
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(&sep),
        Value::Nil | Value::NoValue => String::new(),
        Value::Object(o) | Value::Map(o) => {
            let mut values: Vec<String> = o.values().map(|v| v.to_string()).collect();
            values.sort();
            values.join(&sep)
        }
        other => return Err(FuncError::Generic(format!("expected slice, got {other}"))),
    };
    Ok(Value::String(text))
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "split")?;
    let sep = string_arg(args, 1, "split")?;
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect(),
    ))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(string_arg(args, 0, "lower")?.to_lowercase()))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(string_arg(args, 0, "upper")?.to_uppercase()))
}

fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "title")?;
    let mut out = String::with_capacity(s.len());
    let mut at_word_start = true;
    for c in s.chars() {
        if at_word_start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_word_start = !c.is_alphanumeric();
    }
    Ok(Value::String(out))
}

fn pad(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "pad")?;
    if s.is_empty() {
        return Ok(Value::String(s));
    }
    let before = int_arg(args, 1, "pad")?;
    let after = int_arg(args, 2, "pad")?;
    Ok(Value::String(format!(
        "{}{s}{}",
        " ".repeat(before),
        " ".repeat(after)
    )))
}

fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "truncate")?;
    let n = int_arg(args, 1, "truncate")?;
    Ok(Value::String(s.chars().take(n).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row() -> serde_json::Value {
        json!({"Repository": "busybox", "Tag": "latest", "ID": "abc", "Labels": ["a", "b"]})
    }

    #[test]
    fn fields_functions_and_json() {
        let t = RowTemplate::parse("{{.Repository}}:{{.Tag}} {{upper .ID}} {{join .Labels \",\"}}")
            .unwrap();
        assert_eq!(t.render(&row()).unwrap(), "busybox:latest ABC a,b");
        let j = RowTemplate::parse("json").unwrap();
        let back: serde_json::Value = serde_json::from_str(&j.render(&row()).unwrap()).unwrap();
        assert_eq!(back, row());
    }

    #[test]
    fn table_prints_the_header_row_and_aligns() {
        let t = RowTemplate::parse("table {{.Repository}}\\t{{.ID}}").unwrap();
        let out = t
            .render_all(
                &[("Repository", "REPOSITORY"), ("ID", "IMAGE ID")],
                &[row()],
            )
            .unwrap();
        assert_eq!(out, "REPOSITORY   IMAGE ID\nbusybox      abc\n");
    }

    #[test]
    fn unknown_field_and_bad_syntax_are_errors() {
        let t = RowTemplate::parse("{{.Nope}}").unwrap();
        let err = t.render(&row()).unwrap_err().to_string();
        assert!(err.contains("can't evaluate field Nope"), "{err}");
        assert!(err.starts_with("template parsing error"), "{err}");
        assert!(RowTemplate::parse("{{.Repository").is_err());
    }
}
