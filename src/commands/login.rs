//! `strata login [-u USER] [-p PASS | --password-stdin] [SERVER]` and `strata logout`.
//! Credentials go to docker's config.json (mode 0600) or its credential helper; the
//! password is never echoed or printed.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context, Result};
use registry_client::auth::server_key;

use super::Ctx;
use crate::output::UsageError;

pub fn login(ctx: &Ctx, args: &crate::cli::LoginArgs) -> Result<()> {
    let server = registry_client::canonical_registry(args.server.as_deref().unwrap_or("docker.io"));
    if args.password.is_some() && args.password_stdin {
        return Err(
            UsageError("--password and --password-stdin are mutually exclusive".into()).into(),
        );
    }
    if args.password_stdin && args.username.is_none() {
        return Err(UsageError("must provide --username with --password-stdin".into()).into());
    }
    let stdin = std::io::stdin();
    let username = match &args.username {
        Some(u) => u.clone(),
        None => prompt("Username: ", false)?,
    };
    let password = match (&args.password, args.password_stdin) {
        (Some(p), _) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p.clone()
        }
        (None, true) => {
            let mut line = String::new();
            stdin
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => prompt("Password: ", true)?,
    };
    if username.is_empty() || password.is_empty() {
        bail!("Error: Cannot perform an interactive login from a non TTY device");
    }
    let registry = super::registry(ctx, true);
    let client = registry.client()?;
    registry_client::login_blocking(client, &server, &username, &password)
        .with_context(|| format!("logging in to {server}"))?;
    if let Ok(cfg) = client.docker_config() {
        eprintln!(
            "WARNING! Your password will be stored unencrypted in {} unless a credential helper is configured.",
            cfg.path().display()
        );
    }
    println!("Login Succeeded");
    Ok(())
}

pub fn logout(ctx: &Ctx, args: &crate::cli::LogoutArgs) -> Result<()> {
    let server = registry_client::canonical_registry(args.server.as_deref().unwrap_or("docker.io"));
    let registry = super::registry(ctx, true);
    let client = registry.client()?;
    let key = server_key(&server);
    if client
        .logout(&server)
        .with_context(|| format!("logging out of {server}"))?
    {
        println!("Removing login credentials for {key}");
    } else {
        println!("Not logged in to {key}");
    }
    Ok(())
}

/// Reads one line from the terminal; with `secret`, echo is switched off meanwhile.
fn prompt(label: &str, secret: bool) -> Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("Error: Cannot perform an interactive login from a non TTY device");
    }
    eprint!("{label}");
    std::io::stderr().flush().ok();
    let _echo = if secret { EchoOff::new() } else { None };
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading from the terminal")?;
    if secret {
        eprintln!();
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Restores the terminal's echo flag on drop.
struct EchoOff(libc::termios);

impl EchoOff {
    fn new() -> Option<EchoOff> {
        // SAFETY: termios is plain data; tcgetattr fills it for fd 0, which is a terminal
        // (checked by the caller); failure leaves echo as it was.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(EchoOff(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read from the same fd in `new`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.0);
        }
    }
}
