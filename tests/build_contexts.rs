//! End-to-end tests of the build contexts `docker buildx build` takes (issue 19): `-` (a tar
//! or a Dockerfile on stdin), `-f -`, git and tarball URLs, `--build-context` (directory,
//! URL, docker-image://, oci-layout://), and hostile tars. Builds are `FROM scratch` so no
//! RUN is needed; a local `git daemon` and HTTP server stand in for remote hosts (git over
//! https is not tested: it would need a TLS CGI server for `git http-backend`; https goes
//! through the same `git` and download code as git:// and http://).
//! See: issue 19.

mod util;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use util::git::{git, GitDaemon};
use util::http::serve;
use util::{context_temps, image_rootfs, raw_layer, strata_command, Output, TestEnv};

/// A directory `name` under the scratch space with `files` (path, body).
fn dir(env: &TestEnv, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = env.scratch.join(name);
    for (path, body) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, body).expect("write");
    }
    fs::create_dir_all(&dir).expect("mkdir");
    dir
}

/// A tar of `dir`'s contents.
fn tar_of(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).expect("tar");
    b.into_inner().expect("tar")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

/// `strata build --progress plain ARGS` with `stdin` on its standard input.
fn build_stdin(env: &TestEnv, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = strata_command(&env.root);
    cmd.args(["build", "--progress", "plain"]).args(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn strata");
    let mut input = child.stdin.take().expect("stdin");
    // The build may refuse before reading everything: a broken pipe is fine then.
    let _ = input.write_all(stdin);
    drop(input);
    let out = child.wait_with_output().expect("wait");
    Output::from_process(format!("strata build {}", args.join(" ")), out)
}

fn read(root: &Path, path: &str) -> String {
    fs::read_to_string(root.join(path)).unwrap_or_else(|e| format!("<{path}: {e}>"))
}

/// A raw tar entry: name, type, link target, data.
type RawEntry = (String, u8, String, Vec<u8>);

#[track_caller]
fn assert_fails(out: &Output, wanted: &str) {
    assert_ne!(out.status, Some(0), "should fail:\n{out}");
    assert!(out.stderr.contains(wanted), "wanted {wanted:?}:\n{out}");
}

#[test]
fn stdin_context_tar_plain_or_gzip_dockerfile_alone_and_dash_f() {
    let env = TestEnv::new();
    let ctx = dir(
        &env,
        "ctx",
        &[
            ("Dockerfile", "FROM scratch\nCOPY . /out/\n"),
            ("sub/Other.dockerfile", "FROM scratch\nCOPY a.txt /other\n"),
            ("a.txt", "from the tar\n"),
            ("secret.txt", "ignored\n"),
            (".dockerignore", "secret.txt\n"),
        ],
    );
    let tar = tar_of(&ctx);
    build_stdin(&env, &["-t", "stdin:plain", "-"], &tar).assert_ok();
    let rootfs = image_rootfs(&env.root, "stdin:plain");
    assert_eq!(read(rootfs.path(), "out/a.txt"), "from the tar\n");
    assert!(
        !rootfs.path().join("out/secret.txt").exists(),
        ".dockerignore"
    );
    // The same context gzip'd: keyed by content, so every step is cached.
    let out = build_stdin(&env, &["-t", "stdin:gz", "-"], &gzip(&tar));
    out.assert_ok();
    assert_eq!(out.cached_steps(), 1, "{out}");
    assert_eq!(env.image_id("stdin:gz"), env.image_id("stdin:plain"));
    // -f names a Dockerfile inside the tar.
    let out = build_stdin(
        &env,
        &["-t", "stdin:f", "-f", "sub/Other.dockerfile", "-"],
        &tar,
    );
    out.assert_ok();
    assert_eq!(
        read(image_rootfs(&env.root, "stdin:f").path(), "other"),
        "from the tar\n"
    );

    // A Dockerfile alone: the context is empty.
    let out = build_stdin(&env, &["-t", "stdin:df", "-"], b"FROM scratch\nENV A=1\n");
    out.assert_ok();
    let out = build_stdin(&env, &["-"], b"FROM scratch\nCOPY a.txt /\n");
    assert_fails(&out, "a.txt");
    // `-f -`: the Dockerfile from stdin, the context a directory.
    let dash_f = ctx.to_str().expect("utf-8");
    let out = build_stdin(
        &env,
        &["-t", "stdin:dashf", "-f", "-", dash_f],
        b"FROM scratch\nCOPY a.txt /dashf\n",
    );
    out.assert_ok();
    assert_eq!(
        read(image_rootfs(&env.root, "stdin:dashf").path(), "dashf"),
        "from the tar\n"
    );

    // buildx's refusals.
    let out = build_stdin(&env, &["-f", "-", "-"], b"FROM scratch\n");
    assert_fails(
        &out,
        "can't use stdin for both build context and dockerfile",
    );
    let out = build_stdin(&env, &["-f", "Dockerfile", "-"], b"FROM scratch\n");
    assert_fails(&out, "ambiguous Dockerfile source");
    let out = build_stdin(&env, &["-"], b"BZh91AY&SY");
    assert_fails(&out, "bzip2-compressed");
    let out = build_stdin(&env, &["-"], b"");
    assert_fails(&out, "stdin is empty");
    let out = build_stdin(&env, &["no/such/dir"], b"");
    assert_fails(
        &out,
        "unable to prepare context: path \"no/such/dir\" not found",
    );
    assert_eq!(context_temps(&env.root), Vec::<String>::new());
}

/// A context tar that climbs out, names an absolute path, or writes through a symlink
/// to outside is refused, and nothing outside the store is touched.
#[test]
fn hostile_context_tars_are_refused_without_touching_anything_outside() {
    let env = TestEnv::new();
    let outside = dir(&env, "outside", &[("keep", "keep\n")]);
    let outside_abs = outside.to_str().expect("utf-8");
    let dockerfile: &[u8] = b"FROM scratch\nCOPY . /\n";
    let df = |name: &str| (name.to_string(), b'0', String::new(), dockerfile.to_vec());
    let cases: Vec<(&str, Vec<RawEntry>)> = vec![
        (
            "dotdot",
            vec![
                df("Dockerfile"),
                (
                    "../outside/pwned".into(),
                    b'0',
                    String::new(),
                    b"x".to_vec(),
                ),
            ],
        ),
        (
            "absolute",
            vec![
                df("Dockerfile"),
                (
                    format!("{outside_abs}/pwned"),
                    b'0',
                    String::new(),
                    b"x".to_vec(),
                ),
            ],
        ),
        (
            "relative symlink out",
            vec![
                df("Dockerfile"),
                ("l".into(), b'2', "../../../../..".into(), Vec::new()),
            ],
        ),
        (
            "write through an absolute symlink",
            vec![
                df("Dockerfile"),
                ("l".into(), b'2', outside_abs.to_string(), Vec::new()),
                ("l/pwned".into(), b'0', String::new(), b"x".to_vec()),
            ],
        ),
    ];
    for (name, entries) in cases {
        let entries: Vec<(&str, u8, &str, &[u8])> = entries
            .iter()
            .map(|(n, k, l, d)| (n.as_str(), *k, l.as_str(), d.as_slice()))
            .collect();
        let tar = raw_layer(&entries);
        let out = build_stdin(&env, &["-t", "hostile:1", "-"], &tar);
        assert_fails(&out, "unsafe tar entry");
        assert!(
            out.stderr.contains("the build context from stdin"),
            "{name}: {out}"
        );
        let mut left: Vec<String> = fs::read_dir(&outside)
            .expect("outside")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["keep"], "{name}: the outside directory changed");
        assert!(!env.scratch.join("pwned").exists(), "{name}");
        assert_eq!(context_temps(&env.root), Vec::<String>::new(), "{name}");
    }
    let images = env.strata(&["images", "-q"]);
    assert_eq!(images.stdout.trim(), "", "no image was built");
}

#[test]
fn git_url_context_at_a_ref_and_subdirectory() {
    let env = TestEnv::new();
    let repo = dir(
        &env,
        "repo.git",
        &[
            ("app/Dockerfile", "FROM scratch\nCOPY . /app/\n"),
            ("app/main.txt", "version one\n"),
            ("app/secret.txt", "ignored\n"),
            ("app/.dockerignore", "secret.txt\n"),
            ("Dockerfile", "FROM scratch\nCOPY app/main.txt /top\n"),
        ],
    );
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    git(&repo, &["tag", "v1"]);
    fs::write(repo.join("app/main.txt"), "version two\n").expect("write");
    git(&repo, &["commit", "-q", "-am", "two"]);
    let daemon = GitDaemon::start(&env.scratch);
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);

    env.strata(&["build", "-q", "-t", "git:sub", &format!("{url}#v1:app")])
        .assert_ok();
    let rootfs = image_rootfs(&env.root, "git:sub");
    assert_eq!(read(rootfs.path(), "app/main.txt"), "version one\n");
    assert!(
        !rootfs.path().join("app/secret.txt").exists(),
        ".dockerignore"
    );
    assert!(!rootfs.path().join("app/.git").exists());
    // No ref: the default branch, with the Dockerfile at the top.
    env.strata(&["build", "-q", "-t", "git:head", &url])
        .assert_ok();
    assert_eq!(
        read(image_rootfs(&env.root, "git:head").path(), "top"),
        "version two\n"
    );

    for (fragment, wanted) in [
        ("#no-such-ref", "no-such-ref"),
        ("#v1:missing", "subdirectory \"missing\" not found"),
        ("#v1:../..", "leads outside the repository"),
    ] {
        let out = env.strata(&["build", &format!("{url}{fragment}")]);
        assert_fails(&out, wanted);
    }
    assert_eq!(context_temps(&env.root), Vec::<String>::new());
}

#[test]
fn tarball_url_context_and_a_dockerfile_url() {
    let env = TestEnv::new();
    let ctx = dir(
        &env,
        "ctx",
        &[
            ("Dockerfile", "FROM scratch\nCOPY a.txt /a\n"),
            ("a.txt", "from the tarball\n"),
        ],
    );
    let (port, _) = serve(vec![
        ("/ctx.tar.gz".into(), gzip(&tar_of(&ctx))),
        (
            "/Dockerfile".into(),
            b"FROM scratch\nENV FROM_URL=1\n".to_vec(),
        ),
        (
            "/evil.tar".into(),
            raw_layer(&[("../pwned", b'0', "", b"x")]),
        ),
    ]);
    let base = format!("http://127.0.0.1:{port}");
    env.strata(&[
        "build",
        "-q",
        "-t",
        "url:tar",
        &format!("{base}/ctx.tar.gz"),
    ])
    .assert_ok();
    assert_eq!(
        read(image_rootfs(&env.root, "url:tar").path(), "a"),
        "from the tarball\n"
    );
    env.strata(&["build", "-q", "-t", "url:df", &format!("{base}/Dockerfile")])
        .assert_ok();
    let out = env.strata(&["build", &format!("{base}/evil.tar")]);
    assert_fails(&out, "unsafe tar entry");
    assert!(!env.scratch.join("pwned").exists());
    let out = env.strata(&["build", &format!("{base}/missing.tar")]);
    assert_fails(&out, "404");
    assert_eq!(context_temps(&env.root), Vec::<String>::new());
}

#[test]
fn named_contexts_replace_images_and_stages_and_are_keyed_by_content() {
    let env = TestEnv::new();
    let libs = dir(
        &env,
        "libs",
        &[
            ("lib.txt", "lib one\n"),
            ("skip.txt", "ignored\n"),
            (".dockerignore", "skip.txt\n"),
        ],
    );
    let ctx = dir(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM scratch AS deps\n\
             COPY nothing-here /\n\
             FROM alpine:3.20 AS base\n\
             FROM scratch\n\
             COPY --from=libs lib.txt /from-libs\n\
             COPY --from=deps lib.txt /from-deps\n\
             COPY --from=base /etc/os /from-image\n",
        )],
    );
    // An image for docker-image://, built here: one file at /etc/os.
    let img = dir(
        &env,
        "img",
        &[
            ("Dockerfile", "FROM scratch\nCOPY os /etc/os\n"),
            ("os", "an image\n"),
        ],
    );
    env.build(&img, &["-t", "local/base:1"]).assert_ok();
    let libs_arg = format!("libs={}", libs.display());
    let deps_arg = format!("deps={}", libs.display());
    let args = [
        "-t",
        "named:1",
        "--build-context",
        &libs_arg,
        "--build-context",
        &deps_arg,
        "--build-context",
        "alpine:3.20=docker-image://local/base:1",
    ];
    let out = env.build(&ctx, &args);
    out.assert_ok();
    // BuildKit's progress line for a directory context, by the name the Dockerfile uses.
    assert!(
        out.stderr.contains("[context libs] load from client")
            && out.stderr.contains("[context deps] load from client"),
        "{out}"
    );
    let rootfs = image_rootfs(&env.root, "named:1");
    assert_eq!(read(rootfs.path(), "from-libs"), "lib one\n");
    assert_eq!(
        read(rootfs.path(), "from-deps"),
        "lib one\n",
        "the stage was replaced"
    );
    assert_eq!(read(rootfs.path(), "from-image"), "an image\n");
    // Unchanged content: cached; changed content: rebuilt with the new file.
    let out = env.build(&ctx, &args);
    out.assert_ok();
    // (FROM alpine:3.20 is a step of its own: 4.)
    assert_eq!(out.cached_steps(), 4, "{out}");
    fs::write(libs.join("lib.txt"), "lib two\n").expect("write");
    let out = env.build(&ctx, &args);
    out.assert_ok();
    assert_eq!(
        read(image_rootfs(&env.root, "named:1").path(), "from-libs"),
        "lib two\n"
    );

    // FROM a directory context, and an oci-layout:// one.
    let layout = env.scratch.join("layout");
    let dest = format!("type=oci,tar=false,dest={}", layout.display());
    env.build(&img, &["-o", &dest]).assert_ok();
    let from = dir(
        &env,
        "from",
        &[("Dockerfile", "FROM tree\nCOPY --from=oci /etc/os /os\n")],
    );
    let tree_arg = format!("tree={}", libs.display());
    let oci_arg = format!("oci=oci-layout://{}", layout.display());
    env.build(
        &from,
        &[
            "-t",
            "named:2",
            "--build-context",
            &tree_arg,
            "--build-context",
            &oci_arg,
        ],
    )
    .assert_ok();
    let rootfs = image_rootfs(&env.root, "named:2");
    assert_eq!(read(rootfs.path(), "lib.txt"), "lib two\n");
    assert!(!rootfs.path().join("skip.txt").exists(), ".dockerignore");
    assert_eq!(read(rootfs.path(), "os"), "an image\n");

    let missing = format!("x={}", env.scratch.join("nope").display());
    for (value, wanted) in [
        (
            "no-equals-sign",
            "invalid context value: no-equals-sign, expected key=value",
        ),
        ("Upper=.", "invalid context name Upper"),
        (missing.as_str(), "failed to get build context x"),
        ("x=target:foo", "docker buildx bake"),
        (
            "oci=oci-layout:///no/such/layout",
            "oci-layout /no/such/layout",
        ),
    ] {
        let out = env.build(&from, &["--build-context", value]);
        assert_fails(&out, wanted);
    }
}

#[test]
fn run_mount_from_a_named_context() {
    let env = TestEnv::with_busybox();
    let libs = dir(&env, "libs", &[("lib.txt", "mounted\n")]);
    let ctx = dir(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=from=libs,target=/m cp /m/lib.txt /copied\n",
        )],
    );
    let libs_arg = format!("libs={}", libs.display());
    env.build(&ctx, &["-t", "mount:1", "--build-context", &libs_arg])
        .assert_ok();
    assert_eq!(
        read(image_rootfs(&env.root, "mount:1").path(), "copied"),
        "mounted\n"
    );
}
