//! `strata build`: `--check` goes to the front end only; otherwise build, tag, print the ID.
//!
//! buildx's flags that CI scripts pass on every build are accepted where strata does what
//! they ask (`--load`, `--platform`, `--output`, `--label`, `--annotation`, provenance,
//! `--metadata-file`) and refused with a clear error where it cannot yet (SBOM; a
//! docker-archive of a multi-platform image, as buildx refuses it).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use builder::exec;
use builder::progress::{Reporter, Silent};
use builder::solve::BuildOptions;
use engine::BuildRequest;
use store::{Reference, Store};

use super::Ctx;
use crate::cli::{BuildArgs, Isolation, Network, Progress, Snapshotter};
use crate::output::{self, UsageError};
use crate::progress::{PlainReporter, RawJsonReporter, TtyReporter};

pub fn run(ctx: &Ctx, args: &BuildArgs) -> Result<()> {
    if args.check {
        return super::check::run(ctx, args);
    }
    let platforms = parse_platforms(&args.platforms)?;
    let runtime = parse_runtime_flags(args)?;
    if args.no_cache && !args.no_cache_filter.is_empty() {
        anyhow::bail!("--no-cache and --no-cache-filter cannot currently be used together");
    }
    let provenance = engine::provenance::parse_attestations(
        args.provenance.as_deref(),
        args.sbom.as_deref(),
        &args.attest,
    )?;
    let cache_from = args
        .cache_from
        .iter()
        .map(|c| engine::parse_cache_from(c))
        .collect::<engine::Result<Vec<_>>>()?;
    let cache_to = args
        .cache_to
        .iter()
        .map(|c| engine::parse_cache_to(c))
        .collect::<engine::Result<Vec<_>>>()?;
    let mut tags = args
        .tags
        .iter()
        .map(|t| Reference::parse(t).map_err(|e| UsageError(format!("invalid tag {t:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = engine::parse_outputs(&args.outputs, &tags)?;
    // `type=image,name=…,push=true` is `-t … --push`.
    let (output_names, output_push) = engine::outputs::image_names(&outputs);
    if tags.is_empty() {
        tags = output_names;
    }
    let (manifest_annotations, index_annotations) =
        parse_annotations(&args.annotations, &platforms)?;
    // BuildKit's rule: index annotations need an index, which a build of several
    // platforms (stored, pushed or written as an OCI archive) or the push of an image with
    // its provenance makes; the index descriptor exists only in the first case.
    let several = platforms.len() > 1;
    let makes_index = several || ((args.push || output_push) && provenance.is_some());
    if (!index_annotations.is_empty() && !makes_index)
        || (!index_annotations.index_descriptor.is_empty() && !several)
    {
        anyhow::bail!("index annotations not supported for single platform export");
    }
    let build_args = parse_build_args(&args.build_args)?;
    let source_date_epoch = build_args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| UsageError(format!("invalid SOURCE_DATE_EPOCH {s:?}: want seconds")))
        })
        .transpose()?;
    let store = Store::open(&ctx.root)
        .with_context(|| format!("opening the store at {}", ctx.root.display()))?;
    // Held until the build is done: stdin, git and URL contexts are copies under ROOT.
    let contexts = engine::contexts::resolve(
        &store,
        &engine::contexts::ContextArgs {
            context: &args.context.to_string_lossy(),
            dockerfile: args.file.as_deref(),
            named: &args.build_contexts,
            build_args: &build_args,
        },
        &mut std::io::stdin().lock(),
    )?;
    let dockerfile = contexts.dockerfile_path();
    // BuildKit runs the build checks in every build; `# check=error=true` fails it before
    // anything is built. A Dockerfile that does not parse is left to the build's own error.
    let checks = super::check::for_build(args, &dockerfile).ok();
    if let Some(report) = &checks {
        if let (true, Some(err)) = (report.is_violation, &report.error) {
            eprint!(
                "{}",
                builder::dockerfile::lint::format_build_summary(report)
            );
            return Err(anyhow::anyhow!(err.clone()));
        }
    }
    let progress = progress_mode(args.progress)?;
    if let (Some(report), Progress::Rawjson, false) = (&checks, progress, args.quiet) {
        let text = std::fs::read(&dockerfile).unwrap_or_default();
        crate::progress::raw_json_warnings(report, &text);
    }
    // buildx (v0.15+) adds the warnings to the metadata file only when asked.
    let metadata_warnings = match &checks {
        Some(report)
            if args.metadata_file.is_some()
                && engine::warnings::metadata_warnings_enabled(
                    std::env::var("BUILDX_METADATA_WARNINGS").ok().as_deref(),
                ) =>
        {
            let text = std::fs::read(&dockerfile).unwrap_or_default();
            let (vertex, _) = crate::progress::definition_vertex(report);
            engine::warnings::metadata_warnings(&engine::warnings::vertex_warnings(
                report, &text, &vertex,
            ))
        }
        _ => None,
    };
    // BuildKit's inline cache: `--cache-to type=inline`, or the build arg docker users set.
    let inline_cache = cache_to.iter().any(|t| t.reference.is_none())
        || matches!(
            build_args.get("BUILDKIT_INLINE_CACHE").map(String::as_str),
            Some("1" | "true")
        );
    let allowed = parse_allow(&args.allow)?;
    let sandbox = choose_sandbox(&store, args)?;
    let options = BuildOptions {
        context: contexts.context.clone(),
        dockerfile: contexts.dockerfile.clone(),
        tags,
        build_args,
        target: args.target.clone(),
        no_cache: args.no_cache,
        no_cache_stages: args
            .no_cache_filter
            .iter()
            .flat_map(|f| f.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        pull: args.pull,
        network: match args.network {
            Network::Default => exec::Network::Isolated,
            Network::None => exec::Network::None,
            Network::Host => exec::Network::Host,
        },
        sandbox,
        runtime,
        source_date_epoch,
        secrets: args
            .secrets
            .iter()
            .map(|s| {
                builder::solve::run_mounts::parse_secret_flag(s)
                    .map_err(|e| UsageError(e.to_string()))
            })
            .collect::<Result<_, _>>()?,
        ssh: args
            .ssh
            .iter()
            .map(|s| {
                builder::solve::run_mounts::parse_ssh_flag(s).map_err(|e| UsageError(e.to_string()))
            })
            .collect::<Result<_, _>>()?,
        allow_insecure: allowed.is_insecure_allowed,
        allow_network_host: allowed.is_network_host_allowed,
        inline_cache,
        jobs: args
            .jobs
            .map_or_else(builder::solve::schedule::default_jobs, |n| n as usize),
        labels: parse_labels(&args.labels)?,
        manifest_annotations,
        platforms,
        named_contexts: contexts.named.clone(),
    };
    let request = BuildRequest {
        options,
        cache_from,
        cache_to,
        iidfile: args.iidfile.clone(),
        push: args.push || output_push,
        outputs,
        provenance,
        index_annotations,
    };
    let mut reporter: Box<dyn Reporter> = match (args.quiet, progress) {
        (true, _) | (_, Progress::Quiet) => Box::new(Silent),
        (_, Progress::Plain) => Box::new(PlainReporter::new()),
        (_, Progress::Tty) => Box::new(TtyReporter::new()),
        (_, Progress::Rawjson) => Box::new(RawJsonReporter::new()),
        (_, Progress::Auto) if output::stderr_is_tty() => Box::new(TtyReporter::new()),
        (_, Progress::Auto) => Box::new(PlainReporter::new()),
    };
    let registry = super::registry(ctx, args.quiet);
    let result = engine::build(&store, &registry, &request, reporter.as_mut());
    // docker prints the build checks' warnings after the build, failed or not.
    if let Some(report) = &checks {
        let quiet = args.quiet || matches!(progress, Progress::Quiet | Progress::Rawjson);
        if !quiet {
            eprint!(
                "{}",
                builder::dockerfile::lint::format_build_summary(report)
            );
        }
    }
    let built = result?;
    let result = &built.result;
    if let Some(path) = &args.metadata_file {
        // The names as typed (`-t`), else those of `--output type=image,name=…`.
        let names: Vec<String> = if args.tags.is_empty() {
            request.options.tags.iter().map(|t| t.to_string()).collect()
        } else {
            args.tags.clone()
        };
        let mut metadata = metadata(&store, &names, &built, &request)?;
        if let Some(warnings) = metadata_warnings {
            metadata["buildx.build.warnings"] = warnings;
        }
        let text = serde_json::to_string_pretty(&metadata).context("encoding the metadata")?;
        write_atomically(path, text.as_bytes())
            .with_context(|| format!("writing the metadata file {}", path.display()))?;
    }
    if args.quiet {
        // buildx prints the index digest of a multi-platform build.
        match &built.index {
            Some(index) => println!("{}", index.digest),
            None => println!("{}", result.image_id),
        }
    }
    Ok(())
}

/// `--progress auto` takes `BUILDKIT_PROGRESS` when it is set (buildx's printer does the
/// same); an unknown value there is an error, as in buildx.
fn progress_mode(flag: Progress) -> Result<Progress> {
    use clap::ValueEnum;
    match std::env::var("BUILDKIT_PROGRESS") {
        Ok(v) if !v.is_empty() && flag == Progress::Auto => {
            Progress::from_str(&v, false).map_err(|_| {
                UsageError(format!(
                    "invalid progress mode {v} (from BUILDKIT_PROGRESS)"
                ))
                .into()
            })
        }
        _ => Ok(flag),
    }
}

/// `--isolation` and `--snapshotter`, each as given or, when not given, what this host
/// allows: probed when the first RUN executes (a build whose steps are all cached never
/// pays for the probe), with a one-line note when it is not namespaces and overlay.
fn choose_sandbox(store: &Store, args: &BuildArgs) -> Result<exec::probe::SandboxChoice> {
    let isolation = args.isolation.map(|i| match i {
        Isolation::Oci | Isolation::Rootless => exec::Isolation::Namespaces,
        Isolation::Chroot => exec::Isolation::Chroot,
    });
    let snapshotter = args.snapshotter.map(|s| match s {
        Snapshotter::Overlay => exec::Snapshotter::Overlay,
        Snapshotter::Copy => exec::Snapshotter::Copy,
    });
    if isolation == Some(exec::Isolation::Chroot) && snapshotter == Some(exec::Snapshotter::Overlay)
    {
        return Err(UsageError(
            "--isolation chroot cannot mount overlayfs: use --snapshotter copy".into(),
        )
        .into());
    }
    Ok(exec::probe::SandboxChoice::new(
        isolation,
        snapshotter,
        store.layout().snapshot_temp(store::layout::RUN_TEMP_PREFIX),
        store.layout().root().to_path_buf(),
        |note| eprintln!("strata: note: {note}"),
    ))
}

/// `--platform`: one or several times, or in a comma list (`local` is this machine's);
/// duplicates build once. Empty: this machine's platform.
fn parse_platforms(raw: &[String]) -> Result<Vec<store::platform::Platform>> {
    let mut out: Vec<store::platform::Platform> = Vec::new();
    for p in raw.iter().flat_map(|p| p.split(',')).map(str::trim) {
        let platform = if p == "local" {
            builder::image::build_platform()
        } else {
            store::platform::Platform::parse(p)
                .map_err(|e| UsageError(format!("invalid --platform {p:?}: {e}")))?
        };
        if !out.contains(&platform) {
            out.push(platform);
        }
    }
    Ok(out)
}

/// `--add-host`, `--shm-size`, `--ulimit` with docker's syntax and messages (exit 2), and
/// `--cgroup-parent`, refused: every RUN is a child of this strata process and stays in
/// its cgroup; moving it elsewhere would need a writable, delegated cgroup hierarchy that
/// a daemonless builder cannot count on (nor does one exist on hybrid cgroup v1 hosts).
fn parse_runtime_flags(args: &BuildArgs) -> Result<exec::RuntimeOptions> {
    if let Some(parent) = &args.cgroup_parent {
        anyhow::bail!(
            "--cgroup-parent {parent}: not supported: strata has no daemon, so RUN steps run in strata's own cgroup; start strata in the cgroup instead (e.g. systemd-run --scope --slice=NAME strata build …)"
        );
    }
    let usage = |flag: &str, value: &str, e: &dyn std::fmt::Display| {
        UsageError(format!(
            "invalid argument {value:?} for \"--{flag}\" flag: {e}"
        ))
    };
    let mut out = exec::RuntimeOptions::default();
    for raw in &args.add_hosts {
        let hosts =
            exec::runtime_flags::parse_add_host(raw).map_err(|e| usage("add-host", raw, &e))?;
        out.extra_hosts.extend(hosts);
    }
    if let Some(raw) = &args.shm_size {
        let bytes = super::prune::parse_bytes(raw).map_err(|e| usage("shm-size", raw, &e))?;
        // docker: 0 means the default size.
        out.shm_size = (bytes > 0).then_some(bytes);
    }
    for raw in &args.ulimits {
        let limit = exec::runtime_flags::parse_ulimit(raw).map_err(|e| usage("ulimit", raw, &e))?;
        // Like docker's map by name: a later --ulimit for the same resource wins.
        out.ulimits.retain(|u| u.resource != limit.resource);
        out.ulimits.push(limit);
    }
    Ok(out)
}

/// `FILE` replaced in one step (a temporary file beside it, then a rename), as buildx
/// writes its metadata file: a reader never sees half of it.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

/// `buildx.build.provenance` as buildx adds it from BuildKit's build record: the SLSA v0.2
/// predicate, without `metadata` (and `buildConfig`) in the default `min` mode, whole in
/// `max`; `BUILDX_METADATA_PROVENANCE=disabled` (or a false boolean) leaves it out.
fn metadata_provenance(
    built: &engine::build::Built,
    request: &BuildRequest,
) -> Option<serde_json::Value> {
    let setting = std::env::var("BUILDX_METADATA_PROVENANCE").unwrap_or_default();
    let mode = match setting.trim() {
        "max" => engine::provenance::ProvenanceMode::Max,
        "disabled" | "false" | "0" | "f" | "F" | "FALSE" | "False" => return None,
        _ => engine::provenance::ProvenanceMode::Min,
    };
    let dockerfile = request.options.dockerfile_path();
    let facts = engine::provenance::BuildFacts {
        build_args: &request.options.build_args,
        target: request.options.target.as_deref(),
        dockerfile: &dockerfile,
        materials: &built.result.materials,
        platform: &built.result.platform,
        started: built.started.clone(),
        finished: built.finished.clone(),
    };
    let provenance = engine::provenance::Provenance {
        mode,
        builder_id: request
            .provenance
            .as_ref()
            .and_then(|p| p.builder_id.clone()),
    };
    let mut predicate = engine::provenance::predicate(&provenance, &facts);
    if mode == engine::provenance::ProvenanceMode::Min {
        if let Some(fields) = predicate.as_object_mut() {
            fields.remove("metadata");
            fields.remove("buildConfig");
        }
    }
    Some(predicate)
}

/// The JSON `docker buildx build --metadata-file` writes for an image build, so actions
/// that read `containerimage.digest` from it work. The image's descriptor carries its
/// platform, as BuildKit's does for a single-platform build.
fn metadata(
    store: &Store,
    tags: &[String],
    built: &engine::build::Built,
    request: &BuildRequest,
) -> Result<serde_json::Value> {
    let result = &built.result;
    let path = store.blob_path(&result.manifest);
    let bytes = std::fs::read(&path)
        .with_context(|| format!("reading the built manifest {}", path.display()))?;
    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|m| m["mediaType"].as_str().map(str::to_string))
        .unwrap_or_else(|| store::media_types::OCI_MANIFEST.to_string());
    let mut out = serde_json::json!({
        "buildx.build.ref": format!("strata/local/{}", build_ref()),
        "containerimage.config.digest": result.image_id.to_string(),
        "containerimage.descriptor": {
            "mediaType": media_type,
            "digest": result.manifest.to_string(),
            "size": bytes.len(),
        },
        "containerimage.digest": result.manifest.to_string(),
    });
    if store::media_types::is_manifest(&media_type) {
        // An image manifest (not a multi-platform index): its config names the platform.
        let config = std::fs::read(store.blob_path(&result.image_id))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        if let Some(config) = config {
            let mut platform = serde_json::json!({
                "architecture": config["architecture"],
                "os": config["os"],
            });
            if let Some(variant) = config["variant"].as_str() {
                platform["variant"] = variant.into();
            }
            out["containerimage.descriptor"]["platform"] = platform;
        }
    }
    if let Some(index) = built.pushed_index.as_ref().or(built.index.as_ref()) {
        // BuildKit names the index it pushed, attestation and all.
        out["containerimage.digest"] = index.digest.to_string().into();
        out["containerimage.descriptor"] = serde_json::json!({
            "mediaType": index.media_type,
            "digest": index.digest.to_string(),
            "size": index.size,
        });
    }
    if !tags.is_empty() {
        out["image.name"] = tags.join(",").into();
    }
    if let Some(predicate) = metadata_provenance(built, request) {
        out["buildx.build.provenance"] = predicate;
    }
    Ok(out)
}

/// A 25-character lowercase id for `buildx.build.ref` (buildx's `builder/node/ID` form).
fn build_ref() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = format!("{nanos}-{}", std::process::id());
    store::Digest::sha256_of(seed.as_bytes()).hex()[..25].to_string()
}

/// The entitlements `--allow` grants (BuildKit's names; also comma-separated).
struct Entitlements {
    /// `security.insecure`: `RUN --security=insecure`.
    is_insecure_allowed: bool,
    /// `network.host`: `RUN --network=host`.
    is_network_host_allowed: bool,
}

fn parse_allow(raw: &[String]) -> Result<Entitlements> {
    let mut allowed = Entitlements {
        is_insecure_allowed: false,
        is_network_host_allowed: false,
    };
    for entitlement in raw.iter().flat_map(|a| a.split(',')) {
        match entitlement.trim() {
            "security.insecure" => allowed.is_insecure_allowed = true,
            "network.host" => allowed.is_network_host_allowed = true,
            other => {
                return Err(UsageError(format!(
                    "invalid --allow {other:?}: want security.insecure or network.host"
                ))
                .into())
            }
        }
    }
    Ok(allowed)
}

/// `--label KEY=VALUE`; `KEY` alone is an empty label, as in docker.
fn parse_labels(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for label in raw {
        let (k, v) = label.split_once('=').unwrap_or((label, ""));
        if k.trim().is_empty() {
            return Err(UsageError(format!("invalid --label {label:?}: want KEY=VALUE")).into());
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// `--annotation [TYPES:]KEY=VALUE` as buildx parses it, TYPES a comma list of `manifest`,
/// `manifest-descriptor`, `index`, `index-descriptor`, each with an optional `[PLATFORM]`.
/// The manifest level (the default) goes on every platform's manifest; `index` and
/// `manifest-descriptor` on the image index (see `IndexAnnotations`); `index-descriptor`
/// on the index's entry in an OCI archive output.
///
/// A `[PLATFORM]` qualifier counts as in BuildKit's image exporter: in a build of several
/// `platforms` the annotation goes on that platform's manifest (or index entry) only, and
/// a platform the build does not make is an error; a single-platform build's result has
/// no per-platform parts, so there it is dropped. On `index` it is ignored.
fn parse_annotations(
    raw: &[String],
    platforms: &[store::platform::Platform],
) -> Result<(
    builder::annotations::PlatformAnnotations,
    engine::image_index::IndexAnnotations,
)> {
    let mut out = builder::annotations::PlatformAnnotations::default();
    let mut index = engine::image_index::IndexAnnotations::default();
    let several = platforms.len() > 1;
    for annotation in raw {
        let (k, v) = annotation.split_once('=').ok_or_else(|| {
            UsageError(format!(
                "invalid annotation {annotation:?}, expected key=value"
            ))
        })?;
        let (types, key) = k.split_once(':').unwrap_or(("manifest", k));
        if key.is_empty() {
            return Err(UsageError(format!(
                "invalid annotation {annotation:?}, expected key=value"
            ))
            .into());
        }
        for typ in types.split(',') {
            let (level, platform) = match typ.split_once('[') {
                Some((level, rest)) => (level, rest.strip_suffix(']')),
                None => (typ, Some("")),
            };
            let Some(platform) = platform else {
                return Err(UsageError(format!(
                    "invalid annotation type {typ:?}, expected type and optional platform in square brackets"
                ))
                .into());
            };
            let platform = match platform {
                "" => None,
                p => parse_platforms(&[p.to_string()])?.into_iter().next(),
            };
            match level {
                "" | "manifest" | "manifest-descriptor" => {
                    match &platform {
                        Some(_) if !several => continue,
                        Some(p) if !platforms.contains(p) => {
                            anyhow::bail!("invalid annotation: no platform {p} found in source")
                        }
                        _ => {}
                    }
                    let to = if level == "manifest-descriptor" {
                        &mut index.manifest_descriptor
                    } else {
                        &mut out
                    };
                    to.insert(platform, key.to_string(), v.to_string());
                }
                "index" => {
                    index.index.insert(key.to_string(), v.to_string());
                }
                "index-descriptor" => {
                    index
                        .index_descriptor
                        .insert(key.to_string(), v.to_string());
                }
                other => {
                    return Err(UsageError(format!("unknown annotation type {other:?}")).into())
                }
            }
        }
    }
    Ok((out, index))
}

/// `KEY=VALUE`, or `KEY` alone to take the value from the environment (docker's rule; a
/// `KEY` not in the environment is left unset).
fn parse_build_args(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for arg in raw {
        match arg.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            Some(_) => {
                return Err(
                    UsageError(format!("invalid --build-arg {arg:?}: want KEY=VALUE")).into(),
                )
            }
            None => {
                if let Ok(v) = std::env::var(arg) {
                    out.insert(arg.clone(), v);
                }
            }
        }
    }
    Ok(out)
}
