//! `--annotation` values that may name a platform, as BuildKit's image exporter reads them
//! (`manifest[linux/arm64]:KEY=VALUE`): an annotation without a platform goes on every
//! platform's manifest (or index entry); one with a platform only on that platform's, and
//! it wins over an unqualified annotation with the same key.

use std::collections::BTreeMap;

use store::platform::Platform;

/// Manifest-level (or manifest-descriptor-level) annotations, some for one platform only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformAnnotations {
    every: BTreeMap<String, String>,
    by_platform: Vec<(Platform, BTreeMap<String, String>)>,
}

impl PlatformAnnotations {
    /// Sets `key` on every platform (`platform` None) or on `platform` only.
    pub fn insert(&mut self, platform: Option<Platform>, key: String, value: String) {
        let Some(platform) = platform else {
            self.every.insert(key, value);
            return;
        };
        match self.by_platform.iter_mut().find(|(p, _)| *p == platform) {
            Some((_, map)) => {
                map.insert(key, value);
            }
            None => self
                .by_platform
                .push((platform, BTreeMap::from([(key, value)]))),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.every.is_empty() && self.by_platform.is_empty()
    }

    /// What goes on the manifest (or entry) of `platform`; None: an entry without a
    /// platform, which gets the unqualified annotations only.
    pub fn for_platform(&self, platform: Option<&Platform>) -> BTreeMap<String, String> {
        let mut out = self.every.clone();
        if let Some(platform) = platform {
            for (_, map) in self.by_platform.iter().filter(|(p, _)| p == platform) {
                out.extend(map.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(s: &str) -> Platform {
        Platform::parse(s).expect("platform")
    }

    #[test]
    fn a_qualified_annotation_goes_on_its_platform_only_and_wins() {
        let mut a = PlatformAnnotations::default();
        a.insert(None, "k".into(), "all".into());
        a.insert(None, "title".into(), "App".into());
        a.insert(Some(platform("linux/arm64")), "k".into(), "arm".into());
        a.insert(Some(platform("linux/arm64/v8")), "url".into(), "u".into());
        let arm = a.for_platform(Some(&platform("linux/arm64")));
        assert_eq!(arm["k"], "arm");
        assert_eq!(arm["url"], "u", "arm64/v8 is arm64");
        assert_eq!(arm["title"], "App");
        let amd = a.for_platform(Some(&platform("linux/amd64")));
        assert_eq!(
            amd,
            BTreeMap::from([("k".into(), "all".into()), ("title".into(), "App".into())])
        );
        assert_eq!(a.for_platform(None), amd);
    }
}
