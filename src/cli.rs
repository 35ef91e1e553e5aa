//! Clap definitions and help text, nothing else. Flags and their spelling follow the docker
//! CLI so that `strata` feels like `docker` to people who type `docker build` every day.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `0.1.0, build 1a2b3c4`: the package version and the commit it was built from, as
/// `docker --version` prints them.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), ", build ", env!("STRATA_COMMIT"));

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version = VERSION,
    about = "Daemonless container image builder and layer store"
)]
pub struct Cli {
    /// Store root [default: $STRATA_ROOT, else $XDG_DATA_HOME/strata, else ~/.local/share/strata]
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print the whole error chain and extra detail
    #[arg(long, global = true)]
    pub debug: bool,
    /// Registry (host:port) that may be reached over plain http or with an unverified certificate
    #[arg(long = "insecure-registry", global = true, value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Extra CA certificate (PEM) to trust for registries
    #[arg(long, global = true, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile
    Build(Box<BuildArgs>),
    /// List images
    Images(ImagesArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Return low-level information on images
    Inspect(InspectArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Save one or more images to a tar archive
    Save(SaveArgs),
    /// Load an image from a tar archive
    Load(LoadArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Log in to a registry
    Login(LoginArgs),
    /// Log out from a registry
    Logout(LogoutArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage the build cache
    #[command(subcommand)]
    Builder(BuilderCommand),
    /// Manage the store
    #[command(subcommand)]
    System(SystemCommand),
    /// Show the strata version and the commit it was built from
    Version,
    /// Manage image manifests in registries
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// List the platforms this machine runs (natively or through QEMU in binfmt_misc), or register QEMU for more
    Binfmt(BinfmtArgs),
    /// Print the shell completion script (bash, zsh or fish) to stdout
    Completion(CompletionArgs),
    /// Write the man pages (strata.1, strata-build.1, ...) into a directory
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct BinfmtArgs {
    #[command(subcommand)]
    pub command: Option<BinfmtCommand>,
}

#[derive(Debug, Subcommand)]
pub enum BinfmtCommand {
    /// Register qemu-user-static's emulators in binfmt_misc (with the F flag; mounts binfmt_misc if needed; root)
    Install(BinfmtInstallArgs),
}

#[derive(Debug, Args)]
pub struct BinfmtInstallArgs {
    /// Platforms to register, e.g. linux/arm64 (repeatable, comma-separated) [default: every foreign platform qemu-user-static describes]
    #[arg(long = "platform", value_name = "PLATFORM", value_delimiter = ',')]
    pub platforms: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Display an image manifest, or manifest list, as the registry holds it
    Inspect(ManifestInspectArgs),
}

#[derive(Debug, Args)]
pub struct ManifestInspectArgs {
    /// Image reference in the registry (NAME[:TAG|@DIGEST])
    pub reference: String,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing)
    pub dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Remove unused images
    Prune(ImagePruneArgs),
    /// List images
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Save one or more images to a tar archive
    Save(SaveArgs),
    /// Load an image from a tar archive
    Load(LoadArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Copy an image from one registry or repository to another, without storing it
    #[command(alias = "cp")]
    Copy(CopyArgs),
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Image to copy (NAME[:TAG|@DIGEST] in a registry)
    pub source: String,
    /// Where to copy it (NAME[:TAG|@DIGEST] in a registry)
    pub destination: String,
    /// Copy only this platform's image out of a multi-platform one (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress the progress output; print only the copied manifest's digest
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Remove build cache
    Prune(BuilderPruneArgs),
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Remove unused data
    Prune(SystemPruneArgs),
    /// Show disk usage
    Df(DfArgs),
    /// Re-hash every blob and check that every reference resolves
    Verify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    Auto,
    Plain,
    Tty,
    Quiet,
    /// One JSON status object per line (BuildKit's `SolveStatus`), as buildx prints it
    Rawjson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Network {
    Host,
    None,
    Default,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Snapshotter {
    Overlay,
    Copy,
}

/// buildah's `--isolation` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    /// Namespaces and mounts (`rootless` is the same inside strata's user namespace)
    Oci,
    Rootless,
    /// chroot into a copied tree, without namespaces or mounts
    Chroot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build context: a directory, - (a tar of the context, or a Dockerfile, on stdin), or a
    /// git or tarball URL (https://…/repo.git#REF:DIR, git@HOST:REPO#REF, https://…/ctx.tar.gz)
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// Name and optionally a tag in the name:tag format
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (- for stdin) [default: CONTEXT/Dockerfile]
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Additional build context (NAME=DIR, a git or tarball URL, docker-image://REF or
    /// oci-layout://DIR[:TAG]), for FROM NAME and COPY --from=NAME
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
    /// Set build-time variables (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Do not cache specified stages (STAGE[,STAGE]; repeatable)
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Add a custom host-to-IP mapping to RUN's /etc/hosts (format: "host:ip")
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_hosts: Vec<String>,
    /// Size of /dev/shm in RUN (e.g. 128m) [default: 64m]
    #[arg(long = "shm-size", value_name = "BYTES")]
    pub shm_size: Option<String>,
    /// Ulimit of RUN's processes (NAME=SOFT[:HARD], docker's names: nofile, nproc, core, ...)
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// Parent cgroup of RUN: not supported (RUN runs in strata's own cgroup)
    #[arg(long = "cgroup-parent", value_name = "CGROUP")]
    pub cgroup_parent: Option<String>,
    /// Always attempt to pull a newer version of the base images
    #[arg(long)]
    pub pull: bool,
    /// Type of progress output (auto takes $BUILDKIT_PROGRESS when set, as buildx does)
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: Progress,
    /// Write the image ID to the file
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Suppress the build output and print the image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Networking mode for RUN instructions: default (its own network namespace, outbound
    /// traffic through slirp4netns, the host's loopback unreachable), host or none
    #[arg(long, value_enum, default_value = "default")]
    pub network: Network,
    /// How RUN steps get their filesystem: overlayfs, or a copy of the parent tree [default: overlay where it mounts, else copy]
    #[arg(long, value_enum)]
    pub snapshotter: Option<Snapshotter>,
    /// How RUN steps are isolated: oci or rootless (namespaces), or chroot (no namespaces, copy snapshotter; for unprivileged containers) [default: oci where namespaces work, else chroot]
    #[arg(long, value_enum)]
    pub isolation: Option<Isolation>,
    /// How many independent stages may build at once (1: one after another) [default: twice the cores]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Check the Dockerfile (parse, expand, build checks) without building
    #[arg(long)]
    pub check: bool,
    /// Output format of --check
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
    /// Secret to expose to the build (id=ID,src=FILE or id=ID,env=VAR)
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// SSH agent socket or keys to expose to the build (default|ID[=SOCKET])
    #[arg(long = "ssh")]
    pub ssh: Vec<String>,
    /// Allow extra privileged entitlement (network.host, security.insecure)
    #[arg(long = "allow")]
    pub allow: Vec<String>,
    /// Push the image after building it
    #[arg(long)]
    pub push: bool,
    /// Cache export destination (type=registry,ref=REF)
    #[arg(long = "cache-to")]
    pub cache_to: Vec<String>,
    /// Cache import source (type=registry,ref=REF)
    #[arg(long = "cache-from")]
    pub cache_from: Vec<String>,
    /// Target platform(s) (os/arch[/variant], comma-separated: several make one image index)
    #[arg(long = "platform", value_name = "PLATFORM")]
    pub platforms: Vec<String>,
    /// Output destination (type=local|tar|oci|docker|image|registry,dest=…; DIR; - for a tar on stdout)
    #[arg(short = 'o', long = "output", value_name = "PATH|TYPE=…")]
    pub outputs: Vec<String>,
    /// Builder instance (accepted for buildx scripts: strata is its own one builder)
    #[arg(long = "builder", value_name = "NAME")]
    pub builder: Option<String>,
    /// Set metadata for an image (KEY=VALUE)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Add an annotation to the image manifest ([manifest:]KEY=VALUE)
    #[arg(long = "annotation", value_name = "[TYPE:]KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Load the image into the local store (every build does; accepted for buildx scripts)
    #[arg(long)]
    pub load: bool,
    /// Write the build result metadata (buildx's JSON: digests, descriptor, names) to the file
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Provenance attestation pushed with the image (false, true, mode=min|max[,builder-id=URL])
    #[arg(long, value_name = "VALUE")]
    pub provenance: Option<String>,
    /// SBOM attestation: not supported yet
    #[arg(long, value_name = "VALUE")]
    pub sbom: Option<String>,
    /// Attestation parameters (type=provenance,mode=min|max,builder-id=URL or disabled=true; SBOM is not supported yet)
    #[arg(long = "attest", value_name = "PARAMS")]
    pub attest: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Show only images matching REPOSITORY[:TAG]
    pub reference: Option<String>,
    /// Show all images (default hides intermediate images)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Filter output based on conditions provided (before=IMAGE, since=IMAGE, label=KEY[=VALUE],
    /// dangling=true|false, reference=PATTERN)
    #[arg(long = "filter")]
    pub filters: Vec<String>,
    /// Format output: table (default), json, or a Go template ('table {{.Repository}}\t{{.ID}}')
    #[arg(long)]
    pub format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Force removal of the image
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Format output: json (default) or a Go template ('{{.Id}}')
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    pub image: String,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true)]
    pub human: bool,
    /// Format output: table (default), json, or a Go template ('table {{.ID}}\t{{.CreatedBy}}')
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Root filesystem tarball (plain or gzip), or - for stdin
    pub file: PathBuf,
    /// Name for the new image (REPOSITORY[:TAG])
    pub reference: Option<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Apply Dockerfile instruction to the created image (CMD, ENV, WORKDIR, ...)
    #[arg(short = 'c', long = "change")]
    pub changes: Vec<String>,
    /// Set platform of the imported image (os/arch[/variant]); default: this host's
    #[arg(long)]
    pub platform: Option<String>,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Archive format: docker (what `docker load` accepts) or oci
    #[arg(long, default_value = "docker")]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short = 'i', long)]
    pub input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Load only this platform's image of a multi-platform image (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    pub reference: String,
    /// Download all tagged images in the repository
    #[arg(short = 'a', long)]
    pub all_tags: bool,
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    pub reference: String,
    /// Push all tags of an image to the repository
    #[arg(short = 'a', long)]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry server [default: docker.io]
    pub server: Option<String>,
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    pub server: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImagePruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. until=24h, label=k=v, label!=k)
    #[arg(long = "filter")]
    pub filters: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct BuilderPruneArgs {
    /// Remove all unused build cache, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. until=24h)
    #[arg(long = "filter")]
    pub filters: Vec<String>,
    /// Amount of disk space to keep for cache (e.g. 10GB)
    #[arg(long)]
    pub keep_storage: Option<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SystemPruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Prune volumes (strata has no volumes; accepted and reported)
    #[arg(long)]
    pub volumes: bool,
    /// Provide filter values (e.g. until=24h, label=k=v)
    #[arg(long = "filter")]
    pub filters: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Format output: table (default), json, or a Go template ('{{.Type}}\t{{.Size}}')
    #[arg(long)]
    pub format: Option<String>,
}
