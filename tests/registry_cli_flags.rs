//! `pull -a`, `push -a` and `pull --platform` against a real `docker-registry`, with
//! docker's errors for the forms they refuse.

mod registry_common;
mod util;

use registry_common::{
    http_get, oci_layout, random_bytes, skopeo_copy, Registry, RegistryOptions, Strata,
};

/// Puts a one-layer amd64 image at `repo_tag` in the registry; returns its manifest.
fn seed(reg: &Registry, repo_tag: &str, seed: u64) -> Vec<u8> {
    let layout = tempfile::tempdir().expect("tempdir");
    let image = oci_layout(layout.path(), "t", &[random_bytes(2000, seed)]);
    skopeo_copy(
        &[],
        &format!("oci:{}:t", layout.path().display()),
        &format!("docker://{}/{repo_tag}", reg.addr),
    );
    image.manifest
}

fn registry_tags(reg: &Registry, repo: &str) -> Vec<String> {
    let (status, body) = http_get(&reg.addr, &format!("/v2/{repo}/tags/list"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let list: serde_json::Value = serde_json::from_slice(&body).expect("tag list JSON");
    let mut tags: Vec<String> = list["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t.as_str().expect("tag").to_string())
        .collect();
    tags.sort();
    tags
}

#[test]
fn pull_and_push_all_tags() {
    let reg = Registry::start(RegistryOptions::default());
    seed(&reg, "src/app:v1", 1);
    seed(&reg, "src/app:v2", 2);
    let s = Strata::new();
    let src = format!("{}/src/app", reg.addr);

    let out = s.run(&["pull", "-a", &format!("{src}:v1")]).fails();
    assert!(
        out.stderr.contains("tag can't be used with --all-tags/-a"),
        "{out}"
    );
    s.run(&["pull", "--all-tags", &src]).ok();
    let out = s
        .run(&[
            "images",
            "--format",
            "{{.Tag}}",
            "--filter",
            &format!("reference={src}"),
        ])
        .ok();
    let mut local: Vec<&str> = out.stdout.lines().collect();
    local.sort_unstable();
    assert_eq!(local, ["v1", "v2"], "{out}");

    let dst = format!("{}/dst/app", reg.addr);
    for tag in ["v1", "v2"] {
        s.run(&["tag", &format!("{src}:{tag}"), &format!("{dst}:{tag}")])
            .ok();
    }
    let out = s.run(&["push", "-a", &format!("{dst}:v1")]).fails();
    assert!(
        out.stderr.contains("tag can't be used with --all-tags/-a"),
        "{out}"
    );
    let out = s
        .run(&["push", "-a", &format!("{}/nothing/here", reg.addr)])
        .fails();
    assert!(
        out.stderr
            .contains("An image does not exist locally with the tag"),
        "{out}"
    );
    s.run(&["push", "--all-tags", &dst]).ok();
    assert_eq!(registry_tags(&reg, "dst/app"), ["v1", "v2"]);
}

#[test]
fn pull_platform_refuses_an_image_of_another_platform() {
    let reg = Registry::start(RegistryOptions::default());
    seed(&reg, "one/app:v1", 3);
    let s = Strata::new();
    let image = format!("{}/one/app:v1", reg.addr);

    let out = s
        .run(&["pull", "--platform", "linux/s390x", &image])
        .fails();
    assert_eq!(out.status, Some(1), "{out}");
    assert!(
        out.stderr.contains(
            "its platform (linux/amd64) does not match the specified platform (linux/s390x)"
        ),
        "{out}"
    );
    let out = s.run(&["images", "-q"]).ok();
    assert!(out.stdout.is_empty(), "nothing is tagged:\n{out}");

    s.run(&["pull", "--platform", "linux/amd64", &image]).ok();
    let out = s.run(&["pull", "--platform", "linux", &image]).fails();
    assert_eq!(out.status, Some(2), "{out}");
}

#[test]
fn manifest_inspect_prints_the_registry_manifest() {
    let reg = Registry::start(RegistryOptions::default());
    let manifest = seed(&reg, "m/app:v1", 4);
    let s = Strata::new();
    let out = s
        .run(&["manifest", "inspect", &format!("{}/m/app:v1", reg.addr)])
        .ok();
    assert!(
        out.stdout
            .starts_with("{\n\t\"config\": {\n\t\t\"digest\": \"sha256:"),
        "{out}"
    );
    let printed: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    let want: serde_json::Value = serde_json::from_slice(&manifest).expect("JSON");
    assert_eq!(printed, want);

    let out = s
        .run(&["manifest", "inspect", &format!("{}/m/app:nope", reg.addr)])
        .fails();
    assert_eq!(out.status, Some(1), "{out}");
    assert!(out.stderr.contains("no such manifest"), "{out}");
    let out = s.run(&["manifest", "inspect", "Bad:Ref"]).fails();
    assert_eq!(out.status, Some(2), "{out}");
}
