//! The `--secret` and `--ssh` flags of `strata build`: where each secret value and agent
//! socket comes from. The values are read only by the steps that mount them (`plan.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where a `--secret` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// A `--secret` or `--ssh` value not in buildx's form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountFlagError {
    #[error("invalid --secret {flag:?}: {field:?} is not KEY=VALUE")]
    SecretField { flag: String, field: String },
    #[error("invalid --secret {flag:?}: unexpected key {key:?}")]
    SecretKey { flag: String, key: String },
    #[error("invalid --secret {0:?}: id= is required")]
    SecretId(String),
    #[error("invalid --ssh {0:?}: no socket given and SSH_AUTH_SOCK is not set")]
    SshNoSocket(String),
    #[error("invalid --ssh {0:?}: want ID[=SOCKET]")]
    Ssh(String),
}

/// `--secret id=ID[,src=FILE|,env=VAR][,type=file|env]`, as `docker buildx build` takes it.
/// With only an id, the value comes from the environment variable of that name when set,
/// else from a file of that name (buildx's rule).
pub fn parse_secret_flag(flag: &str) -> Result<(String, SecretSource), MountFlagError> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    let mut kind = None;
    for field in flag.split(',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| MountFlagError::SecretField {
                flag: flag.to_string(),
                field: field.to_string(),
            })?;
        match k.to_ascii_lowercase().as_str() {
            "id" => id = Some(v.to_string()),
            "src" | "source" => src = Some(v.to_string()),
            "env" => env = Some(v.to_string()),
            "type" if v == "file" || v == "env" => kind = Some(v.to_string()),
            _ => {
                return Err(MountFlagError::SecretKey {
                    flag: flag.to_string(),
                    key: k.to_string(),
                })
            }
        }
    }
    let id = match id.or_else(|| src.clone()).or_else(|| env.clone()) {
        Some(id) if !id.is_empty() => id,
        _ => return Err(MountFlagError::SecretId(flag.to_string())),
    };
    let source = match (kind.as_deref(), src, env) {
        (Some("env"), Some(v), _) | (_, None, Some(v)) => SecretSource::Env(v),
        (_, Some(f), _) => SecretSource::File(PathBuf::from(f)),
        (Some("file"), None, None) => SecretSource::File(PathBuf::from(&id)),
        (_, None, None) if std::env::var_os(&id).is_some() => SecretSource::Env(id.clone()),
        (_, None, None) => SecretSource::File(PathBuf::from(&id)),
    };
    Ok((id, source))
}

/// `--ssh default|ID[=SOCKET]`: without a socket, `$SSH_AUTH_SOCK`.
pub fn parse_ssh_flag(flag: &str) -> Result<(String, PathBuf), MountFlagError> {
    let (id, path) = match flag.split_once('=') {
        Some((id, p)) => (id.to_string(), PathBuf::from(p)),
        None => match std::env::var_os("SSH_AUTH_SOCK") {
            Some(p) => (flag.to_string(), PathBuf::from(p)),
            None => return Err(MountFlagError::SshNoSocket(flag.to_string())),
        },
    };
    if id.is_empty() || path.as_os_str().is_empty() {
        return Err(MountFlagError::Ssh(flag.to_string()));
    }
    Ok((id, path))
}

/// The secret values of a build, by id (for tests of the plumbing).
pub type Secrets = BTreeMap<String, SecretSource>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_flags() {
        assert_eq!(
            parse_secret_flag("id=a,src=/x").expect("valid"),
            ("a".into(), SecretSource::File("/x".into()))
        );
        assert_eq!(
            parse_secret_flag("id=a,env=V").expect("valid"),
            ("a".into(), SecretSource::Env("V".into()))
        );
        assert!(parse_secret_flag("src").is_err());
        assert!(parse_secret_flag("bogus=1").is_err());
    }
}
