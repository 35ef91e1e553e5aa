//! `RUN --mount=type=…,target=…` specs (BuildKit's `commands_runmount.go`).
//!
//! At parse time BuildKit only checks that `from=` has no variable; the full parse runs
//! once the values are expanded with the stage's environment, which `parse_mount` does.

use serde::Serialize;

use super::error::with_suggestion;
use super::expand::ExpandError;

/// A `--mount` spec that does not parse or does not fit its type (BuildKit's wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    #[error("'from' doesn't support variable expansion, define alias stage instead")]
    FromVariable,
    #[error("failed to parse csv mounts: extraneous or missing \" in quoted-field: {0}")]
    Csv(String),
    #[error("invalid value for {key}: {value}")]
    NotBool { key: String, value: String },
    #[error("invalid value {value} for {what}")]
    NotNumber { value: String, what: &'static str },
    #[error("unexpected key '{key}' for mount type '{kind}'")]
    KeyForType { key: String, kind: &'static str },
    #[error("invalid field '{0}' must be a key=value pair")]
    NotKeyValue(String),
    /// An unknown type, sharing value or key; `message` carries BuildKit's "(did you
    /// mean …?)" when a known one is close.
    #[error("{message}")]
    Unknown { message: String },
    #[error("{name} not allowed for {kind:?} type mounts")]
    NotAllowed {
        name: &'static str,
        kind: &'static str,
    },
    #[error("secret mount should not have a from")]
    SecretFrom,
    #[error("secret mount should not define sharing")]
    SecretSharing,
    #[error("invalid secret mount. one of source, target required")]
    SecretNoTarget,
    #[error("both source and id can't be set")]
    SourceAndId,
    #[error("invalid cache sharing set for {0} mount")]
    SharingNotCache(&'static str),
    #[error(transparent)]
    Expand(#[from] ExpandError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    fn name(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// One parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub kind: MountType,
    pub from: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub readonly: bool,
    pub id: Option<String>,
    /// `shared`, `private` or `locked` (cache mounts).
    pub sharing: Option<String>,
    pub required: bool,
    pub size: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub env: Option<String>,
}

const KEYS: [&str; 19] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// The parse-time check: `from=` may not use a variable.
pub(crate) fn check_unexpanded(spec: &str) -> Result<(), MountError> {
    for field in csv_fields(spec)? {
        if let Some((k, v)) = field.split_once('=') {
            if k.eq_ignore_ascii_case("from") {
                if let Some(i) = v.find('$') {
                    if i != v.len() - 1 {
                        return Err(MountError::FromVariable);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The fields of a `--mount` spec, with BuildKit's error for an unclosed quote.
fn csv_fields(spec: &str) -> Result<Vec<String>, MountError> {
    crate::csv::fields(spec).ok_or_else(|| MountError::Csv(spec.to_string()))
}

fn parse_bool(key: &str, v: &str) -> Result<bool, MountError> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(MountError::NotBool {
            key: key.to_string(),
            value: v.to_string(),
        }),
    }
}

fn parse_u32(v: &str, radix: u32, what: &'static str) -> Result<u32, MountError> {
    u32::from_str_radix(v, radix).map_err(|_| MountError::NotNumber {
        value: v.to_string(),
        what,
    })
}

/// Parse a mount spec, expanding each value with `expand`.
pub fn parse_mount(
    spec: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, ExpandError>,
) -> Result<Mount, MountError> {
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        readonly: false,
        id: None,
        sharing: None,
        required: false,
        size: None,
        mode: None,
        uid: None,
        gid: None,
        env: None,
    };
    let mut ro_auto = true;
    for field in csv_fields(spec)? {
        let Some((key, value)) = field.split_once('=') else {
            match field.to_ascii_lowercase().as_str() {
                "readonly" | "ro" => (m.readonly, ro_auto) = (true, false),
                "readwrite" | "rw" => (m.readonly, ro_auto) = (false, false),
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true
                }
                "required" => {
                    return Err(MountError::KeyForType {
                        key: "required".into(),
                        kind: m.kind.name(),
                    })
                }
                _ => return Err(MountError::NotKeyValue(field)),
            }
            continue;
        };
        let key = key.to_ascii_lowercase();
        let value = expand(value)?;
        set_field(&mut m, &key, value, &field, &mut ro_auto)?;
    }
    validate(&mut m, ro_auto)?;
    Ok(m)
}

fn set_field(
    m: &mut Mount,
    key: &str,
    value: String,
    field: &str,
    ro_auto: &mut bool,
) -> Result<(), MountError> {
    let unexpected = |m: &Mount| MountError::KeyForType {
        key: key.to_string(),
        kind: m.kind.name(),
    };
    match key {
        "type" => {
            m.kind = match value.to_ascii_lowercase().as_str() {
                "bind" => MountType::Bind,
                "cache" => MountType::Cache,
                "tmpfs" => MountType::Tmpfs,
                "secret" => MountType::Secret,
                "ssh" => MountType::Ssh,
                _ => {
                    let msg = format!("unsupported mount type {value:?}");
                    return Err(MountError::Unknown {
                        message: with_suggestion(
                            msg,
                            &value,
                            &["bind", "cache", "tmpfs", "secret", "ssh"],
                            true,
                        ),
                    });
                }
            }
        }
        "from" => m.from = Some(value),
        "source" | "src" => m.source = Some(value),
        "target" | "dst" | "destination" => m.target = Some(value),
        "readonly" | "ro" => (m.readonly, *ro_auto) = (parse_bool(key, &value)?, false),
        "readwrite" | "rw" => (m.readonly, *ro_auto) = (!parse_bool(key, &value)?, false),
        "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
            m.required = parse_bool(key, &value)?
        }
        "size" if m.kind == MountType::Tmpfs => m.size = Some(value),
        "required" | "size" => return Err(unexpected(m)),
        "id" => m.id = Some(value),
        "sharing" => {
            let lower = value.to_ascii_lowercase();
            if !["shared", "private", "locked"].contains(&lower.as_str()) {
                let msg = format!("unsupported sharing value {value:?}");
                return Err(MountError::Unknown {
                    message: with_suggestion(msg, &value, &["shared", "private", "locked"], true),
                });
            }
            m.sharing = Some(lower);
        }
        "mode" => m.mode = Some(parse_u32(&value, 8, "mode")?),
        "uid" => m.uid = Some(parse_u32(&value, 10, "uid")?),
        "gid" => m.gid = Some(parse_u32(&value, 10, "gid")?),
        "env" => m.env = Some(value),
        _ => {
            return Err(MountError::Unknown {
                message: with_suggestion(
                    format!("unexpected key '{key}' in '{field}'"),
                    key,
                    &KEYS,
                    true,
                ),
            });
        }
    }
    Ok(())
}

fn validate(m: &mut Mount, ro_auto: bool) -> Result<(), MountError> {
    let kind = m.kind.name();
    if !matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    ) {
        for (name, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(MountError::NotAllowed { name, kind });
            }
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err(MountError::SecretFrom);
        }
        if m.sharing.is_some() {
            return Err(MountError::SecretSharing);
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err(MountError::SecretNoTarget);
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(MountError::SourceAndId);
        }
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(MountError::SharingNotCache(kind));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<Mount, MountError> {
        parse_mount(spec, &mut |v| Ok(v.to_string()))
    }

    #[test]
    fn mounts() {
        let m = parse("type=cache,target=/root/.cache,sharing=locked").expect("valid");
        assert_eq!(
            (m.kind, m.readonly, m.sharing.as_deref()),
            (MountType::Cache, false, Some("locked"))
        );
        let m = parse("target=/src,from=build,rw").expect("valid");
        assert_eq!(
            (m.kind, m.readonly, m.from.as_deref()),
            (MountType::Bind, false, Some("build"))
        );
        let m = parse("type=secret,id=npmrc,target=/root/.npmrc,required").expect("valid");
        assert!(m.required && m.readonly);
        assert_eq!(
            parse("type=cache,target=/c,mode=0755").expect("valid").mode,
            Some(0o755)
        );
    }

    #[test]
    fn mount_errors() {
        let cases = [
            (
                "type=cahce,target=/x",
                "unsupported mount type \"cahce\" (did you mean cache?)",
            ),
            (
                "type=bind,target=/x,uid=1",
                "uid not allowed for \"bind\" type mounts",
            ),
            (
                "type=secret",
                "invalid secret mount. one of source, target required",
            ),
            (
                "type=bind,sharing=locked",
                "invalid cache sharing set for bind mount",
            ),
            (
                "type=bind,required",
                "unexpected key 'required' for mount type 'bind'",
            ),
            ("target=/x,bogus=1", "unexpected key 'bogus' in 'bogus=1'"),
            ("target", "invalid field 'target' must be a key=value pair"),
        ];
        for (spec, want) in cases {
            assert_eq!(parse(spec).expect_err(spec).to_string(), want, "{spec}");
        }
        assert!(check_unexpanded("from=$STAGE").is_err());
        assert!(check_unexpanded("from=build,target=/x").is_ok());
    }
}
