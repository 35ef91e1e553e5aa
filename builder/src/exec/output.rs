//! A step's combined stdout/stderr on its way to the progress output: split into lines,
//! clipped as BuildKit clips a step's log, and its tail kept for the error message.
//!
//! BuildKit passes on the first 2 MiB of a step's output, then one line
//! `[output clipped, log limit 2MiB reached]` and nothing more (util/progress/logs). Memory
//! stays bounded whatever the step prints: the unfinished line is never longer than the
//! limit, and after the clip the rest is read (so the step never blocks on a full pipe)
//! and dropped, except for the tail.

/// Bytes of a step's output passed on before it is clipped (BuildKit's default).
pub const LOG_LIMIT_BYTES: usize = 2 * 1024 * 1024;

/// Bytes of combined stdout/stderr kept for the error message of a failed step.
pub const OUTPUT_TAIL_BYTES: usize = 4096;

/// BuildKit's note (its `%#g` of `units.Bytes`: `2MiB`, `512KiB`).
pub fn clip_note(limit: usize) -> String {
    let size = match limit {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => format!("{n}B"),
    };
    format!("[output clipped, log limit {size} reached]")
}

/// Feed it the chunks read from the step's pipe; it calls `on_line` per line.
pub(super) struct OutputLog {
    limit: usize,
    /// Bytes taken into lines so far (newlines included).
    taken: usize,
    /// The current unfinished line.
    pending: Vec<u8>,
    tail: Vec<u8>,
    is_clipped: bool,
}

impl OutputLog {
    pub(super) fn new(limit: usize) -> OutputLog {
        OutputLog {
            limit,
            taken: 0,
            pending: Vec::new(),
            tail: Vec::new(),
            is_clipped: false,
        }
    }

    pub(super) fn push(&mut self, chunk: &[u8], on_line: &mut dyn FnMut(&[u8])) {
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > 2 * OUTPUT_TAIL_BYTES {
            self.tail.drain(..self.tail.len() - OUTPUT_TAIL_BYTES);
        }
        if self.is_clipped {
            return;
        }
        let take = chunk.len().min(self.limit - self.taken);
        self.taken += take;
        let mut rest = &chunk[..take];
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            if self.pending.is_empty() {
                on_line(&rest[..pos]);
            } else {
                self.pending.extend_from_slice(&rest[..pos]);
                on_line(&self.pending);
                self.pending.clear();
            }
            rest = &rest[pos + 1..];
        }
        self.pending.extend_from_slice(rest);
        if take < chunk.len() {
            if !self.pending.is_empty() {
                on_line(&self.pending);
            }
            self.pending = Vec::new();
            on_line(clip_note(self.limit).as_bytes());
            self.is_clipped = true;
        }
    }

    /// Pass on a last unterminated line; return the last [`OUTPUT_TAIL_BYTES`].
    pub(super) fn finish(mut self, on_line: &mut dyn FnMut(&[u8])) -> Vec<u8> {
        if !self.pending.is_empty() {
            on_line(&self.pending);
        }
        if self.tail.len() > OUTPUT_TAIL_BYTES {
            self.tail.drain(..self.tail.len() - OUTPUT_TAIL_BYTES);
        }
        self.tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(limit: usize, chunks: &[&[u8]]) -> (Vec<String>, Vec<u8>) {
        let mut out = Vec::new();
        let mut log = OutputLog::new(limit);
        let mut on_line = |l: &[u8]| out.push(String::from_utf8_lossy(l).into_owned());
        for c in chunks {
            log.push(c, &mut on_line);
        }
        let tail = log.finish(&mut on_line);
        (out, tail)
    }

    #[test]
    fn lines_are_split_across_chunks_and_clipped_at_the_limit() {
        type Case = (usize, &'static [&'static [u8]], &'static [&'static str]);
        let cases: [Case; 5] = [
            (100, &[b"a\nb", b"c\n", b"d"], &["a", "bc", "d"]),
            (100, &[b"\n\n"], &["", ""]),
            (
                4,
                &[b"ab\ncdef\ngh"],
                &["ab", "c", "[output clipped, log limit 4B reached]"],
            ),
            (
                3,
                &[b"ab\n", b"x\n"],
                &["ab", "[output clipped, log limit 3B reached]"],
            ),
            (3, &[b"ab\n"], &["ab"]),
        ];
        for (limit, chunks, want) in cases {
            assert_eq!(lines(limit, chunks).0, want, "limit {limit}, {chunks:?}");
        }
    }

    #[test]
    fn the_tail_keeps_what_was_clipped() {
        let (_, tail) = lines(2, &[b"abcdef\n", b"end\n"]);
        assert_eq!(tail, b"abcdef\nend\n");
    }

    #[test]
    fn clip_note_reads_like_buildkits() {
        assert_eq!(
            clip_note(LOG_LIMIT_BYTES),
            "[output clipped, log limit 2MiB reached]"
        );
        assert_eq!(
            clip_note(512 * 1024),
            "[output clipped, log limit 512KiB reached]"
        );
    }
}
