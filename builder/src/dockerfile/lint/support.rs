//! Small validators the checks need: image references (docker's grammar), platforms,
//! secret-looking names, stop signals and EXPOSE port specs.

/// Whether `s` parses as a docker image reference (`ParseNormalizedNamed`): the store's
/// parser, so `--check` and `build` agree on what a reference is.
pub fn is_valid_reference(s: &str) -> bool {
    store::Reference::parse(s).is_ok()
}

const KNOWN_OS: [&str; 17] = [
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "windows",
    "zos",
];

/// containerd's `platforms.Parse`, loosely: `(os, arch)` or None when it would fail.
pub fn parse_platform(p: &str) -> Option<(String, String)> {
    let parts: Vec<String> = p.split('/').map(|s| s.to_ascii_lowercase()).collect();
    let known_arch = |a: &str| {
        matches!(
            a,
            "386"
                | "amd64"
                | "x86_64"
                | "x86-64"
                | "arm"
                | "armhf"
                | "armel"
                | "arm64"
                | "aarch64"
                | "ppc64le"
                | "s390x"
                | "riscv64"
                | "mips64le"
                | "loong64"
                | "i386"
                | "ppc64"
                | "mips"
                | "mipsle"
                | "mips64"
        )
    };
    match parts.as_slice() {
        [one] if KNOWN_OS.contains(&one.as_str()) => Some((one.clone(), host_arch().to_string())),
        [one] if known_arch(one) => Some(("linux".into(), one.clone())),
        // containerd takes any os/arch[/variant] made of `[A-Za-z0-9_-]+` parts
        [os, arch] | [os, arch, _] if parts.iter().all(|p| is_specifier(p)) => {
            Some((os.clone(), arch.clone()))
        }
        _ => None,
    }
}

fn is_specifier(part: &str) -> bool {
    !part.is_empty()
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The host architecture in OCI spelling.
pub use store::platform::host_architecture as host_arch;

/// BuildKit's secret-name test: a `_`-separated token (case-insensitive) is one of the
/// secret words, and none is an allowed word.
pub fn looks_secret(key: &str) -> bool {
    const DENY: [&str; 10] = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    const ALLOW: [&str; 3] = ["public", "file", "version"];
    let tokens: Vec<String> = key.split('_').map(|t| t.to_ascii_lowercase()).collect();
    tokens.iter().any(|t| DENY.contains(&t.as_str()))
        && !tokens.iter().any(|t| ALLOW.contains(&t.as_str()))
}

/// Linux signal names as moby's `signal.SignalMap` knows them.
const SIGNALS: [&str; 35] = [
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
];

/// A STOPSIGNAL or EXPOSE value BuildKit refuses when it checks the stage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("Invalid signal: {0}")]
    Signal(String),
    #[error("invalid port: {raw:?}: {reason}")]
    Port { raw: String, reason: PortProblem },
}

/// What is wrong with an EXPOSE item (docker's nat.ParsePortSpec wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortProblem {
    #[error("no port specified")]
    NoPort,
    #[error("invalid proto: {0}")]
    Proto(String),
    #[error("invalid containerPort: {0}")]
    ContainerPort(String),
    #[error("invalid hostPort: {0}")]
    HostPort(String),
}

/// `signal.ParseSignal`: a number, a name with or without `SIG`, or `RTMIN+n`.
pub fn check_signal(s: &str) -> Result<(), ValueError> {
    if let Ok(n) = s.parse::<i64>() {
        return if n > 0 {
            Ok(())
        } else {
            Err(ValueError::Signal(s.to_string()))
        };
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let rt = name
        .strip_prefix("RTMIN+")
        .or_else(|| name.strip_prefix("RTMAX-"));
    if SIGNALS.contains(&name)
        || matches!(name, "RTMIN" | "RTMAX")
        || rt.is_some_and(|n| n.parse::<u8>().is_ok())
    {
        Ok(())
    } else {
        Err(ValueError::Signal(s.to_string()))
    }
}

/// What one EXPOSE item says: whether its protocol is lower-case and whether it maps an
/// IP or host port; an error when BuildKit would reject it.
pub struct PortSpec {
    pub proto_is_lower: bool,
    pub has_host_part: bool,
}

pub fn parse_port(raw: &str) -> Result<PortSpec, ValueError> {
    let parts: Vec<&str> = raw.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [ip @ .., h, c] => (if ip.is_empty() { "" } else { "x" }, *h, *c),
        [] => ("", "", ""),
    };
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    let wrap = |reason| ValueError::Port {
        raw: raw.to_string(),
        reason,
    };
    if port.is_empty() {
        return Err(wrap(PortProblem::NoPort));
    }
    if !matches!(
        proto.to_ascii_lowercase().as_str(),
        "" | "tcp" | "udp" | "sctp"
    ) {
        return Err(wrap(PortProblem::Proto(proto.to_string())));
    }
    let range = |r: &str| -> Option<(u32, u32)> {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        let (a, b) = (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?);
        (a <= 65535 && b <= 65535 && a <= b).then_some((a, b))
    };
    range(port).ok_or_else(|| wrap(PortProblem::ContainerPort(port.to_string())))?;
    if !host.is_empty() {
        range(host).ok_or_else(|| wrap(PortProblem::HostPort(host.to_string())))?;
    }
    Ok(PortSpec {
        proto_is_lower: proto == proto.to_ascii_lowercase(),
        has_host_part: !ip.is_empty() || !host.is_empty(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        for ok in [
            "alpine",
            "alpine:3.20",
            "docker.io/library/alpine:latest",
            "localhost:5000/x/y:v1",
            "scratch",
            "ghcr.io/o/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "a__b",
            "a--b",
        ] {
            assert!(is_valid_reference(ok), "{ok}");
        }
        for bad in [
            "",
            ":3.20",
            "Alpine",
            "alpine:",
            "a b",
            "-a",
            "alpine:-x",
            "x@sha256:12",
            "/alpine",
        ] {
            assert!(!is_valid_reference(bad), "{bad}");
        }
    }

    #[test]
    fn secrets() {
        for s in [
            "AWS_SECRET_ACCESS_KEY",
            "api_key",
            "GITHUB_TOKEN",
            "password",
            "secret_MESSAGE",
            "AUTH",
        ] {
            assert!(looks_secret(s), "{s}");
        }
        for s in [
            "PUBLIC_KEY",
            "GPG_KEYS",
            "TOKEN_FILE",
            "KEY_VERSION",
            "MONKEY",
            "PASSWORDLESS",
            "NODE_VERSION",
        ] {
            assert!(!looks_secret(s), "{s}");
        }
    }

    #[test]
    fn platforms_signals_ports() {
        assert_eq!(
            parse_platform("linux/amd64"),
            Some(("linux".into(), "amd64".into()))
        );
        assert!(parse_platform("linux/arm64/v8").is_some());
        assert!(parse_platform("bogus").is_none() && parse_platform("linux/").is_none());
        assert!(parse_platform("freebsd/riscv64").is_some());
        assert!(
            check_signal("SIGTERM").is_ok()
                && check_signal("9").is_ok()
                && check_signal("quit").is_ok()
        );
        assert!(check_signal("SIGFOO").is_err());
        assert!(parse_port("80/TCP").is_ok_and(|p| !p.proto_is_lower));
        assert!(parse_port("8080:80").is_ok_and(|p| p.has_host_part));
        assert!(parse_port("80-90/udp").is_ok_and(|p| p.proto_is_lower && !p.has_host_part));
        assert!(parse_port("abc").is_err() && parse_port("80/xyz").is_err());
    }
}
