//! Why one step (or a stage's FROM) failed: the typed cause that `BuildError::Step` carries
//! under the instruction's `Dockerfile:LINE`.
//!
//! Each variant words its message as the user reads it after the location. A cause whose
//! own causes the message already spells out (a copy or store error) is shown through
//! `error_chain`, so the text is the same whether it is read with `to_string` or as a chain.

use std::io;
use std::path::PathBuf;

use store::platform::PlatformError;
use store::{Digest, ReferenceError, StoreError};

use super::fetch::FetchError;
use super::run_mounts::RunMountError;
use crate::copy::CopyError;
use crate::differ::DiffError;
use crate::dockerfile::ExpandError;
use crate::dockerignore::IgnoreError;
use crate::exec::user::UserError;
use crate::layers::LayerError;
use crate::remote::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A word of the instruction did not expand.
    #[error(transparent)]
    Expand(#[from] ExpandError),
    /// `--chown` or the USER a WORKDIR is made for names no user or group of the image.
    #[error(transparent)]
    User(#[from] UserError),
    /// A `RUN --mount` that does not parse, or whose source or secret is missing.
    #[error(transparent)]
    Mount(#[from] RunMountError),
    /// An `ADD` URL or git source that could not be fetched.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// A COPY/ADD source that is missing, outside the context, or unreadable.
    #[error("{}", error_chain(.0))]
    Copy(#[from] CopyError),
    /// A file or directory the step reads or makes; `action` is the verb (`reading`,
    /// `creating`, `checking`, ...).
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading the tree below the destination (the parents a COPY adds).
    #[error("{0}")]
    Tree(#[from] io::Error),
    #[error("{}", error_chain(.0))]
    Store(#[from] StoreError),
    /// The layer's bytes could not be written to the store.
    #[error("writing layer: {0}")]
    LayerIo(#[source] io::Error),
    /// The RUN's upper directory could not be turned into a layer.
    #[error("writing the layer: {}", error_chain(.0))]
    RunLayer(#[source] LayerError<DiffError>),
    /// The layer of a WORKDIR or of a named context directory could not be written.
    #[error("{0}")]
    Layer(#[source] LayerError<CopyError>),
    /// EXPOSE's port spec is not `PORT[-PORT][/PROTO]`.
    #[error("invalid port spec {0:?}")]
    PortSpec(String),
    #[error("invalid --chmod {0:?}: want octal (0755) or symbolic (u+x,go-w)")]
    Chmod(String),
    #[error("--exclude: {0}")]
    Exclude(#[source] IgnoreError),
    /// A `${` without its `}` in a heredoc body; the text is the body from the `$` on,
    /// cut to 20 characters.
    #[error("unterminated ${{ in heredoc: {0}")]
    HeredocUnterminated(String),
    #[error("RUN heredocs need the shell form")]
    HeredocExecForm,
    #[error("RUN --security=insecure is not allowed: pass --allow security.insecure")]
    InsecureNotAllowed,
    #[error("RUN --network=host is not allowed: pass --allow network.host")]
    NetworkHostNotAllowed,
    #[error("ADD --checksum needs exactly one http(s) source")]
    ChecksumSources,
    #[error("COPY --from={from}: {source}")]
    FromReference {
        from: String,
        #[source]
        source: ReferenceError,
    },
    #[error("FROM --platform={raw}: {source}")]
    Platform {
        raw: String,
        #[source]
        source: PlatformError,
    },
    #[error("named context image {manifest}: bad config: {source}")]
    NamedContextConfig {
        manifest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error("named context {name}: {source}")]
    NamedContextImage {
        name: String,
        #[source]
        source: StoreError,
    },
    #[error("named context {}: {source}", dir.display())]
    NamedContextDir {
        dir: PathBuf,
        #[source]
        source: CopyError,
    },
    /// The named context directory's `.dockerignore`.
    #[error("{}: {source}", path.display())]
    NamedContextIgnore {
        path: PathBuf,
        #[source]
        source: IgnoreError,
    },
}

impl StepError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| StepError::Io {
            action,
            path,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::dockerfile::Span;
    use crate::solve::BuildError;

    #[test]
    fn a_step_error_reads_file_line_then_its_cause_and_keeps_the_cause_typed() {
        let err = BuildError::Step {
            location: "Dockerfile:2".into(),
            span: Span::line(2),
            source: Box::new(StepError::Chmod("zz".into())),
        };
        assert_eq!(
            err.to_string(),
            "Dockerfile:2: invalid --chmod \"zz\": want octal (0755) or symbolic (u+x,go-w)"
        );
        assert_eq!(
            err.source().map(|s| s.to_string()).as_deref(),
            Some("invalid --chmod \"zz\": want octal (0755) or symbolic (u+x,go-w)")
        );
        let BuildError::Step { source, .. } = &err else {
            panic!("not a step error: {err:?}");
        };
        assert!(
            matches!(&**source, StepError::Chmod(v) if v == "zz"),
            "{source:?}"
        );
    }

    #[test]
    fn a_cause_with_causes_of_its_own_shows_them_once() {
        let io = io::Error::new(io::ErrorKind::PermissionDenied, "denied");
        let copy = CopyError::Io {
            op: "reading",
            path: "a/b".into(),
            source: io,
        };
        let err = StepError::Copy(copy);
        assert_eq!(err.to_string(), "reading a/b: denied");
    }
}
