//! Instruction flags (`--from=x`, `--link`, `--mount=...`), BuildKit's `BFlags`: each
//! instruction declares the flags it takes; anything else is an error with a suggestion.

use std::collections::BTreeMap;

use super::error::with_suggestion;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Str,
    Strings,
}

/// The values given, by flag name. Only flags actually written are present.
#[derive(Debug, Default)]
pub(crate) struct FlagValues {
    strings: BTreeMap<&'static str, Vec<String>>,
}

impl FlagValues {
    pub fn string(&self, name: &str) -> Option<String> {
        self.strings.get(name).and_then(|v| v.last().cloned())
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }

    pub fn strings(&self, name: &str) -> Vec<String> {
        self.strings.get(name).cloned().unwrap_or_default()
    }
}

/// A flag an instruction does not take, or takes in another form (BuildKit's wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("arg should start with -- : {0}")]
    NoDashes(String),
    /// `message` carries BuildKit's "(did you mean …?)" when a declared flag is close.
    #[error("{message}")]
    Unknown { message: String },
    #[error("duplicate flag specified: {0}")]
    Duplicate(String),
    #[error("missing a value on flag: {0}")]
    MissingValue(String),
    #[error("expecting boolean value for flag {flag}, not: {value}")]
    NotBool { flag: String, value: String },
}

/// Parse `args` against the declared flags.
pub(crate) fn parse_flags(
    args: &[String],
    declared: &[(&'static str, Kind)],
) -> Result<FlagValues, FlagError> {
    let mut out = FlagValues::default();
    for a in args {
        if a == "--" {
            break;
        }
        let Some(body) = a.strip_prefix("--") else {
            return Err(FlagError::NoDashes(a.clone()));
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let flag_name = format!("--{name}");
        let Some(&(key, kind)) = declared.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = declared.iter().map(|(n, _)| *n).collect();
            return Err(FlagError::Unknown {
                message: with_suggestion(format!("unknown flag: {flag_name}"), name, &names, true),
            });
        };
        if out.strings.contains_key(key) && kind != Kind::Strings {
            return Err(FlagError::Duplicate(flag_name));
        }
        let stored = match (kind, value) {
            (Kind::Bool, Some("")) => return Err(FlagError::MissingValue(flag_name)),
            (Kind::Bool, None) => "true".to_string(),
            (Kind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                "true" => "true".to_string(),
                "false" => "false".to_string(),
                _ => {
                    return Err(FlagError::NotBool {
                        flag: flag_name,
                        value: v.to_string(),
                    })
                }
            },
            (_, None) => return Err(FlagError::MissingValue(flag_name)),
            (_, Some(v)) => v.to_string(),
        };
        out.strings.entry(key).or_default().push(stored);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECL: [(&str, Kind); 3] = [
        ("from", Kind::Str),
        ("link", Kind::Bool),
        ("exclude", Kind::Strings),
    ];

    fn parse(args: &[&str]) -> Result<FlagValues, FlagError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse_flags(&args, &DECL)
    }

    #[test]
    fn forms() {
        let v = parse(&["--from=build", "--link", "--exclude=a", "--exclude=b"]).expect("valid");
        assert_eq!(v.string("from").as_deref(), Some("build"));
        assert_eq!(v.bool("link"), Some(true));
        assert_eq!(v.strings("exclude"), vec!["a", "b"]);
        assert_eq!(
            parse(&["--link=FALSE"]).expect("valid").bool("link"),
            Some(false)
        );
        assert_eq!(parse(&[]).expect("valid").bool("link"), None);
    }

    #[test]
    fn errors() {
        let cases = [
            (
                vec!["--form=x"],
                "unknown flag: --form (did you mean from?)",
            ),
            (vec!["--bogus"], "unknown flag: --bogus"),
            (
                vec!["--from=a", "--from=b"],
                "duplicate flag specified: --from",
            ),
            (vec!["--from"], "missing a value on flag: --from"),
            (vec!["--link="], "missing a value on flag: --link"),
            (
                vec!["--link=yes"],
                "expecting boolean value for flag --link, not: yes",
            ),
            (vec!["-x"], "arg should start with -- : -x"),
        ];
        for (args, want) in cases {
            assert_eq!(
                parse(&args).expect_err("invalid").to_string(),
                want,
                "{args:?}"
            );
        }
    }
}
