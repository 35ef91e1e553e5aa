//! A streaming check that bytes form a well-framed tar archive: every header's
//! checksum is right and the stream does not end inside an entry. It sees bytes
//! as they pass (import hashes, checks and compresses in one pass).

/// Feeds on the raw tar stream; `finish` says whether it was a whole archive.
#[derive(Debug, Default)]
pub struct TarCheck {
    header: Vec<u8>,
    /// Data bytes (with padding) left in the current entry.
    skip: u64,
    entries: u64,
    ended: bool,
    offset: u64,
    error: Option<String>,
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
                self.error = Some(format!("bad header checksum field at byte {at}"));
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
            self.error = Some(format!("header checksum mismatch at byte {at}"));
            return;
        }
        let Some(size) = parse_size(&h[124..136]) else {
            self.error = Some(format!("bad entry size at byte {at}"));
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
    }

    /// `Ok(entries)` when the stream was a complete archive.
    pub fn finish(&self) -> Result<u64, String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.skip > 0 || !self.header.is_empty() {
            return Err(format!(
                "truncated: the stream ends inside an entry at byte {}",
                self.offset
            ));
        }
        if self.entries == 0 && !self.ended {
            return Err("empty input".to_string());
        }
        Ok(self.entries)
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
        assert!(c.finish().unwrap_err().contains("checksum"));
        let mut c = TarCheck::default();
        c.feed(b"hello, this is not a tar archive at all");
        assert!(c.finish().is_err());
        let c = TarCheck::default();
        assert!(c.finish().is_err());
    }
}
