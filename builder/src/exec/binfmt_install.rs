//! `strata binfmt install`: registers QEMU user emulation in the kernel's binfmt_misc,
//! explicitly (strata never registers anything behind a build's back; see [`super::binfmt`]).
//!
//! The entries are Debian's `qemu-user-static` ones (`/usr/share/binfmts/qemu-ARCH`: its
//! interpreter, magic, mask, offset and flags, the table QEMU's `qemu-binfmt-conf.sh`
//! keeps and tonistiigi/binfmt registers too), always with the `F` flag: the kernel opens
//! the interpreter once, at registration, so it runs inside a build's chroot, where no
//! `/usr/libexec/qemu-binfmt` exists. binfmt_misc is mounted first if it is not.
//!
//! An architecture that already has an enabled handler (any name, the kernel's choice) is
//! left alone: installing is idempotent.

use std::fs;
use std::path::{Path, PathBuf};

use store::platform::Platform;

use super::binfmt::{self, Support};

/// Where Debian's `qemu-user-static` describes its binfmt entries (`update-binfmts` format).
pub const DEBIAN_BINFMTS: &str = "/usr/share/binfmts";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("strata does not know the ELF machine of {0}")]
    UnknownArchitecture(String),
    #[error("no binfmt entry for {platform} in {path}: install QEMU user emulation (`apt-get install {}`)", binfmt::QEMU_PACKAGE)]
    NoEntry {
        platform: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    BadEntry { path: PathBuf, reason: EntryError },
    #[error("mounting binfmt_misc on {dir} (run as root)")]
    Mount {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("registering {name} in {dir} (run as root)")]
    Register {
        name: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A binfmt_misc registration: what a line written to `register` says.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub name: String,
    pub offset: usize,
    pub magic: Vec<u8>,
    pub mask: Vec<u8>,
    pub interpreter: PathBuf,
    pub flags: String,
}

impl Registration {
    /// `:name:M:offset:magic:mask:interpreter:flags`, every magic and mask byte escaped
    /// (`\xNN`), so a `:` byte cannot end the field.
    pub fn line(&self) -> String {
        let hex = |bytes: &[u8]| {
            bytes
                .iter()
                .map(|b| format!("\\x{b:02x}"))
                .collect::<String>()
        };
        format!(
            ":{}:M:{}:{}:{}:{}:{}",
            self.name,
            self.offset,
            hex(&self.magic),
            hex(&self.mask),
            self.interpreter.display(),
            self.flags
        )
    }
}

/// Decodes `update-binfmts`' `\xNN` escapes (other bytes stand for themselves).
fn unescape(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 4);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') {
            let digits = std::str::from_utf8(bytes.get(i + 2..i + 4)?).ok()?;
            out.push(u8::from_str_radix(digits, 16).ok()?);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// What is wrong with a Debian binfmts entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("a bad magic escape")]
    MagicEscape,
    #[error("a bad mask escape")]
    MaskEscape,
    #[error("a bad offset")]
    Offset,
    #[error("no magic line")]
    NoMagic,
    #[error("no interpreter line")]
    NoInterpreter,
}

/// Reads Debian's entry text (`interpreter`, `magic`, `mask`, `offset`, `credentials`,
/// `preserve` lines) as the registration named `name`, with the `F` flag, `P` when the
/// entry preserves argv[0] (Debian's `-binfmt-P` interpreters expect it) and `C` when it
/// asks for the binary's credentials.
pub fn parse_debian_entry(name: &str, text: &str) -> Result<Registration, EntryError> {
    let (mut interpreter, mut magic, mut mask) = (None, None, None);
    let (mut offset, mut flags) = (0, String::new());
    for line in text.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        let value = value.trim();
        match key {
            "interpreter" => interpreter = Some(PathBuf::from(value)),
            "magic" => magic = Some(unescape(value).ok_or(EntryError::MagicEscape)?),
            "mask" => mask = Some(unescape(value).ok_or(EntryError::MaskEscape)?),
            "offset" => offset = value.parse().map_err(|_| EntryError::Offset)?,
            "preserve" if value == "yes" => flags.push('P'),
            "credentials" if value == "yes" => flags.push('C'),
            _ => {}
        }
    }
    flags.push('F');
    let magic = magic.ok_or(EntryError::NoMagic)?;
    let mask = mask.unwrap_or_else(|| vec![0xff; magic.len()]);
    Ok(Registration {
        name: name.to_string(),
        offset,
        magic,
        mask,
        interpreter: interpreter.ok_or(EntryError::NoInterpreter)?,
        flags,
    })
}

/// The registration Debian's `qemu-user-static` describes for `platform` in `share`
/// (normally [`DEBIAN_BINFMTS`]).
pub fn debian_registration(
    platform: &Platform,
    share: &Path,
) -> Result<Registration, InstallError> {
    let qemu = binfmt::qemu_name(platform)
        .ok_or_else(|| InstallError::UnknownArchitecture(platform.to_string()))?;
    let name = format!("qemu-{qemu}");
    let path = share.join(&name);
    let text = fs::read_to_string(&path).map_err(|source| InstallError::NoEntry {
        platform: platform.to_string(),
        path: path.clone(),
        source,
    })?;
    parse_debian_entry(&name, &text).map_err(|reason| InstallError::BadEntry { path, reason })
}

/// What [`install`] did for one platform.
#[derive(Debug, Clone, PartialEq)]
pub enum Installed {
    /// Registered now, as this entry.
    Registered(String),
    /// Runs natively; nothing was written.
    Native,
    /// Already runs through this handler; nothing was written.
    AlreadyRegistered(String),
}

/// Mounts binfmt_misc on `dir` unless it is mounted there (its `register` file exists).
pub fn mount_if_needed(dir: &Path) -> Result<(), InstallError> {
    if dir.join("register").exists() {
        return Ok(());
    }
    rustix::mount::mount(
        "binfmt_misc",
        dir,
        "binfmt_misc",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .map_err(|e| InstallError::Mount {
        dir: dir.to_path_buf(),
        source: e.into(),
    })
}

/// Registers QEMU for `platform` in `dir` (binfmt_misc, mounted) from Debian's entry in
/// `share`, unless an enabled handler already runs its binaries.
pub fn install(platform: &Platform, dir: &Path, share: &Path) -> Result<Installed, InstallError> {
    match binfmt::support(platform, dir) {
        Some(Support::Native) => return Ok(Installed::Native),
        Some(Support::Emulated(h)) => return Ok(Installed::AlreadyRegistered(h.name)),
        None => {}
    }
    let registration = debian_registration(platform, share)?;
    let entry = dir.join(&registration.name);
    let outcome = if entry.exists() {
        // Registered under that name but disabled: enable it.
        fs::write(&entry, "1")
    } else {
        fs::write(dir.join("register"), registration.line())
    };
    outcome.map_err(|source| InstallError::Register {
        name: registration.name.clone(),
        dir: dir.to_path_buf(),
        source,
    })?;
    Ok(Installed::Registered(registration.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's `/usr/share/binfmts/qemu-aarch64`.
    const DEBIAN_AARCH64: &str = "package qemu-user-static\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nmagic \\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00\noffset 0\nmask \\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff\ncredentials no\nfix_binary yes\npreserve yes\n";

    #[test]
    fn debian_entries_become_register_lines_with_the_f_flag() {
        let r = parse_debian_entry("qemu-aarch64", DEBIAN_AARCH64).expect("parses");
        assert_eq!(r.magic.len(), 20);
        assert_eq!(&r.magic[..4], b"\x7fELF");
        assert_eq!(r.magic[18], 0xb7);
        assert_eq!(r.mask[7], 0);
        assert_eq!(r.flags, "PF");
        assert_eq!(
            r.line(),
            ":qemu-aarch64:M:0:\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:PF"
        );
        let no_magic = parse_debian_entry("x", "interpreter /bin/x\n").unwrap_err();
        assert_eq!(no_magic, EntryError::NoMagic);
        assert_eq!(no_magic.to_string(), "no magic line");
    }

    #[test]
    fn an_already_handled_platform_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("status"), "enabled\n").expect("status");
        fs::write(dir.path().join("register"), "").expect("register");
        fs::write(
            dir.path().join("qemu-aarch64"),
            "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: F\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n",
        )
        .expect("entry");
        let arm64 = Platform::parse("linux/arm64").expect("platform");
        if binfmt::is_native(&arm64) {
            return;
        }
        let empty_share = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            install(&arm64, dir.path(), empty_share.path()).expect("idempotent"),
            Installed::AlreadyRegistered("qemu-aarch64".into())
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("register")).expect("register"),
            "",
            "nothing written"
        );
        let riscv = Platform::parse("linux/riscv64").expect("platform");
        let missing = install(&riscv, dir.path(), empty_share.path()).unwrap_err();
        assert!(
            missing.to_string().contains(binfmt::QEMU_PACKAGE),
            "{missing}"
        );
    }
}
