//! Path resolution never leaves its root (issue 12): COPY/ADD sources resolve inside the build
//! context, union lookups (COPY --from, --chown, WORKDIR, destinations) inside the image, git
//! sources never read the host's repositories, and archives that could not be extracted
//! safely never enter the store. Every hostile case points at canary files under the test's
//! own temp dir and checks they are unchanged and never copied.
//!
//! Also the context source rules of issue 15: a symlink named as a source is followed (inside
//! the context), symlinks inside a copied directory stay symlinks, an empty wildcard beside
//! other sources is allowed.

mod util;

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};
use util::{image_rootfs, raw_layer, Output, TestEnv};

const CANARY: &str = "HOST-SECRET-CANARY";

/// A directory outside every build context, holding files a hostile build would like to read.
struct Outside {
    dir: PathBuf,
}

impl Outside {
    fn new(env: &TestEnv) -> Outside {
        let dir = env.scratch.join("outside");
        fs::create_dir_all(&dir).expect("mkdir outside");
        fs::write(dir.join("secret"), CANARY).expect("write canary");
        fs::write(
            dir.join("passwd"),
            "hostuser:x:4242:4242::/home/hostuser:/bin/sh\n",
        )
        .expect("write passwd canary");
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(CANARY.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "unpacked-secret", CANARY.as_bytes())
            .expect("tar");
        fs::write(dir.join("arch.tar"), tar.into_inner().expect("tar")).expect("write tar");
        Outside { dir }
    }

    /// Nothing in the outside directory was added, removed or changed.
    #[track_caller]
    fn assert_untouched(&self) {
        let mut names: Vec<String> = fs::read_dir(&self.dir)
            .expect("read outside")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["arch.tar", "passwd", "secret"], "outside changed");
        assert_eq!(
            fs::read_to_string(self.dir.join("secret")).expect("read"),
            CANARY
        );
    }
}

fn context(env: &TestEnv, name: &str, dockerfile: &str) -> PathBuf {
    let dir = env.scratch.join(name);
    fs::create_dir_all(&dir).expect("mkdir context");
    fs::write(dir.join("Dockerfile"), dockerfile).expect("write Dockerfile");
    dir
}

/// No blob of the store holds the canary (a leaked file would be in a layer).
#[track_caller]
fn assert_no_blob_holds_canary(root: &Path) {
    let blobs = root.join("blobs/sha256");
    let Ok(dir) = fs::read_dir(&blobs) else {
        return;
    };
    for e in dir {
        let path = e.expect("entry").path();
        let bytes = fs::read(&path).expect("read blob");
        let mut plain = Vec::new();
        let bytes = match flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut plain) {
            Ok(_) => plain,
            Err(_) => bytes,
        };
        assert!(
            !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
            "blob {} holds the host canary",
            path.display()
        );
    }
}

#[track_caller]
fn assert_refused(out: &Output, wants: &[&str]) {
    assert_ne!(out.status, Some(0), "the build should fail:\n{out}");
    assert!(
        wants.iter().any(|w| out.stderr.contains(w)),
        "expected one of {wants:?}:\n{out}"
    );
    assert!(
        !out.stderr.contains("panicked"),
        "strata panicked instead of refusing:\n{out}"
    );
}

#[test]
fn issue_12_copy_and_add_do_not_follow_context_symlinks_out() {
    let env = TestEnv::new();
    let outside = Outside::new(&env);
    let o = outside.dir.display();
    let cases = [
        ("dir-abs", format!("dirlink:{o}"), "COPY dirlink/secret /y"),
        ("dir-glob", format!("dirlink:{o}"), "COPY dirlink/* /g/"),
        (
            "dir-up",
            "dirlink:../outside".to_string(),
            "COPY dirlink/secret /y",
        ),
        (
            "archive",
            format!("linkarch.tar:{o}/arch.tar"),
            "ADD linkarch.tar /a/",
        ),
        (
            "named-up",
            "uplink:../outside/secret".to_string(),
            "COPY uplink /z",
        ),
    ];
    for (name, link, instruction) in cases {
        let ctx = context(&env, name, &format!("FROM scratch\n{instruction}\n"));
        let (link_name, target) = link.split_once(':').expect("name:target");
        symlink(target, ctx.join(link_name)).expect("symlink");
        let out = env.build(&ctx, &["-t", &format!("leak-{name}:1")]);
        assert_refused(&out, &["not found", "outside of the build context"]);
        assert!(out.stderr.contains("Dockerfile:2"), "{name}: {out}");
        outside.assert_untouched();
    }
    assert_no_blob_holds_canary(&env.root);
}

#[test]
fn issue_15_context_symlinks_named_as_sources_are_followed_inside_the_context() {
    let env = TestEnv::new();
    let outside = Outside::new(&env);
    let ctx = context(
        &env,
        "follow",
        "FROM scratch\n\
         COPY flink /flink\n\
         COPY abslink/f.txt /abs.txt\n\
         COPY dir /dir\n\
         COPY nomatch* data/f.txt /multi/\n",
    );
    fs::create_dir_all(ctx.join("data")).expect("mkdir");
    fs::write(ctx.join("data/f.txt"), "data\n").expect("write");
    symlink("data/f.txt", ctx.join("flink")).expect("symlink");
    // Absolute targets are taken from the context root, as BuildKit does.
    symlink("/data", ctx.join("abslink")).expect("symlink");
    fs::create_dir_all(ctx.join("dir")).expect("mkdir");
    symlink("../data/f.txt", ctx.join("dir/l")).expect("symlink");
    symlink(outside.dir.join("secret"), ctx.join("dir/host")).expect("symlink");
    env.build(&ctx, &["-t", "follow:1"]).assert_ok();

    let rootfs = image_rootfs(&env.root, "follow:1");
    let r = rootfs.path();
    let flink = fs::symlink_metadata(r.join("flink")).expect("flink");
    assert!(flink.is_file(), "a named symlink is copied as its target");
    assert_eq!(fs::read_to_string(r.join("flink")).expect("read"), "data\n");
    assert_eq!(
        fs::read_to_string(r.join("abs.txt")).expect("read"),
        "data\n"
    );
    assert_eq!(
        fs::read_link(r.join("dir/l")).expect("dir/l stays a symlink"),
        Path::new("../data/f.txt")
    );
    assert_eq!(
        fs::read_link(r.join("dir/host")).expect("dir/host stays a symlink"),
        outside.dir.join("secret")
    );
    assert_eq!(
        fs::read_to_string(r.join("multi/f.txt")).expect("read"),
        "data\n"
    );
    outside.assert_untouched();
    assert_no_blob_holds_canary(&env.root);
}

#[test]
fn issue_12_union_lookups_do_not_follow_a_lower_symlink_on_the_host() {
    let env = TestEnv::with_busybox();
    let outside = Outside::new(&env);
    let o = outside.dir.display();
    // Stage s: a symlink to the host dir, then a directory over it in a later layer.
    // Overlayfs hides the lower symlink; the union lookup must too.
    let ctx = context(
        &env,
        "union-from",
        &format!(
            "FROM busybox AS s\n\
             RUN ln -s {o} /x\n\
             COPY emptyd /x/\n\
             FROM scratch\n\
             COPY --from=s /x/secret /leak\n"
        ),
    );
    fs::create_dir_all(ctx.join("emptyd")).expect("mkdir");
    let out = env.build(&ctx, &["-t", "leak-from:1"]);
    assert_refused(&out, &["not found"]);
    outside.assert_untouched();
    assert_no_blob_holds_canary(&env.root);
}

/// A docker-archive (as `docker save` writes) of one image `tag` with `layers`.
fn docker_archive(dir: &Path, tag: &str, layers: &[Vec<u8>]) -> PathBuf {
    fs::create_dir_all(dir).expect("mkdir");
    let mut names = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let name = format!("layer{i}.tar");
        fs::write(dir.join(&name), l).expect("write layer");
        diff_ids.push(format!("sha256:{}", hex::encode(Sha256::digest(l))));
        names.push(name);
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    fs::write(dir.join("config.json"), config.to_string()).expect("write config");
    let manifest = serde_json::json!([{
        "Config": "config.json", "RepoTags": [tag], "Layers": names,
    }]);
    fs::write(dir.join("manifest.json"), manifest.to_string()).expect("write manifest");
    let archive = dir.with_extension("tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(&archive)
        .arg("manifest.json")
        .arg("config.json")
        .args(&names)
        .status()
        .expect("tar");
    assert!(status.success());
    archive
}

#[test]
fn issue_12_union_lookups_through_a_loaded_image_stay_in_the_image() {
    let env = TestEnv::new();
    let outside = Outside::new(&env);
    let o = outside.dir.display().to_string();
    let archive = docker_archive(
        &env.scratch.join("evil"),
        "evil:1",
        &[
            raw_layer(&[("x", b'2', &o, b""), ("etc", b'2', &o, b"")]),
            raw_layer(&[("x/", b'5', "", b""), ("etc/", b'5', "", b"")]),
            raw_layer(&[("y", b'0', "", b"y\n")]),
        ],
    );
    env.strata(&["load", "-i", archive.to_str().expect("utf-8")])
        .assert_ok();
    let ctx = context(
        &env,
        "loaded",
        "FROM scratch\nCOPY --from=evil:1 /x/secret /leak\n",
    );
    let out = env.build(&ctx, &["-t", "leak-loaded:1"]);
    assert_refused(&out, &["not found"]);
    outside.assert_untouched();

    // --chown looks the user up in the image's /etc/passwd, never in the host's files.
    let ctx = context(
        &env,
        "loaded-chown",
        "FROM evil:1\nCOPY --chown=hostuser f /f\n",
    );
    fs::write(ctx.join("f"), "f\n").expect("write");
    let out = env.build(&ctx, &["-t", "leak-chown:1"]);
    assert_refused(&out, &["hostuser"]);
    outside.assert_untouched();
    assert_no_blob_holds_canary(&env.root);
}

#[test]
fn issue_12_add_of_a_local_archive_honours_dockerignore() {
    let env = TestEnv::new();
    let outside = Outside::new(&env);
    let ctx = context(&env, "ignored-archive", "FROM scratch\nADD arch.tar /a/\n");
    fs::copy(outside.dir.join("arch.tar"), ctx.join("arch.tar")).expect("copy");
    fs::write(ctx.join(".dockerignore"), "arch.tar\n").expect("write");
    let out = env.build(&ctx, &["-t", "ignored:1"]);
    assert_refused(&out, &["not found"]);
    assert_no_blob_holds_canary(&env.root);
}

#[test]
fn issue_12_add_of_a_file_git_url_is_refused() {
    let env = TestEnv::new();
    let repo = env.scratch.join("host-repo.git");
    fs::create_dir_all(&repo).expect("mkdir");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(&repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    fs::write(repo.join("secret"), CANARY).expect("write");
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "one"]);
    for url in [
        format!("file://{}", repo.display()),
        format!("file://{}/.git", repo.display()),
    ] {
        let ctx = context(&env, "file-git", &format!("FROM scratch\nADD {url} /src\n"));
        let out = env.build(&ctx, &["-t", "filegit:1"]);
        assert_refused(&out, &["file://"]);
        assert!(out.stderr.contains("Dockerfile:2"), "{out}");
    }
    assert_no_blob_holds_canary(&env.root);
}

/// `import` and `load` check every layer entry before anything is stored.
#[test]
fn issue_12_import_and_load_refuse_layers_that_could_not_be_extracted() {
    let env = TestEnv::new();
    let bad: [(&str, Vec<u8>); 4] = [
        ("dotdot", raw_layer(&[("../evil", b'0', "", b"x")])),
        ("absolute", raw_layer(&[("/evil", b'0', "", b"x")])),
        ("symlink", raw_layer(&[("a/l", b'2', "../../evil", b"")])),
        ("whiteout", raw_layer(&[(".wh...", b'0', "", b"")])),
    ];
    for (name, layer) in bad {
        let tar = env.scratch.join(format!("{name}.tar"));
        fs::write(&tar, &layer).expect("write");
        let out = env.strata(&[
            "import",
            tar.to_str().expect("utf-8"),
            &format!("i-{name}:1"),
        ]);
        assert_ne!(out.status, Some(0), "import of {name} should fail:\n{out}");
        assert!(out.stderr.contains("unsafe tar entry"), "{name}: {out}");
        let archive = docker_archive(
            &env.scratch.join(format!("load-{name}")),
            &format!("l-{name}:1"),
            &[raw_layer(&[("ok", b'0', "", b"ok")]), layer],
        );
        let out = env.strata(&["load", "-i", archive.to_str().expect("utf-8")]);
        assert_ne!(out.status, Some(0), "load of {name} should fail:\n{out}");
        assert!(out.stderr.contains("unsafe tar entry"), "{name}: {out}");
        let images = env.strata(&["images", "-q"]);
        images.assert_ok();
        assert_eq!(images.stdout.trim(), "", "{name}: an image was stored");
        let blobs = fs::read_dir(env.root.join("blobs/sha256"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(blobs, 0, "{name}: blobs were left in the store");
    }
}
