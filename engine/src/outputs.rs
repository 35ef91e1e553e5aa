//! `build -o/--output` as buildx spells it: where the built image goes besides the local
//! store (every build stores its image; buildx's `--load` and `type=docker` without a
//! destination ask for nothing more).
//!
//! ```text
//! type=local,dest=DIR    (or `-o DIR`)  the final stage's filesystem, written into DIR
//! type=tar,dest=FILE|-   (or `-o -`)    that filesystem as one tar
//! type=oci,dest=FILE|-[,tar=false]      the image as an OCI archive (tar=false: a layout dir)
//! type=docker[,dest=FILE|-]             a docker-archive that `docker load` takes
//! type=image|registry[,name=…][,push=]  the image under its names, pushed with push=true
//! ```
//!
//! Several outputs are written one after the other, as BuildKit 0.13+ does; two of them
//! writing to stdout are refused, as buildx refuses them.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use builder::copy::{self, CopyOptions};
use builder::rootfs::UnionFs;
use builder::solve::BuildResult;
use store::archive::{ArchiveFormat, SaveItem};
use store::{Reference, Store};

use crate::error::{EngineError, Result};

/// One `--output`.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// `type=local`: the filesystem of the built stage, copied into a directory.
    Local { dir: PathBuf },
    /// `type=tar`: the same filesystem as one tar archive.
    Tar { dest: Destination },
    /// `type=oci` / `type=docker` with a destination: the image as an archive.
    Archive {
        format: ArchiveFormat,
        dest: ArchiveDestination,
        names: Vec<Reference>,
    },
    /// `type=image` / `type=registry` / `type=docker` without a destination: the image in
    /// the local store under `names`, pushed to each when `push` is set.
    Image { names: Vec<Reference>, push: bool },
}

/// Where a file output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    File(PathBuf),
}

/// Where an image archive goes: a tar (file or stdout) or, with `tar=false`, an OCI layout
/// directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveDestination {
    Tar(Destination),
    Dir(PathBuf),
}

fn usage(message: String) -> EngineError {
    EngineError::Usage(message)
}

/// The fields of a buildx CSV value (`--output`, `--provenance`), with a usage error for an
/// unclosed quote.
pub fn csv_fields(raw: &str) -> Result<Vec<String>> {
    builder::csv::fields(raw)
        .ok_or_else(|| usage(format!("invalid value {raw:?}: unterminated quote")))
}

/// Parses every `--output` and checks them together. `tags` (`-t`) name the image outputs,
/// as in buildx, where they replace an output's own `name=`.
pub fn parse_outputs(raw: &[String], tags: &[Reference]) -> Result<Vec<Output>> {
    let outputs = raw
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| parse_output(r, tags))
        .collect::<Result<Vec<_>>>()?;
    let to_stdout = outputs
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Tar {
                    dest: Destination::Stdout
                } | Output::Archive {
                    dest: ArchiveDestination::Tar(Destination::Stdout),
                    ..
                }
            )
        })
        .count();
    if to_stdout > 1 {
        return Err(usage(
            "multiple outputs configured to write to stdout".to_string(),
        ));
    }
    Ok(outputs)
}

/// One `--output` value.
pub fn parse_output(raw: &str, tags: &[Reference]) -> Result<Output> {
    let fields = csv_fields(raw)?;
    // buildx: a single value without `=` is a directory for type=local, `-` a tar on stdout.
    if fields.len() == 1 && fields[0] == raw && !raw.starts_with("type=") && !raw.contains('=') {
        return Ok(if raw == "-" {
            Output::Tar {
                dest: Destination::Stdout,
            }
        } else {
            Output::Local {
                dir: PathBuf::from(raw),
            }
        });
    }
    let mut kind = None;
    let mut dest = None;
    let mut attrs: Vec<(String, String)> = Vec::new();
    for field in &fields {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| usage(format!("invalid --output {raw:?}: invalid value {field}")))?;
        match k.trim().to_ascii_lowercase().as_str() {
            "type" => kind = Some(v.to_string()),
            "dest" => dest = Some(v.to_string()),
            key => attrs.push((key.to_string(), v.to_string())),
        }
    }
    let kind = kind.ok_or_else(|| usage(format!("invalid --output {raw:?}: type is required")))?;
    let attr = |k: &str| attrs.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
    let boolean = |k: &str| -> Result<Option<bool>> {
        attr(k)
            .map(|v| {
                parse_bool(v).ok_or_else(|| {
                    usage(format!(
                        "invalid --output {raw:?}: {k}={v:?}: want true|false"
                    ))
                })
            })
            .transpose()
    };
    let names = || -> Result<Vec<Reference>> {
        if !tags.is_empty() {
            return Ok(tags.to_vec());
        }
        attr("name")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| {
                Reference::parse(n)
                    .map_err(|e| usage(format!("invalid --output {raw:?}: name {n:?}: {e}")))
            })
            .collect()
    };
    let allowed: &[&str] = match kind.as_str() {
        "local" | "tar" => &["platform-split", "mode"],
        "oci" | "docker" => &["name", "tar", "compression", "oci-mediatypes", "force-compression"],
        "image" | "registry" => &[
            "name",
            "push",
            "unpack",
            "store",
            "compression",
            "oci-mediatypes",
            "force-compression",
        ],
        "cacheonly" => &[],
        other => {
            return Err(usage(format!(
                "invalid --output {raw:?}: unknown type {other:?} (want local, tar, oci, docker, image or registry)"
            )))
        }
    };
    if let Some((k, v)) = attrs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(usage(format!(
            "--output type={kind}: {k}={v} is not supported (supported: {})",
            if allowed.is_empty() {
                "nothing".to_string()
            } else {
                allowed.join(", ")
            }
        )));
    }
    match attr("compression") {
        None | Some("gzip") => {}
        Some(other) => {
            return Err(usage(format!(
                "--output compression={other} is not supported: strata writes gzip layers"
            )))
        }
    }
    if let Some(mode) = attr("mode").filter(|m| *m != "copy") {
        return Err(usage(format!(
            "--output type={kind}: mode={mode} is not supported (strata copies: mode=copy)"
        )));
    }
    match kind.as_str() {
        "local" => {
            let dir = dir_destination(&kind, dest)?;
            Ok(Output::Local { dir })
        }
        "tar" => Ok(Output::Tar {
            dest: file_destination(&kind, dest.or(Some("-".into())))?,
        }),
        "oci" | "docker" => {
            let format = if kind == "oci" {
                ArchiveFormat::Oci
            } else {
                ArchiveFormat::Docker
            };
            let names = names()?;
            let is_tar = boolean("tar")?.unwrap_or(true);
            if !is_tar {
                if kind == "docker" {
                    return Err(usage(
                        "--output type=docker,tar=false is not supported: use type=oci,tar=false for a layout directory".to_string(),
                    ));
                }
                let dir = dir_destination(&kind, dest)?;
                return Ok(Output::Archive {
                    format,
                    dest: ArchiveDestination::Dir(dir),
                    names,
                });
            }
            if kind == "docker" && dest.is_none() {
                // buildx loads it into docker; every strata build is in the local store.
                return Ok(Output::Image { names, push: false });
            }
            let dest = file_destination(&kind, dest.or(Some("-".into())))?;
            Ok(Output::Archive {
                format,
                dest: ArchiveDestination::Tar(dest),
                names,
            })
        }
        "cacheonly" => Ok(Output::Image {
            names: Vec::new(),
            push: false,
        }),
        _ => {
            let push = kind == "registry" || boolean("push")?.unwrap_or(false);
            let names = names()?;
            if push && names.is_empty() {
                return Err(usage("tag is needed when pushing to registry".to_string()));
            }
            Ok(Output::Image { names, push })
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "true" | "1" | "t" | "T" | "TRUE" | "True" => Some(true),
        "false" | "0" | "f" | "F" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// buildx's checks of a directory destination.
fn dir_destination(kind: &str, dest: Option<String>) -> Result<PathBuf> {
    let dest = dest
        .filter(|d| !d.is_empty())
        .ok_or_else(|| usage(format!("dest is required for {kind} exporter")))?;
    if dest == "-" {
        return Err(usage(format!("dest cannot be stdout for {kind} exporter")));
    }
    let path = PathBuf::from(dest);
    if path.exists() && !path.is_dir() {
        return Err(usage(format!(
            "destination directory {} is a file",
            path.display()
        )));
    }
    Ok(path)
}

/// buildx's checks of a file destination; `-` is stdout, never a terminal.
fn file_destination(kind: &str, dest: Option<String>) -> Result<Destination> {
    match dest.filter(|d| !d.is_empty()).as_deref() {
        None | Some("-") => {
            if io::stdout().is_terminal() {
                return Err(usage(format!(
                    "dest file is required for {kind} exporter. refusing to write to console"
                )));
            }
            Ok(Destination::Stdout)
        }
        Some(d) => {
            let path = PathBuf::from(d);
            if path.is_dir() {
                return Err(usage(format!(
                    "destination file {} is a directory",
                    path.display()
                )));
            }
            Ok(Destination::File(path))
        }
    }
}

/// The names and pushes the image outputs ask for: added to `-t` and `--push`.
pub fn image_names(outputs: &[Output]) -> (Vec<Reference>, bool) {
    let mut names: Vec<Reference> = Vec::new();
    let mut push = false;
    for o in outputs {
        if let Output::Image { names: n, push: p } = o {
            push |= *p;
            for name in n {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
    }
    (names, push)
}

/// Writes the file and directory outputs of a finished build (image outputs are the
/// build's tags and `--push`).
pub fn export(store: &Store, result: &BuildResult, outputs: &[Output]) -> Result<()> {
    for output in outputs {
        match output {
            Output::Local { dir } => export_local(store, result, dir)?,
            Output::Tar { dest } => write_to(dest, |w| write_rootfs_tar(store, result, w))?,
            Output::Archive {
                format,
                dest,
                names,
            } => write_archive(
                store,
                &result.manifest,
                *format,
                dest,
                names,
                &BTreeMap::new(),
            )?,
            Output::Image { .. } => {}
        }
    }
    Ok(())
}

/// The file and directory outputs of a build for several platforms, as buildx writes
/// them: `type=local` and `type=tar` put each platform's filesystem under a directory
/// named after it (`linux_amd64/`, `linux_arm64/`); `type=oci` is the image index `index`
/// with every platform, its `index.json` entry carrying `index_descriptor` (the
/// `--annotation index-descriptor:` ones). (`type=docker` is refused before the build
/// starts.)
pub fn export_platforms(
    store: &Store,
    results: &[BuildResult],
    index: &store::Digest,
    index_descriptor: &BTreeMap<String, String>,
    outputs: &[Output],
) -> Result<()> {
    for output in outputs {
        match output {
            Output::Local { dir } => {
                for r in results {
                    export_local(store, r, &dir.join(platform_dir(&r.platform)))?;
                }
            }
            Output::Tar { dest } => write_to(dest, |w| write_platform_tars(store, results, w))?,
            Output::Archive {
                format,
                dest,
                names,
            } => write_archive(store, index, *format, dest, names, index_descriptor)?,
            Output::Image { .. } => {}
        }
    }
    Ok(())
}

/// buildx's directory name for a platform's files: `linux/arm/v7` → `linux_arm_v7`.
pub fn platform_dir(platform: &store::platform::Platform) -> String {
    platform.to_string().replace('/', "_")
}

/// `manifest` (an image or an image index) as an archive under `names`, its entries in an
/// OCI archive's `index.json` with `annotations`.
fn write_archive(
    store: &Store,
    manifest: &store::Digest,
    format: ArchiveFormat,
    dest: &ArchiveDestination,
    names: &[Reference],
    annotations: &BTreeMap<String, String>,
) -> Result<()> {
    let items = [SaveItem {
        manifest: manifest.clone(),
        tags: names.to_vec(),
        annotations: annotations.clone(),
    }];
    match dest {
        ArchiveDestination::Tar(Destination::File(path)) => store
            .save_to_file(&items, format, path)
            .map_err(|e| write_error(path, io::Error::other(e))),
        ArchiveDestination::Tar(dest) => write_to(dest, |w| {
            store.save(&items, format, w).map_err(io::Error::other)
        }),
        ArchiveDestination::Dir(dir) => unpack_into(dir, |w| {
            store.save(&items, format, w).map_err(io::Error::other)
        }),
    }
}

/// Every platform's filesystem in one tar, each under its [`platform_dir`]: each
/// platform's tar (as [`write_rootfs_tar`] makes it) is read back through a pipe and its
/// entries appended with the directory in front of their names (and of hard links'
/// targets).
fn write_platform_tars(
    store: &Store,
    results: &[BuildResult],
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut outer = tar::Builder::new(out);
    for r in results {
        let prefix = PathBuf::from(platform_dir(&r.platform));
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o755);
        dir.set_size(0);
        outer.append_data(&mut dir, &prefix, io::empty())?;
        let (reader, mut writer) = io::pipe()?;
        std::thread::scope(|s| -> io::Result<()> {
            let producer = s.spawn(move || {
                let r = write_rootfs_tar(store, r, &mut writer);
                drop(writer);
                r
            });
            let mut inner = tar::Archive::new(reader);
            let copied = (|| -> io::Result<()> {
                for entry in inner.entries()? {
                    let mut entry = entry?;
                    let path = prefix.join(entry.path()?.as_ref());
                    let mut header = entry.header().clone();
                    let kind = header.entry_type();
                    if kind.is_hard_link() || kind.is_symlink() {
                        let target = entry.link_name()?.unwrap_or_default().into_owned();
                        let target = match kind.is_hard_link() {
                            true => prefix.join(target),
                            false => target,
                        };
                        outer.append_link(&mut header, &path, &target)?;
                    } else {
                        outer.append_data(&mut header, &path, &mut entry)?;
                    }
                }
                Ok(())
            })();
            let mut rest = inner.into_inner();
            let _ = io::copy(&mut rest, &mut io::sink());
            let produced = producer
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the filesystem writer panicked")));
            produced.and(copied)
        })?;
    }
    outer.finish()
}

fn write_error(path: &Path, source: io::Error) -> EngineError {
    EngineError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs `write` into stdout or into a temp file renamed over `dest` once complete.
fn write_to(
    dest: &Destination,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    match dest {
        Destination::Stdout => {
            let mut out = io::stdout().lock();
            write(&mut out)
                .and_then(|()| out.flush())
                .map_err(|e| write_error(Path::new("<stdout>"), e))
        }
        Destination::File(path) => {
            let tmp = store::layout::temp_beside(path);
            let result = (|| {
                let mut f = io::BufWriter::new(fs::File::create(&tmp)?);
                write(&mut f)?;
                f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                fs::rename(&tmp, path)
            })();
            if result.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            result.map_err(|e| write_error(path, e))
        }
    }
}

/// Runs `write` into a pipe whose other end is unpacked, as a plain tar, into `dir`.
fn unpack_into(
    dir: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()> + Send,
) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    let (reader, mut writer) = io::pipe().map_err(|e| write_error(dir, e))?;
    std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let r = write(&mut writer);
            drop(writer);
            r
        });
        let mut archive = tar::Archive::new(reader);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        let unpacked = archive.unpack(dir);
        // Drain whatever the unpacker left so the writer never blocks on a full pipe.
        let mut rest = archive.into_inner();
        let _ = io::copy(&mut rest, &mut io::sink());
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the archive writer panicked")));
        produced.and(unpacked).map_err(|e| write_error(dir, e))
    })
}

/// The built image's filesystem as a tar, the way COPY --from reads a stage: every entry
/// with its owner, mode and mtime, hard links kept.
fn write_rootfs_tar(store: &Store, result: &BuildResult, out: &mut dyn Write) -> io::Result<()> {
    let lease = store
        .lease(Duration::from_secs(3600))
        .map_err(io::Error::other)?;
    for layer in &result.layers {
        lease
            .add_digest(&layer.blob.digest)
            .map_err(io::Error::other)?;
    }
    let dirs = store
        .ensure_layer_snapshots(&lease, &result.layers)
        .map_err(io::Error::other)?;
    let union = UnionFs::new(dirs);
    let options = CopyOptions {
        keep_owner: true,
        ..CopyOptions::default()
    };
    if union.lookup("/")?.is_none() {
        // An image without layers (FROM scratch, nothing copied): an empty filesystem.
        tar::Builder::new(out).finish()?;
        return Ok(());
    }
    let plan =
        copy::plan(&union, &["/".to_string()], "/", true, &options).map_err(io::Error::other)?;
    plan.write_tar(out).map_err(io::Error::other)?;
    Ok(())
}

/// `type=local`: the filesystem written into `dir` (created when missing; what is already
/// there stays unless the image overwrites it).
fn export_local(store: &Store, result: &BuildResult, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    let (reader, mut writer) = io::pipe().map_err(|e| write_error(dir, e))?;
    std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let r = write_rootfs_tar(store, result, &mut writer);
            drop(writer);
            r
        });
        let mut reader = reader;
        let extracted = store::extract::extract_tar(&mut reader, dir, "the built image");
        let _ = io::copy(&mut reader, &mut io::sink());
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the filesystem writer panicked")));
        produced.map_err(|e| write_error(dir, e))?;
        extracted.map(|_| ()).map_err(EngineError::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Output> {
        parse_output(raw, &[])
    }

    #[test]
    fn outputs_parse_like_buildx() {
        assert_eq!(
            parse("out").unwrap(),
            Output::Local {
                dir: PathBuf::from("out")
            }
        );
        assert_eq!(
            parse("type=local,dest=out").unwrap(),
            Output::Local {
                dir: PathBuf::from("out")
            }
        );
        assert_eq!(
            parse("type=tar,dest=o.tar").unwrap(),
            Output::Tar {
                dest: Destination::File(PathBuf::from("o.tar"))
            }
        );
        assert_eq!(
            parse("type=oci,dest=layout,tar=false").unwrap(),
            Output::Archive {
                format: ArchiveFormat::Oci,
                dest: ArchiveDestination::Dir(PathBuf::from("layout")),
                names: Vec::new()
            }
        );
        let image = parse("type=image,\"name=r/a:1,r/b:2\",push=true").unwrap();
        let Output::Image { names, push } = image else {
            panic!("{image:?}")
        };
        assert!(push);
        assert_eq!(names.len(), 2);
        assert_eq!(
            parse("type=docker").unwrap(),
            Output::Image {
                names: Vec::new(),
                push: false
            }
        );
        let tag = Reference::parse("app:1").unwrap();
        let Output::Archive { names, .. } = parse_output(
            "type=docker,dest=a.tar,name=other:2",
            std::slice::from_ref(&tag),
        )
        .unwrap() else {
            panic!("an archive")
        };
        assert_eq!(names, vec![tag], "-t replaces name=, as in buildx");
    }

    #[test]
    fn bad_outputs_are_usage_errors_naming_the_problem() {
        for (bad, message) in [
            ("type=local", "dest is required for local exporter"),
            (
                "type=local,dest=-",
                "dest cannot be stdout for local exporter",
            ),
            ("type=nope,dest=x", "unknown type \"nope\""),
            ("dest=x", "type is required"),
            (
                "type=image,push=true",
                "tag is needed when pushing to registry",
            ),
            ("type=image,name=x/UPPER", "name \"x/UPPER\""),
            ("type=tar,dest=x,foo=bar", "foo=bar is not supported"),
            (
                "type=oci,dest=x,tar=maybe",
                "tar=\"maybe\": want true|false",
            ),
            (
                "type=image,name=a,compression=zstd",
                "compression=zstd is not supported",
            ),
            ("type=local,dest=x,\"unterminated", "unterminated quote"),
            ("type=local,dest=x,novalue", "invalid value novalue"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.is_usage(), "{bad}: {err}");
            assert!(err.to_string().contains(message), "{bad}: {err}");
        }
        let two = [
            "type=tar,dest=/x/a.tar".to_string(),
            "-".to_string(),
            "type=oci,dest=-".to_string(),
        ];
        // `-` twice would write two archives into one stream.
        if !io::stdout().is_terminal() {
            let err = parse_outputs(&two[1..], &[]).unwrap_err();
            assert!(
                err.to_string()
                    .contains("multiple outputs configured to write to stdout"),
                "{err}"
            );
            assert_eq!(parse_outputs(&two[..2], &[]).unwrap().len(), 2);
        }
    }
}
