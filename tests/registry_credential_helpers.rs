//! Credentials kept by a `docker-credential-*` helper (`credsStore`, `credHelpers`),
//! exercised with a real helper program speaking docker's protocol. See issue 5.

mod registry_common;
mod util;

use std::os::unix::fs::PermissionsExt;

use registry_common::{
    oci_layout, random_bytes, skopeo_copy, Auth, Registry, RegistryOptions, Strata,
};

const USER: &str = "helper-user";
const PASSWORD: &str = "helper-secret-9f8e";

/// A credential helper (python3) storing one JSON file per server under `dir/creds`.
fn install_helper(dir: &std::path::Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(dir.join("creds")).expect("creds dir");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let script = format!(
        r#"#!/usr/bin/env python3
import json, os, sys, hashlib
d = {creds:?}
verb = sys.argv[1]
data = sys.stdin.read()
def path(server):
    return os.path.join(d, hashlib.sha256(server.strip().encode()).hexdigest())
if verb == "store":
    c = json.loads(data)
    open(path(c["ServerURL"]), "w").write(json.dumps(c))
elif verb == "get":
    try:
        print(open(path(data)).read())
    except FileNotFoundError:
        print("credentials not found in native keychain")
        sys.exit(1)
elif verb == "erase":
    try:
        os.remove(path(data))
    except FileNotFoundError:
        print("credentials not found in native keychain")
        sys.exit(1)
"#,
        creds = dir.join("creds").display().to_string()
    );
    let helper = bin.join("docker-credential-strata-test");
    std::fs::write(&helper, script).expect("helper script");
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn seeded_registry() -> Registry {
    let reg = Registry::start(RegistryOptions {
        auth: Auth::Basic {
            user: USER,
            password: PASSWORD,
        },
        ..Default::default()
    });
    let layout = tempfile::tempdir().expect("tempdir");
    oci_layout(layout.path(), "t", &[random_bytes(20_000, 3)]);
    skopeo_copy(
        &["--dest-creds", &format!("{USER}:{PASSWORD}")],
        &format!("oci:{}:t", layout.path().display()),
        &format!("docker://{}/h/app:1", reg.addr),
    );
    reg
}

#[test]
fn creds_store_helper_receives_login_and_serves_pulls() {
    registry_common::require("python3", "python3");
    let reg = seeded_registry();
    let mut s = Strata::new();
    let path = install_helper(s.dir.path());
    s.env.push(("PATH".into(), path));
    std::fs::create_dir_all(&s.docker_config).expect("docker config dir");
    std::fs::write(
        s.docker_config.join("config.json"),
        r#"{"credsStore": "strata-test"}"#,
    )
    .expect("config.json");

    let out = s
        .run_with_stdin(
            &["login", "-u", USER, "--password-stdin", &reg.addr],
            Some(PASSWORD),
        )
        .ok();
    assert!(
        !out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD),
        "{out}"
    );
    let config = std::fs::read_to_string(s.docker_config.join("config.json")).expect("config.json");
    assert!(
        !config.contains(PASSWORD),
        "the password landed in config.json:\n{config}"
    );
    let stored = std::fs::read_dir(s.dir.path().join("creds"))
        .expect("creds")
        .count();
    assert_eq!(stored, 1, "the helper stored nothing");

    s.run(&["pull", &format!("{}/h/app:1", reg.addr)]).ok();

    let out = s.run(&["logout", &reg.addr]).ok();
    assert!(out.stdout.contains("Removing login credentials"), "{out}");
    assert_eq!(
        std::fs::read_dir(s.dir.path().join("creds"))
            .expect("creds")
            .count(),
        0,
        "erase left the secret"
    );
    let out = s.run(&["pull", &format!("{}/h/app:1", reg.addr)]).fails();
    assert!(out.stderr.contains("unauthorized"), "{out}");
}

#[test]
fn cred_helpers_entry_is_used_for_its_registry() {
    registry_common::require("python3", "python3");
    let reg = seeded_registry();
    let mut s = Strata::new();
    let path = install_helper(s.dir.path());
    s.env.push(("PATH".into(), path.clone()));
    // Put the secret into the helper directly, as another tool would have.
    let mut child = std::process::Command::new("docker-credential-strata-test")
        .arg("store")
        .env("PATH", &path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("running the helper");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            serde_json::json!({"ServerURL": reg.addr, "Username": USER, "Secret": PASSWORD})
                .to_string()
                .as_bytes(),
        )
        .expect("write");
    assert!(child.wait().expect("wait").success());
    std::fs::create_dir_all(&s.docker_config).expect("docker config dir");
    std::fs::write(
        s.docker_config.join("config.json"),
        serde_json::json!({"credHelpers": {reg.addr.clone(): "strata-test"}}).to_string(),
    )
    .expect("config.json");
    s.run(&["pull", &format!("{}/h/app:1", reg.addr)]).ok();
}
