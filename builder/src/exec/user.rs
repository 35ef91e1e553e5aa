//! `USER` resolution against the image's /etc/passwd and /etc/group, with the rules of
//! moby/sys/user `GetExecUser` (what runc and docker use):
//!
//! - `""` is root; `name` must be in passwd; a numeric uid need not be (gid 0, home `/`);
//! - `user:group` takes the group by name (must exist) or number; without an explicit
//!   group, the groups that list the user by name become supplementary groups;
//! - HOME comes from passwd (`/` when unknown).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserError {
    NoSuchUser(String),
    NoSuchGroup(String),
}

impl std::error::Error for UserError {}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserError::NoSuchUser(u) => write!(
                f,
                "unable to find user {u}: no matching entries in passwd file"
            ),
            UserError::NoSuchGroup(g) => write!(
                f,
                "unable to find group {g}: no matching entries in group file"
            ),
        }
    }
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.trim().split(':').collect();
        if f.len() < 4 || f[0].starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.trim().split(':').collect();
        if f.len() < 3 || f[0].starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f
                .get(3)
                .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
        })
    })
}

/// Resolve `spec` (`name`, `uid`, `name:group`, `uid:gid`, …). Missing files count as empty.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, UserError> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_arg = if user_arg.is_empty() { "0" } else { user_arg };
    let numeric_uid: Option<u32> = user_arg.parse().ok();
    let matched = passwd_entries(passwd).find(|e| match numeric_uid {
        Some(uid) => e.uid == uid,
        None => e.name == user_arg,
    });
    let mut out = match (&matched, numeric_uid) {
        (Some(e), _) => ExecUser {
            uid: e.uid,
            gid: e.gid,
            additional_gids: Vec::new(),
            home: e.home.to_string(),
        },
        (None, Some(uid)) => ExecUser {
            uid,
            gid: 0,
            additional_gids: Vec::new(),
            home: "/".to_string(),
        },
        (None, None) => return Err(UserError::NoSuchUser(user_arg.to_string())),
    };
    if out.home.is_empty() {
        out.home = "/".to_string();
    }
    match group_arg.filter(|g| !g.is_empty()) {
        Some(g) => {
            out.gid = match g.parse::<u32>() {
                Ok(gid) => group_entries(group)
                    .find(|e| e.gid == gid)
                    .map(|e| e.gid)
                    .unwrap_or(gid),
                Err(_) => group_entries(group)
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| UserError::NoSuchGroup(g.to_string()))?,
            };
        }
        None => {
            if let Some(e) = &matched {
                out.additional_gids = group_entries(group)
                    .filter(|g| g.members.contains(&e.name))
                    .map(|g| g.gid)
                    .collect();
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
        app:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app,root\naudio:x:29:app\n";

    #[test]
    fn resolve_user_table() {
        type Want = Result<(u32, u32, &'static [u32], &'static str), UserError>;
        let cases: [(&str, Want); 10] = [
            ("", Ok((0, 0, &[10], "/root"))),
            ("root", Ok((0, 0, &[10], "/root"))),
            ("app", Ok((1000, 1000, &[10, 29], "/home/app"))),
            ("1000", Ok((1000, 1000, &[10, 29], "/home/app"))),
            ("4242", Ok((4242, 0, &[], "/"))),
            ("app:audio", Ok((1000, 29, &[], "/home/app"))),
            ("app:77", Ok((1000, 77, &[], "/home/app"))),
            ("4242:4242", Ok((4242, 4242, &[], "/"))),
            ("ghost", Err(UserError::NoSuchUser("ghost".into()))),
            ("app:ghosts", Err(UserError::NoSuchGroup("ghosts".into()))),
        ];
        for (spec, want) in cases {
            let got = resolve(spec, PASSWD, GROUP);
            let want = want.map(|(uid, gid, groups, home)| ExecUser {
                uid,
                gid,
                additional_gids: groups.to_vec(),
                home: home.to_string(),
            });
            assert_eq!(got, want, "user {spec:?}");
        }
    }

    #[test]
    fn missing_files_allow_numeric_users_only() {
        assert_eq!(resolve("0", "", "").map(|u| u.uid), Ok(0));
        assert!(resolve("nobody", "", "").is_err());
    }
}
