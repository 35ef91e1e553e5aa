//! Gzip on worker threads: the input is cut into fixed 4 MiB chunks, each compressed
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
use std::mem::MaybeUninit;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress};

pub const CHUNK: usize = 4 << 20;
/// Level 1: zlib-rs does ≈ 236 MB/s per core at 1 and ≈ 87 MB/s at 6 (docs/design.md §4.4);
/// level 1 keeps import/build near disk speed for a few percent more bytes.
pub const LEVEL: u32 = 1;
/// Chunks handed to the workers and not yet written out (bounds memory to about
/// `2 × IN_FLIGHT × CHUNK`).
const IN_FLIGHT: usize = 4;

/// Where [`ParallelGzWriter`] puts the finished members, in order, each whole and owned
/// (a sink that hands them on keeps them without a copy).
pub trait MemberSink {
    fn member(&mut self, member: Member) -> io::Result<()>;
}

/// A [`MemberSink`] writing each member to a `Write`.
pub struct WriteMembers<W>(pub W);

impl<W: Write> MemberSink for WriteMembers<W> {
    fn member(&mut self, member: Member) -> io::Result<()> {
        self.0.write_all(&member)
    }
}

/// One finished gzip member. Dropping it, wherever that happens (after the upload sent
/// it, say), gives its buffer back to the writer's workers for a later member: a long
/// input touches a few members' worth of fresh memory, not its whole size.
pub struct Member {
    bytes: Vec<u8>,
    pool: MemberPool,
}

impl std::ops::Deref for Member {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Member {
    /// The CRC-32 of the member's uncompressed bytes, from its trailer.
    pub fn crc32(&self) -> u32 {
        self.trailer_word(8)
    }

    /// The length of the member's uncompressed bytes (`ISIZE`: modulo 2^32, exact for a
    /// `CHUNK`), from its trailer.
    pub fn uncompressed_len(&self) -> u32 {
        self.trailer_word(4)
    }

    /// The little-endian word `from_end` bytes before the member's end.
    fn trailer_word(&self, from_end: usize) -> u32 {
        let at = self.bytes.len() - from_end;
        u32::from_le_bytes(
            self.bytes[at..at + 4]
                .try_into()
                .expect("a member ends with an 8-byte trailer"),
        )
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.bytes));
    }
}

/// Member buffers a [`MemberPool`] keeps at most (a push queues up to 16 members).
const KEPT_MEMBERS: usize = 32;

/// Member buffers given back. No more are ever made than are out at once (being made,
/// waiting to be written, queued for an upload), so keeping them costs no more memory
/// than the busiest moment did; `KEPT_MEMBERS` bounds it anyway.
#[derive(Clone, Default)]
struct MemberPool(Arc<Mutex<Vec<Vec<u8>>>>);

impl MemberPool {
    /// An empty buffer with room for `capacity` bytes.
    fn take(&self, capacity: usize) -> Vec<u8> {
        let mut buf = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default();
        buf.clear();
        buf.reserve(capacity);
        buf
    }

    fn put(&self, buf: Vec<u8>) {
        let mut free = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if buf.capacity() > 0 && free.len() < KEPT_MEMBERS {
            free.push(buf);
        }
    }

    fn member(&self, bytes: Vec<u8>) -> Member {
        Member {
            bytes,
            pool: self.clone(),
        }
    }
}

/// A `Write` that gzips into `out` on worker threads (as many as it needs, up to one per
/// core, two to four: see `Pool`).
///
/// The caller's thread cuts chunks and hands finished members to `out` in order while
/// the workers compress the next ones, so hashing around this writer (the caller's input
/// digest, `out`'s blob digest) overlaps the compression. The output does not depend on
/// the number of threads. Dropping the writer without `finish` stops the workers.
///
/// Besides `Write`, a caller that reads its input itself can fill whole chunks in place
/// ([`ParallelGzWriter::chunk_buffer`], [`ParallelGzWriter::write_chunk`]): the same
/// output without copying the input once more. Chunk buffers are reused once their
/// member is out, so a long input touches a few buffers' worth of fresh memory.
pub struct ParallelGzWriter<S: MemberSink> {
    out: S,
    current: Vec<u8>,
    /// Started at the first full chunk: a small input is compressed inline.
    pool: Option<Pool>,
    /// The members being compressed, oldest first.
    waiting: VecDeque<Receiver<io::Result<Compressed>>>,
    /// Chunk buffers whose member is out, for the next chunks.
    free: Vec<Vec<u8>>,
    /// Member buffers given back, shared with the workers.
    member_pool: MemberPool,
    members: u64,
    /// Whether the last member written had to be waited for (true before the first).
    waited: bool,
}

/// A finished member and the chunk buffer it was made from.
type Compressed = (Member, Vec<u8>);
type Job = (Vec<u8>, Sender<io::Result<Compressed>>);

/// The compression threads, fed through one bounded queue. It starts with one thread
/// and gets another, up to one per core (two to four), when the writer has had to wait
/// for compression at two members in a row: compression is then what holds the writer
/// up (a single wait is as likely a thread the kernel set aside for a moment). While the
/// writer's own work (hashing, writing, an upload it feeds) is the slower side, one
/// thread keeps up and the other cores stay free for whoever needs them: on a machine
/// that also runs the registry a push goes to, the registry (docs/design.md §4.4).
struct Pool {
    jobs: Option<SyncSender<Job>>,
    queue: Arc<Mutex<Receiver<Job>>>,
    member_pool: MemberPool,
    workers: Vec<JoinHandle<()>>,
    most: usize,
}

impl Pool {
    fn start(member_pool: &MemberPool) -> io::Result<Pool> {
        let most = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 4);
        let (tx, rx) = mpsc::sync_channel::<Job>(IN_FLIGHT);
        let mut pool = Pool {
            jobs: Some(tx),
            queue: Arc::new(Mutex::new(rx)),
            member_pool: member_pool.clone(),
            workers: Vec::with_capacity(most),
            most,
        };
        pool.grow()?;
        Ok(pool)
    }

    /// One more compression thread, unless there are `most` already.
    fn grow(&mut self) -> io::Result<()> {
        if self.workers.len() >= self.most {
            return Ok(());
        }
        let rx = self.queue.clone();
        let member_pool = self.member_pool.clone();
        let worker = std::thread::Builder::new()
            .name(format!("gzip-{}", self.workers.len()))
            .spawn(move || {
                let mut deflater = Deflater::new(member_pool);
                loop {
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((chunk, reply)) = job else { return };
                    let member = deflater.member(&chunk).map(|m| (m, chunk));
                    // The writer may be gone (an error elsewhere): nothing to tell.
                    let _ = reply.send(member);
                }
            })?;
        self.workers.push(worker);
        Ok(())
    }

    fn submit(&self, chunk: Vec<u8>) -> io::Result<Receiver<io::Result<Compressed>>> {
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

impl<S: MemberSink> ParallelGzWriter<S> {
    pub fn new(out: S) -> Self {
        ParallelGzWriter {
            out,
            current: Vec::new(),
            pool: None,
            waiting: VecDeque::new(),
            free: Vec::new(),
            member_pool: MemberPool::default(),
            members: 0,
            // The first wait counts as the second: the workers are already a whole
            // `IN_FLIGHT` of chunks behind the writer's reading.
            waited: true,
        }
    }

    /// A buffer of `CHUNK` bytes to fill with the next chunk and hand to
    /// [`ParallelGzWriter::write_chunk`] (its content is left over from earlier chunks).
    pub fn chunk_buffer(&mut self) -> Vec<u8> {
        let mut buf = self.free.pop().unwrap_or_default();
        buf.resize(CHUNK, 0);
        buf
    }

    /// The next `chunk` of the input, whole: `CHUNK` bytes, or fewer for the last one
    /// (then only `finish` may follow). Not to be mixed with `Write` in one stream.
    pub fn write_chunk(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        debug_assert!(self.current.is_empty() && chunk.len() <= CHUNK);
        if chunk.len() == CHUNK {
            self.submit(chunk)
        } else {
            self.current = chunk;
            Ok(())
        }
    }

    /// Hands a full chunk to the workers, first writing out the oldest member when
    /// `IN_FLIGHT` are waiting, then any that are already done.
    fn submit(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        if self.waiting.len() >= IN_FLIGHT {
            self.write_oldest(true)?;
        }
        if self.pool.is_none() {
            self.pool = Some(Pool::start(&self.member_pool)?);
        }
        let rx = self.pool.as_ref().expect("started above").submit(chunk)?;
        self.waiting.push_back(rx);
        while let Some(front) = self.waiting.front() {
            match front.try_recv() {
                Ok(done) => {
                    self.waiting.pop_front();
                    self.write_member(done?)?;
                    self.waited = false;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(worker_gone()),
            }
        }
        Ok(())
    }

    /// Waits for the oldest member and writes it. The second wait in a row adds a
    /// compression thread, if `may_grow` (see `Pool`).
    fn write_oldest(&mut self, may_grow: bool) -> io::Result<()> {
        let rx = self.waiting.pop_front().expect("a member is waiting");
        let done = match rx.try_recv() {
            Ok(done) => {
                self.waited = false;
                done
            }
            Err(TryRecvError::Empty) => {
                if self.waited && may_grow {
                    if let Some(pool) = self.pool.as_mut() {
                        pool.grow()?;
                    }
                }
                self.waited = true;
                rx.recv().map_err(|_| worker_gone())?
            }
            Err(TryRecvError::Disconnected) => return Err(worker_gone()),
        };
        self.write_member(done?)
    }

    fn write_member(&mut self, (member, chunk): Compressed) -> io::Result<()> {
        if chunk.capacity() >= CHUNK && self.free.len() < IN_FLIGHT + 2 {
            self.free.push(chunk);
        }
        self.out.member(member)?;
        self.members += 1;
        Ok(())
    }

    /// Compresses the last chunk, writes every member in order, stops the workers and
    /// returns the sink. An empty input gives one empty gzip member.
    pub fn finish(mut self) -> io::Result<S> {
        let last = std::mem::take(&mut self.current);
        if self.pool.is_none() {
            // Never filled a chunk: one member, compressed here.
            let member = Deflater::new(self.member_pool.clone()).member(&last)?;
            self.write_member((member, last))?;
        } else {
            if !last.is_empty() {
                self.submit(last)?;
            }
            while !self.waiting.is_empty() {
                self.write_oldest(false)?;
            }
        }
        self.pool.take();
        Ok(self.out)
    }
}

/// Output window of each deflate call: what flate2's `write::GzEncoder` and
/// `write::DeflateEncoder` give zlib (their 32 KiB buffer). Stored blocks are cut by
/// it, so it is part of the format: `Deflater` feeds zlib exactly as those writers do
/// (all remaining input, this much output room, then `Finish` until nothing comes) and
/// writes straight into the member instead of through their buffer.
const WINDOW: usize = 32 << 10;

/// The deflate streams of one thread, reset for each chunk or sample.
struct Deflater {
    /// Raw deflate at `LEVEL`, for members and for the samples of `is_incompressible`.
    deflate: Compress,
    /// Raw deflate at level 0: stored blocks.
    store: Compress,
    sample: Vec<u8>,
    pool: MemberPool,
}

impl Deflater {
    fn new(pool: MemberPool) -> Deflater {
        Deflater {
            deflate: Compress::new(Compression::new(LEVEL), false),
            store: Compress::new(Compression::new(0), false),
            sample: Vec::with_capacity(SAMPLE + WINDOW),
            pool,
        }
    }

    /// The gzip member of one chunk: stored when `is_incompressible`, else deflated.
    fn member(&mut self, chunk: &[u8]) -> io::Result<Member> {
        let stored = self.is_incompressible(chunk)?;
        let level = if stored { 0 } else { LEVEL };
        let buf = self.pool.take(member_capacity(chunk.len(), level));
        let bytes = if !stored {
            gzip_member(&mut self.deflate, chunk, level, buf)?
        } else if let Some(blocks) = self.stored_blocks(chunk.len())? {
            stored_member(chunk, &blocks, buf)
        } else {
            gzip_member(&mut self.store, chunk, 0, buf)?
        };
        Ok(self.pool.member(bytes))
    }

    /// The stored blocks zlib cuts `len` bytes into at level 0 (see `StoredBlocks`);
    /// `None` if zlib's output is not what `StoredBlocks::parse` expects (then the member
    /// is left to zlib). The cut of a whole `CHUNK`, the length of all members but a
    /// blob's last, is made once per process, not once per thread or blob.
    fn stored_blocks(&mut self, len: usize) -> io::Result<Option<Arc<StoredBlocks>>> {
        static WHOLE_CHUNK: OnceLock<Option<Arc<StoredBlocks>>> = OnceLock::new();
        if let (CHUNK, Some(blocks)) = (len, WHOLE_CHUNK.get()) {
            return Ok(blocks.clone());
        }
        let mut raw = Vec::new();
        deflate_raw(&mut self.store, &vec![0; len], &mut raw)?;
        let blocks = StoredBlocks::parse(&raw, len).map(Arc::new);
        if len == CHUNK {
            let _ = WHOLE_CHUNK.set(blocks.clone());
        }
        Ok(blocks)
    }

    /// Whether deflating `chunk` would gain less than 2%, judged from three samples
    /// (start, middle, end) deflated at `LEVEL`. Chunks too small to sample are never
    /// stored: they are cheap to deflate anyway.
    fn is_incompressible(&mut self, chunk: &[u8]) -> io::Result<bool> {
        if chunk.len() < 4 * SAMPLE {
            return Ok(false);
        }
        let starts = [0, chunk.len() / 2 - SAMPLE / 2, chunk.len() - SAMPLE];
        let mut deflated = 0;
        for s in starts {
            self.sample.clear();
            deflate_raw(&mut self.deflate, &chunk[s..s + SAMPLE], &mut self.sample)?;
            deflated += self.sample.len();
        }
        Ok(deflated * 100 >= 3 * SAMPLE * 98)
    }
}

/// Room for the member of `len` bytes at `level` without growing on the way: header,
/// stored blocks (5 bytes per ≈ 32 KiB) or a generous guess at deflate, one `WINDOW` of
/// slack, trailer.
fn member_capacity(len: usize, level: u32) -> usize {
    let body = if level == 0 {
        len + len / 6_000 + 64
    } else {
        len / 2 + 64
    };
    10 + body + WINDOW + 8
}

/// One gzip member of `data` at `level` (0: stored blocks), byte for byte what flate2's
/// `GzEncoder` with the default header writes: mtime 0, no name, OS 255. Written into
/// `out` (emptied first).
fn gzip_member(c: &mut Compress, data: &[u8], level: u32, mut out: Vec<u8>) -> io::Result<Vec<u8>> {
    start_member(&mut out, data.len(), level);
    deflate_raw(c, data, &mut out)?;
    end_member(&mut out, data);
    Ok(out)
}

/// Empties `out`, makes room for the member of `len` bytes at `level` and writes its
/// gzip header.
fn start_member(out: &mut Vec<u8>, len: usize, level: u32) {
    out.clear();
    out.reserve(member_capacity(len, level));
    // The extra flags say "fastest" for levels up to 1, as flate2 writes them.
    let xfl = if level >= 9 {
        2
    } else if level <= 1 {
        4
    } else {
        0
    };
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]);
}

/// Appends the gzip trailer of a member of `data`: its CRC-32 and length.
fn end_member(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&zlib_rs::crc32::crc32(0, data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
}

/// How zlib cuts an input of `len` bytes into stored blocks at level 0, fed as
/// `deflate_raw` feeds it. The cut depends on the length and the feeding, never on the
/// bytes (zlib's `deflate_stored` looks only at counts), so it is read once from zlib's
/// output for zeros of that length. A stored member written from it (`stored_member`)
/// copies the chunk once; zlib copies it three times (into its window, its pending
/// buffer, the output).
struct StoredBlocks {
    len: usize,
    /// Each block's length, in order; the last block is the final one.
    blocks: Vec<u16>,
}

impl StoredBlocks {
    /// The blocks of `raw`, zlib's raw deflate stream of `len` bytes, if it is stored
    /// blocks only, byte-aligned, with one final block at its end, holding `len` bytes.
    fn parse(raw: &[u8], len: usize) -> Option<StoredBlocks> {
        let mut blocks = Vec::new();
        let (mut at, mut total) = (0, 0);
        loop {
            let header = raw.get(at..at + 5)?;
            // BFINAL in bit 0, BTYPE 00 (stored) in bits 1–2, padding to the byte.
            let last = match header[0] {
                0 => false,
                1 => true,
                _ => return None,
            };
            let n = u16::from_le_bytes([header[1], header[2]]);
            if u16::from_le_bytes([header[3], header[4]]) != !n {
                return None;
            }
            blocks.push(n);
            at += 5 + usize::from(n);
            total += usize::from(n);
            if last {
                break;
            }
        }
        (at == raw.len() && total == len).then_some(StoredBlocks { len, blocks })
    }
}

/// The gzip member of `data` in stored blocks cut as `blocks` says (made for
/// `data.len()`): the bytes `gzip_member` at level 0 writes, with one copy of `data`.
fn stored_member(data: &[u8], blocks: &StoredBlocks, mut out: Vec<u8>) -> Vec<u8> {
    debug_assert_eq!(data.len(), blocks.len);
    start_member(&mut out, data.len(), 0);
    let mut rest = data;
    for (i, &n) in blocks.blocks.iter().enumerate() {
        let last = i + 1 == blocks.blocks.len();
        let (block, after) = rest.split_at(usize::from(n));
        out.push(u8::from(last));
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(!n).to_le_bytes());
        out.extend_from_slice(block);
        rest = after;
    }
    end_member(&mut out, data);
    out
}

/// Appends the raw deflate stream of `data` to `out`, feeding `c` (reset first) as the
/// flate2 writers do (see `WINDOW`).
fn deflate_raw(c: &mut Compress, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    c.reset();
    let mut input = data;
    while !input.is_empty() {
        let (used, _) = deflate_step(c, input, out, FlushCompress::None)?;
        input = &input[used..];
    }
    while deflate_step(c, &[], out, FlushCompress::Finish)?.1 > 0 {}
    Ok(())
}

/// One call of `c` with `WINDOW` bytes of output room at the end of `out`; returns the
/// input bytes used and the output bytes added.
fn deflate_step(
    c: &mut Compress,
    input: &[u8],
    out: &mut Vec<u8>,
    flush: FlushCompress,
) -> io::Result<(usize, usize)> {
    out.reserve(WINDOW);
    let (in_before, out_before) = (c.total_in(), c.total_out());
    let room: &mut [MaybeUninit<u8>] = &mut out.spare_capacity_mut()[..WINDOW];
    c.compress_uninit(input, room, flush)
        .map_err(io::Error::other)?;
    let added = (c.total_out() - out_before) as usize;
    // SAFETY: zlib wrote (initialized) exactly `added` bytes at the start of `room`, the
    // spare capacity right after `out`'s length, and `added <= WINDOW` fits in it.
    unsafe { out.set_len(out.len() + added) };
    Ok(((c.total_in() - in_before) as usize, added))
}

/// Bytes in each of the three samples `is_incompressible` deflates.
const SAMPLE: usize = 32 << 10;

impl<S: MemberSink> Write for ParallelGzWriter<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.current.capacity() < CHUNK {
            let mut spare = self.free.pop().unwrap_or_default();
            spare.clear();
            spare.reserve_exact(CHUNK);
            spare.extend_from_slice(&self.current);
            self.current = spare;
        }
        let room = CHUNK - self.current.len();
        let n = room.min(buf.len());
        self.current.extend_from_slice(&buf[..n]);
        if self.current.len() == CHUNK {
            let full = std::mem::take(&mut self.current);
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
            let mut w = ParallelGzWriter::new(WriteMembers(Vec::new()));
            w.write_all(&input).unwrap();
            let gz = w.finish().unwrap().0;
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
            let mut deflater = Deflater::new(MemberPool::default());
            assert_eq!(
                deflater.is_incompressible(&chunk).unwrap(),
                stored,
                "{name}"
            );
            let gz = deflater.member(&chunk).unwrap();
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

    /// What flate2's `GzEncoder` (default header) writes for `data` at `level`.
    fn gz_encoder(data: &[u8], level: u32) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// The blob digest of a gzip form depends on every byte: a member must be what
    /// `GzEncoder` writes, at both levels, for every kind and size of chunk, also from
    /// a `Deflater` that made other members before.
    #[test]
    fn members_are_the_bytes_gz_encoder_writes() {
        let text = b"the quick brown fox jumps over the lazy dog 0123\n".repeat(CHUNK / 48 + 1);
        let mut mixed = random(CHUNK, 9);
        mixed[CHUNK / 3..CHUNK / 2].copy_from_slice(&text[..CHUNK / 2 - CHUNK / 3]);
        let inputs: [(&str, &[u8]); 8] = [
            ("empty", &[]),
            ("one byte", b"x"),
            ("small text", &text[..100_000]),
            ("text chunk", &text[..CHUNK]),
            ("random chunk", &random(CHUNK, 4)),
            ("random, one short of a chunk", &random(CHUNK - 1, 5)),
            ("random 1 MiB + 1", &random((1 << 20) + 1, 6)),
            ("mixed chunk", &mixed),
        ];
        let mut deflater = Deflater::new(MemberPool::default());
        for (name, data) in inputs {
            for level in [0, LEVEL] {
                let c = if level == 0 {
                    &mut deflater.store
                } else {
                    &mut deflater.deflate
                };
                let ours = gzip_member(c, data, level, Vec::new()).unwrap();
                assert!(ours == gz_encoder(data, level), "{name} at level {level}");
            }
            let want = gz_encoder(data, u32::from(!deflater.is_incompressible(data).unwrap()));
            assert!(*deflater.member(data).unwrap() == want[..], "{name}");
        }
    }

    /// A stored member written from zlib's block cut is zlib's member, for any length a
    /// chunk can have and any bytes (the cut is read from zeros, used for random bytes).
    #[test]
    fn stored_members_cut_as_zlib_cuts_are_zlibs_bytes() {
        let mut deflater = Deflater::new(MemberPool::default());
        for len in [
            4 * SAMPLE,
            4 * SAMPLE + 1,
            65_535,
            65_536,
            65_537,
            (1 << 20) + 3,
            CHUNK - 1,
            CHUNK,
        ] {
            let data = random(len, len as u64);
            let blocks = deflater
                .stored_blocks(len)
                .unwrap()
                .unwrap_or_else(|| panic!("zlib's stored output for {len} bytes did not parse"));
            let ours = stored_member(&data, &blocks, Vec::new());
            assert!(ours == gz_encoder(&data, 0), "len {len}");
        }
    }

    /// Whole chunks read in place give the same stream as `Write`, for inputs that end
    /// on, before and after a chunk boundary (buffers are reused on the way).
    #[test]
    fn chunks_in_place_give_the_written_stream() {
        let text = b"a line of text, many times over\n".repeat(CHUNK / 32 + 1);
        for len in [0, 17, CHUNK, 2 * CHUNK + 5, 9 * CHUNK] {
            let input: Vec<u8> = random(len, 7)
                .iter()
                .zip(text.iter().cycle())
                .enumerate()
                .map(|(i, (r, t))| {
                    if (i / CHUNK).is_multiple_of(2) {
                        *r
                    } else {
                        *t
                    }
                })
                .collect();
            let mut w = ParallelGzWriter::new(WriteMembers(Vec::new()));
            w.write_all(&input).unwrap();
            let written = w.finish().unwrap().0;

            let mut w = ParallelGzWriter::new(WriteMembers(Vec::new()));
            for piece in input.chunks(CHUNK) {
                let mut buf = w.chunk_buffer();
                assert_eq!(buf.len(), CHUNK);
                buf.truncate(piece.len());
                buf.copy_from_slice(piece);
                w.write_chunk(buf).unwrap();
            }
            let in_place = w.finish().unwrap().0;
            assert!(in_place == written, "len {len}");
        }
    }
}
