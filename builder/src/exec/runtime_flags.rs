//! The settings every RUN of a build gets from `docker build` flags: `--add-host`
//! (entries appended to the step's /etc/hosts), `--shm-size` (the size of its /dev/shm
//! tmpfs) and `--ulimit` (resource limits set on its process before `execve`).
//!
//! Parsing follows the docker CLI: `--add-host NAME:IP` or `NAME=IP` (IPv6 in brackets or
//! not, several IPs after `=` separated by commas; docker/cli `opts/hosts.go` and buildx's
//! `toBuildkitExtraHosts`), `--ulimit NAME=SOFT[:HARD]` with go-units' names and messages.
//! BuildKit puts all three in the RUN's cache key (the op carries them; only the IP of an
//! extra host is left out of the key), and so does [`RuntimeOptions::key_text`].

use std::fmt;
use std::net::IpAddr;

/// The build-wide RUN settings; the default changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Lines `IP\tNAME` appended to the step's /etc/hosts, in order.
    pub extra_hosts: Vec<ExtraHost>,
    /// Size in bytes of /dev/shm; `None` keeps docker's 64 MiB.
    pub shm_size: Option<u64>,
    /// Set with `setrlimit` in the step's process, in order.
    pub ulimits: Vec<Ulimit>,
}

impl RuntimeOptions {
    /// What the RUN's cache key adds for these settings: empty when none is set, so the
    /// keys of builds without the flags stay as they are. Extra hosts count by name only,
    /// as in BuildKit (the same Dockerfile against another IP reuses its cache).
    pub fn key_text(&self) -> String {
        if *self == RuntimeOptions::default() {
            return String::new();
        }
        let hosts: Vec<&str> = self.extra_hosts.iter().map(|h| h.name.as_str()).collect();
        let ulimits: Vec<String> = self.ulimits.iter().map(Ulimit::to_string).collect();
        format!(
            "hosts={}\0shm={:?}\0ulimits={}",
            hosts.join(","),
            self.shm_size,
            ulimits.join(",")
        )
    }

    /// `hosts` (the step's /etc/hosts as it would be) with the extra entries appended.
    pub fn hosts_file(&self, hosts: &[u8]) -> Vec<u8> {
        let mut out = hosts.to_vec();
        if self.extra_hosts.is_empty() {
            return out;
        }
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        for host in &self.extra_hosts {
            out.extend_from_slice(format!("{}\t{}\n", host.ip, host.name).as_bytes());
        }
        out
    }
}

/// One `--add-host` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraHost {
    pub name: String,
    pub ip: IpAddr,
}

/// One `--ulimit`: a resource and its soft and hard limits (`-1`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ulimit {
    pub resource: Resource,
    pub soft: i64,
    pub hard: i64,
}

impl fmt::Display for Ulimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}:{}", self.resource.name(), self.soft, self.hard)
    }
}

impl Ulimit {
    /// The kernel's value for a limit: -1 is `RLIM_INFINITY`.
    pub fn rlim(value: i64) -> libc::rlim_t {
        if value < 0 {
            libc::RLIM_INFINITY
        } else {
            value as libc::rlim_t
        }
    }
}

/// The resources `--ulimit` knows, by docker's names (go-units leaves out `as`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

const RESOURCES: [(&str, Resource, libc::__rlimit_resource_t); 15] = [
    ("core", Resource::Core, libc::RLIMIT_CORE),
    ("cpu", Resource::Cpu, libc::RLIMIT_CPU),
    ("data", Resource::Data, libc::RLIMIT_DATA),
    ("fsize", Resource::Fsize, libc::RLIMIT_FSIZE),
    ("locks", Resource::Locks, libc::RLIMIT_LOCKS),
    ("memlock", Resource::Memlock, libc::RLIMIT_MEMLOCK),
    ("msgqueue", Resource::Msgqueue, libc::RLIMIT_MSGQUEUE),
    ("nice", Resource::Nice, libc::RLIMIT_NICE),
    ("nofile", Resource::Nofile, libc::RLIMIT_NOFILE),
    ("nproc", Resource::Nproc, libc::RLIMIT_NPROC),
    ("rss", Resource::Rss, libc::RLIMIT_RSS),
    ("rtprio", Resource::Rtprio, libc::RLIMIT_RTPRIO),
    ("rttime", Resource::Rttime, libc::RLIMIT_RTTIME),
    ("sigpending", Resource::Sigpending, libc::RLIMIT_SIGPENDING),
    ("stack", Resource::Stack, libc::RLIMIT_STACK),
];

impl Resource {
    pub fn name(self) -> &'static str {
        RESOURCES
            .iter()
            .find(|(_, r, _)| *r == self)
            .map(|(n, _, _)| *n)
            .expect("every resource is in RESOURCES")
    }

    /// The `RLIMIT_*` number for `setrlimit`.
    pub fn raw(self) -> libc::__rlimit_resource_t {
        RESOURCES
            .iter()
            .find(|(_, r, _)| *r == self)
            .map(|(_, _, raw)| *raw)
            .expect("every resource is in RESOURCES")
    }

    fn parse(name: &str) -> Option<Resource> {
        RESOURCES
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, r, _)| *r)
    }
}

/// A flag value that docker would refuse, with docker's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeFlagError {
    #[error("bad format for add-host: {0:?}")]
    AddHostFormat(String),
    #[error("invalid IP address in add-host: {0:?}")]
    AddHostIp(String),
    /// buildx resolves `host-gateway` through the driver; a builder without a gateway to
    /// the host (docker-container, kubernetes, remote drivers, and strata) refuses it.
    #[error("unable to derive the IP value for host-gateway: host-gateway is not supported by strata: a RUN step has no gateway address to the host; give the host's address instead (--add-host {0}:IP)")]
    HostGateway(String),
    #[error("invalid ulimit argument: {0}")]
    UlimitFormat(String),
    #[error("invalid ulimit type: {0}")]
    UlimitType(String),
    #[error("invalid ulimit value {value:?} in {arg}: want an integer (-1 for unlimited)")]
    UlimitValue { arg: String, value: String },
    #[error("too many limit value arguments - {0}, can only have up to two, `soft[:hard]`")]
    UlimitTooMany(String),
    #[error("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")]
    UlimitOrder { soft: String, hard: i64 },
}

/// `--add-host NAME:IP`, `NAME=IP`, `NAME=IP1,IP2` (one entry per IP), brackets allowed
/// around an address.
pub fn parse_add_host(raw: &str) -> Result<Vec<ExtraHost>, RuntimeFlagError> {
    let (name, ips) = raw
        .split_once('=')
        .or_else(|| raw.split_once(':'))
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| RuntimeFlagError::AddHostFormat(raw.to_string()))?;
    if ips == "host-gateway" {
        return Err(RuntimeFlagError::HostGateway(name.to_string()));
    }
    ips.split(',')
        .map(|ip| {
            let bare = ip
                .strip_prefix('[')
                .and_then(|i| i.strip_suffix(']'))
                .unwrap_or(ip);
            bare.parse::<IpAddr>()
                .map(|ip| ExtraHost {
                    name: name.to_string(),
                    ip,
                })
                .map_err(|_| RuntimeFlagError::AddHostIp(ip.to_string()))
        })
        .collect()
}

/// `--ulimit NAME=SOFT[:HARD]`; HARD defaults to SOFT, -1 is unlimited (go-units
/// `ParseUlimit`).
pub fn parse_ulimit(raw: &str) -> Result<Ulimit, RuntimeFlagError> {
    let (name, values) = raw
        .split_once('=')
        .ok_or_else(|| RuntimeFlagError::UlimitFormat(raw.to_string()))?;
    let resource =
        Resource::parse(name).ok_or_else(|| RuntimeFlagError::UlimitType(name.to_string()))?;
    let number = |v: &str| {
        v.parse::<i64>().map_err(|_| RuntimeFlagError::UlimitValue {
            arg: raw.to_string(),
            value: v.to_string(),
        })
    };
    let (soft, hard) = match values.split(':').collect::<Vec<_>>()[..] {
        [soft] => (number(soft)?, number(soft)?),
        [soft, hard] => (number(soft)?, number(hard)?),
        _ => return Err(RuntimeFlagError::UlimitTooMany(values.to_string())),
    };
    if hard != -1 && (soft == -1 || soft > hard) {
        let soft = if soft == -1 {
            "-1 (unlimited)".to_string()
        } else {
            soft.to_string()
        };
        return Err(RuntimeFlagError::UlimitOrder { soft, hard });
    }
    Ok(Ulimit {
        resource,
        soft,
        hard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The (name, ip) entries a flag gives, or the error text.
    type Want = Result<Vec<(&'static str, &'static str)>, &'static str>;

    #[test]
    fn add_host_forms() {
        let cases: [(&str, Want); 11] = [
            ("myhost:192.168.0.1", Ok(vec![("myhost", "192.168.0.1")])),
            ("myhost=192.168.0.1", Ok(vec![("myhost", "192.168.0.1")])),
            ("myhost=[192.168.0.1]", Ok(vec![("myhost", "192.168.0.1")])),
            ("v6:2003:ab34:e::1", Ok(vec![("v6", "2003:ab34:e::1")])),
            ("v6:[2003:ab34:e::1]", Ok(vec![("v6", "2003:ab34:e::1")])),
            ("ipv6local:::1", Ok(vec![("ipv6local", "::1")])),
            (
                "m=162.242.195.82,162.242.195.83",
                Ok(vec![("m", "162.242.195.82"), ("m", "162.242.195.83")]),
            ),
            (
                "myhost:192.notanip.1",
                Err(r#"invalid IP address in add-host: "192.notanip.1""#),
            ),
            (
                "nosep10.0.0.1",
                Err(r#"bad format for add-host: "nosep10.0.0.1""#),
            ),
            ("h=", Err(r#"invalid IP address in add-host: """#)),
            ("", Err(r#"bad format for add-host: """#)),
        ];
        for (input, want) in cases {
            let got = parse_add_host(input)
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.name.clone(), h.ip.to_string()))
                        .collect::<Vec<_>>()
                })
                .map_err(|e| e.to_string());
            let want = want
                .map(|v| {
                    v.iter()
                        .map(|(n, i)| (n.to_string(), i.to_string()))
                        .collect::<Vec<_>>()
                })
                .map_err(str::to_string);
            assert_eq!(got, want, "input {input:?}");
        }
        assert!(matches!(
            parse_add_host("gw:host-gateway"),
            Err(RuntimeFlagError::HostGateway(_))
        ));
    }

    #[test]
    fn ulimit_forms() {
        let cases = [
            ("nofile=1024:2048", Ok("nofile=1024:2048")),
            ("nproc=100", Ok("nproc=100:100")),
            ("core=-1", Ok("core=-1:-1")),
            ("stack=1024:-1", Ok("stack=1024:-1")),
            ("nofile", Err("invalid ulimit argument: nofile")),
            ("as=1", Err("invalid ulimit type: as")),
            (
                "nofile=1:2:3",
                Err("too many limit value arguments - 1:2:3, can only have up to two, `soft[:hard]`"),
            ),
            (
                "nofile=2048:1024",
                Err("ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"),
            ),
            (
                "nofile=-1:1024",
                Err("ulimit soft limit must be less than or equal to hard limit: -1 (unlimited) > 1024"),
            ),
            (
                "nofile=many",
                Err(r#"invalid ulimit value "many" in nofile=many: want an integer (-1 for unlimited)"#),
            ),
        ];
        for (input, want) in cases {
            let got = parse_ulimit(input)
                .map(|u| u.to_string())
                .map_err(|e| e.to_string());
            assert_eq!(
                got,
                want.map(str::to_string).map_err(str::to_string),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn hosts_file_appends_after_a_newline() {
        let opts = RuntimeOptions {
            extra_hosts: parse_add_host("db:10.0.0.5").unwrap(),
            ..RuntimeOptions::default()
        };
        assert_eq!(
            opts.hosts_file(b"127.0.0.1\tlocalhost"),
            b"127.0.0.1\tlocalhost\n10.0.0.5\tdb\n"
        );
        assert_eq!(RuntimeOptions::default().hosts_file(b"x"), b"x");
    }

    #[test]
    fn key_text_ignores_ips_and_is_empty_by_default() {
        assert_eq!(RuntimeOptions::default().key_text(), "");
        let a = RuntimeOptions {
            extra_hosts: parse_add_host("db:10.0.0.5").unwrap(),
            ..RuntimeOptions::default()
        };
        let b = RuntimeOptions {
            extra_hosts: parse_add_host("db:10.0.0.6").unwrap(),
            ..RuntimeOptions::default()
        };
        assert_eq!(a.key_text(), b.key_text());
        let c = RuntimeOptions {
            shm_size: Some(1 << 20),
            ..RuntimeOptions::default()
        };
        assert_ne!(a.key_text(), c.key_text());
    }
}
