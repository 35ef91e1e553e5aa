//! COPY and ADD: sources from the context, another stage or image, URLs, git repositories
//! or heredocs, planned into one tar that becomes the layer; keyed on the content.

use std::path::{Path, PathBuf};

use super::{lowerdirs, resolve_chown, Outcome};
use crate::below::Below;
use crate::cache::CacheKey;
use crate::copy::{self, CopyOptions, CopyPlan, DirTree};
use crate::dockerfile::{expand_word, Instruction};
use crate::image_tree::ImageTree;
use crate::layers::{commit_layer, is_archive, retar_under, LayerError};
use crate::rootfs::UnionFs;
use crate::solve::cache_hit::{add_layer, cache_hit, Origin};
use crate::solve::context::{sha256_file, Context};
use crate::solve::schedule::Done;
use crate::solve::state::{now_or_epoch, BuildRun, StageState};
use crate::solve::{copy_flags, fetch, stage_ref, BuildError, Result, StepError};

/// What COPY and ADD share; ADD alone fetches URLs and git and extracts archives.
pub(super) struct CopySpec<'a> {
    srcs: &'a [String],
    dest: &'a str,
    from: Option<&'a str>,
    chown: Option<&'a str>,
    chmod: Option<&'a str>,
    is_add: bool,
    heredocs: &'a [crate::dockerfile::Heredoc],
    link: bool,
    parents: bool,
    exclude: &'a [String],
    checksum: Option<&'a str>,
    keep_git_dir: bool,
}

impl<'a> CopySpec<'a> {
    pub(super) fn copy(c: &'a crate::dockerfile::Copy) -> Self {
        CopySpec {
            srcs: &c.srcs,
            dest: &c.dest,
            from: c.from.as_deref(),
            chown: c.chown.as_deref(),
            chmod: c.chmod.as_deref(),
            is_add: false,
            heredocs: &c.heredocs,
            link: c.link,
            parents: c.parents,
            exclude: &c.exclude,
            checksum: None,
            keep_git_dir: false,
        }
    }

    pub(super) fn add(a: &'a crate::dockerfile::Add) -> Self {
        CopySpec {
            srcs: &a.srcs,
            dest: &a.dest,
            from: None,
            chown: a.chown.as_deref(),
            chmod: a.chmod.as_deref(),
            is_add: true,
            heredocs: &a.heredocs,
            link: a.link,
            parents: false,
            exclude: &a.exclude,
            checksum: a.checksum.as_deref(),
            keep_git_dir: a.keep_git_dir.unwrap_or(false),
        }
    }
}

pub(super) fn copy_step(
    run: &mut BuildRun,
    state: &mut StageState,
    inst: &Instruction,
    spec: CopySpec,
    done: &Done,
    ctx: &mut Context,
) -> Result<Outcome> {
    let name = if spec.is_add { "ADD" } else { "COPY" };
    let env = state.expand_env();
    let location = run.location(inst.span.start);
    let e = |source: StepError| BuildError::Step {
        location: location.clone(),
        span: inst.span,
        source: Box::new(source),
    };
    let mut srcs: Vec<String> = Vec::new();
    for s in spec.srcs {
        srcs.push(expand_word(s, &env, state.escape).map_err(|x| e(x.into()))?);
    }
    // ADD of URLs and git repositories (fetch.rs); the rest are local sources.
    let (gits, urls): (Vec<String>, Vec<String>) = if spec.is_add {
        let remote: Vec<String> = srcs
            .iter()
            .filter(|s| fetch::is_git_url(s) || fetch::is_url(s))
            .cloned()
            .collect();
        srcs.retain(|s| !remote.contains(s));
        remote.into_iter().partition(|s| fetch::is_git_url(s))
    } else {
        (Vec::new(), Vec::new())
    };
    if spec.checksum.is_some() && (urls.len() != 1 || !gits.is_empty() || !srcs.is_empty()) {
        return Err(e(StepError::ChecksumSources));
    }
    let dest = expand_word(spec.dest, &env, state.escape).map_err(|x| e(x.into()))?;
    let workdir = if state.config.config.working_dir.is_empty() {
        "/".to_string()
    } else {
        state.config.config.working_dir.clone()
    };
    let dest_abs = if dest.starts_with('/') {
        dest.clone()
    } else {
        format!("{workdir}/{dest}")
    };
    let dest_abs = if dest.ends_with('/') || dest == "." {
        format!("{}/", dest_abs.trim_end_matches('/'))
    } else {
        dest_abs
    };

    let below = super::below(run, &state.layers)?.map_err(|x| e(x.into()))?;
    let chown = match spec.chown {
        None => None,
        Some(c) => {
            let c = expand_word(c, &env, state.escape).map_err(|x| e(x.into()))?;
            Some(resolve_chown(&below, &c).map_err(|x| e(x.into()))?)
        }
    };
    let chmod_flag = match spec.chmod {
        None => None,
        Some(m) => Some(copy_flags::parse_chmod(m).map_err(e)?),
    };
    let chmod = match chmod_flag {
        Some(copy_flags::Chmod::Octal(m)) => Some(m),
        _ => None,
    };
    // --link: the layer may not depend on what is below it.
    let dest_is_dir = !spec.link && below.is_dir(&dest_abs).unwrap_or(false);
    let source_count = srcs.len() + urls.len() + gits.len() + spec.heredocs.len();
    if source_count > 1 && !dest_abs.ends_with('/') && !dest_is_dir {
        return Err(e(copy::CopyError::DestinationNotDir.into()));
    }
    let opts = CopyOptions {
        chown,
        chmod,
        keep_owner: spec.from.is_some(),
        epoch: run.build.opts.source_date_epoch,
    };

    // Where the sources come from: another stage or image, or the context.
    let from_union = match spec.from {
        None => None,
        Some(from) => {
            let from = expand_word(from, &env, state.escape).map_err(|x| e(x.into()))?;
            // `wait_for_inputs` waited for the stage before the step began; `get` reads it.
            let stage = match stage_ref(run.build.dockerfile, &from, usize::MAX) {
                Some(i) => done.get(i)?,
                None => None,
            };
            let named = run.named_context(&from).cloned();
            let layers = match (stage, named) {
                (Some(stage), _) => stage.layers,
                (None, Some(context)) => {
                    run.named_context_result(&from, &context, inst.span)?.layers
                }
                (None, None) => {
                    let r = store::Reference::parse(&from).map_err(|source| {
                        e(StepError::FromReference {
                            from: from.clone(),
                            source,
                        })
                    })?;
                    let manifest =
                        run.resolve_image(&r, &run.platform, &run.location(inst.span.start))?;
                    run.build.store.image(&manifest)?.layers
                }
            };
            Some(UnionFs::new(lowerdirs(run, &layers)?))
        }
    };
    let excluded = |rel: &str| ctx.is_excluded(rel);
    let dir_tree = DirTree {
        root: ctx.root.clone(),
        is_excluded: &excluded,
    };
    let tree: &dyn copy::SourceTree = match &from_union {
        Some(u) => u,
        None => &dir_tree,
    };
    let excluding = match spec.exclude.is_empty() {
        true => None,
        false => Some(copy_flags::ExcludeTree::new(tree, spec.exclude, &srcs).map_err(e)?),
    };
    let tree: &dyn copy::SourceTree = match &excluding {
        Some(t) => t,
        None => tree,
    };
    // ADD extracts local archives instead of copying them.
    let mut archives: Vec<PathBuf> = Vec::new();
    let mut plain: Vec<String> = Vec::new();
    for s in &srcs {
        // Found as any context source is: inside the context, .dockerignore applied.
        let archive = match copy::clean_rel(s) {
            Some(rel) if spec.is_add && from_union.is_none() => tree
                .stat_follow(&rel)
                .map_err(|x| e(StepError::io("reading", s)(x)))?
                .filter(|(real, meta)| meta.is_file() && is_archive(real).unwrap_or(false))
                .map(|(real, _)| real),
            _ => None,
        };
        match archive {
            Some(real) => archives.push(real),
            None => plain.push(s.clone()),
        }
    }
    let mut plan = if plain.is_empty() {
        CopyPlan::default()
    } else if spec.parents {
        copy_flags::plan_parents(tree, &plain, &dest_abs, &opts).map_err(e)?
    } else {
        copy::plan(tree, &plain, &dest_abs, dest_is_dir, &opts).map_err(|x| e(x.into()))?
    };
    drop(excluding);
    let scratch = copy_flags::Scratch(
        run.build
            .store
            .layout()
            .snapshot_temp(store::layout::COPY_TEMP_PREFIX),
    );
    let mtime = now_or_epoch(run.build.opts.source_date_epoch);
    copy_flags::add_heredocs(
        &mut plan,
        spec.heredocs,
        &env,
        &scratch.0,
        &dest_abs,
        dest_is_dir,
        &opts,
        mtime,
    )
    .map_err(e)?;
    // Each download stays locked against a prune until the layer is written.
    let mut downloads = Vec::new();
    for url in &urls {
        let root = run.build.store.layout().root();
        let got = fetch::download(root, url, spec.checksum, &run.build.opts.build_args)
            .map_err(|x| e(x.into()))?;
        copy_flags::add_file(
            &mut plan,
            got.path.clone(),
            &got.file_name,
            &dest_abs,
            dest_is_dir,
            0o600,
            &opts,
            got.mtime.unwrap_or(0),
        )
        .map_err(e)?;
        downloads.push(got);
    }
    let mut git_commits = Vec::new();
    for g in &gits {
        git_commits.push(fetch::git_resolve(g).map_err(|x| e(x.into()))?);
    }
    if let Some(c) = &chmod_flag {
        for item in plan.items.values_mut() {
            item.mode = copy_flags::apply_chmod(c, item.mode, item.kind == copy::ItemKind::Dir);
        }
    }
    let nothing_below = Below::unpacked(run.build.store, UnionFs::default());
    let below_for_parents: &dyn ImageTree = if spec.link { &nothing_below } else { &below };
    // An extracted archive lands in the destination directory, which the layer holds too.
    let archive_dir = copy::clean_abs(&dest_abs);
    if !archives.is_empty() && !archive_dir.is_empty() && !plan.items.contains_key(&archive_dir) {
        plan.add_dir(&archive_dir, below_for_parents, &opts)
            .map_err(|x| e(x.into()))?;
    }
    plan.add_parents(below_for_parents, &opts)
        .map_err(|x| e(x.into()))?;
    drop(dir_tree);
    let mut content = |p: &Path| {
        if from_union.is_none() && p.starts_with(&ctx.root) {
            ctx.digest(p)
        } else {
            sha256_file(p)
        }
    };
    let mut fingerprint = plan.fingerprint(&mut content).map_err(|x| e(x.into()))?;
    for (g, commit) in gits.iter().zip(&git_commits) {
        fingerprint.push_str(&format!(" git:{g}@{commit}:{}", spec.keep_git_dir));
    }
    if let Some(c) = spec.chmod {
        fingerprint.push_str(&format!(" chmod:{c}"));
    }
    for a in &archives {
        fingerprint.push_str(&format!(
            " archive:{}",
            sha256_file(a).map_err(|x| e(StepError::io("reading", a)(x)))?
        ));
    }
    let created_by = format!("{name} {} {} # buildkit", srcs.join(" "), dest);
    let key_text = format!(
        "{name} {}\0{dest_abs}\0{}\0{}",
        srcs.join("\0"),
        urls.join("\0"),
        gits.join("\0")
    );
    // --link: keyed without the parent, then stacked: a changed base keeps this layer.
    let parent_key = state.key.clone();
    let key_parent = if spec.link {
        CacheKey::for_base("link", "")
    } else {
        state.key.clone()
    };
    // The instruction is expanded already; a --link layer does not change with other ARGs.
    let key_args: &[(String, String)] = if spec.link { &[] } else { &state.args };
    let key = CacheKey::for_step(&key_parent, &key_text, key_args, Some(&fingerprint));
    let restack = |state: &mut StageState, key: &CacheKey| {
        if spec.link {
            state.key = CacheKey::for_step(&parent_key, "link", &[], Some(key.as_str()));
        }
    };
    if let Some((layer, origin)) = cache_hit(run, &key)? {
        add_layer(run, state, key.clone(), layer, &created_by, origin)?;
        restack(state, &key);
        return Ok(Outcome::Cached);
    }
    let mut checkouts = Vec::new();
    for (g, commit) in gits.iter().zip(&git_commits) {
        let co = fetch::git_checkout(g, commit, spec.keep_git_dir, &scratch.0)
            .map_err(|x| e(x.into()))?;
        let tree = DirTree {
            root: co.dir.clone(),
            is_excluded: &|_| false,
        };
        let src = if co.subdir.is_empty() {
            ".".to_string()
        } else {
            co.subdir.clone()
        };
        let dir_dest = format!("{}/", dest_abs.trim_end_matches('/'));
        let mut p = copy::plan(&tree, &[src], &dir_dest, true, &opts).map_err(|x| e(x.into()))?;
        if let Some(c) = &chmod_flag {
            for item in p.items.values_mut() {
                item.mode = copy_flags::apply_chmod(c, item.mode, item.kind == copy::ItemKind::Dir);
            }
        }
        plan.items.extend(p.items);
        checkouts.push(co);
    }
    if !checkouts.is_empty() {
        plan.add_parents(below_for_parents, &opts)
            .map_err(|x| e(x.into()))?;
    }
    let archive_dest = dest_abs.clone();
    let layer = commit_layer(
        run.build.store,
        run.build.lease,
        |w: &mut dyn std::io::Write| -> std::result::Result<(), StepError> {
            if archives.is_empty() {
                plan.write_tar(w)?;
                return Ok(());
            }
            // Entries of the plan first, then each archive's entries re-rooted under dest; a
            // tar reader takes the concatenation once the end-of-archive blocks between are cut.
            let mut buf = Vec::new();
            if !plan.items.is_empty() {
                plan.write_tar(&mut buf)?;
                buf.truncate(buf.len().saturating_sub(1024));
                w.write_all(&buf).map_err(StepError::Tree)?;
            }
            for (i, a) in archives.iter().enumerate() {
                let f = crate::rootfs::open_nofollow(a).map_err(StepError::io("opening", a))?;
                let mut out = Vec::new();
                retar_under(f, &archive_dest, &mut out).map_err(StepError::io("extracting", a))?;
                if i + 1 < archives.len() {
                    out.truncate(out.len().saturating_sub(1024));
                }
                w.write_all(&out).map_err(StepError::Tree)?;
            }
            Ok(())
        },
    )
    .map_err(|x| {
        e(match x {
            LayerError::Write(step) => step,
            LayerError::Store(source) => StepError::Store(source),
            LayerError::Io(source) => StepError::LayerIo(source),
        })
    })?;
    drop(checkouts);
    drop(downloads);
    add_layer(run, state, key.clone(), layer, &created_by, Origin::Built)?;
    restack(state, &key);
    Ok(Outcome::Done)
}
