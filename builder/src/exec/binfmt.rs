//! Which foreign architectures this kernel can run: the handlers registered in
//! `binfmt_misc` (`/proc/sys/fs/binfmt_misc`).
//!
//! A RUN of another platform's binaries works only through such a handler (Debian's
//! `qemu-user-static` registers `qemu-aarch64` and the others with the `F` flag: the kernel
//! opens the interpreter at registration, so it runs inside the sandbox's root too). strata
//! only reads what is registered and never registers anything behind the user's back; a
//! build that needs a missing handler fails before its first step with [`BinfmtError`],
//! naming the platform and the package to install.
//!
//! A handler is found the way the kernel would choose it: an enabled entry whose magic,
//! under its mask, matches the ELF header of an executable of that architecture.

use std::fs;
use std::path::{Path, PathBuf};

use store::platform::Platform;

/// Where the kernel shows `binfmt_misc` once it is mounted.
pub const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// The Debian package that registers QEMU user-mode handlers for every architecture.
pub const QEMU_PACKAGE: &str = "qemu-user-static";

#[derive(Debug, thiserror::Error)]
pub enum BinfmtError {
    /// The kernel cannot run `platform`'s binaries: no handler is registered for it.
    #[error(
        "cannot run {platform} binaries on this {host} machine: no binfmt_misc handler is registered for {platform} in {dir}{}; install QEMU user emulation (`apt-get install {QEMU_PACKAGE}`, which registers its handlers; `strata binfmt install --platform {platform}` registers them where the package did not), or build that platform elsewhere",
        if *is_mounted { "" } else { " (binfmt_misc is not mounted there: `mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc`)" }
    )]
    NoHandler {
        platform: String,
        host: String,
        dir: PathBuf,
        is_mounted: bool,
    },
    /// strata has no ELF signature for `platform` to look its handler up with.
    #[error("cannot run {platform} binaries on this {host} machine: strata does not know the ELF machine of {platform}")]
    UnknownArchitecture { platform: String, host: String },
}

/// Whether this machine runs `platform`'s binaries without emulation: the host's own
/// architecture, and 32-bit x86 on amd64.
pub fn is_native(platform: &Platform) -> bool {
    let host = Platform::host();
    platform.os == host.os
        && (platform.architecture == host.architecture
            || (host.architecture == "amd64" && platform.architecture == "386"))
}

/// Ok when RUN can execute `platform`'s binaries here: natively, or through an enabled
/// `binfmt_misc` handler in `dir` (normally [`BINFMT_MISC`]).
pub fn check(platform: &Platform, dir: &Path) -> Result<(), BinfmtError> {
    if is_native(platform) {
        return Ok(());
    }
    let Some(header) = elf_header(platform) else {
        return Err(BinfmtError::UnknownArchitecture {
            platform: platform.to_string(),
            host: Platform::host().to_string(),
        });
    };
    if handler_for(&header, dir).is_some() {
        return Ok(());
    }
    Err(BinfmtError::NoHandler {
        platform: platform.to_string(),
        host: Platform::host().to_string(),
        dir: dir.to_path_buf(),
        is_mounted: dir.join("status").exists(),
    })
}

/// One registered entry, as `/proc/sys/fs/binfmt_misc/NAME` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Handler {
    /// The entry's name (`qemu-aarch64`).
    pub name: String,
    pub interpreter: String,
    /// The registration flags (`POCF`; `F`: the interpreter was opened at registration).
    pub flags: String,
    offset: usize,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

impl Handler {
    /// Reads one entry file: `enabled`, `interpreter …`, `flags: …`, `offset N`,
    /// `magic HEX`, `mask HEX`. `None` for a disabled or extension-matched entry.
    fn parse(name: &str, text: &str) -> Option<Handler> {
        let mut lines = text.lines();
        if lines.next()? != "enabled" {
            return None;
        }
        let mut offset = 0;
        let mut magic = None;
        let mut mask = None;
        let (mut interpreter, mut flags) = (String::new(), String::new());
        for line in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "interpreter" => interpreter = value.trim().to_string(),
                "flags:" => flags = value.trim().to_string(),
                "offset" => offset = value.trim().parse().ok()?,
                "magic" => magic = hex::decode(value.trim()).ok(),
                "mask" => mask = hex::decode(value.trim()).ok(),
                _ => {}
            }
        }
        let magic = magic?;
        let mask = mask.unwrap_or_else(|| vec![0xff; magic.len()]);
        Some(Handler {
            name: name.to_string(),
            interpreter,
            flags,
            offset,
            magic,
            mask,
        })
    }

    fn matches(&self, header: &[u8]) -> bool {
        let Some(window) = header.get(self.offset..self.offset + self.magic.len()) else {
            return false;
        };
        window
            .iter()
            .zip(&self.magic)
            .zip(self.mask.iter().chain(std::iter::repeat(&0xff)))
            .all(|((b, m), k)| b & k == m & k)
    }
}

/// The enabled handlers in `dir`; none when binfmt_misc is not mounted or disabled.
fn handlers(dir: &Path) -> Vec<Handler> {
    let is_enabled = fs::read_to_string(dir.join("status")).is_ok_and(|s| s.trim() == "enabled");
    if !is_enabled {
        return Vec::new();
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| !matches!(e.file_name().to_str(), Some("status" | "register")))
        .filter_map(|e| {
            let text = fs::read_to_string(e.path()).ok()?;
            Handler::parse(&e.file_name().to_string_lossy(), &text)
        })
        .collect()
}

/// The enabled handler the kernel would run an executable starting with `header` through.
fn handler_for(header: &[u8], dir: &Path) -> Option<Handler> {
    handlers(dir).into_iter().find(|h| h.matches(header))
}

/// An architecture strata knows the ELF signature of.
struct Architecture {
    /// Go's name, as platforms spell it (`arm64`).
    name: &'static str,
    /// QEMU's name (`aarch64`): `qemu-aarch64` is its binfmt_misc entry and emulator.
    qemu: &'static str,
    is_64: bool,
    is_big_endian: bool,
    /// `e_machine`.
    machine: u16,
}

const fn arch(
    name: &'static str,
    qemu: &'static str,
    is_64: bool,
    is_big_endian: bool,
    machine: u16,
) -> Architecture {
    Architecture {
        name,
        qemu,
        is_64,
        is_big_endian,
        machine,
    }
}

/// Every architecture strata looks handlers up for, in the order `strata binfmt` lists them.
const ARCHITECTURES: &[Architecture] = &[
    arch("amd64", "x86_64", true, false, 62),
    arch("386", "i386", false, false, 3),
    arch("arm64", "aarch64", true, false, 183),
    arch("arm", "arm", false, false, 40),
    arch("riscv64", "riscv64", true, false, 243),
    arch("ppc64le", "ppc64le", true, false, 21),
    arch("ppc64", "ppc64", true, true, 21),
    arch("s390x", "s390x", true, true, 22),
    arch("mips64le", "mips64el", true, false, 8),
    arch("mips64", "mips64", true, true, 8),
    arch("mipsle", "mipsel", false, false, 8),
    arch("mips", "mips", false, true, 8),
    arch("loong64", "loongarch64", true, false, 258),
];

fn architecture(platform: &Platform) -> Option<&'static Architecture> {
    ARCHITECTURES
        .iter()
        .find(|a| a.name == platform.architecture)
}

/// QEMU's name for `platform`'s architecture (`aarch64` for arm64), if strata knows it.
pub fn qemu_name(platform: &Platform) -> Option<&'static str> {
    architecture(platform).map(|a| a.qemu)
}

/// The first 20 bytes of an ELF executable of `platform`: identification (class,
/// byte order), `e_type` EXEC and `e_machine`.
fn elf_header(platform: &Platform) -> Option<[u8; 20]> {
    let a = architecture(platform)?;
    let mut h = [0u8; 20];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = if a.is_64 { 2 } else { 1 };
    h[5] = if a.is_big_endian { 2 } else { 1 };
    h[6] = 1;
    let (e_type, e_machine) = if a.is_big_endian {
        (2u16.to_be_bytes(), a.machine.to_be_bytes())
    } else {
        (2u16.to_le_bytes(), a.machine.to_le_bytes())
    };
    h[16..18].copy_from_slice(&e_type);
    h[18..20].copy_from_slice(&e_machine);
    Some(h)
}

/// How this machine runs one platform's binaries.
#[derive(Debug, Clone, PartialEq)]
pub enum Support {
    Native,
    /// Through this binfmt_misc handler.
    Emulated(Handler),
}

/// `platform`'s support here, if it runs at all: natively, or through the handler in `dir`
/// (normally [`BINFMT_MISC`]) the kernel would pick.
pub fn support(platform: &Platform, dir: &Path) -> Option<Support> {
    if is_native(platform) {
        return Some(Support::Native);
    }
    handler_for(&elf_header(platform)?, dir).map(Support::Emulated)
}

/// Every known platform this machine runs (`strata binfmt`), in [`ARCHITECTURES`] order.
pub fn supported(dir: &Path) -> Vec<(Platform, Support)> {
    ARCHITECTURES
        .iter()
        .filter_map(|a| {
            let platform = Platform {
                os: "linux".into(),
                architecture: a.name.into(),
                variant: None,
            };
            let how = support(&platform, dir)?;
            Some((platform, how))
        })
        .collect()
}

/// Every known platform this machine would run only through emulation.
pub fn foreign_platforms() -> Vec<Platform> {
    ARCHITECTURES
        .iter()
        .map(|a| Platform {
            os: "linux".into(),
            architecture: a.name.into(),
            variant: None,
        })
        .filter(|p| !is_native(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `qemu-aarch64` as Debian's qemu-user-static registers it.
    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
    /// `qemu-s390x`: big-endian.
    const S390X: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/s390x-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c4602020100000000000000000000020016\nmask ffffffffffffff00fffffffffffffffffffeffff\n";

    fn dir_with(entries: &[(&str, &str)], status: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(s) = status {
            fs::write(dir.path().join("status"), s).expect("write status");
            fs::write(dir.path().join("register"), "").expect("write register");
        }
        for (name, text) in entries {
            fs::write(dir.path().join(name), text).expect("write entry");
        }
        dir
    }

    fn platform(s: &str) -> Platform {
        Platform::parse(s).expect("valid platform")
    }

    #[test]
    fn finds_registered_handlers_by_elf_machine() {
        let dir = dir_with(
            &[("qemu-aarch64", AARCH64), ("qemu-s390x", S390X)],
            Some("enabled\n"),
        );
        let cases = [
            ("linux/arm64", true),
            ("linux/s390x", true),
            ("linux/riscv64", false),
            ("linux/arm/v7", false),
            ("linux/ppc64le", false),
        ];
        for (p, want) in cases {
            assert_eq!(check(&platform(p), dir.path()).is_ok(), want, "{p}");
        }
    }

    #[test]
    fn native_platforms_need_no_handler() {
        let dir = dir_with(&[], None);
        assert!(check(&Platform::host(), dir.path()).is_ok());
    }

    #[test]
    fn disabled_entries_and_unmounted_dirs_do_not_count() {
        let disabled = AARCH64.replacen("enabled", "disabled", 1);
        let dir = dir_with(&[("qemu-aarch64", &disabled)], Some("enabled\n"));
        assert!(check(&platform("linux/arm64"), dir.path()).is_err());
        let off = dir_with(&[("qemu-aarch64", AARCH64)], Some("disabled\n"));
        assert!(check(&platform("linux/arm64"), off.path()).is_err());
    }

    #[test]
    fn missing_handler_names_platform_and_package() {
        let foreign = if Platform::host().architecture == "s390x" {
            "linux/arm64"
        } else {
            "linux/s390x"
        };
        let unmounted = dir_with(&[], None);
        let text = check(&platform(foreign), unmounted.path())
            .unwrap_err()
            .to_string();
        assert!(text.contains(foreign), "{text}");
        assert!(text.contains(QEMU_PACKAGE), "{text}");
        assert!(text.contains("not mounted"), "{text}");
        assert!(text.contains("strata binfmt install"), "{text}");
    }

    #[test]
    fn supported_lists_native_and_emulated_platforms_with_their_handler() {
        let dir = dir_with(&[("qemu-aarch64", AARCH64)], Some("enabled\n"));
        let listed = supported(dir.path());
        assert!(listed.contains(&(Platform::host(), Support::Native)));
        if Platform::host().architecture != "arm64" {
            let (_, arm64) = listed
                .iter()
                .find(|(p, _)| p.architecture == "arm64")
                .expect("arm64 listed");
            let Support::Emulated(h) = arm64 else {
                panic!("arm64 is emulated: {arm64:?}")
            };
            assert_eq!(h.name, "qemu-aarch64");
            assert_eq!(h.interpreter, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P");
            assert_eq!(h.flags, "POCF");
        }
        assert!(!listed.iter().any(|(p, _)| p.architecture == "riscv64"));
    }
}
