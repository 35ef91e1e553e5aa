//! A sha256 sink that hashes on a thread of its own: the writer (the differ, reading files
//! out of the page cache) fills 1 MiB chunks and hands each over, so reading and hashing a
//! layer that is only hashed (an unwritten layer, docs/design.md §4.8) overlap on two cores
//! instead of taking turns on one. Three chunks go round: one being filled, at most two
//! waiting for or in the hasher.

use std::io::{self, Write};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use sha2::{Digest as _, Sha256};
use store::Digest;

const CHUNK: usize = 1 << 20;

pub struct HashThread {
    chunk: Vec<u8>,
    full: Option<SyncSender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    hasher: Option<JoinHandle<(Digest, u64)>>,
}

fn hasher_gone() -> io::Error {
    io::Error::other("the hashing thread stopped")
}

impl HashThread {
    pub fn new() -> io::Result<HashThread> {
        let (full_tx, full_rx) = sync_channel::<Vec<u8>>(2);
        let (empty_tx, empty_rx) = channel::<Vec<u8>>();
        for _ in 0..2 {
            // Cannot fail: the receiver is alive.
            let _ = empty_tx.send(Vec::with_capacity(CHUNK));
        }
        let hasher = std::thread::Builder::new()
            .name("layer-hash".into())
            .spawn(move || {
                let mut h = Sha256::new();
                let mut n = 0u64;
                for mut chunk in full_rx {
                    h.update(&chunk);
                    n += chunk.len() as u64;
                    chunk.clear();
                    // The writer may be gone (finished or failed): nothing to return to.
                    let _ = empty_tx.send(chunk);
                }
                (Digest::from_sha256(h.finalize().into()), n)
            })?;
        Ok(HashThread {
            chunk: Vec::with_capacity(CHUNK),
            full: Some(full_tx),
            empty: empty_rx,
            hasher: Some(hasher),
        })
    }

    fn hand_over(&mut self) -> io::Result<()> {
        let next = self.empty.recv().map_err(|_| hasher_gone())?;
        let full = std::mem::replace(&mut self.chunk, next);
        match &self.full {
            Some(tx) => tx.send(full).map_err(|_| hasher_gone()),
            None => Err(hasher_gone()),
        }
    }

    /// The digest and size of everything written.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        if !self.chunk.is_empty() {
            self.hand_over()?;
        }
        drop(self.full.take());
        self.hasher
            .take()
            .ok_or_else(hasher_gone)?
            .join()
            .map_err(|_| hasher_gone())
    }
}

impl Write for HashThread {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&data[..n]);
        if self.chunk.len() == CHUNK {
            self.hand_over()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for HashThread {
    fn drop(&mut self) {
        // Closing the channel ends the thread; join so that no thread outlives the writer.
        drop(self.full.take());
        if let Some(h) = self.hasher.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_the_digest_of_what_was_written_in_any_pieces() {
        let data: Vec<u8> = (0..3 * CHUNK + 12345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut w = HashThread::new().expect("thread");
        for piece in data.chunks(100_003) {
            w.write_all(piece).expect("write");
        }
        assert_eq!(
            w.finish().expect("finish"),
            (Digest::sha256_of(&data), data.len() as u64)
        );
        let empty = HashThread::new().expect("thread").finish().expect("finish");
        assert_eq!(empty, (Digest::sha256_of(b""), 0));
    }
}
