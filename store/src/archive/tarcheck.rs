//! A streaming check that bytes form a well-framed tar archive that extraction will take:
//! every header's checksum is right, the stream does not end inside an entry, and every
//! entry passes [`check_entry`] (no absolute or `..` names, no escaping links, no whiteout
//! of `.` or `..`), names taken from GNU long-name and PAX records as the tar crate takes
//! them. It sees bytes as they pass (import hashes, checks and compresses in one pass).

use crate::extract::check_entry;
use crate::unsafe_entry::UnsafeReason;

/// GNU long names and PAX headers bigger than this are refused (tar's own limit is 1 MiB
/// for PAX extensions in practice; no real name comes near it).
const MAX_META: u64 = 1 << 20;

/// Why a stream is not a whole tar archive; `at` is the header's byte offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TarError {
    #[error("bad header checksum field at byte {0}")]
    ChecksumField(u64),
    #[error("header checksum mismatch at byte {0}")]
    ChecksumMismatch(u64),
    #[error("bad entry size at byte {0}")]
    Size(u64),
    #[error("{size}-byte name record at byte {at}")]
    NameRecord { size: u64, at: u64 },
    #[error("truncated: the stream ends inside an entry at byte {0}")]
    Truncated(u64),
    #[error("empty input")]
    Empty,
}

/// Feeds on the raw tar stream; `finish` says whether it was a whole archive.
#[derive(Debug, Default)]
pub struct TarCheck {
    header: Vec<u8>,
    /// Data bytes (with padding) left in the current entry.
    skip: u64,
    entries: u64,
    ended: bool,
    offset: u64,
    error: Option<TarError>,
    /// The data of the current GNU long-name (`L`), long-link (`K`) or PAX (`x`) entry.
    meta: Option<(u8, Vec<u8>)>,
    /// Data bytes of `meta` still to come (the rest of `skip` is padding).
    meta_left: u64,
    long_name: Option<String>,
    long_link: Option<String>,
    /// The first entry that could not be extracted safely, and why.
    unsafe_entry: Option<(String, UnsafeReason)>,
}

impl TarCheck {
    pub fn feed(&mut self, mut buf: &[u8]) {
        while !buf.is_empty() && self.error.is_none() {
            if self.ended {
                // After the end marker anything goes (zero padding to the record size).
                self.offset += buf.len() as u64;
                return;
            }
            if self.skip > 0 {
                let n = (self.skip.min(buf.len() as u64)) as usize;
                if self.meta_left > 0 {
                    let m = (self.meta_left.min(n as u64)) as usize;
                    if let Some((_, data)) = &mut self.meta {
                        data.extend_from_slice(&buf[..m]);
                    }
                    self.meta_left -= m as u64;
                    if self.meta_left == 0 {
                        self.end_meta();
                    }
                }
                self.skip -= n as u64;
                self.offset += n as u64;
                buf = &buf[n..];
                continue;
            }
            let need = 512 - self.header.len();
            let n = need.min(buf.len());
            self.header.extend_from_slice(&buf[..n]);
            self.offset += n as u64;
            buf = &buf[n..];
            if self.header.len() == 512 {
                let h = std::mem::take(&mut self.header);
                self.on_header(&h);
            }
        }
    }

    fn on_header(&mut self, h: &[u8]) {
        if h.iter().all(|&b| b == 0) {
            self.ended = true;
            return;
        }
        let at = self.offset - 512;
        let stored = match parse_octal(&h[148..156]) {
            Some(v) => v,
            None => {
                self.error = Some(TarError::ChecksumField(at));
                return;
            }
        };
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    b as u64
                }
            })
            .sum();
        if sum != stored {
            self.error = Some(TarError::ChecksumMismatch(at));
            return;
        }
        let Some(size) = parse_size(&h[124..136]) else {
            self.error = Some(TarError::Size(at));
            return;
        };
        // Directories, links and devices carry no data whatever size says.
        let typeflag = h[156];
        let has_data = !matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6');
        self.skip = if has_data {
            size.div_ceil(512) * 512
        } else {
            0
        };
        self.entries += 1;
        match typeflag {
            b'L' | b'K' | b'x' => {
                if size > MAX_META {
                    self.error = Some(TarError::NameRecord { size, at });
                    return;
                }
                self.meta = Some((typeflag, Vec::new()));
                self.meta_left = size;
                if size == 0 {
                    self.end_meta();
                }
            }
            // Global PAX headers carry no names of their own.
            b'g' => {}
            _ => self.check_names(h),
        }
    }

    /// The entry's name and link target (long-name and PAX records first, as the tar
    /// crate reads them), checked as extraction will check them.
    fn check_names(&mut self, h: &[u8]) {
        let field = |b: &[u8]| {
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[..end]).into_owned()
        };
        let mut name = field(&h[..100]);
        if &h[257..262] == b"ustar" && h[263..265] == *b"00" {
            let prefix = field(&h[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        let name = self.long_name.take().unwrap_or(name);
        let link = self.long_link.take().unwrap_or_else(|| field(&h[157..257]));
        if self.unsafe_entry.is_none() {
            if let Err(reason) = check_entry(&name, tar::EntryType::new(h[156]), &link) {
                self.unsafe_entry = Some((name, reason));
            }
        }
    }

    /// A long-name, long-link or PAX record is complete: keep what it says for the next entry.
    fn end_meta(&mut self) {
        let Some((kind, data)) = self.meta.take() else {
            return;
        };
        let text = |b: &[u8]| {
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[..end]).into_owned()
        };
        match kind {
            b'L' => self.long_name = Some(text(&data)),
            b'K' => self.long_link = Some(text(&data)),
            _ => {
                // PAX records: "LEN KEY=VALUE\n", LEN counting the whole record.
                let mut rest = &data[..];
                while let Some(sp) = rest.iter().position(|&c| c == b' ') {
                    let Some(len) = std::str::from_utf8(&rest[..sp])
                        .ok()
                        .and_then(|l| l.parse::<usize>().ok())
                        .filter(|&l| l > sp && l <= rest.len())
                    else {
                        break;
                    };
                    let record = &rest[sp + 1..len];
                    let record = record.strip_suffix(b"\n").unwrap_or(record);
                    if let Some(eq) = record.iter().position(|&c| c == b'=') {
                        let value = String::from_utf8_lossy(&record[eq + 1..]).into_owned();
                        match &record[..eq] {
                            b"path" => self.long_name = Some(value),
                            b"linkpath" => self.long_link = Some(value),
                            _ => {}
                        }
                    }
                    rest = &rest[len..];
                }
            }
        }
    }

    /// The first entry extraction would refuse, and why.
    pub fn unsafe_entry(&self) -> Option<&(String, UnsafeReason)> {
        self.unsafe_entry.as_ref()
    }

    /// `Ok(entries)` when the stream was a complete archive.
    pub fn finish(&self) -> Result<u64, TarError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.skip > 0 || !self.header.is_empty() {
            return Err(TarError::Truncated(self.offset));
        }
        if self.entries == 0 && !self.ended {
            return Err(TarError::Empty);
        }
        Ok(self.entries)
    }
}

impl std::io::Write for TarCheck {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.feed(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let s: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ')
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    let s = std::str::from_utf8(&s).ok()?;
    u64::from_str_radix(s, 8).ok()
}

fn parse_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        // GNU base-256 for sizes over 8 GiB.
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(v);
    }
    parse_octal(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(700);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "a/file", &[7u8; 700][..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn accepts_whole_archive_in_any_pieces() {
        let a = archive();
        for piece in [1, 7, 512, 4096] {
            let mut c = TarCheck::default();
            for p in a.chunks(piece) {
                c.feed(p);
            }
            assert_eq!(c.finish(), Ok(1), "piece {piece}");
        }
    }

    #[test]
    fn rejects_truncated_corrupt_and_non_tar() {
        let a = archive();
        let mut c = TarCheck::default();
        c.feed(&a[..1000]);
        assert!(c.finish().is_err());
        let mut bad = a.clone();
        bad[10] ^= 1;
        let mut c = TarCheck::default();
        c.feed(&bad);
        assert!(c.finish().unwrap_err().to_string().contains("checksum"));
        let mut c = TarCheck::default();
        c.feed(b"hello, this is not a tar archive at all");
        assert!(c.finish().is_err());
        let c = TarCheck::default();
        assert!(c.finish().is_err());
    }
}
