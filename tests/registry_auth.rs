//! Authentication against real registries: htpasswd basic auth, the Docker Hub-style
//! bearer token flow against docker-registry's `auth: token`, TLS with a CA made by
//! the test (`--cacert`, `SSL_CERT_FILE`), and `login`/`logout` writing config.json.
//! See issue 5.

mod registry_common;
mod util;

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;

use registry_common::{
    oci_layout, random_bytes, skopeo_copy, Auth, Registry, RegistryOptions, Strata, TokenServer,
};

const USER: &str = "alice";
const PASSWORD: &str = "pa55-w0rd-not-printed";

fn seed_with(creds: Option<&str>, addr: &str, repo_tag: &str) -> String {
    let layout = tempfile::tempdir().expect("tempdir");
    let img = oci_layout(
        layout.path(),
        "t",
        &[random_bytes(50_000, 7), b"x\n".repeat(1000)],
    );
    let mut extra = vec![];
    let c;
    if let Some(creds) = creds {
        c = creds.to_string();
        extra = vec!["--dest-creds", c.as_str()];
    }
    skopeo_copy(
        &extra,
        &format!("oci:{}:t", layout.path().display()),
        &format!("docker://{addr}/{repo_tag}"),
    );
    img.manifest_digest
}

#[track_caller]
fn assert_no_secret(out: &registry_common::Output) {
    assert!(
        !out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD),
        "password printed:\n{out}"
    );
}

#[test]
fn basic_auth_login_pull_push_logout() {
    let reg = Registry::start(RegistryOptions {
        auth: Auth::Basic {
            user: USER,
            password: PASSWORD,
        },
        ..Default::default()
    });
    let digest = seed_with(
        Some(&format!("{USER}:{PASSWORD}")),
        &reg.addr,
        "private/app:1",
    );
    let s = Strata::new();
    let name = format!("{}/private/app:1", reg.addr);

    let out = s.run(&["pull", &name]).fails();
    assert!(out.stderr.contains("unauthorized"), "{out}");
    assert!(
        out.stderr.contains(&format!("strata login {}", reg.addr)),
        "{out}"
    );

    let out = s
        .run_with_stdin(
            &["login", "-u", USER, "--password-stdin", &reg.addr],
            Some("wrong\n"),
        )
        .fails();
    assert!(
        out.stderr.contains("incorrect username or password")
            || out.stderr.contains("unauthorized"),
        "{out}"
    );
    assert!(
        !s.docker_config.join("config.json").exists(),
        "a failed login wrote config.json"
    );

    let out = s
        .run_with_stdin(
            &["login", "-u", USER, "--password-stdin", &reg.addr],
            Some(&format!("{PASSWORD}\n")),
        )
        .ok();
    assert!(out.stdout.contains("Login Succeeded"), "{out}");
    assert_no_secret(&out);
    let cfg = s.docker_config.join("config.json");
    let mode = std::fs::metadata(&cfg)
        .expect("config.json written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "config.json mode");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg).expect("read")).expect("json");
    assert!(json["auths"][&reg.addr]["auth"].is_string(), "{json}");

    let out = s.run(&["pull", &name]).ok();
    assert_no_secret(&out);
    let r = store::Reference::parse(&name).expect("ref");
    assert_eq!(s.store().resolve(&r).expect("pulled").to_string(), digest);
    s.run(&["tag", &name, &format!("{}/private/copy:2", reg.addr)])
        .ok();
    let out = s
        .run(&["push", &format!("{}/private/copy:2", reg.addr)])
        .ok();
    assert_eq!(out.pushed_digest(), digest);

    let out = s.run(&["logout", &reg.addr]).ok();
    assert!(
        out.stdout
            .contains(&format!("Removing login credentials for {}", reg.addr)),
        "{out}"
    );
    let out = s
        .run(&["push", &format!("{}/private/copy:2", reg.addr)])
        .fails();
    assert!(out.stderr.contains("unauthorized"), "{out}");
    let out = s.run(&["logout", &reg.addr]).ok();
    assert!(out.stdout.contains("Not logged in"), "{out}");
}

#[test]
fn login_with_p_flag_warns_and_reads_credentials_back() {
    let reg = Registry::start(RegistryOptions {
        auth: Auth::Basic {
            user: USER,
            password: PASSWORD,
        },
        ..Default::default()
    });
    let s = Strata::new();
    let out = s
        .run(&["login", "-u", USER, "-p", PASSWORD, &reg.addr])
        .ok();
    assert!(out.stderr.contains("--password-stdin"), "{out}");
    let cfg = registry_client::DockerConfig::new(&s.docker_config);
    assert_eq!(
        cfg.credential(&reg.addr).expect("read config"),
        Some(registry_client::Credential::UsernamePassword {
            username: USER.into(),
            password: PASSWORD.into()
        })
    );
}

#[test]
fn token_auth_anonymous_pull_and_authenticated_push() {
    let ts = TokenServer::start(&[(USER, PASSWORD)]);
    let reg = Registry::start(RegistryOptions {
        auth: Auth::Token(&ts),
        ..Default::default()
    });
    // Seed through the token flow too (skopeo authenticates against the same server).
    let digest = seed_with(
        Some(&format!("{USER}:{PASSWORD}")),
        &reg.addr,
        "library/base:1",
    );
    let s = Strata::new();
    let before = ts.requests.load(Ordering::Relaxed);
    let out = s
        .run(&["pull", &format!("{}/library/base:1", reg.addr)])
        .ok();
    assert!(
        ts.requests.load(Ordering::Relaxed) > before,
        "pull fetched no token"
    );
    assert!(out.stdout.contains(&format!("Digest: {digest}")), "{out}");
    s.assert_store_clean();

    // Anonymous tokens carry pull only: the push is refused.
    s.run(&[
        "tag",
        &format!("{}/library/base:1", reg.addr),
        &format!("{}/team/app:1", reg.addr),
    ])
    .ok();
    let out = s
        .run(&["push", &format!("{}/team/app:1", reg.addr)])
        .fails();
    assert!(
        out.stderr.contains("unauthorized") || out.stderr.contains("denied"),
        "{out}"
    );

    let out = s
        .run_with_stdin(
            &["login", "-u", USER, "--password-stdin", &reg.addr],
            Some(PASSWORD),
        )
        .ok();
    assert_no_secret(&out);
    let authed = ts.authenticated.load(Ordering::Relaxed);
    let out = s.run(&["push", &format!("{}/team/app:1", reg.addr)]).ok();
    assert!(
        ts.authenticated.load(Ordering::Relaxed) > authed,
        "push used no authenticated token"
    );
    assert_eq!(out.pushed_digest(), digest);
    // The blobs came from library/base: mounted (needs pull scope on the source).
    assert!(out.stdout.contains("Mounted from library/base"), "{out}");
    assert_no_secret(&out);

    let out = s
        .run_with_stdin(
            &["login", "-u", USER, "--password-stdin", &reg.addr],
            Some("nope"),
        )
        .fails();
    assert!(
        out.stderr.contains("unauthorized") || out.stderr.contains("incorrect"),
        "{out}"
    );
}

#[test]
fn expired_tokens_are_fetched_again() {
    // Tokens live 1 s (the client renews early, and the registry rejects late ones).
    let ts = TokenServer::start_with_ttl(&[(USER, PASSWORD)], 1);
    let reg = Registry::start(RegistryOptions {
        auth: Auth::Token(&ts),
        ..Default::default()
    });
    seed_with(Some(&format!("{USER}:{PASSWORD}")), &reg.addr, "r/x:1");
    let s = Strata::new();
    s.run_with_stdin(
        &["login", "-u", USER, "--password-stdin", &reg.addr],
        Some(PASSWORD),
    )
    .ok();
    s.run(&["pull", &format!("{}/r/x:1", reg.addr)]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    s.run(&[
        "tag",
        &format!("{}/r/x:1", reg.addr),
        &format!("{}/r/y:1", reg.addr),
    ])
    .ok();
    s.run(&["push", &format!("{}/r/y:1", reg.addr)]).ok();
}

#[test]
fn tls_with_cacert_and_ssl_cert_file_and_refused_without() {
    // 127.0.0.2 is not one of the always-insecure loopback names, so TLS is verified.
    let reg = Registry::start(RegistryOptions {
        host: "127.0.0.2",
        tls: true,
        ..Default::default()
    });
    let tls = reg.tls.as_ref().expect("tls");
    let layout = tempfile::tempdir().expect("tempdir");
    let img = oci_layout(layout.path(), "t", &[random_bytes(10_000, 5)]);
    let mut cmd = std::process::Command::new("skopeo");
    cmd.args(["copy", "--dest-cert-dir"])
        .arg(reg.dir.path().join("certs"));
    std::fs::create_dir_all(reg.dir.path().join("certs")).expect("certs dir");
    std::fs::copy(&tls.ca, reg.dir.path().join("certs/ca.crt")).expect("copy ca");
    cmd.arg(format!("oci:{}:t", layout.path().display()))
        .arg(format!("docker://{}/tls/app:1", reg.addr));
    registry_common::run(&mut cmd);

    let name = format!("{}/tls/app:1", reg.addr);
    let s = Strata::new();
    let out = s.run(&["pull", &name]).fails();
    assert!(out.stderr.contains("--cacert"), "{out}");

    let ca = tls.ca.to_string_lossy().into_owned();
    let out = s.run(&["--cacert", &ca, "pull", &name]).ok();
    assert!(
        out.stdout
            .contains(&format!("Digest: {}", img.manifest_digest)),
        "{out}"
    );

    let mut s2 = Strata::new();
    s2.env.push(("SSL_CERT_FILE".into(), ca.clone()));
    s2.run(&["pull", &name]).ok();

    // --insecure-registry skips verification, like docker.
    let s3 = Strata::new();
    s3.run(&["--insecure-registry", &reg.addr, "pull", &name])
        .ok();
}
