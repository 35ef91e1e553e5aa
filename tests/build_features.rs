//! End-to-end tests of the CI build features (issue 9): RUN --mount (cache, secret, bind,
//! tmpfs), build secrets, heredocs, ADD from URLs and git, COPY --link/--parents/--exclude,
//! --chmod. Real sandbox, real store, a local HTTP server and a local git repository.
//! See: issue 9.

mod util;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};
use util::git::{git, GitDaemon};
use util::http::serve;
use util::{image_layers, image_rootfs, TestEnv};

fn context(env: &TestEnv, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = env.scratch.join(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    for (path, body) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }
    dir
}

fn read(root: &Path, path: &str) -> String {
    fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Every file name in every layer of `tag`.
fn all_layer_entries(env: &TestEnv, tag: &str) -> Vec<String> {
    image_layers(&env.root, tag).into_iter().flatten().collect()
}

/// The blobs directory listing: a failed build must leave it as it was.
fn blob_names(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root.join("blobs/sha256"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn cache_mount_survives_no_cache_and_never_reaches_a_layer() {
    let env = TestEnv::with_busybox();
    let ctx = context(
        &env,
        "cache",
        "FROM busybox\n\
         RUN --mount=type=cache,target=/var/cache/app,id=feat \
         sh -c 'echo run >> /var/cache/app/log; wc -l < /var/cache/app/log > /count'\n",
        &[],
    );
    env.build(&ctx, &["-t", "cm:1"]).assert_ok();
    let rootfs = image_rootfs(&env.root, "cm:1");
    assert_eq!(read(rootfs.path(), "count").trim(), "1");
    env.build(&ctx, &["-t", "cm:2", "--no-cache"]).assert_ok();
    let rootfs = image_rootfs(&env.root, "cm:2");
    assert_eq!(
        read(rootfs.path(), "count").trim(),
        "2",
        "the cache mount was not kept"
    );
    for tag in ["cm:1", "cm:2"] {
        let entries = all_layer_entries(&env, tag);
        assert!(
            !entries.iter().any(|e| e.contains("var/cache/app")),
            "cache mount content reached a layer: {entries:?}"
        );
    }
    let log = env.root.join("cache-mounts/feat/0/fs/log");
    assert_eq!(fs::read_to_string(log).unwrap(), "run\nrun\n");

    // A default id is the target; it lives under cache-mounts too.
    let ctx = context(
        &env,
        "cache-default",
        "FROM busybox\nRUN --mount=type=cache,target=/root/.cache touch /root/.cache/x\n",
        &[],
    );
    env.build(&ctx, &["-t", "cm:3"]).assert_ok();
    assert!(env
        .root
        .join("cache-mounts/%2Froot%2F.cache/0/fs/x")
        .is_file());
}

#[test]
fn locked_cache_mount_serialises_two_processes() {
    let env = TestEnv::with_busybox();
    let ctx = context(
        &env,
        "locked",
        "FROM busybox\n\
         ARG WHO\n\
         RUN --mount=type=cache,target=/c,id=lk,sharing=locked \
         sh -c 'echo \"start $WHO $(date +%s)\" >> /c/t; sleep 2; echo \"end $WHO $(date +%s)\" >> /c/t'\n",
        &[],
    );
    let spawn = |who: &str| {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--root")
            .arg(&env.root)
            .args(["build", "--progress", "plain", "--build-arg"])
            .arg(format!("WHO={who}"))
            .arg("-t")
            .arg(format!("lk:{who}"))
            .arg(&ctx)
            .env_remove("STRATA_ROOT")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn("a");
    let b = spawn("b");
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let log = fs::read_to_string(env.root.join("cache-mounts/lk/0/fs/t")).unwrap();
    let lines: Vec<Vec<&str>> = log.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 4, "{log}");
    // start X, end X, start Y, end Y: the second run started after the first ended.
    assert_eq!((lines[0][0], lines[1][0]), ("start", "end"), "{log}");
    assert_eq!((lines[2][0], lines[3][0]), ("start", "end"), "{log}");
    assert_eq!(lines[0][1], lines[1][1], "{log}");
    assert_eq!(lines[2][1], lines[3][1], "{log}");
    let t = |i: usize| lines[i][2].parse::<u64>().unwrap();
    assert!(t(2) >= t(1), "the runs overlapped:\n{log}");
}

/// Whether `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir` whose bytes (or gunzipped bytes) contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for path in files_under(dir) {
        let bytes = fs::read(&path).unwrap_or_default();
        let mut hit = contains(&bytes, needle);
        if !hit && bytes.starts_with(&[0x1f, 0x8b]) {
            let mut plain = Vec::new();
            let _ = flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut plain);
            hit = contains(&plain, needle);
        }
        if hit {
            found.push(path);
        }
    }
    found
}

/// Every regular file under `dir`, recursively (symlinks not followed).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                todo.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn secrets_reach_the_step_and_nothing_else() {
    let env = TestEnv::with_busybox();
    let secret = format!("s3cr3t-{:x}", std::process::id() as u64 * 7919 + 12345);
    let secret_file = env.scratch.join("token.txt");
    fs::write(&secret_file, &secret).unwrap();
    let ctx = context(
        &env,
        "secret",
        "FROM busybox\n\
         RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -d' ' -f1 > /file-sum\n\
         RUN --mount=type=secret,id=tok,env=TOK,required=true sh -c 'printf %s \"$TOK\" | sha256sum | cut -d\" \" -f1 > /env-sum'\n\
         RUN --mount=type=secret,id=tok,target=/etc/tok.conf,mode=0440 stat -c %a /etc/tok.conf > /mode\n",
        &[],
    );
    let src = format!("id=tok,src={}", secret_file.display());
    let out = env.build(&ctx, &["-t", "sec:1", "--secret", &src]);
    out.assert_ok();
    let want = hex::encode(Sha256::digest(secret.as_bytes()));
    let rootfs = image_rootfs(&env.root, "sec:1");
    assert_eq!(read(rootfs.path(), "file-sum").trim(), want);
    assert_eq!(read(rootfs.path(), "env-sum").trim(), want);
    assert_eq!(read(rootfs.path(), "mode").trim(), "440");
    let entries = all_layer_entries(&env, "sec:1");
    assert!(
        !entries
            .iter()
            .any(|e| e.contains("run/secrets") || e.contains("tok.conf")),
        "{entries:?}"
    );
    assert!(!contains(out.stdout.as_bytes(), secret.as_bytes()));
    assert!(!contains(out.stderr.as_bytes(), secret.as_bytes()));
    let leaks = files_containing(&env.root, secret.as_bytes());
    assert!(leaks.is_empty(), "the secret is in {leaks:?}");

    // A required secret that was not given fails, naming the id and the line.
    let ctx = context(
        &env,
        "secret-missing",
        "FROM busybox\nRUN --mount=type=secret,id=nope,required=true true\n",
        &[],
    );
    let out = env.build(&ctx, &["-t", "sec:2"]);
    assert_ne!(out.status, Some(0));
    assert!(out.stderr.contains("Dockerfile:2"), "{out}");
    assert!(out.stderr.contains("\"nope\""), "{out}");
    // A secret file that does not exist.
    let out = env.build(
        &ctx,
        &["-t", "sec:3", "--secret", "id=nope,src=/no/such/file"],
    );
    assert_ne!(out.status, Some(0));
    assert!(out.stderr.contains("/no/such/file"), "{out}");
}

#[test]
fn bind_tmpfs_and_network_mounts() {
    let env = TestEnv::with_busybox();
    let ctx = context(
        &env,
        "bind",
        "FROM busybox AS src\n\
         RUN mkdir /data && echo from-stage > /data/f && ln -s /data /link\n\
         FROM busybox\n\
         RUN --mount=type=bind,from=src,source=/link,target=/mnt cat /mnt/f > /copied\n\
         RUN --mount=type=bind,from=src,source=data,target=/mnt,rw sh -c 'echo x > /mnt/new && cat /mnt/f > /copied2'\n\
         RUN --mount=type=bind,from=src,target=/mnt test -e /mnt/data/new || echo clean > /rw-thrown-away\n\
         RUN --mount=type=tmpfs,target=/scratch sh -c 'echo t > /scratch/t && test -f /scratch/t'\n\
         RUN test ! -e /scratch/t && echo gone > /tmpfs-gone\n\
         RUN --mount=type=bind,target=/ctx cat /ctx/hello.txt > /ctx-copy\n\
         RUN --network=none sh -c 'ip link 2>/dev/null | grep -c mtu > /links || echo 1 > /links'\n\
         RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /ssh-ok\n",
        &[("hello.txt", "hello from the context\n")],
    );
    // An agent socket to forward (any unix socket will do for the mount).
    let sock = env.scratch.join("agent.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let ssh = format!("default={}", sock.display());
    env.build(&ctx, &["-t", "bind:1", "--ssh", &ssh])
        .assert_ok();
    let rootfs = image_rootfs(&env.root, "bind:1");
    assert_eq!(read(rootfs.path(), "copied"), "from-stage\n");
    assert_eq!(read(rootfs.path(), "copied2"), "from-stage\n");
    assert_eq!(read(rootfs.path(), "rw-thrown-away"), "clean\n");
    assert_eq!(read(rootfs.path(), "tmpfs-gone"), "gone\n");
    assert_eq!(read(rootfs.path(), "ctx-copy"), "hello from the context\n");
    assert_eq!(read(rootfs.path(), "ssh-ok"), "/run/buildkit/ssh_agent.0\n");
    let entries = all_layer_entries(&env, "bind:1");
    for bad in ["scratch/t", "mnt/", "ctx/", "run/buildkit"] {
        assert!(
            !entries.iter().any(|e| e.contains(bad)),
            "{bad} in {entries:?}"
        );
    }
    // Changing the bound context file re-runs the step.
    fs::write(ctx.join("hello.txt"), "changed\n").unwrap();
    env.build(&ctx, &["-t", "bind:2", "--ssh", &ssh])
        .assert_ok();
    assert_eq!(
        read(image_rootfs(&env.root, "bind:2").path(), "ctx-copy"),
        "changed\n"
    );
}

#[test]
fn bad_mounts_fail_naming_the_line_and_leave_the_store() {
    let env = TestEnv::with_busybox();
    let blobs = blob_names(&env.root);
    let cases = [
        (
            "RUN --mount=type=bogus,target=/x true",
            "unsupported mount type",
        ),
        (
            "RUN --mount=type=cache,target=/x,id=../up true",
            "invalid cache mount id",
        ),
        (
            "RUN --mount=type=cache,target=/x,id=a/b true",
            "invalid cache mount id",
        ),
        (
            "RUN --mount=type=cache,target=/x,colour=red true",
            "unexpected key 'colour'",
        ),
        (
            "RUN --mount=type=bind,source=../..,target=/x true",
            "outside",
        ),
        ("RUN --security=insecure true", "--allow security.insecure"),
        // issue 12, hole 6: a Dockerfile cannot put itself on the host's network.
        ("RUN --network=host true", "--allow network.host"),
        (
            "RUN --mount=type=bind,from=busybox,source=/nope,target=/x true",
            "not found",
        ),
    ];
    for (i, (line, want)) in cases.iter().enumerate() {
        let ctx = context(
            &env,
            &format!("bad-{i}"),
            &format!("FROM busybox\n{line}\n"),
            &[],
        );
        let out = env.build(&ctx, &["-t", "bad:1"]);
        assert_ne!(out.status, Some(0), "{line}");
        assert!(out.stderr.contains("Dockerfile:2"), "{line}:\n{out}");
        assert!(out.stderr.contains(want), "{line}: want {want:?}:\n{out}");
    }
    assert_eq!(
        blob_names(&env.root),
        blobs,
        "a failed build changed the store"
    );
    assert!(!env.root.join("cache-mounts/up").exists());
}

#[test]
fn add_from_a_local_http_server_checks_the_checksum() {
    let env = TestEnv::with_busybox();
    let body = b"downloaded body\n".to_vec();
    let sum = hex::encode(Sha256::digest(&body));
    let (port, hits) = serve(vec![("/files/app.txt".into(), body.clone())]);
    let url = format!("http://127.0.0.1:{port}/files/app.txt");
    let ctx = context(
        &env,
        "add-url",
        &format!("FROM busybox\nADD --checksum=sha256:{sum} {url} /dl/\nADD {url} /plain.txt\n"),
        &[],
    );
    let ctx_good = ctx.clone();
    env.build(&ctx, &["-t", "url:1"]).assert_ok();
    let rootfs = image_rootfs(&env.root, "url:1");
    assert_eq!(fs::read(rootfs.path().join("dl/app.txt")).unwrap(), body);
    assert_eq!(fs::read(rootfs.path().join("plain.txt")).unwrap(), body);
    let mode = fs::metadata(rootfs.path().join("plain.txt")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    // Rebuilt: the checksummed ADD needs no request, the other one gets a 304.
    let before = hits.load(std::sync::atomic::Ordering::SeqCst);
    let out = env.build(&ctx, &["-t", "url:2"]);
    out.assert_ok();
    assert_eq!(out.cached_steps(), 3, "{out}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), before);

    // A wrong checksum fails before anything lands.
    let blobs = blob_names(&env.root);
    let wrong = "0".repeat(64);
    let url2 = format!("http://127.0.0.1:{port}/files/app.txt?v=2");
    let ctx = context(
        &env,
        "add-url-bad",
        &format!("FROM busybox\nADD --checksum=sha256:{wrong} {url2} /x\n"),
        &[],
    );
    let out = env.build(&ctx, &["-t", "url:bad"]);
    assert_ne!(out.status, Some(0));
    assert!(out.stderr.contains("Dockerfile:2"), "{out}");
    assert!(
        out.stderr.contains("checksum") && out.stderr.contains(&sum),
        "{out}"
    );
    assert_eq!(blob_names(&env.root), blobs);
    // (Each URL's directory also has the `lock` a build holds while it uses the file.)
    let mut downloads = files_under(&env.root.join("downloads"));
    downloads.retain(|p| !p.ends_with("lock"));
    assert_eq!(
        downloads.len(),
        2,
        "only the good download's data and meta: {downloads:?}"
    );

    // Downloads are build cache: `system df` counts them, `builder prune` gives them back.
    let df_cache = || {
        let out = env.strata(&["system", "df", "--format", "json"]);
        out.assert_ok();
        out.stdout
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
            .find(|v| v["Type"] == "Build Cache")
            .and_then(|v| v["SizeBytes"].as_u64())
            .expect("a Build Cache row with SizeBytes")
    };
    let data = fs::metadata(&downloads[0]).map(|m| m.len()).unwrap_or(0)
        + fs::metadata(&downloads[1]).map(|m| m.len()).unwrap_or(0);
    let before = df_cache();
    assert!(
        before >= data,
        "df's build cache {before} counts the downloads ({data} bytes)"
    );
    env.strata(&["builder", "prune", "-af"]).assert_ok();
    let left: Vec<_> = files_under(&env.root.join("downloads"));
    assert!(
        left.is_empty(),
        "builder prune removed the downloads: {left:?}"
    );
    // The next build downloads again and still gives the same file.
    let before = hits.load(std::sync::atomic::Ordering::SeqCst);
    env.build(&ctx_good, &["-t", "url:3"]).assert_ok();
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) > before);
    let rootfs = image_rootfs(&env.root, "url:3");
    assert_eq!(fs::read(rootfs.path().join("plain.txt")).unwrap(), body);
}

#[test]
fn add_of_a_git_repository_at_a_tag() {
    let env = TestEnv::with_busybox();
    let repo = env.scratch.join("repo.git");
    fs::create_dir_all(repo.join("sub")).unwrap();
    git(&repo, &["init", "-q"]);
    fs::write(repo.join("README"), "version one\n").unwrap();
    fs::write(repo.join("sub/inner.txt"), "inner\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    git(&repo, &["tag", "-a", "v1", "-m", "v1"]);
    fs::write(repo.join("README"), "version two\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "two"]);
    let daemon = GitDaemon::start(&env.scratch);
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    let ctx = context(
        &env,
        "add-git",
        &format!("FROM busybox\nADD {url}#v1 /src\nADD --keep-git-dir=true {url}#v1:sub /sub\n"),
        &[],
    );
    env.build(&ctx, &["-t", "git:1"]).assert_ok();
    let rootfs = image_rootfs(&env.root, "git:1");
    assert_eq!(read(rootfs.path(), "src/README"), "version one\n");
    assert_eq!(read(rootfs.path(), "src/sub/inner.txt"), "inner\n");
    assert!(!rootfs.path().join("src/.git").exists());
    assert_eq!(read(rootfs.path(), "sub/inner.txt"), "inner\n");
    // Same tag again: cached by the commit id.
    let out = env.build(&ctx, &["-t", "git:2"]);
    out.assert_ok();
    assert_eq!(out.cached_steps(), 3, "{out}");

    let ctx = context(
        &env,
        "add-git-bad",
        &format!("FROM busybox\nADD {url}#no-such-tag /src\n"),
        &[],
    );
    let out = env.build(&ctx, &["-t", "git:bad"]);
    assert_ne!(out.status, Some(0));
    assert!(out.stderr.contains("Dockerfile:2"), "{out}");
    assert!(out.stderr.contains("no-such-tag"), "{out}");
}

#[test]
fn heredoc_run_and_copy() {
    let env = TestEnv::with_busybox();
    let ctx = context(
        &env,
        "heredoc",
        "FROM busybox\n\
         RUN <<EOF\n\
         echo one > /h1\n\
         echo two >> /h1\n\
         EOF\n\
         RUN <<-EOT sh\n\
         \techo tabbed > /h2\n\
         \tEOT\n\
         RUN cat <<A > /h3 && cat <<B >> /h3\n\
         a-body\n\
         A\n\
         b-body\n\
         B\n\
         RUN <<EOF\n\
         #!/bin/sh\n\
         echo \"shebang $0\" > /h4\n\
         EOF\n\
         ARG NAME=world\n\
         COPY <<F1 <<'F2' /files/\n\
         hello $NAME\n\
         F1\n\
         literal $NAME\n\
         F2\n\
         COPY --chmod=0755 <<EOF /run.sh\n\
         echo hi\n\
         EOF\n",
        &[],
    );
    env.build(&ctx, &["-t", "hd:1"]).assert_ok();
    let r = image_rootfs(&env.root, "hd:1");
    assert_eq!(read(r.path(), "h1"), "one\ntwo\n");
    assert_eq!(read(r.path(), "h2"), "tabbed\n");
    assert_eq!(read(r.path(), "h3"), "a-body\nb-body\n");
    assert_eq!(read(r.path(), "h4"), "shebang /dev/pipes/EOF\n");
    assert_eq!(read(r.path(), "files/F1"), "hello world\n");
    assert_eq!(read(r.path(), "files/F2"), "literal $NAME\n");
    let mode = fs::metadata(r.path().join("run.sh")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o755
    );
    let entries = all_layer_entries(&env, "hd:1");
    assert!(!entries.iter().any(|e| e.contains("pipes")), "{entries:?}");
}

/// The step number of the instruction whose progress line contains `text`.
fn step_is_cached(stderr: &str, text: &str) -> bool {
    let Some(n) = stderr
        .lines()
        .find(|l| l.starts_with('#') && l.contains(text))
        .and_then(|l| l.split_whitespace().next())
    else {
        panic!("no step {text:?} in:\n{stderr}");
    };
    stderr.lines().any(|l| l == format!("{n} CACHED"))
}

#[test]
fn copy_link_parents_exclude_and_symbolic_chmod() {
    let env = TestEnv::with_busybox();
    let ctx = context(
        &env,
        "copy-flags",
        "FROM busybox\n\
         ARG BASE=1\n\
         RUN echo $BASE > /base\n\
         COPY --link app.txt /app/\n\
         COPY --parents a/b/c.txt x/y.txt /p/\n\
         COPY --parents ./a/./b/c.txt /q/\n\
         COPY --exclude=*.log logs/ /logs/\n\
         COPY --chmod=u+x,go-w script.sh /script.sh\n",
        &[
            ("app.txt", "app\n"),
            ("a/b/c.txt", "c\n"),
            ("x/y.txt", "y\n"),
            ("logs/keep.txt", "keep\n"),
            ("logs/drop.log", "drop\n"),
            ("script.sh", "echo\n"),
        ],
    );
    fs::set_permissions(
        ctx.join("script.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    env.build(&ctx, &["-t", "cf:1", "--build-arg", "BASE=1"])
        .assert_ok();
    let r = image_rootfs(&env.root, "cf:1");
    assert_eq!(read(r.path(), "app/app.txt"), "app\n");
    assert_eq!(read(r.path(), "p/a/b/c.txt"), "c\n");
    assert_eq!(read(r.path(), "p/x/y.txt"), "y\n");
    assert_eq!(read(r.path(), "q/b/c.txt"), "c\n");
    assert!(r.path().join("logs/keep.txt").is_file());
    assert!(!r.path().join("logs/drop.log").exists());
    let mode = fs::metadata(r.path().join("script.sh")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o744
    );

    // The base below changes: the --link layer is still a cache hit, the others are not.
    let out = env.build(&ctx, &["-t", "cf:2", "--build-arg", "BASE=2"]);
    out.assert_ok();
    assert!(step_is_cached(&out.stderr, "COPY --link app.txt"), "{out}");
    assert!(
        !step_is_cached(&out.stderr, "COPY --parents a/b/c.txt"),
        "{out}"
    );
    let r = image_rootfs(&env.root, "cf:2");
    assert_eq!(read(r.path(), "base"), "2\n");
    assert_eq!(read(r.path(), "app/app.txt"), "app\n");
    let layers = image_layers(&env.root, "cf:2");
    let link_layer = layers
        .iter()
        .find(|l| l.iter().any(|e| e == "app/app.txt"))
        .unwrap();
    let layers1 = image_layers(&env.root, "cf:1");
    assert!(layers1.contains(link_layer));
}
