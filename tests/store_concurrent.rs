//! Four strata processes share one root at once (CI runners do): two imports and
//! two loads all succeed and `images` lists all four (issue 2). Their writes to the
//! metadata take turns (docs/design.md §2); their reads do not wait.

mod util;

use std::process::Stdio;

use util::test_dir::TestDir;

#[test]
fn four_concurrent_imports_and_loads_all_succeed() {
    let t = TestDir::new();
    let mut tars = Vec::new();
    for i in 0..4 {
        let content = format!("image {i}\n").repeat(1000 + i);
        let name = format!("rootfs{i}.tar");
        tars.push(t.busybox_rootfs(&name, Some(("etc/which", content.as_bytes()))));
    }
    // Archives for the two loads, made in scratch roots.
    let mut archives = Vec::new();
    for (i, tar) in tars.iter().enumerate().skip(2) {
        let scratch = t.path(&format!("scratch{i}"));
        t.strata_on(
            &scratch,
            &["import", tar.to_str().unwrap(), &format!("conc{i}:1")],
        )
        .ok();
        let a = t.path(&format!("conc{i}.tar"));
        t.strata_on(
            &scratch,
            &["save", "-o", a.to_str().unwrap(), &format!("conc{i}:1")],
        )
        .ok();
        archives.push(a);
    }

    for round in 0..3 {
        let root = t.path(&format!("shared{round}"));
        let mut children = Vec::new();
        for (i, tar) in tars.iter().enumerate().take(2) {
            let args = vec![
                "import".to_string(),
                tar.display().to_string(),
                format!("conc{i}:1"),
            ];
            children.push(args);
        }
        for a in &archives {
            children.push(vec!["load".into(), "-i".into(), a.display().to_string()]);
        }
        let running: Vec<_> = children
            .iter()
            .map(|args| {
                let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                let child = t
                    .command(&root, &argv)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                (args.join(" "), child)
            })
            .collect();
        for (desc, child) in running {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: `strata {desc}` failed with {:?}\nstdout:\n{}\nstderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let images = t.strata_on(&root, &["images", "--format", "json"]).ok();
        let mut repos: Vec<String> = images
            .stdout
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["Repository"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        repos.sort();
        assert_eq!(repos, ["conc0", "conc1", "conc2", "conc3"], "round {round}");
        t.strata_on(&root, &["system", "verify"]).ok();
        let index = std::fs::read_to_string(root.join("index.json")).unwrap();
        for i in 0..4 {
            assert!(
                index.contains(&format!("docker.io/library/conc{i}:1")),
                "index.json lacks conc{i}:\n{index}"
            );
        }
    }
}
