//! Compiles docker's default seccomp profile (`src/exec/seccomp_default.txt`) to BPF for the
//! target architecture and writes it to `$OUT_DIR/seccomp_default.rs`, which
//! `src/exec/seccomp.rs` includes: the tens of milliseconds seccompiler needs are spent
//! once here instead of in every `strata build`.

#[path = "src/exec/seccomp_profile.rs"]
#[allow(dead_code)]
mod seccomp_profile;

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    const PROFILE: &str = "src/exec/seccomp_default.txt";
    println!("cargo:rerun-if-changed={PROFILE}");
    println!("cargo:rerun-if-changed=src/exec/seccomp_profile.rs");
    let text = std::fs::read_to_string(PROFILE).expect("reading the seccomp profile");
    let rules = seccomp_profile::parse(&text).expect("the seccomp profile parses");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let target = seccompiler::TargetArch::try_from(arch.as_str()).ok();
    let programs = match (target, seccomp_profile::docker_arch(&arch)) {
        (Some(target), Some(docker)) => Some(
            seccomp_profile::compile(&rules, target, docker).expect("the seccomp profile compiles"),
        ),
        _ => None,
    };
    let mut out = String::from("const PROGRAMS: Option<&[&[Instruction]]> = ");
    match programs {
        None => out.push_str("None;\n"),
        Some(programs) => {
            out.push_str("Some(&[\n");
            for program in programs {
                out.push_str("    &[");
                for i in program {
                    let _ = write!(out, "({}, {}, {}, {}), ", i.code, i.jt, i.jf, i.k);
                }
                out.push_str("],\n");
            }
            out.push_str("]);\n");
        }
    }
    let dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(dir.join("seccomp_default.rs"), out).expect("writing seccomp_default.rs");
}
