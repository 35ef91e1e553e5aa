//! Build cache keys: derived from content only, never from timestamps (docs/design.md §4.3).
//!
//! A step's key is `sha256(parent key, the expanded instruction, the build args in effect,
//! the digest of any content the step reads)`. The first key of a stage is derived from its
//! base: the base image's manifest digest, or `scratch`. Two builds that feed a step the same
//! parent, instruction, args and bytes get the same key, on any machine, at any time.

use std::fmt;

use sha2::{Digest as _, Sha256};

/// A build cache key: hex sha256, the key of the store's `cache` tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(String);

impl CacheKey {
    /// The key a stage starts from: `scratch`, or the base image's manifest digest.
    pub fn for_base(base: &str, platform: &str) -> CacheKey {
        Self::hash_parts(&[b"base", base.as_bytes(), platform.as_bytes()])
    }

    /// The key of one step on top of `parent`.
    ///
    /// `instruction` is the instruction as it will run (variables expanded, flags included);
    /// `args` the build args visible to the step (they reach RUN's environment, so they
    /// change what RUN does even when the text does not mention them); `content` the digest of
    /// the files a COPY/ADD reads, in a form that covers path, mode, ownership and bytes.
    pub fn for_step(
        parent: &CacheKey,
        instruction: &str,
        args: &[(String, String)],
        content: Option<&str>,
    ) -> CacheKey {
        let mut parts: Vec<&[u8]> = vec![b"step", parent.0.as_bytes(), instruction.as_bytes()];
        for (k, v) in args {
            parts.push(k.as_bytes());
            parts.push(v.as_bytes());
        }
        parts.push(content.unwrap_or("").as_bytes());
        Self::hash_parts(&parts)
    }

    /// The key of a step that `--no-cache-filter` made run again: its usual key plus the
    /// layer it produced. The steps after it (and stages built on it) then key on what was
    /// really built, and the usual key keeps pointing at the chain it was recorded with.
    pub fn for_rebuilt(key: &CacheKey, diff_id: &str) -> CacheKey {
        Self::hash_parts(&[b"rebuilt", key.0.as_bytes(), diff_id.as_bytes()])
    }

    /// The key of the finished image: the last step's key plus the final config text (which
    /// metadata-only steps change without a layer), so a fully cached rebuild finds the same
    /// manifest and the tag needs no rewrite.
    pub fn for_image(last: &CacheKey, config_fingerprint: &str) -> CacheKey {
        Self::hash_parts(&[b"image", last.0.as_bytes(), config_fingerprint.as_bytes()])
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Length-prefix every part so that ("ab","c") and ("a","bc") differ.
    fn hash_parts(parts: &[&[u8]]) -> CacheKey {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        CacheKey(hex::encode(h.finalize()))
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_every_input_and_nothing_else() {
        let base = CacheKey::for_base("scratch", "linux/amd64");
        let args = vec![("A".to_string(), "1".to_string())];
        let k = CacheKey::for_step(&base, "RUN true", &args, None);
        assert_eq!(
            k,
            CacheKey::for_step(&base, "RUN true", &args, None),
            "deterministic"
        );
        let other_base = CacheKey::for_base("sha256:00", "linux/amd64");
        let cases = [
            CacheKey::for_step(&other_base, "RUN true", &args, None),
            CacheKey::for_step(&base, "RUN false", &args, None),
            CacheKey::for_step(&base, "RUN true", &[("A".into(), "2".into())], None),
            CacheKey::for_step(&base, "RUN true", &args, Some("sha256:11")),
            CacheKey::for_step(&base, "RUN tru", &[("eA".into(), "1".into())], None),
        ];
        for (i, other) in cases.iter().enumerate() {
            assert_ne!(&k, other, "case {i} must change the key");
        }
        assert_eq!(k.as_str().len(), 64);
    }
}
