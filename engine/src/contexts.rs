//! The build's contexts as `docker buildx build` takes them, each made a local directory
//! (or an image) the builder reads.
//!
//! ```text
//! CONTEXT          DIR               the directory itself
//!                  -                 stdin: a tar of the context (plain, gzip or zstd), or a
//!                                    Dockerfile alone (then the context is empty)
//!                  git URL           https://…/repo.git#ref:subdir, git@host:repo.git#ref,
//!                                    git://…: a checkout of the ref (the `git` binary)
//!                  http(s) URL       a tarball, unpacked; any other body is the Dockerfile
//! -f FILE          FILE for a local context; inside the context for stdin and URL ones
//!                  (an absolute FILE stays local); `-f -`: the Dockerfile from stdin
//! --build-context  NAME=DIR | NAME=git or tarball URL (as above) | NAME=docker-image://REF
//!                  | NAME=oci-layout://DIR[:TAG|@DIGEST] (loaded into the store)
//! ```
//!
//! Copies live under `ROOT/snapshots/context-<pid>-…` (`store::layout::CONTEXT_TEMP_PREFIX`)
//! for the build only: [`Contexts`] removes them when dropped, and GC sweeps those of a
//! killed build. Tars are unpacked by the store's safe extraction: a name with `..`, an
//! absolute name or a symlink that leads out of the context is refused before anything is
//! written outside the copy.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use builder::solve::named_context::context_key;
use builder::solve::{fetch, NamedContext};
use store::media_types::Compression;
use store::{Reference, Store};

/// What the user gave on the command line.
pub struct ContextArgs<'a> {
    /// The positional CONTEXT: a directory, `-` or a URL.
    pub context: &'a str,
    /// `-f`/`--file`, if given (`-` for stdin).
    pub dockerfile: Option<&'a Path>,
    /// `--build-context` values, as typed.
    pub named: &'a [String],
    /// The build args: a download uses their HTTP_PROXY, HTTPS_PROXY and NO_PROXY as ADD does.
    pub build_args: &'a BTreeMap<String, String>,
}

/// The contexts of one build, ready for [`builder::solve::BuildOptions`]. Temporary copies
/// are removed when this is dropped: keep it until the build is done.
pub struct Contexts {
    pub context: PathBuf,
    /// `None`: CONTEXT/Dockerfile.
    pub dockerfile: Option<PathBuf>,
    pub named: BTreeMap<String, NamedContext>,
    /// Checkouts, downloads (held against a prune) and temp directories, dropped last.
    _held: Vec<Held>,
}

impl Contexts {
    /// The Dockerfile of these contexts: `-f` (or the one a `-` context carried), else
    /// `CONTEXT/Dockerfile`.
    pub fn dockerfile_path(&self) -> PathBuf {
        self.dockerfile
            .clone()
            .unwrap_or_else(|| self.context.join("Dockerfile"))
    }
}

/// Kept only for what dropping them does (remove, unlock).
#[allow(dead_code)]
enum Held {
    Temp(TempDir),
    Checkout(fetch::Checkout),
    Download(fetch::Download),
}

/// A `snapshots/context-…` directory, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("invalid argument: can't use stdin for both build context and dockerfile")]
    StdinTwice,
    #[error("ambiguous Dockerfile source: both stdin and flag correspond to Dockerfiles")]
    AmbiguousDockerfile,
    #[error("unable to prepare context: path {0:?} not found")]
    NotFound(String),
    #[error("invalid context value: {0}, expected key=value")]
    InvalidValue(String),
    #[error("invalid context name {name}")]
    InvalidName {
        name: String,
        #[source]
        source: store::ReferenceError,
    },
    /// A `--build-context` directory that is missing or not a directory (buildx's words).
    #[error("failed to get build context {name}: {path}: {reason}")]
    NamedPath {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("unsupported build context {value}: {reason}")]
    Unsupported { value: String, reason: String },
    #[error("reading {what}")]
    Read {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} is {compression}-compressed: a build context tar may be plain, gzip or zstd")]
    Compression {
        what: String,
        compression: &'static str,
    },
    #[error("unpacking {what}")]
    Unpack {
        what: String,
        #[source]
        source: store::StoreError,
    },
    /// A git or URL source could not be fetched (`source` names the URL and the cause).
    #[error("{source}")]
    Fetch {
        url: String,
        #[source]
        source: fetch::FetchError,
    },
    #[error("git context {url}: subdirectory {subdir:?} {reason}")]
    GitSubdir {
        url: String,
        subdir: String,
        reason: &'static str,
    },
    #[error("the Dockerfile {path} is not inside the build context")]
    DockerfileOutside { path: PathBuf },
    #[error("oci-layout {path}: {reason}")]
    OciLayout { path: PathBuf, reason: String },
    #[error("loading oci-layout {path}")]
    OciLoad {
        path: PathBuf,
        #[source]
        source: store::StoreError,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

pub type Result<T> = std::result::Result<T, ContextError>;

/// `--build-context NAME=VALUE` values by their name's key ([`context_key`]), as buildx
/// parses them.
pub fn parse_named(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for value in raw.iter().filter(|v| !v.is_empty()) {
        let (name, target) = value
            .split_once('=')
            .ok_or_else(|| ContextError::InvalidValue(value.clone()))?;
        Reference::parse(name).map_err(|source| ContextError::InvalidName {
            name: name.to_string(),
            source,
        })?;
        // `scratch` and `context` parse but never name a context (BuildKit ignores them).
        if let Some(key) = context_key(name) {
            out.insert(key, target.to_string());
        }
    }
    Ok(out)
}

/// Make every context of the build local. `stdin` is read only for `-` and `-f -`.
pub fn resolve(store: &Store, args: &ContextArgs, stdin: &mut dyn Read) -> Result<Contexts> {
    let named_raw = parse_named(args.named)?;
    let mut r = Resolver {
        store,
        build_args: args.build_args,
        held: Vec::new(),
    };
    let dockerfile_is_stdin = args.dockerfile == Some(Path::new("-"));
    let (context, mut dockerfile, is_remote) = if args.context == "-" {
        if dockerfile_is_stdin {
            return Err(ContextError::StdinTwice);
        }
        let (context, dockerfile) = r.stdin_context(stdin, args.dockerfile.is_some())?;
        (context, dockerfile, true)
    } else if is_remote(args.context) {
        let (context, dockerfile) = r.remote(args.context)?;
        (context, dockerfile, true)
    } else {
        let dir = PathBuf::from(args.context);
        if !dir.is_dir() {
            return Err(ContextError::NotFound(args.context.to_string()));
        }
        (dir, None, false)
    };
    if dockerfile_is_stdin {
        let temp = r.temp()?;
        dockerfile = Some(write_file(
            &temp.join("Dockerfile"),
            stdin,
            "the Dockerfile from stdin",
        )?);
    } else if let Some(f) = args.dockerfile {
        if dockerfile.is_some() {
            return Err(ContextError::AmbiguousDockerfile);
        }
        dockerfile = Some(match is_remote && f.is_relative() {
            true => inside(&context, f)?,
            false => f.to_path_buf(),
        });
    }
    let mut named = BTreeMap::new();
    for (key, value) in &named_raw {
        named.insert(key.clone(), r.named(key, value)?);
    }
    Ok(Contexts {
        context,
        dockerfile,
        named,
        _held: r.held,
    })
}

/// A URL context: git (by BuildKit's rules, see [`fetch::is_git_url`]) or http(s).
pub fn is_remote(value: &str) -> bool {
    fetch::is_git_url(value) || fetch::is_url(value)
}

struct Resolver<'a> {
    store: &'a Store,
    build_args: &'a BTreeMap<String, String>,
    held: Vec<Held>,
}

impl Resolver<'_> {
    /// A new `ROOT/snapshots/context-…` directory, removed when the build is done.
    fn temp(&mut self) -> Result<PathBuf> {
        let path = self
            .store
            .layout()
            .snapshot_temp(store::layout::CONTEXT_TEMP_PREFIX);
        fs::create_dir_all(&path).map_err(|source| ContextError::Write {
            path: path.clone(),
            source,
        })?;
        self.held.push(Held::Temp(TempDir(path.clone())));
        Ok(path)
    }

    /// `-`: a tar of the context, or a Dockerfile alone (then the context is empty). With
    /// `-f` as well, stdin must be the context (buildx's rule). Returns the context and
    /// the Dockerfile when stdin was one.
    fn stdin_context(
        &mut self,
        stdin: &mut dyn Read,
        has_file_flag: bool,
    ) -> Result<(PathBuf, Option<PathBuf>)> {
        let what = "the build context from stdin";
        let (head, mut input) = peek(stdin, 1024).map_err(|source| ContextError::Read {
            what: what.to_string(),
            source,
        })?;
        if head.is_empty() {
            return Err(ContextError::Read {
                what: what.to_string(),
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "stdin is empty"),
            });
        }
        let temp = self.temp()?;
        if is_archive(&head) {
            unpack(BufReader::with_capacity(1 << 20, input), &temp, what)?;
            return Ok((temp, None));
        }
        if has_file_flag {
            return Err(ContextError::AmbiguousDockerfile);
        }
        let context = temp.join("context");
        fs::create_dir(&context).map_err(|source| ContextError::Write {
            path: context.clone(),
            source,
        })?;
        let dockerfile = write_file(
            &temp.join("Dockerfile"),
            &mut input,
            "the Dockerfile from stdin",
        )?;
        Ok((context, Some(dockerfile)))
    }

    /// A git or http(s) URL as a local directory, and the Dockerfile when the URL's body
    /// was a Dockerfile rather than a tarball.
    fn remote(&mut self, url: &str) -> Result<(PathBuf, Option<PathBuf>)> {
        if fetch::is_git_url(url) {
            return Ok((self.git(url)?, None));
        }
        let fetch_err = |source| ContextError::Fetch {
            url: url.to_string(),
            source,
        };
        let download = fetch::download(self.store.layout().root(), url, None, self.build_args)
            .map_err(fetch_err)?;
        let path = download.path.clone();
        self.held.push(Held::Download(download));
        let what = format!("the build context {url}");
        let file = fs::File::open(&path).map_err(|source| ContextError::Read {
            what: what.clone(),
            source,
        })?;
        let (head, input) = peek(file, 1024).map_err(|source| ContextError::Read {
            what: what.clone(),
            source,
        })?;
        let temp = self.temp()?;
        if is_archive(&head) {
            unpack(BufReader::with_capacity(1 << 20, input), &temp, &what)?;
            return Ok((temp, None));
        }
        // docker's rule for a URL that is no archive: it is the Dockerfile.
        let context = temp.join("context");
        fs::create_dir(&context).map_err(|source| ContextError::Write {
            path: context.clone(),
            source,
        })?;
        Ok((context, Some(path)))
    }

    /// A checkout of `url`'s ref (default HEAD) without `.git`; `#ref:subdir` makes the
    /// subdirectory the context.
    fn git(&mut self, url: &str) -> Result<PathBuf> {
        let fetch_err = |source| ContextError::Fetch {
            url: url.to_string(),
            source,
        };
        let commit = fetch::git_resolve(url).map_err(fetch_err)?;
        let temp = self.temp()?;
        let checkout = fetch::git_checkout(url, &commit, false, &temp).map_err(fetch_err)?;
        let (dir, subdir) = (checkout.dir.clone(), checkout.subdir.clone());
        self.held.push(Held::Checkout(checkout));
        if subdir.is_empty() {
            return Ok(dir);
        }
        let subdir_err = |reason| ContextError::GitSubdir {
            url: url.to_string(),
            subdir: subdir.clone(),
            reason,
        };
        // The subdirectory may be a symlink in the repository: it must stay inside.
        let real = fs::canonicalize(dir.join(&subdir)).map_err(|_| subdir_err("not found"))?;
        let root = fs::canonicalize(&dir).map_err(|_| subdir_err("not found"))?;
        if !real.starts_with(&root) {
            return Err(subdir_err("leads outside the repository"));
        }
        if !real.is_dir() {
            return Err(subdir_err("is not a directory"));
        }
        Ok(real)
    }

    /// One `--build-context` value.
    fn named(&mut self, name: &str, value: &str) -> Result<NamedContext> {
        if let Some(reference) = value.strip_prefix("docker-image://") {
            let reference = Reference::parse(reference).map_err(|e| ContextError::Unsupported {
                value: value.to_string(),
                reason: e.to_string(),
            })?;
            return Ok(NamedContext::Image(reference));
        }
        if let Some(layout) = value.strip_prefix("oci-layout://") {
            return self.oci_layout(layout, value);
        }
        if value.starts_with("target:") {
            return Err(ContextError::Unsupported {
                value: value.to_string(),
                reason: "target: contexts exist only in `docker buildx bake`".to_string(),
            });
        }
        if is_remote(value) {
            let (dir, dockerfile) = self.remote(value)?;
            // BuildKit keeps a body that is no archive as one file named `context`.
            if let Some(file) = dockerfile {
                let target = dir.join("context");
                fs::copy(&file, &target).map_err(|source| ContextError::Write {
                    path: target,
                    source,
                })?;
            }
            return Ok(NamedContext::Dir(dir));
        }
        let path = PathBuf::from(value);
        let reason = match fs::metadata(&path) {
            Ok(m) if m.is_dir() => return Ok(NamedContext::Dir(path)),
            Ok(_) => "not a directory".to_string(),
            Err(e) => e.to_string(),
        };
        Err(ContextError::NamedPath {
            name: name.to_string(),
            path,
            reason,
        })
    }

    /// `oci-layout://DIR[:TAG|@DIGEST]`: the image the layout's index names (tag
    /// `latest` by default) loaded into the store; the layout is read, never changed.
    fn oci_layout(&mut self, spec: &str, value: &str) -> Result<NamedContext> {
        let (dir, selector) = split_layout(spec);
        let bad = |reason: String| ContextError::OciLayout {
            path: dir.clone(),
            reason,
        };
        let index_path = dir.join("index.json");
        let index: serde_json::Value = fs::read(&index_path)
            .map_err(|e| bad(format!("reading index.json: {e}")))
            .and_then(|b| {
                serde_json::from_slice(&b).map_err(|e| bad(format!("index.json: {e}")))
            })?;
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        let wanted = manifests.iter().find(|d| match &selector {
            Selector::Digest(digest) => d["digest"].as_str() == Some(digest.as_str()),
            Selector::Tag(tag) => {
                d["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag)
            }
        });
        let wanted = match (wanted, &selector, manifests.len()) {
            (Some(d), _, _) => d.clone(),
            // A layout of one untagged image: that image, as `latest`.
            (None, Selector::Tag(t), 1) if t == "latest" => manifests[0].clone(),
            (None, Selector::Tag(t), _) => return Err(bad(format!("no image tagged {t:?}"))),
            (None, Selector::Digest(d), _) => return Err(bad(format!("no image {d}"))),
        };
        let digest = wanted["digest"].as_str().unwrap_or_default().to_string();
        let loaded = load_layout(self.store, &dir)?;
        let picked = loaded
            .iter()
            .find(|i| i.image.manifest.as_str() == digest)
            .or(if loaded.len() == 1 {
                loaded.first()
            } else {
                None
            })
            .ok_or_else(|| bad(format!("cannot tell which loaded image {digest} is")))?;
        Ok(NamedContext::Manifest {
            manifest: picked.image.manifest.clone(),
            source: value.to_string(),
        })
    }
}

enum Selector {
    Tag(String),
    Digest(String),
}

/// `DIR`, `DIR:TAG` or `DIR@sha256:…` (a `:` in the last path component is the tag).
fn split_layout(spec: &str) -> (PathBuf, Selector) {
    if let Some((dir, digest)) = spec.rsplit_once('@') {
        return (PathBuf::from(dir), Selector::Digest(digest.to_string()));
    }
    let last = spec.rsplit('/').next().unwrap_or(spec);
    match last.rsplit_once(':') {
        Some((_, tag)) => {
            let dir = &spec[..spec.len() - tag.len() - 1];
            (PathBuf::from(dir), Selector::Tag(tag.to_string()))
        }
        None => (PathBuf::from(spec), Selector::Tag("latest".to_string())),
    }
}

/// Load every image of the OCI layout directory `dir` with the store's archive loader,
/// fed a tar of the directory through a pipe.
fn load_layout(store: &Store, dir: &Path) -> Result<Vec<store::archive::load::LoadedImage>> {
    let (reader, writer) = io::pipe().map_err(|source| ContextError::Read {
        what: format!("oci-layout {}", dir.display()),
        source,
    })?;
    let root = dir.to_path_buf();
    let writing = std::thread::spawn(move || -> io::Result<()> {
        let mut tar = tar::Builder::new(writer);
        tar.follow_symlinks(false);
        tar.append_dir_all(".", &root)?;
        tar.into_inner().map(drop)
    });
    // A build's base is one platform's image: of an image index, this host's.
    let loaded = store.load(
        reader,
        &dir.display().to_string(),
        &store::archive::LoadPlatforms::Host,
    );
    let written = writing
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("tar writer panicked")));
    let loaded = loaded.map_err(|source| ContextError::OciLoad {
        path: dir.to_path_buf(),
        source,
    })?;
    written.map_err(|source| ContextError::Read {
        what: format!("oci-layout {}", dir.display()),
        source,
    })?;
    Ok(loaded)
}

/// `dir`/`file` if it stays inside `dir` (a Dockerfile named inside a stdin or URL
/// context may not be a way out of it).
fn inside(dir: &Path, file: &Path) -> Result<PathBuf> {
    let path = dir.join(file);
    let outside = || ContextError::DockerfileOutside {
        path: file.to_path_buf(),
    };
    let (Ok(real), Ok(root)) = (fs::canonicalize(&path), fs::canonicalize(dir)) else {
        // Missing: the build reports it by name.
        return Ok(path);
    };
    if !real.starts_with(root) {
        return Err(outside());
    }
    Ok(real)
}

/// The first `n` bytes of `input` (fewer at its end), and a reader of all of it again.
fn peek<R: Read>(mut input: R, n: usize) -> io::Result<(Vec<u8>, impl Read)> {
    let mut head = Vec::with_capacity(n);
    (&mut input).take(n as u64).read_to_end(&mut head)?;
    Ok((head.clone(), io::Cursor::new(head).chain(input)))
}

/// Whether `head` starts a tar (plain, gzip, zstd, bzip2 or xz), as buildx tells a
/// context on stdin from a Dockerfile.
fn is_archive(head: &[u8]) -> bool {
    compression_name(head).is_some() || is_tar_header(head)
}

/// bzip2 and xz: archives strata does not unpack (named for the error).
fn compression_name(head: &[u8]) -> Option<&'static str> {
    match store::decompress::sniff(head) {
        Compression::Gzip => Some("gzip"),
        Compression::Zstd => Some("zstd"),
        Compression::None if head.starts_with(b"BZh") => Some("bzip2"),
        Compression::None if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) => Some("xz"),
        Compression::None => None,
    }
}

/// A 512-byte tar header: the `ustar` magic, or (old v7 tars) a valid checksum.
fn is_tar_header(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    if &head[257..262] == b"ustar" {
        return true;
    }
    let stored = std::str::from_utf8(&head[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    let sum: u32 = head[..512]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    stored == Some(sum) && head[0] != 0
}

/// Unpack the (maybe compressed) tar `input` into the empty directory `dir`.
fn unpack(mut input: impl BufRead, dir: &Path, what: &str) -> Result<()> {
    let head = input.fill_buf().map_err(|source| ContextError::Read {
        what: what.to_string(),
        source,
    })?;
    let compression = match compression_name(head) {
        Some(name @ ("bzip2" | "xz")) => {
            return Err(ContextError::Compression {
                what: what.to_string(),
                compression: name,
            })
        }
        _ => store::decompress::sniff(head),
    };
    let plain = store::decompress::plain_reader(compression, input).map_err(|source| {
        ContextError::Read {
            what: what.to_string(),
            source,
        }
    })?;
    store::extract::extract_tar(plain, dir, what).map_err(|source| ContextError::Unpack {
        what: what.to_string(),
        source,
    })?;
    Ok(())
}

/// Copy `input` into the new file `path`.
fn write_file(path: &Path, input: &mut dyn Read, what: &str) -> Result<PathBuf> {
    let mut out = fs::File::create_new(path).map_err(|source| ContextError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    io::copy(input, &mut out).map_err(|source| ContextError::Read {
        what: what.to_string(),
        source,
    })?;
    Ok(path.to_path_buf())
}
