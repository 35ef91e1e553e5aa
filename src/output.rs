//! What the binary prints: the error report and exit code, human-readable sizes and ages
//! (docker's wording), and the TTY test that picks progress bars or plain lines.

use std::fmt;
use std::io::IsTerminal;

/// An error in what the user typed (a bad reference, a bad filter): exit code 2, like docker.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A command that has already printed its findings and only needs to set the exit code
/// (`system verify` with faults, `build --check` with errors).
#[derive(Debug)]
pub struct Exit(pub i32);

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// Print `strata: error: …` with the cause chain and return the exit code for it.
pub fn report_error(err: &anyhow::Error, debug: bool) -> i32 {
    if let Some(Exit(code)) = err.downcast_ref::<Exit>() {
        return *code;
    }
    let chain: Vec<String> = err.chain().map(|e| e.to_string()).collect();
    if debug {
        eprintln!("strata: error: {err:?}");
    } else {
        eprintln!("strata: error: {}", dedup_chain(&chain).join(": "));
    }
    if is_disk_full(err, &chain) {
        eprintln!("strata: no space left on device: free space on that filesystem, or run `strata system prune` when it holds the store");
    }
    if err.chain().any(|e| {
        e.downcast_ref::<UsageError>().is_some()
            || e.downcast_ref::<engine::EngineError>()
                .is_some_and(engine::EngineError::is_usage)
    }) {
        2
    } else {
        1
    }
}

/// ENOSPC anywhere in the chain: as an `io::Error`, or as text where a library kept only
/// the message (`… (os error 28)`).
fn is_disk_full(err: &anyhow::Error, chain: &[String]) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull)
    }) || chain.iter().any(|m| m.contains("(os error 28)"))
}

/// Drop a cause whose text the previous message already contains, so that
/// `pulling x: connecting to y: connecting to y` reads once.
fn dedup_chain(chain: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for msg in chain {
        if out.last().is_some_and(|prev| prev.contains(msg.as_str())) {
            continue;
        }
        out.push(msg.clone());
    }
    out
}

/// A closed stdout or stderr (`strata images --format json | head -1`) ends the process
/// as it ends docker's: killed by SIGPIPE, nothing printed, the shell's status 141. Rust
/// ignores SIGPIPE, so `println!` panics on the closed pipe instead (exit 101); this hook
/// turns that panic back into the signal. Other pipes (to RUN's processes, sockets) keep
/// their ordinary EPIPE errors.
pub fn die_of_sigpipe_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        let printing = message.starts_with("failed printing to stdout")
            || message.starts_with("failed printing to stderr");
        if printing && message.contains("Broken pipe") {
            die_of_sigpipe();
        }
        default(info);
    }));
}

fn die_of_sigpipe() -> ! {
    // SAFETY: restores SIGPIPE's default action and raises it in this process; no memory
    // is touched.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(128 + libc::SIGPIPE)
}

/// Whether stderr is a terminal: progress bars there, plain lines otherwise.
pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// docker's size format (go-units HumanSize): decimal units, 3 significant digits, "4.26MB".
pub fn human_size(bytes: u64) -> String {
    human_size_with_precision(bytes, 3)
}

/// go-units HumanSizeWithPrecision: `digits` significant digits. Plain `HumanSize` (used by
/// `system df` and "Total reclaimed space") is 4: "16.43MB".
pub fn human_size_with_precision(bytes: u64, digits: usize) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{}{}", format_significant(value, digits), UNITS[unit])
}

/// Like Go's `%.4g`-ish trimming that go-units uses: at most `digits` significant digits,
/// no trailing zeros.
fn format_significant(value: f64, digits: usize) -> String {
    if value == 0.0 {
        return "0".to_string();
    }
    let int_digits = (value.abs().log10().floor() as i64 + 1).max(1) as usize;
    let decimals = digits.saturating_sub(int_digits);
    let s = format!("{value:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// docker's "CREATED" column (go-units HumanDuration + " ago").
pub fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    let text = match s {
        0 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".to_string(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".to_string(),
        7200..=172_799 => format!("{} hours", s / 3600),
        172_800..=1_209_599 => format!("{} days", s / 86_400),
        1_209_600..=5_183_999 => format!("{} weeks", s / 604_800),
        5_184_000..=63_071_999 => format!("{} months", s / 2_592_000),
        _ => format!("{} years", s / 31_536_000),
    };
    format!("{text} ago")
}

/// docker's formatter tabwriter: columns at least 10 wide with 3 blanks of padding, the
/// last column unpadded, trailing blanks trimmed; one line per row.
pub fn format_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            let w = rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0);
            (w + 3).max(10)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_like_docker_tabwriter() {
        let rows = [
            ["TYPE", "TOTAL", "RECLAIMABLE"],
            ["Local Volumes", "0", "0B"],
            ["Images", "1", ""],
        ]
        .map(|r| r.map(String::from).to_vec());
        assert_eq!(
            format_table(&rows),
            "TYPE            TOTAL     RECLAIMABLE\nLocal Volumes   0         0B\nImages          1\n"
        );
    }

    #[test]
    fn human_size_matches_docker() {
        let cases = [
            (0, "0B"),
            (999, "999B"),
            (1000, "1kB"),
            (4_261_000, "4.26MB"),
            (1_200_000_000, "1.2GB"),
            (12_345_678, "12.3MB"),
            (123_456_789, "123MB"),
        ];
        for (bytes, want) in cases {
            assert_eq!(human_size(bytes), want, "bytes {bytes}");
        }
    }

    #[test]
    fn human_age_matches_docker() {
        let cases = [
            (0, "Less than a second ago"),
            (30, "30 seconds ago"),
            (90, "About a minute ago"),
            (600, "10 minutes ago"),
            (4000, "About an hour ago"),
            (3 * 86_400, "3 days ago"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_age(secs), want, "seconds {secs}");
        }
    }

    #[test]
    fn chain_drops_repeated_causes() {
        let chain = vec!["pulling x: boom".to_string(), "boom".to_string()];
        assert_eq!(dedup_chain(&chain), vec!["pulling x: boom".to_string()]);
    }
}
