//! RUN's seccomp filter: docker's default profile (`seccomp_default.txt`), as BPF programs
//! the build compiled for this architecture (`build.rs` with `seccomp_profile.rs`), so a
//! build pays nothing to get them.
//!
//! Installing needs CAP_SYS_ADMIN or no_new_privs; the sandbox installs while it still has
//! CAP_SYS_ADMIN, because no_new_privs would stop setuid binaries (`sudo`, `su`) that a
//! docker RUN may use.

use std::sync::OnceLock;

use seccompiler::{sock_filter, BpfProgram};

/// One BPF instruction as the build script writes it: `(code, jt, jf, k)`.
type Instruction = (u16, u8, u8, u32);

// `PROGRAMS: Option<&[&[Instruction]]>`: the programs in install order, `None` where
// seccompiler has no syscall table for the target architecture.
include!(concat!(env!("OUT_DIR"), "/seccomp_default.rs"));

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp: no syscall table for this architecture ({arch}); RUN --security=insecure runs without seccomp")]
    UnsupportedArch { arch: &'static str },
}

/// The BPF programs of docker's default profile for this architecture, in install order.
pub fn default_programs() -> Result<&'static [BpfProgram], &'static SeccompError> {
    static DECODED: OnceLock<Result<Vec<BpfProgram>, SeccompError>> = OnceLock::new();
    DECODED
        .get_or_init(|| {
            let programs = PROGRAMS.ok_or(SeccompError::UnsupportedArch {
                arch: std::env::consts::ARCH,
            })?;
            Ok(programs.iter().map(|p| decode(p)).collect())
        })
        .as_ref()
        .map(Vec::as_slice)
}

fn decode(program: &[Instruction]) -> BpfProgram {
    program
        .iter()
        .map(|&(code, jt, jf, k)| sock_filter { code, jt, jf, k })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::seccomp_profile::{compile, docker_arch, parse};
    use super::*;

    #[test]
    fn default_profile_compiles_for_this_machine() {
        let programs = default_programs().expect("compiles");
        assert_eq!(programs.len(), 2, "allow-list, then clone3's ENOSYS");
        assert!(programs.iter().all(|p| !p.is_empty() && p.len() < 4096));
    }

    /// The programs in the binary are the profile's: compile the text again and compare.
    #[test]
    fn built_programs_are_the_profiles() {
        let arch = std::env::consts::ARCH;
        let target = seccompiler::TargetArch::try_from(arch).expect("a seccompiler arch");
        let docker = docker_arch(arch).expect("a docker arch");
        let rules = parse(include_str!("seccomp_default.txt")).expect("parses");
        let fresh = compile(&rules, target, docker).expect("compiles");
        let built = default_programs().expect("built");
        assert_eq!(fresh.len(), built.len());
        for (f, b) in fresh.iter().zip(built) {
            let key = |p: &BpfProgram| -> Vec<Instruction> {
                p.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect()
            };
            assert_eq!(key(f), key(b));
        }
    }
}
