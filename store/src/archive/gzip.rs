//! Gzip on both cores: the input is cut into fixed 4 MiB chunks, each compressed
//! as an independent gzip member, and the members are written in order. Gzip
//! readers (Go's, Rust's MultiGzDecoder, zcat) read concatenated members as one
//! stream. Level, chunk size and the stored-chunk rule below are fixed because the
//! blob digest depends on them: the same input gives the same bytes on any machine.
//!
//! Incompressible chunks (random data, files already compressed) are stored, not
//! deflated: zlib-rs deflates them at ≈ 60 MB/s per core and makes them ≈ 5% *bigger*
//! at level 1, while a stored member costs a copy (measured on 2026-11-26, 250 MiB of
//! random bytes: 4.6 s at level 1 on one core, 0.3 s stored). Whether a chunk is stored
//! is decided from the chunk alone: three 32 KiB samples (start, middle, end) deflated
//! at the level must shrink by at least 2% (`is_incompressible`), so it is as
//! reproducible as the rest. Go's and klauspost's compressors skip such data too.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::write::GzEncoder;
use flate2::Compression;

pub const CHUNK: usize = 4 << 20;
/// Level 1: zlib-rs does ≈ 236 MB/s per core at 1 and ≈ 87 MB/s at 6 (docs/design.md §4.4);
/// level 1 keeps import/build near disk speed for a few percent more bytes.
pub const LEVEL: u32 = 1;
/// Chunks handed to the workers and not yet written out (bounds memory to about
/// `2 × IN_FLIGHT × CHUNK`).
const IN_FLIGHT: usize = 4;

/// A `Write` that gzips into `out` on worker threads (one per core, two to four).
///
/// The caller's thread cuts chunks and writes finished members to `out` in order while
/// the workers compress the next ones, so hashing around this writer (the caller's input
/// digest, `out`'s blob digest) overlaps the compression. The output does not depend on
/// the number of threads. Dropping the writer without `finish` stops the workers.
pub struct ParallelGzWriter<W: Write> {
    out: W,
    current: Vec<u8>,
    /// Started at the first full chunk: a small input is compressed inline.
    pool: Option<Pool>,
    /// The members being compressed, oldest first.
    waiting: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    members: u64,
}

type Job = (Vec<u8>, Sender<io::Result<Vec<u8>>>);

/// The compression threads, fed through one bounded queue.
struct Pool {
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn start() -> io::Result<Pool> {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 4);
        let (tx, rx) = mpsc::sync_channel::<Job>(IN_FLIGHT);
        let rx = Arc::new(Mutex::new(rx));
        let mut pool = Pool {
            jobs: Some(tx),
            workers: Vec::with_capacity(n),
        };
        for i in 0..n {
            let rx = rx.clone();
            let worker = std::thread::Builder::new()
                .name(format!("gzip-{i}"))
                .spawn(move || loop {
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((chunk, reply)) = job else { return };
                    // The writer may be gone (an error elsewhere): nothing to tell.
                    let _ = reply.send(compress(&chunk));
                })?;
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    fn submit(&self, chunk: Vec<u8>) -> io::Result<Receiver<io::Result<Vec<u8>>>> {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .as_ref()
            .expect("the queue lives as long as the pool")
            .send((chunk, tx))
            .map_err(|_| worker_gone())?;
        Ok(rx)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs.take(); // workers see the queue close and return
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker_gone() -> io::Error {
    io::Error::other("gzip worker thread panicked")
}

fn compress(chunk: &[u8]) -> io::Result<Vec<u8>> {
    let level = if is_incompressible(chunk)? { 0 } else { LEVEL };
    deflate(chunk, level)
}

impl<W: Write> ParallelGzWriter<W> {
    pub fn new(out: W) -> Self {
        ParallelGzWriter {
            out,
            current: Vec::with_capacity(CHUNK),
            pool: None,
            waiting: VecDeque::new(),
            members: 0,
        }
    }

    /// Hands a full chunk to the workers, first writing out the oldest member when
    /// `IN_FLIGHT` are waiting, then any that are already done.
    fn submit(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        if self.waiting.len() >= IN_FLIGHT {
            self.write_oldest()?;
        }
        if self.pool.is_none() {
            self.pool = Some(Pool::start()?);
        }
        let rx = self.pool.as_ref().expect("started above").submit(chunk)?;
        self.waiting.push_back(rx);
        while let Some(front) = self.waiting.front() {
            match front.try_recv() {
                Ok(member) => {
                    self.waiting.pop_front();
                    self.write_member(member?)?;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(worker_gone()),
            }
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let rx = self.waiting.pop_front().expect("a member is waiting");
        let member = rx.recv().map_err(|_| worker_gone())??;
        self.write_member(member)
    }

    fn write_member(&mut self, member: Vec<u8>) -> io::Result<()> {
        self.out.write_all(&member)?;
        self.members += 1;
        Ok(())
    }

    /// Compresses the last chunk, writes every member in order, stops the workers and
    /// returns the inner writer. An empty input gives one empty gzip member.
    pub fn finish(mut self) -> io::Result<W> {
        let last = std::mem::take(&mut self.current);
        if self.pool.is_none() {
            // Never filled a chunk: one member, compressed here.
            self.write_member(compress(&last)?)?;
        } else {
            if !last.is_empty() {
                self.submit(last)?;
            }
            while !self.waiting.is_empty() {
                self.write_oldest()?;
            }
        }
        self.pool.take();
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One gzip member of `data` at `level` (0: stored blocks).
fn deflate(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let cap = if level == 0 {
        data.len() + data.len() / 6_000 + 64
    } else {
        data.len() / 2 + 64
    };
    let mut e = GzEncoder::new(Vec::with_capacity(cap), Compression::new(level));
    e.write_all(data)?;
    e.finish()
}

/// Bytes in each of the three samples `is_incompressible` deflates.
const SAMPLE: usize = 32 << 10;

/// Whether deflating `chunk` would gain less than 2%, judged from three samples (start,
/// middle, end) deflated at `LEVEL`. Chunks too small to sample are never stored: they
/// are cheap to deflate anyway.
fn is_incompressible(chunk: &[u8]) -> io::Result<bool> {
    if chunk.len() < 4 * SAMPLE {
        return Ok(false);
    }
    let starts = [0, chunk.len() / 2 - SAMPLE / 2, chunk.len() - SAMPLE];
    let mut deflated = 0;
    for s in starts {
        let mut e = flate2::write::DeflateEncoder::new(
            Vec::with_capacity(SAMPLE + 64),
            Compression::new(LEVEL),
        );
        e.write_all(&chunk[s..s + SAMPLE])?;
        deflated += e.finish()?.len();
    }
    Ok(deflated * 100 >= 3 * SAMPLE * 98)
}

impl<W: Write> Write for ParallelGzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.current.len();
        let n = room.min(buf.len());
        self.current.extend_from_slice(&buf[..n]);
        if self.current.len() == CHUNK {
            let full = std::mem::replace(&mut self.current, Vec::with_capacity(CHUNK));
            self.submit(full)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn members_decode_to_the_input() {
        for len in [0usize, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let input: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut w = ParallelGzWriter::new(Vec::new());
            w.write_all(&input).unwrap();
            let gz = w.finish().unwrap();
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&gz[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out.len(), input.len(), "len {len}");
            assert!(out == input, "len {len}");
        }
    }

    /// xorshift bytes: incompressible.
    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn incompressible_chunks_are_stored_and_the_rest_deflated() {
        let text = b"a line of text, many times over\n".repeat(CHUNK / 32 + 1);
        let cases: [(&str, Vec<u8>, bool); 4] = [
            ("random", random(CHUNK, 1), true),
            ("text", text[..CHUNK].to_vec(), false),
            (
                "random with a text middle",
                {
                    let mut v = random(CHUNK, 2);
                    v[CHUNK / 4..3 * CHUNK / 4].copy_from_slice(&text[..CHUNK / 2]);
                    v
                },
                false,
            ),
            ("too small to sample", random(3 * SAMPLE, 3), false),
        ];
        for (name, chunk, stored) in cases {
            assert_eq!(is_incompressible(&chunk).unwrap(), stored, "{name}");
            let gz = compress(&chunk).unwrap();
            if stored {
                // Stored blocks: 5 bytes per block (zlib-rs: ≈ 32 KiB), plus header and trailer.
                assert!(gz.len() <= chunk.len() + chunk.len() / 6_000 + 64, "{name}");
            }
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&gz[..])
                .read_to_end(&mut out)
                .unwrap();
            assert!(out == chunk, "{name} must decode to its input");
        }
    }
}
