//! The run-time flags of RUN that buildx scripts pass (issue 19): `--add-host`,
//! `--shm-size`, `--ulimit`, `--no-cache-filter`, `--cgroup-parent`, each seen from inside a
//! real RUN, with docker's errors for bad values.

mod util;

use std::fs;
use std::path::PathBuf;

use util::TestEnv;

/// A context whose RUN prints what the flags change: its /etc/hosts entry for `db`, the
/// /dev/shm mount, and the open-files limits.
fn probe_context(env: &TestEnv) -> PathBuf {
    let ctx = env.scratch.join("probe");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\n\
         RUN grep -w db /etc/hosts | sed 's/^/hosts: /'; \
         grep ' /dev/shm ' /proc/mounts | sed 's/^/shm: /'; \
         echo \"nofile: $(ulimit -n) $(ulimit -Hn)\"\n",
    )
    .expect("write");
    ctx
}

/// Whether the step whose line contains `text` was reported `#N CACHED`.
fn is_cached(stderr: &str, text: &str) -> bool {
    let number = stderr
        .lines()
        .find(|l| l.starts_with('#') && l.contains(text))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no step {text:?} in:\n{stderr}"));
    stderr.lines().any(|l| l == format!("{number} CACHED"))
}

#[test]
fn run_sees_add_host_shm_size_and_ulimit() {
    let env = TestEnv::with_busybox();
    let ctx = probe_context(&env);
    let flags = [
        "--network",
        "none",
        "--add-host",
        "db:10.1.2.3",
        "--add-host",
        "db6=[2001:db8::7]",
        "--shm-size",
        "128m",
        "--ulimit",
        "nofile=512:1024",
    ];
    let out = env.build(&ctx, &flags);
    out.assert_ok();
    for want in ["hosts: 10.1.2.3\tdb", "size=131072k", "nofile: 512 1024"] {
        assert!(out.stderr.contains(want), "missing {want:?}:\n{out}");
    }

    // BuildKit keys a RUN on the extra hosts' names, not their addresses...
    let mut again = flags;
    again[3] = "db:10.9.9.9";
    let out = env.build(&ctx, &again);
    out.assert_ok();
    assert!(
        is_cached(&out.stderr, "RUN grep"),
        "another IP reuses the cache:\n{out}"
    );
    // ... and on the limits.
    let mut other = flags;
    other[9] = "nofile=256:1024";
    let out = env.build(&ctx, &other);
    out.assert_ok();
    assert!(
        !is_cached(&out.stderr, "RUN grep"),
        "another ulimit runs again:\n{out}"
    );
    assert!(out.stderr.contains("nofile: 256 1024"), "{out}");
}

#[test]
fn no_cache_filter_reruns_only_the_named_stages() {
    let env = TestEnv::with_busybox();
    let ctx = env.scratch.join("stages");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox AS base\nRUN echo base > /b\nFROM base AS final\nRUN echo final > /f\n",
    )
    .expect("write");
    env.build(&ctx, &["--network", "none"]).assert_ok();
    let out = env.build(&ctx, &["--network", "none", "--no-cache-filter", "Final"]);
    out.assert_ok();
    assert!(is_cached(&out.stderr, "RUN echo base"), "{out}");
    assert!(!is_cached(&out.stderr, "RUN echo final"), "{out}");
    // Nothing filtered: the whole build comes from the cache again.
    let out = env.build(&ctx, &["--network", "none"]);
    out.assert_ok();
    assert!(is_cached(&out.stderr, "RUN echo base"), "{out}");
    assert!(is_cached(&out.stderr, "RUN echo final"), "{out}");
}

#[test]
fn bad_runtime_flags_fail_with_dockers_messages() {
    let env = TestEnv::new();
    let ctx = env.scratch.join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(ctx.join("Dockerfile"), "FROM scratch\n").expect("write");
    let cases: [(&[&str], i32, &str); 8] = [
        (
            &["--add-host", "nosep"],
            2,
            r#"invalid argument "nosep" for "--add-host" flag: bad format for add-host: "nosep""#,
        ),
        (
            &["--add-host", "db:10.0.0"],
            2,
            r#"invalid IP address in add-host: "10.0.0""#,
        ),
        (
            &["--add-host", "gw:host-gateway"],
            2,
            "host-gateway is not supported by strata",
        ),
        (
            &["--ulimit", "nofile"],
            2,
            "invalid ulimit argument: nofile",
        ),
        (&["--ulimit", "files=1"], 2, "invalid ulimit type: files"),
        (
            &["--shm-size", "lots"],
            2,
            r#"invalid argument "lots" for "--shm-size" flag"#,
        ),
        (
            &["--cgroup-parent", "ci.slice"],
            1,
            "--cgroup-parent ci.slice: not supported",
        ),
        (
            &["--no-cache", "--no-cache-filter", "x"],
            1,
            "--no-cache and --no-cache-filter cannot currently be used together",
        ),
    ];
    for (flags, code, want) in cases {
        let out = env.build(&ctx, flags);
        assert_eq!(out.status, Some(code), "{flags:?}:\n{out}");
        assert!(
            out.stderr.contains(want),
            "{flags:?}: want {want:?}:\n{out}"
        );
    }
}
