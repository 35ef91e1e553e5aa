//! `verify` running beside a prune: a blob the prune removes after verify listed
//! `blobs/sha256` and before verify read it is not a fault (issue 12).
//!
//! Two unreferenced blobs are FIFOs, so the run is ordered without timing: verify blocks
//! opening whichever FIFO it lists first, which leaves the other one later in its
//! listing; the test finds the FIFO verify waits on, prunes both, then feeds the waiting
//! one its content.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use store::gc::PruneOptions;
use store::{Digest, Store};

#[test]
fn issue_12_verify_beside_prune_reports_no_vanished_blob() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open store");
    let contents: [&[u8]; 2] = [b"unreferenced one", b"unreferenced two"];
    let fifos: Vec<(PathBuf, &[u8])> = contents
        .iter()
        .map(|c| {
            let path = store.layout().blob(&Digest::sha256_of(c));
            let made = Command::new("mkfifo")
                .arg(&path)
                .status()
                .expect("run mkfifo");
            assert!(made.success(), "mkfifo {}", path.display());
            (path, *c)
        })
        .collect();

    std::thread::scope(|s| {
        let verify = s.spawn(|| store.verify());

        // The FIFO verify is opening is the one a non-blocking writer can open.
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut writer, content) = loop {
            let open = fifos.iter().find_map(|(path, content)| {
                OpenOptions::new()
                    .write(true)
                    .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                    .open(path)
                    .ok()
                    .map(|w| (w, *content))
            });
            if let Some(found) = open {
                break found;
            }
            assert!(Instant::now() < deadline, "verify never opened a blob FIFO");
            std::thread::yield_now();
        };

        let pruned = store
            .prune(&PruneOptions::default())
            .expect("prune beside verify");
        assert_eq!(pruned.blobs_removed, 2, "{pruned:?}");

        writer.write_all(content).expect("feed the FIFO");
        drop(writer);
        let report = verify.join().expect("verify thread").expect("verify");
        assert!(
            report.faults.is_empty(),
            "false faults: {:?}",
            report.faults
        );
    });
}
