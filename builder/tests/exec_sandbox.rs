//! Real-root tests of the RUN sandbox and the differ: real namespaces, real overlayfs, a
//! busybox rootfs made by testdata/rootfs/make-busybox-rootfs.sh. They need root (CI and
//! the dev machines run as root) and busybox-static; without either they fail and say so.
//!
//! One suite, both snapshotters: every behaviour test runs with Overlay and Copy.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use builder::differ::{self, DiffOptions};
use builder::exec::{
    self, probe, ExecError, ExitStatus, Isolation, MountSpec, Network, RunSpec, Security,
    Snapshotter,
};

const BOTH: [Snapshotter; 2] = [Snapshotter::Overlay, Snapshotter::Copy];
/// Every way a step can run: both snapshotters in namespaces, and chroot (copy only).
const ALL: [(Snapshotter, Isolation); 3] = [
    (Snapshotter::Overlay, Isolation::Namespaces),
    (Snapshotter::Copy, Isolation::Namespaces),
    (Snapshotter::Copy, Isolation::Chroot),
];

/// The busybox rootfs, extracted once per test binary.
fn busybox_lower() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        assert!(
            rustix::process::geteuid().is_root(),
            "these tests run RUN steps for real and need root"
        );
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("exec-sandbox");
        let _ = std::fs::remove_dir_all(&base);
        let fs = base.join("busybox");
        std::fs::create_dir_all(&fs).expect("create rootfs dir");
        let tar = base.join("busybox.tar");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/rootfs/make-busybox-rootfs.sh");
        let st = Command::new(&script)
            .arg(&tar)
            .status()
            .expect("run make-busybox-rootfs.sh");
        assert!(
            st.success(),
            "{} failed; apt-get install -y busybox-static",
            script.display()
        );
        let st = Command::new("tar")
            .args(["-x", "--numeric-owner", "-p", "-f"])
            .arg(&tar)
            .arg("-C")
            .arg(&fs)
            .status()
            .expect("run tar");
        assert!(st.success(), "extracting {}", tar.display());
        fs
    })
}

/// A second lower layer on top of busybox with /dir/{a,sub/b}.
fn dir_layer() -> &'static Path {
    static LAYER: OnceLock<PathBuf> = OnceLock::new();
    LAYER.get_or_init(|| {
        let layer = busybox_lower().parent().expect("base").join("dirlayer");
        std::fs::create_dir_all(layer.join("dir/sub")).expect("mkdir");
        std::fs::write(layer.join("dir/a"), "a").expect("write");
        std::fs::write(layer.join("dir/sub/b"), "b").expect("write");
        layer
    })
}

struct Step {
    _tmp: tempfile::TempDir,
    spec: RunSpec,
}

fn step(snapshotter: Snapshotter, script: &str) -> Step {
    step_in(snapshotter, Isolation::Namespaces, script)
}

fn step_in(snapshotter: Snapshotter, isolation: Isolation, script: &str) -> Step {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let upper = tmp.path().join("upper");
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir(&upper).expect("mkdir upper");
    std::fs::create_dir(&scratch).expect("mkdir scratch");
    let spec = RunSpec {
        lowerdirs: vec![dir_layer().to_path_buf(), busybox_lower().to_path_buf()],
        upperdir: upper,
        workdir_overlay: scratch,
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()],
        cwd: "/".into(),
        user: String::new(),
        network: Network::Host,
        security: Security::Sandbox,
        hostname: "strata-test".into(),
        snapshotter,
        isolation,
        extra_mounts: Vec::new(),
        runtime: Default::default(),
        stop: None,
    };
    Step { _tmp: tmp, spec }
}

fn run_ok(spec: &RunSpec) -> String {
    let out = exec::run_step(spec).unwrap_or_else(|e| panic!("run_step {:?}: {e:#?}", spec.argv));
    let text = String::from_utf8_lossy(&out.output_tail).into_owned();
    assert_eq!(
        out.status,
        ExitStatus::Code(0),
        "{:?} output:\n{text}",
        spec.snapshotter
    );
    text
}

/// `path kind` for every entry under `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            let e = e.expect("walk");
            let md = e.metadata().expect("metadata");
            let rel = e
                .path()
                .strip_prefix(dir)
                .expect("prefix")
                .display()
                .to_string();
            let kind = if differ::is_whiteout(&md) {
                "whiteout"
            } else if md.is_dir() && differ::is_opaque(e.path()).expect("xattr") {
                "opaque-dir"
            } else if md.is_dir() {
                "dir"
            } else if md.file_type().is_symlink() {
                "symlink"
            } else if md.file_type().is_char_device() {
                "chardev"
            } else {
                "file"
            };
            format!("{rel} {kind}")
        })
        .collect();
    out.sort();
    out
}

fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut ar = tar::Archive::new(bytes);
    ar.entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect()
}

const CHANGES: &str = "echo hi > /x; rm /etc/passwd; rm -rf /dir && mkdir /dir";

#[test]
fn run_writes_deletes_and_replaces_into_the_upperdir() {
    for (snap, isolation) in ALL {
        let s = step_in(snap, isolation, CHANGES);
        run_ok(&s.spec);
        assert_eq!(
            listing(&s.spec.upperdir),
            ["dir opaque-dir", "etc dir", "etc/passwd whiteout", "x file"],
            "{snap:?} {isolation:?}: no /proc, /dev, /sys, /etc/hosts or /etc/resolv.conf may be left behind"
        );
        assert_eq!(
            std::fs::read_to_string(s.spec.upperdir.join("x")).expect("x"),
            "hi\n"
        );
        let mut tar = Vec::new();
        differ::write_layer(&s.spec.upperdir, &mut tar, &DiffOptions::default()).expect("layer");
        assert_eq!(
            tar_names(&tar),
            ["dir/", "dir/.wh..wh..opq", "etc/", "etc/.wh.passwd", "x"],
            "{snap:?} {isolation:?}"
        );
    }
}

#[test]
fn copy_and_overlay_give_the_same_layer_bytes() {
    let script = format!(
        "{CHANGES}; echo new > /dir/n; chmod 600 /bin/busybox; ln -s /x /etc/xlink; \
         rm /bin/ls; ln /x /xhard; touch -d @5 /etc/group; chown 1:1 /root; \
         mkdir -p /a/b && echo 1 > /a/b/c && rm /bin/cat && mkdir /bin/cat"
    );
    let opts = DiffOptions {
        source_date_epoch: Some(0),
    };
    let layers: Vec<Vec<u8>> = ALL
        .iter()
        .map(|(snap, isolation)| {
            let s = step_in(*snap, *isolation, &script);
            run_ok(&s.spec);
            let mut tar = Vec::new();
            differ::write_layer(&s.spec.upperdir, &mut tar, &opts).expect("layer");
            tar
        })
        .collect();
    for (i, layer) in layers.iter().enumerate().skip(1) {
        assert_eq!(tar_names(&layers[0]), tar_names(layer), "{:?}", ALL[i]);
        assert!(
            layers[0] == *layer,
            "{:?}: same names, different bytes (modes, owners or content)",
            ALL[i]
        );
    }
}

#[test]
fn exit_status_and_output_tail_are_reported() {
    for snap in BOTH {
        let s = step(snap, "seq 1 20000; echo err >&2; exit 3");
        let mut lines = Vec::new();
        let out = exec::run_step_with_output(&s.spec, &mut |l| {
            lines.push(String::from_utf8_lossy(l).into_owned())
        })
        .expect("run_step");
        assert_eq!(out.status, ExitStatus::Code(3), "{snap:?}");
        assert!(!out.status.is_success());
        assert_eq!(out.output_tail.len(), exec::OUTPUT_TAIL_BYTES);
        assert!(
            out.output_tail.ends_with(b"19999\n20000\nerr\n"),
            "{snap:?}"
        );
        assert_eq!(lines.len(), 20001);
        assert_eq!(lines.last().map(String::as_str), Some("err"));
    }
}

#[test]
fn network_none_has_only_loopback_up() {
    for snap in BOTH {
        let mut s = step(snap, "ls /sys/class/net; cat /sys/class/net/lo/flags");
        s.spec.network = Network::None;
        assert_eq!(run_ok(&s.spec), "lo\n0x9\n", "{snap:?}");
    }
}

#[test]
fn env_user_cwd_and_hostname_are_applied() {
    for snap in BOTH {
        let mut s = step(
            snap,
            "id -u; id -g; pwd; echo $FOO; echo $HOME; hostname; echo $$",
        );
        s.spec.user = "nobody".into();
        s.spec.cwd = "/work/dir".into();
        s.spec.env.push("FOO=bar baz".into());
        assert_eq!(
            run_ok(&s.spec),
            "65534\n65534\n/work/dir\nbar baz\n/nonexistent\nstrata-test\n1\n",
            "{snap:?}"
        );
        assert_eq!(
            listing(&s.spec.upperdir),
            ["work dir", "work/dir dir"],
            "{snap:?}: the created cwd is part of the layer"
        );
    }
}

#[test]
fn steps_get_dockers_default_capabilities() {
    let mut s = step(Snapshotter::Overlay, "grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status; mount -t tmpfs t /mnt 2>&1 || echo mount-denied");
    let out = run_ok(&s.spec);
    assert!(
        out.starts_with(
            "CapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\n"
        ),
        "{out}"
    );
    assert!(out.ends_with("mount-denied\n"), "{out}");
    s = step(Snapshotter::Overlay, "grep -E '^CapEff' /proc/self/status");
    s.spec.user = "nobody".into();
    assert_eq!(run_ok(&s.spec), "CapEff:\t0000000000000000\n");
}

#[test]
fn kernel_interfaces_are_read_only_or_masked() {
    // /proc/timer_list and /sys/firmware exist on the CI kernels (the test VM lacks kcore).
    assert!(Path::new("/proc/timer_list").exists() && Path::new("/sys/firmware").exists());
    let s = step(
        Snapshotter::Overlay,
        "(echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo sys-rw || echo sys-ro; \
         wc -c < /proc/timer_list; ls /sys/firmware | wc -l",
    );
    assert_eq!(run_ok(&s.spec), "sys-ro\n0\n0\n");
}

#[test]
fn numeric_user_and_group() {
    let mut s = step(Snapshotter::Overlay, "id -u; id -g");
    s.spec.user = "1234:4321".into();
    assert_eq!(run_ok(&s.spec), "1234\n4321\n");
}

#[test]
fn dev_proc_and_sys_are_usable_and_sys_is_read_only() {
    for snap in BOTH {
        let s = step(
            snap,
            "echo x > /dev/null && head -c 4 /dev/urandom | wc -c && ls /dev/pts/ptmx && \
             cat /proc/1/cmdline | tr '\\0' ' ' && echo && (touch /sys/x && echo rw || echo ro) 2>/dev/null && \
             ( (echo y > /etc/hosts) 2>/dev/null && echo hosts-rw || echo hosts-ro)",
        );
        let out = run_ok(&s.spec);
        assert!(
            out.starts_with("4\n/dev/pts/ptmx\n/bin/sh -c "),
            "{snap:?}: {out}"
        );
        assert!(out.ends_with("\nro\nhosts-ro\n"), "{snap:?}: {out}");
        assert!(
            listing(&s.spec.upperdir).is_empty(),
            "{snap:?}: {:?}",
            listing(&s.spec.upperdir)
        );
    }
}

#[test]
fn scratch_lower_with_a_bind_mounted_busybox() {
    for snap in BOTH {
        let mut s = step(snap, "");
        s.spec.lowerdirs.clear();
        s.spec.argv = vec![
            "/busybox".into(),
            "sh".into(),
            "-c".into(),
            "/busybox echo made > /out".into(),
        ];
        s.spec.extra_mounts = vec![
            MountSpec::Bind {
                source: busybox_lower().join("bin/busybox"),
                target: "/busybox".into(),
                is_readonly: true,
            },
            MountSpec::Tmpfs {
                target: "/cache".into(),
                size: Some(1 << 20),
            },
        ];
        run_ok(&s.spec);
        assert_eq!(listing(&s.spec.upperdir), ["out file"], "{snap:?}");
    }
}

#[test]
fn writable_bind_and_secret_file_mounts_leave_no_trace() {
    for snap in BOTH {
        let mut s = step(
            snap,
            "cat /src/in && echo changed > /src/in && echo new > /src/new && cat /src/in && \
             stat -c '%a %u' /run/secrets/token && cat /run/secrets/token",
        );
        let base = s.spec.workdir_overlay.parent().expect("tmp").to_path_buf();
        let ctx = base.join("ctx");
        std::fs::create_dir_all(ctx.join("sub")).expect("mkdir");
        std::fs::write(ctx.join("sub/in"), "original\n").expect("write");
        for d in ["m-up", "m-work"] {
            std::fs::create_dir(base.join(d)).expect("mkdir");
        }
        s.spec.extra_mounts = vec![
            MountSpec::Overlay {
                lowerdirs: vec![ctx.clone()],
                upperdir: base.join("m-up"),
                workdir: base.join("m-work"),
                subpath: "sub".into(),
                is_dir: true,
                target: "/src".into(),
                is_readonly: false,
            },
            MountSpec::File {
                target: "/run/secrets/token".into(),
                data: b"s3cret".to_vec(),
                mode: 0o400,
                uid: 65534,
                gid: 65534,
            },
        ];
        assert_eq!(
            run_ok(&s.spec),
            "original\nchanged\n400 65534\ns3cret",
            "{snap:?}"
        );
        assert_eq!(
            std::fs::read_to_string(ctx.join("sub/in")).expect("read"),
            "original\n",
            "{snap:?}: the host dir is untouched"
        );
        assert!(!ctx.join("sub/new").exists());
        assert!(
            listing(&s.spec.upperdir).is_empty(),
            "{snap:?}: {:?}",
            listing(&s.spec.upperdir)
        );
    }
}

#[test]
fn setup_failures_are_errors_not_exit_codes() {
    for snap in BOTH {
        let mut s = step(snap, "");
        s.spec.argv = vec!["no-such-program".into()];
        match exec::run_step(&s.spec) {
            Err(ExecError::Setup { step, .. }) => {
                assert!(
                    step.contains("executable file not found"),
                    "{snap:?}: {step}"
                )
            }
            other => panic!("{snap:?}: expected a setup error, got {other:?}"),
        }
        let mut s = step(snap, "true");
        s.spec.user = "ghost".into();
        match exec::run_step(&s.spec) {
            Err(ExecError::Setup { step, .. }) => {
                assert!(step.contains("unable to find user ghost"), "{step}")
            }
            other => panic!("{snap:?}: expected a setup error, got {other:?}"),
        }
        assert!(listing(&s.spec.upperdir).is_empty(), "{snap:?}");
    }
}

#[test]
fn copy_snapshotter_sees_content_changes_that_keep_size_and_mtime() {
    // Same size, mtime restored: only the ctime moved, so the diff compares contents.
    let s = step(
        Snapshotter::Copy,
        "touch -r /dir/a /tmp/ref; printf b > /dir/a; touch -r /tmp/ref /dir/a; rm /tmp/ref",
    );
    run_ok(&s.spec);
    assert_eq!(
        listing(&s.spec.upperdir),
        ["dir dir", "dir/a file", "tmp dir"]
    );
}

#[test]
fn overlay_probe_reports_what_the_filesystem_supports() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    // The target dir is on ext4 here (CI and dev machines), tests run as root: namespaces
    // and overlay work (a probe that always failed would send every build to chroot).
    assert_eq!(
        probe::probe(&tmp.path().join("probe")),
        probe::HostSupport {
            has_namespaces: true,
            has_overlay: true
        }
    );
    assert!(!tmp.path().join("probe").exists(), "the probe cleans up");
    // An overlay mount cannot be an upper layer of another overlay.
    let ov = tmp.path().join("ov");
    for d in ["l", "u", "w", "m"] {
        std::fs::create_dir_all(ov.join(d)).expect("mkdir");
    }
    let st = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            ov.join("l").display(),
            ov.join("u").display(),
            ov.join("w").display()
        ))
        .arg(ov.join("m"))
        .status()
        .expect("run mount");
    assert!(st.success(), "mounting the outer overlay");
    // The probe tells namespaces (which work) and overlay (which does not) apart there.
    let both = probe::probe(&ov.join("m/probe-both"));
    let is_clean = !ov.join("m/probe-both").exists();
    let _ = Command::new("umount").arg(ov.join("m")).status();
    assert_eq!(
        both,
        probe::HostSupport {
            has_namespaces: true,
            has_overlay: false
        },
        "on an overlay upper, namespaces work and overlay does not"
    );
    assert!(is_clean, "the probe cleans up");
}

/// User + system CPU seconds of all reaped children so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

/// Not an assertion: prints the per-step floor (fork → exit of `true`) for the report.
#[test]
fn trivial_run_floor() {
    for snap in BOTH {
        let n = 20;
        let mut total = std::time::Duration::ZERO;
        let mut inner = std::time::Duration::ZERO;
        dir_layer(); // build the rootfs first: its tar and script are children too
        let cpu_before = children_cpu();
        for _ in 0..n {
            let mut s = step(snap, "");
            s.spec.argv = vec!["/bin/true".into()];
            let t = Instant::now();
            let out = exec::run_step(&s.spec).expect("run true");
            total += t.elapsed();
            inner += out.duration;
            assert!(out.status.is_success());
        }
        let cpu = children_cpu() - cpu_before;
        eprintln!(
            "trivial RUN `true` with {snap:?}: {:.2} ms end to end, {:.2} ms fork→reap, {:.2} ms CPU in the step's processes (mean of {n})",
            total.as_secs_f64() * 1000.0 / n as f64,
            inner.as_secs_f64() * 1000.0 / n as f64,
            cpu * 1000.0 / n as f64
        );
    }
}

#[test]
fn upperdir_mode_matches_for_created_parent() {
    // /etc exists in the lower with 0755; a stub parent must not change it in the layer.
    let s = step(Snapshotter::Overlay, "echo > /etc/motd");
    run_ok(&s.spec);
    let md = std::fs::metadata(s.spec.upperdir.join("etc")).expect("etc");
    let lower = std::fs::metadata(busybox_lower().join("etc")).expect("lower etc");
    assert_eq!(md.mode(), lower.mode());
    assert_eq!(listing(&s.spec.upperdir), ["etc dir", "etc/motd file"]);
}

// See: issue 12, hole 1 (RUN opens host devices). `c 1 5` is /dev/zero: harmless to open,
// and readable only where the filesystem is not `nodev`.
#[test]
fn issue_12_device_nodes_made_or_shipped_cannot_be_opened() {
    let probe = |dir: &str| {
        format!(
            "mknod {dir}/z c 1 5 && (head -c 1 {dir}/z >/dev/null 2>&1 && echo {dir}:opened || echo {dir}:denied); rm -f {dir}/z; "
        )
    };
    let mut script: String = ["", "/dev", "/dev/shm", "/scratch", "/rw"]
        .iter()
        .map(|d| probe(d))
        .collect();
    script.push_str(
        "(head -c 1 /image-zero >/dev/null 2>&1 && echo image:opened || echo image:denied); \
         head -c 3 /dev/zero | wc -c; ls /dev | tr '\\n' ' '",
    );
    for snap in BOTH {
        let mut s = step(snap, &script);
        let base = s.spec.workdir_overlay.parent().expect("tmp").to_path_buf();
        // An image layer may carry a device node; it must stay unopenable too.
        let image = base.join("image");
        std::fs::create_dir(&image).expect("mkdir");
        let node = image.join("image-zero");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &node,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 5),
        )
        .expect("mknod in the test's layer");
        s.spec.lowerdirs.insert(0, image);
        let rw = base.join("rw");
        std::fs::create_dir(&rw).expect("mkdir");
        std::fs::write(rw.join("canary"), "canary").expect("write");
        s.spec.extra_mounts = vec![
            MountSpec::Tmpfs {
                target: "/scratch".into(),
                size: None,
            },
            MountSpec::Bind {
                source: rw.clone(),
                target: "/rw".into(),
                is_readonly: false,
            },
        ];
        assert_eq!(
            run_ok(&s.spec),
            ":denied\n/dev:denied\n/dev/shm:denied\n/scratch:denied\n/rw:denied\nimage:denied\n3\n\
             fd full null ptmx pts random shm stderr stdin stdout tty urandom zero ",
            "{snap:?}"
        );
        assert_eq!(
            listing(&rw),
            ["canary file"],
            "{snap:?}: the bound host directory is as it was"
        );
    }
}

// See: issue 12, hole 7 (no seccomp: `unshare -Urm` gave a step a full capability set in a
// new user namespace). docker's profile refuses unshare, mount and namespace clone flags.
#[test]
fn issue_12_seccomp_refuses_new_namespaces_unless_insecure() {
    let script = "grep ^Seccomp: /proc/self/status; \
                  unshare -Urm true 2>/dev/null && echo unshare:allowed || echo unshare:refused; \
                  unshare -m true 2>/dev/null && echo unshare-m:allowed || echo unshare-m:refused; \
                  (sleep 0 & wait) && echo fork:ok";
    for snap in BOTH {
        let s = step(snap, script);
        assert_eq!(
            run_ok(&s.spec),
            "Seccomp:\t2\nunshare:refused\nunshare-m:refused\nfork:ok\n",
            "{snap:?}"
        );
    }
    let mut s = step(Snapshotter::Overlay, script);
    s.spec.security = Security::Insecure;
    assert_eq!(
        run_ok(&s.spec),
        "Seccomp:\t0\nunshare:allowed\nunshare-m:allowed\nfork:ok\n",
        "--security=insecure runs without seccomp and with every capability"
    );
}

/// `listing` plus the ctime of `dir` and of each entry: a stub made and removed again
/// inside `dir` moves its ctime even when the mtime is put back.
fn fingerprint(dir: &Path) -> Vec<String> {
    let ctime = |p: &Path| {
        let md = std::fs::symlink_metadata(p).expect("metadata");
        format!("{}.{}", md.ctime(), md.ctime_nsec())
    };
    let mut out = vec![format!(". ctime {}", ctime(dir))];
    for entry in listing(dir) {
        let name = entry.split(' ').next().expect("name").to_string();
        out.push(format!("{entry} ctime {}", ctime(&dir.join(name))));
    }
    out
}

// See: issue 12, hole 5 (the copy snapshotter created and removed mount-point stubs through
// symlinks in the tree, on the host). The canary directory stands for any host directory.
#[test]
fn issue_12_copy_stubs_never_follow_symlinks_out_of_the_tree() {
    let s = step(Snapshotter::Copy, "");
    let base = s.spec.workdir_overlay.parent().expect("tmp").to_path_buf();
    let canary = base.join("canary");
    std::fs::create_dir(&canary).expect("mkdir");
    for f in ["hosts", "resolv.conf"] {
        std::fs::write(canary.join(f), "").expect("write");
    }
    let before = fingerprint(&canary);

    // Mount targets under an image symlink to a host directory: no stub may be made there.
    let mut s = step(Snapshotter::Copy, "true");
    let image = base.join("image");
    std::fs::create_dir(&image).expect("mkdir");
    std::os::unix::fs::symlink(&canary, image.join("link")).expect("symlink");
    s.spec.lowerdirs.insert(0, image);
    s.spec.extra_mounts = vec![
        MountSpec::Tmpfs {
            target: "/link/tmpdir".into(),
            size: None,
        },
        MountSpec::File {
            target: "/link/secret".into(),
            data: b"s".to_vec(),
            mode: 0o400,
            uid: 0,
            gid: 0,
        },
    ];
    let _ = exec::run_step(&s.spec);
    assert_eq!(
        fingerprint(&canary),
        before,
        "stubs were made through /link"
    );

    // A step that swaps /etc for a symlink to a host directory: removing the /etc/hosts and
    // /etc/resolv.conf stubs must not remove the host's files.
    let script = format!("mv /etc /etc.old && ln -s {} /etc", canary.display());
    let s = step(Snapshotter::Copy, &script);
    run_ok(&s.spec);
    assert_eq!(fingerprint(&canary), before, "stub removal followed /etc");
    let layer = listing(&s.spec.upperdir);
    let top: Vec<&String> = layer.iter().filter(|e| !e.contains('/')).collect();
    assert_eq!(top, ["etc symlink", "etc.old dir"], "{layer:?}");
    assert!(
        !layer
            .iter()
            .any(|e| e.starts_with("etc.old/hosts") || e.starts_with("etc.old/resolv")),
        "the stubs moved with /etc to /etc.old and must be removed there: {layer:?}"
    );
}

/// Peak resident memory of this test process so far, in KiB.
fn max_rss_kib() -> i64 {
    // SAFETY: getrusage fills the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    ru.ru_maxrss
}

// See: issue 12, bad input (a step's log is clipped as BuildKit clips it, at 2 MiB with its
// note; 300 MB without a newline neither stalls the step nor grows the builder's memory).
#[test]
fn issue_12_step_log_is_clipped_and_memory_stays_bounded() {
    let s = step(
        Snapshotter::Overlay,
        "head -c 300000000 /dev/zero | tr '\\0' x; echo; echo done",
    );
    let mut lines: Vec<(usize, String)> = Vec::new();
    let before = max_rss_kib();
    let out = exec::run_step_with_output(&s.spec, &mut |l| {
        let head = String::from_utf8_lossy(&l[..l.len().min(64)]).into_owned();
        lines.push((l.len(), head));
    })
    .expect("run_step");
    let grown_kib = max_rss_kib() - before;
    assert!(out.status.is_success(), "{:?}", out.status);
    let limit = 2 * 1024 * 1024;
    assert_eq!(
        lines,
        [
            (limit, "x".repeat(64)),
            (40, "[output clipped, log limit 2MiB reached]".to_string())
        ]
    );
    assert!(
        out.output_tail.ends_with(b"xxxx\ndone\n"),
        "the tail for the error message still sees the end"
    );
    assert!(
        grown_kib < 100 * 1024,
        "reading 300 MB of output grew the peak RSS by {grown_kib} KiB"
    );
}

// RUN's effective sandbox, printed and checked against docker's defaults (issue 12, "done
// when"): own namespaces, docker's capabilities, seccomp filter mode, /dev with docker's
// nodes only, a nodev root, /proc and /sys masked or read-only.
#[test]
fn effective_sandbox_is_dockers_default() {
    let script = "for n in mnt pid ipc uts net; do echo ns $n $(readlink /proc/self/ns/$n); done; \
                  grep -E '^(CapEff|CapBnd|Seccomp):' /proc/self/status; \
                  echo dev $(ls -A /dev); \
                  echo chardevs $(find /dev -xdev -type c | sort); \
                  awk '$5 == \"/\" || $5 == \"/dev\" || $5 == \"/proc/sys\" || $5 == \"/sys\" \
                       { print \"mount\", $5, $6 }' /proc/self/mountinfo; \
                  echo masked $(wc -c < /proc/timer_list) $(ls -A /sys/firmware | wc -l)";
    let mut s = step(Snapshotter::Overlay, script);
    s.spec.network = Network::None;
    let out = run_ok(&s.spec);
    eprintln!("RUN's effective sandbox:\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    for ns in ["mnt", "pid", "ipc", "uts", "net"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).expect("host ns");
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("ns {ns} ")))
            .unwrap_or_else(|| panic!("no {ns} line in\n{out}"));
        assert_ne!(
            line.split(' ').nth(2),
            Some(host.to_string_lossy().as_ref()),
            "RUN shares the host's {ns} namespace"
        );
    }
    let want = [
        "CapEff:\t00000000a80425fb",
        "CapBnd:\t00000000a80425fb",
        "Seccomp:\t2",
        "dev fd full null ptmx pts random shm stderr stdin stdout tty urandom zero",
        "chardevs /dev/full /dev/null /dev/random /dev/tty /dev/urandom /dev/zero",
        "masked 0 0",
    ];
    for w in want {
        assert!(lines.contains(&w), "want {w:?} in\n{out}");
    }
    let mount_opts = |at: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("mount {at} ")))
            .unwrap_or_else(|| panic!("no mount on {at} in\n{out}"))
            .split(',')
            .collect::<Vec<_>>()
    };
    assert!(mount_opts("/").contains(&"nodev"), "root not nodev:\n{out}");
    assert!(
        mount_opts("/dev").contains(&"nodev"),
        "/dev not nodev:\n{out}"
    );
    assert!(
        mount_opts("/proc/sys").contains(&"ro"),
        "/proc/sys writable:\n{out}"
    );
    assert!(mount_opts("/sys").contains(&"ro"), "/sys writable:\n{out}");
}

/// `--isolation chroot`: docker's device nodes work, a secret file is there, a background
/// process does not outlive the step, nothing of it reaches the layer; what needs a
/// namespace (`--network none`, a tmpfs mount) is refused before anything runs.
#[test]
fn chroot_step_has_dev_nodes_and_files_and_leaves_no_trace() {
    let mut s = step_in(
        Snapshotter::Copy,
        Isolation::Chroot,
        "echo gone > /dev/null && head -c 4 /dev/zero | wc -c && test -c /dev/urandom && \
         cat /run/secrets/token && test -s /etc/resolv.conf && test ! -e /proc/self && \
         (sleep 86400 &) && echo done",
    );
    s.spec.extra_mounts = vec![MountSpec::File {
        target: "/run/secrets/token".into(),
        data: b"s3cret\n".to_vec(),
        mode: 0o400,
        uid: 0,
        gid: 0,
    }];
    // The background sleep holds the output pipe: run_step returns only because the
    // step's process group is killed once its first process exits.
    assert_eq!(run_ok(&s.spec), "4\ns3cret\ndone\n");
    assert!(
        listing(&s.spec.upperdir).is_empty(),
        "{:?}",
        listing(&s.spec.upperdir)
    );

    for (network, mount) in [
        (Network::None, None),
        (
            Network::Host,
            Some(MountSpec::Tmpfs {
                target: "/cache".into(),
                size: None,
            }),
        ),
    ] {
        let mut s = step_in(Snapshotter::Copy, Isolation::Chroot, "touch /ran");
        s.spec.network = network;
        s.spec.extra_mounts = mount.into_iter().collect();
        match exec::run_step(&s.spec) {
            Err(ExecError::InvalidSpec { reason }) => {
                assert!(reason.contains("--isolation chroot"), "{reason}")
            }
            other => panic!("{network:?}: want InvalidSpec, got {other:?}"),
        }
        assert!(listing(&s.spec.upperdir).is_empty(), "nothing ran");
    }
}
