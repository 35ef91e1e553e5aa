//! strata run by an ordinary user: it enters a user namespace (root mapped to the user,
//! ids 1.. to the user's /etc/subuid range through newuidmap/newgidmap), RUN mounts
//! overlayfs there with `userxattr`, and the image is the one root builds: same digest
//! for the same Dockerfile and SOURCE_DATE_EPOCH, so layers carry the image's own ids, and
//! the user pushes it to a local registry as it is.
//! Without a range the user is the only id, and strata says so.
//!
//! Where namespaces and mounts are refused (an unprivileged docker container), RUN runs by
//! chroot in a copied tree and the image is again the same: a private dockerd (Debian's
//! docker.io) runs strata in a container without `--privileged`.
//!
//! The users are made here with `useradd` and removed with `userdel`. The builds use
//! `--network none`: the isolated network needs /dev/net/tun open to the user, which
//! tests/build_network.rs covers as root.

mod registry_common;
mod util;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use util::{busybox_rootfs, require_tool, run, strata_at, strata_command, Output, TestEnv};

/// A user made for one test; removed (with its subuid/subgid ranges) on drop.
struct TestUser {
    name: String,
}

impl TestUser {
    /// `has_range`: a regular user (useradd gives it a subuid/subgid range); otherwise a
    /// system user, which gets none.
    fn new(tag: &str, has_range: bool) -> TestUser {
        require_tool("useradd", "passwd");
        let name = format!("strata-{tag}-{}", std::process::id() % 100_000);
        let mut cmd = Command::new("useradd");
        cmd.args(["-M", "-d", "/nonexistent", "-s", "/bin/sh"]);
        if !has_range {
            cmd.arg("-r");
        }
        run(cmd.arg(&name));
        let user = TestUser { name };
        let subuid = fs::read_to_string("/etc/subuid").unwrap_or_default();
        let listed = subuid
            .lines()
            .any(|l| l.starts_with(&format!("{}:", user.name)));
        assert_eq!(
            listed,
            has_range,
            "useradd gave {} {} subuid range",
            user.name,
            if listed { "a" } else { "no" }
        );
        user
    }

    /// `strata --root ROOT ARGS` as this user.
    fn strata(&self, root: &Path, args: &[&str]) -> Output {
        let inner = strata_command(root);
        let bin = user_binary(root.parent().expect("a store root has a parent"));
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", &self.name, "--"])
            .arg(bin)
            .args(inner.get_args())
            .args(args);
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let shown = format!("{cmd:?}");
        let out = cmd.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
        Output::from_process(shown, out)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// The strata binary where a test user can run it: a copy in `dir`, since the checkout that
/// holds `target/` may be private to root (a clone under /root, say).
fn user_binary(dir: &Path) -> PathBuf {
    let bin = dir.join("strata-bin");
    if !bin.exists() {
        fs::copy(env!("CARGO_BIN_EXE_strata"), &bin).expect("copy the strata binary");
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    bin
}

/// The context that builds the busybox base (`FROM scratch` + the rootfs), in `shared`.
fn base_context(shared: &Path) -> PathBuf {
    let base = shared.join("base");
    fs::create_dir_all(&base).expect("mkdir");
    fs::copy(busybox_rootfs(), base.join("rootfs.tar")).expect("copy rootfs");
    write_context(&base, "FROM scratch\nADD rootfs.tar /\nCMD [\"sh\"]\n", &[])
}

/// A directory the test users can read and write: contexts and their store roots.
fn shared_dir(env: &TestEnv) -> PathBuf {
    let dir = env.scratch.join("shared");
    fs::create_dir_all(&dir).expect("mkdir");
    for p in [env.scratch.parent().expect("parent"), &env.scratch, &dir] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    dir
}

fn write_context(dir: &Path, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    fs::create_dir_all(dir).expect("mkdir");
    fs::write(dir.join("Dockerfile"), dockerfile).expect("write");
    for (name, body) in files {
        fs::write(dir.join(name), body).expect("write");
    }
    let mode = fs::Permissions::from_mode(0o755);
    fs::set_permissions(dir, mode).expect("chmod");
    dir.to_path_buf()
}

const EPOCH: &str = "SOURCE_DATE_EPOCH=1700000000";

/// The main build cases: owners set by COPY --chown and chown in RUN, files deleted
/// (whiteouts) and a directory replaced (opaque), a cache mount, a multi-stage COPY.
const DOCKERFILE: &str = "FROM busybox AS base\n\
     RUN mkdir -p /opt/keep /opt/gone /opt/replaced && echo k > /opt/keep/k \
       && echo g > /opt/gone/g && echo old > /opt/replaced/old && chown 1000:1000 /opt/keep/k\n\
     FROM base\n\
     COPY --chown=1234:5678 a.txt /owned/a\n\
     COPY --chown=65000:65000 a.txt /owned/b\n\
     COPY --from=base --chown=7:7 /opt/keep /copied\n\
     RUN rm -rf /opt/gone /opt/replaced /bin/ls && mkdir /opt/replaced \
       && echo new > /opt/replaced/new && chown 4242:4242 /opt/replaced/new\n\
     RUN --mount=type=cache,target=/cache sh -c 'echo c >> /cache/log; wc -l < /cache/log > /cache-lines'\n";

#[test]
fn a_user_with_a_subuid_range_builds_the_image_root_builds() {
    require_tool("newuidmap", "uidmap");
    let env = TestEnv::new();
    let shared = shared_dir(&env);
    let base = base_context(&shared);
    let ctx = write_context(&shared.join("case"), DOCKERFILE, &[("a.txt", "a\n")]);
    let with_base = |strata: &dyn Fn(&Path, &[&str]) -> Output, root: &Path| {
        let base_arg = base.to_str().expect("utf-8");
        strata(
            root,
            &[
                "build",
                "-q",
                "-t",
                "busybox",
                "--build-arg",
                EPOCH,
                base_arg,
            ],
        )
        .assert_ok();
    };

    let as_root = strata_at;
    let root_store = shared.join("root-store");
    with_base(&as_root, &root_store);
    let (want, _) = build_case_no_base(&as_root, &root_store, &ctx);
    assert!(want.starts_with("sha256:"), "root build digest: {want:?}");

    let user = TestUser::new("rl", true);
    let as_user = |root: &Path, args: &[&str]| user.strata(root, args);
    let user_store = shared.join("user-store");
    with_base(&as_user, &user_store);
    let (got, first) = build_case_no_base(&as_user, &user_store, &ctx);
    assert!(!first.stderr.contains("single owner"), "{first}");
    assert_eq!(got, want, "rootless digest differs from root's:\n{first}");
    // The store keeps the image's ids: the user's build is fully cached the second time.
    let (again, second) = build_case_no_base(&as_user, &user_store, &ctx);
    assert_eq!(again, want);
    assert_eq!(second.cached_steps(), 7, "{second}");
    // Pushed by the user and by root, the registry holds one image: the layers the user
    // sends carry the image's ids too.
    let reg = registry_common::Registry::start(Default::default());
    let mut pushed = Vec::new();
    for (who, store, strata) in [
        (
            "user",
            &user_store,
            &as_user as &dyn Fn(&Path, &[&str]) -> Output,
        ),
        ("root", &root_store, &as_root),
    ] {
        let name = format!("{}/{who}/case:1", reg.addr);
        strata(store, &["tag", "case:1", &name]).assert_ok();
        strata(store, &["push", &name]).assert_ok();
        pushed.push(registry_common::skopeo_digest(&name));
    }
    assert_eq!(pushed[0], pushed[1], "the user's push differs from root's");
}

#[test]
fn a_user_without_a_range_builds_as_its_single_id_and_is_told() {
    require_tool("newuidmap", "uidmap");
    let env = TestEnv::new();
    let shared = shared_dir(&env);
    let base = base_context(&shared);
    let ctx = write_context(
        &shared.join("one"),
        "FROM busybox\nRUN id -u > /uid && rm -rf /usr && mkdir /usr && echo x > /usr/x\n",
        &[],
    );
    let user = TestUser::new("rl1", false);
    let store = shared.join("store");
    let base_arg = base.to_str().expect("utf-8");
    let out = user.strata(&store, &["build", "-q", "-t", "busybox", base_arg]);
    out.assert_ok();
    assert!(out.stderr.contains("single owner"), "{out}");
    let args = ["build", "--network", "none", "-t", "one:1"];
    user.strata(
        &store,
        &[&args[..], &[ctx.to_str().expect("utf-8")]].concat(),
    )
    .assert_ok();
}

/// The case build (the base is already in `root`) with `--network none` and `extra`
/// build flags: its manifest digest and the output.
fn build_case_no_base(
    strata: &dyn Fn(&Path, &[&str]) -> Output,
    root: &Path,
    ctx: &Path,
) -> (String, Output) {
    build_case_with(strata, root, ctx, &["--network", "none"])
}

/// The case build (the base is already in `root`) with `extra` build flags: its manifest
/// digest and the output.
fn build_case_with(
    strata: &dyn Fn(&Path, &[&str]) -> Output,
    root: &Path,
    ctx: &Path,
    extra: &[&str],
) -> (String, Output) {
    let args = [
        "build",
        "--progress",
        "plain",
        "--build-arg",
        EPOCH,
        "-t",
        "case:1",
        ctx.to_str().expect("utf-8"),
    ];
    let out = strata(root, &[&args[..3], extra, &args[3..]].concat());
    out.assert_ok();
    let digest = strata(
        root,
        &["images", "--digests", "--format", "{{.Digest}}", "case"],
    );
    digest.assert_ok();
    (digest.stdout.trim().to_string(), out)
}

/// The main cases without RUN --mount=type=cache (a mount), plus a heredoc (a file).
const CHROOT_DOCKERFILE: &str = "FROM busybox AS base\n\
     RUN mkdir -p /opt/keep /opt/gone /opt/replaced && echo k > /opt/keep/k \
       && echo g > /opt/gone/g && echo old > /opt/replaced/old && chown 1000:1000 /opt/keep/k\n\
     FROM base\n\
     COPY --chown=1234:5678 a.txt /owned/a\n\
     COPY --from=base --chown=7:7 /opt/keep /copied\n\
     RUN rm -rf /opt/gone /opt/replaced /bin/ls && mkdir /opt/replaced \
       && echo new > /opt/replaced/new && chown 4242:4242 /opt/replaced/new\n\
     RUN <<EOF\n\
     echo from-heredoc > /heredoc\n\
     EOF\n";

#[test]
fn chroot_isolation_builds_the_image_namespaces_build() {
    let env = TestEnv::new();
    let shared = shared_dir(&env);
    let base = base_context(&shared);
    let ctx = write_context(&shared.join("case"), CHROOT_DOCKERFILE, &[("a.txt", "a\n")]);
    let as_root = strata_at;
    let mut digests = Vec::new();
    for isolation in ["oci", "chroot"] {
        let root = shared.join(format!("store-{isolation}"));
        let base_arg = base.to_str().expect("utf-8");
        let base_args = [
            "build",
            "-q",
            "-t",
            "busybox",
            "--build-arg",
            EPOCH,
            base_arg,
        ];
        as_root(&root, &base_args).assert_ok();
        // chroot has no network namespace: both share the host's.
        let extra = ["--network", "host", "--isolation", isolation];
        let (digest, out) = build_case_with(&as_root, &root, &ctx, &extra);
        assert!(digest.starts_with("sha256:"), "{isolation}: {out}");
        digests.push(digest);
    }
    assert_eq!(digests[0], digests[1], "chroot's image differs from oci's");
}

/// A private dockerd: own data-root, exec-root and socket, no bridge, no iptables. Stopped
/// (SIGTERM, then reaped) on drop.
struct Dockerd {
    child: Child,
    dir: PathBuf,
}

impl Dockerd {
    /// Start it and wait for its systemd readiness message (READY=1 on NOTIFY_SOCKET),
    /// which it sends once the API socket serves.
    fn start(dir: &Path) -> Dockerd {
        require_tool("dockerd", "docker.io");
        for d in ["data", "exec", "config"] {
            fs::create_dir_all(dir.join(d)).expect("mkdir");
        }
        fs::write(dir.join("config/config.json"), "{}").expect("write");
        let notify = UnixDatagram::bind(dir.join("notify")).expect("bind the notify socket");
        notify
            .set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        let log = fs::File::create(dir.join("dockerd.log")).expect("log");
        let child = Command::new("dockerd")
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .env("NOTIFY_SOCKET", dir.join("notify"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting dockerd");
        let mut daemon = Dockerd {
            child,
            dir: dir.to_path_buf(),
        };
        let mut buf = [0u8; 4096];
        loop {
            match notify.recv(&mut buf) {
                Ok(n) if String::from_utf8_lossy(&buf[..n]).contains("READY=1") => break,
                Ok(_) => continue,
                Err(e) => {
                    let exited = daemon.child.try_wait().ok().flatten();
                    let log = fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
                    panic!("dockerd never said READY=1 ({e}; exit: {exited:?}); its log:\n{log}");
                }
            }
        }
        daemon
    }

    /// Debian's docker client (20.10) on this daemon.
    fn docker(&self) -> Command {
        let mut cmd = Command::new("/usr/bin/docker");
        cmd.arg("-H")
            .arg(format!("unix://{}", self.dir.join("docker.sock").display()))
            .env("DOCKER_CONFIG", self.dir.join("config"));
        cmd
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The strata binary and the shared libraries it loads (from `ldd`), laid out as a tree to
/// copy over a busybox root: busybox has no libc.
fn strata_with_libs(dir: &Path) {
    let bin = env!("CARGO_BIN_EXE_strata");
    fs::create_dir_all(dir.join("usr/local/bin")).expect("mkdir");
    fs::copy(bin, dir.join("usr/local/bin/strata")).expect("copy strata");
    let ldd = run(Command::new("ldd").arg(bin));
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        let dst = dir.join(lib.trim_start_matches('/'));
        fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
        fs::copy(lib, &dst).unwrap_or_else(|e| panic!("copy {lib}: {e}"));
    }
}

#[test]
fn an_unprivileged_container_builds_the_image_root_builds() {
    let env = TestEnv::new();
    let shared = shared_dir(&env);
    let base = base_context(&shared);
    let ctx = write_context(&shared.join("case"), CHROOT_DOCKERFILE, &[("a.txt", "a\n")]);
    let as_root = strata_at;
    let root = shared.join("root-store");
    let base_arg = base.to_str().expect("utf-8");
    let base_args = [
        "build",
        "-q",
        "-t",
        "busybox",
        "--build-arg",
        EPOCH,
        base_arg,
    ];
    as_root(&root, &base_args).assert_ok();
    let (want, out) = build_case_with(&as_root, &root, &ctx, &[]);
    assert!(want.starts_with("sha256:"), "{out}");

    // The image strata runs in: busybox + strata + its libraries + both contexts, built by
    // strata and handed to docker with `strata save` | `docker load`.
    let image_ctx = write_context(&shared.join("image"), "FROM busybox\nCOPY tree/ /\n", &[]);
    strata_with_libs(&image_ctx.join("tree"));
    for (name, dir) in [("base", &base), ("case", &ctx)] {
        let dst = image_ctx.join("tree/ctx").join(name);
        fs::create_dir_all(&dst).expect("mkdir");
        for entry in fs::read_dir(dir).expect("read context") {
            let entry = entry.expect("entry");
            fs::copy(entry.path(), dst.join(entry.file_name())).expect("copy context");
        }
    }
    let image_arg = image_ctx.to_str().expect("utf-8");
    as_root(
        &root,
        &["build", "-q", "-t", "strata-in-docker:1", image_arg],
    )
    .assert_ok();
    let saved = shared.join("strata-in-docker.tar");
    let saved_arg = saved.to_str().expect("utf-8");
    as_root(&root, &["save", "-o", saved_arg, "strata-in-docker:1"]).assert_ok();

    let dockerd = Dockerd::start(&env.scratch.join("docker"));
    run(dockerd.docker().args(["load", "-i"]).arg(&saved));
    // The store is a volume: overlayfs (the container's root) refuses the 0:0 character
    // devices whiteouts are stored as.
    let volume = env.scratch.join("volume");
    fs::create_dir_all(&volume).expect("mkdir");
    let script = format!(
        "strata --root /store build -q --build-arg {EPOCH} -t busybox /ctx/base >/dev/null && \
         strata --root /store build --progress plain --build-arg {EPOCH} -t case:1 /ctx/case && \
         strata --root /store images --digests --format '{{{{.Digest}}}}' case"
    );
    let out = dockerd
        .docker()
        .args(["run", "--rm", "--network", "none", "-v"])
        .arg(format!("{}:/store", volume.display()))
        .args(["strata-in-docker:1", "sh", "-c", &script])
        .output()
        .expect("docker run");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "docker run: {}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("--isolation chroot"),
        "strata must say it fell back to chroot:\n{stderr}"
    );
    assert!(
        stderr.contains("RUN <<EOF"),
        "the heredoc RUN ran:\n{stderr}"
    );
    assert_eq!(
        stdout.lines().last().unwrap_or_default(),
        want,
        "the container's image differs from root's:\n{stderr}"
    );
}
