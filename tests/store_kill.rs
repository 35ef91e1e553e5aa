//! SIGKILL `strata load` of a ~200 MB archive at several points; afterwards
//! `system verify` is clean and the images that were there before are intact,
//! and a full load still works (issue 2). No timing is asserted: the delays only
//! spread the kills over the load's phases (ingest, rename, sled, index.json).

mod util;

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use util::test_dir::TestDir;

/// Deterministic incompressible bytes (xorshift64*).
struct Noise {
    state: u64,
    left: u64,
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn big_rootfs(t: &TestDir, size: u64) -> std::path::PathBuf {
    let path = t.path("big-rootfs.tar");
    let f = std::fs::File::create(&path).unwrap();
    let mut b = tar::Builder::new(std::io::BufWriter::new(f));
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    b.append_data(
        &mut h,
        "data/noise.bin",
        Noise {
            state: 0x9e37_79b9_7f4a_7c15,
            left: size,
        },
    )
    .unwrap();
    b.into_inner().unwrap().flush().unwrap();
    path
}

fn blob_count(t: &TestDir) -> usize {
    std::fs::read_dir(t.root.join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn ingest_bytes(t: &TestDir) -> u64 {
    std::fs::read_dir(t.root.join("ingest"))
        .map(|d| {
            d.flatten()
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy)]
enum KillAt {
    After(Duration),
    IngestOver(u64),
    NewBlob,
}

#[test]
fn sigkill_during_load_leaves_a_clean_store() {
    let t = TestDir::new();
    // The archive: one ~200 MB layer, saved by strata from a scratch root.
    let scratch = t.path("scratch");
    let big = big_rootfs(&t, 200 << 20);
    t.strata_on(&scratch, &["import", big.to_str().unwrap(), "big:1"])
        .ok();
    let archive = t.path("big.tar");
    t.strata_on(
        &scratch,
        &["save", "-o", archive.to_str().unwrap(), "big:1"],
    )
    .ok();
    std::fs::remove_dir_all(&scratch).unwrap();
    std::fs::remove_file(&big).unwrap();

    // What must survive.
    let small = t.busybox_rootfs("small.tar", None);
    let prev_id = t
        .strata(&["import", small.to_str().unwrap(), "prev:1"])
        .ok()
        .stdout
        .trim()
        .to_string();

    let points = [
        KillAt::After(Duration::from_millis(0)),
        KillAt::After(Duration::from_millis(10)),
        KillAt::After(Duration::from_millis(50)),
        KillAt::IngestOver(50 << 20),
        KillAt::IngestOver(150 << 20),
        KillAt::NewBlob,
        KillAt::After(Duration::from_millis(300)),
        KillAt::After(Duration::from_millis(700)),
        KillAt::After(Duration::from_millis(1200)),
    ];
    for point in points {
        let blobs_before = blob_count(&t);
        let mut child = t
            .command(&t.root, &["load", "-i", archive.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        loop {
            let fire = match point {
                KillAt::After(d) => start.elapsed() >= d,
                KillAt::IngestOver(n) => ingest_bytes(&t) >= n,
                KillAt::NewBlob => blob_count(&t) > blobs_before,
            };
            if fire
                || child.try_wait().unwrap().is_some()
                || start.elapsed() > Duration::from_secs(120)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        eprintln!(
            "kill at {point:?}: load ended with {status:?} after {:?}",
            start.elapsed()
        );

        t.strata(&["system", "verify"]).ok().stdout_has(": ok");
        let ids = t.strata(&["images", "-q", "--no-trunc", "prev:1"]).ok();
        assert_eq!(
            ids.stdout.trim(),
            prev_id,
            "previous image lost after kill at {point:?}"
        );
        let v: serde_json::Value =
            serde_json::from_str(&t.strata(&["inspect", "prev:1"]).ok().stdout).unwrap();
        assert_eq!(v[0]["Id"], prev_id.as_str());
    }

    // A load that is left alone completes, and the store is still clean.
    t.strata(&["load", "-i", archive.to_str().unwrap()])
        .ok()
        .stdout_has("Loaded image: big:1");
    t.strata(&["system", "verify"]).ok();
    let all = t.strata(&["images"]).ok();
    assert!(
        all.stdout.contains("big") && all.stdout.contains("prev"),
        "{}",
        all.stdout
    );
}
