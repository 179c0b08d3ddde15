//! The command line (contract: DESIGN.md, "Command line"). Names and flags here are relied on by
//! scripts and users: add freely, never rename.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "sprout",
    version,
    about = "Ephemeral environments forked from production's desired state in git"
)]
pub struct Cli {
    /// Run as if started in DIR (the project root).
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Kubeconfig file for providers that use an existing cluster.
    #[arg(long, global = true, value_name = "FILE", env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// More detail on stderr (-v: stage timings, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// How long to wait for an environment another sprout run is changing.
    #[arg(long, global = true, default_value = "10m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub lock_timeout: std::time::Duration,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// The output format a command line asks for, read as clap reads `-o`, for when clap refuses the
/// line and so gives no [`Cli`]: `-o json`, `-ojson`, `-o=json`, `-qo json`, `--output json`,
/// `--output=json`, before or after the subcommand; the last one wins. A value that only looks
/// like it is not read: another option's (`-Cojson`, `--out=-ojson`), or anything after `--`.
/// A line with `-o` twice is refused by clap, but its reader still asked for a format.
pub fn requested_format(args: &[OsString]) -> Format {
    let mut shorts_with_values = Vec::new();
    shorts_taking_values(&Cli::command(), &mut shorts_with_values);
    let mut format = Format::Table;
    let mut args = args.iter().skip(1).peekable();
    while let Some(arg) = args.next() {
        let Some(arg) = arg.to_str() else { continue };
        // clap never takes a value that starts with `-` from the next argument.
        let mut next_value = || {
            args.next_if(|next| !next.to_string_lossy().starts_with('-'))
                .map(|next| next.to_string_lossy().into_owned())
        };
        let value = if arg == "--" {
            break;
        } else if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some(("output", value)) => Some(value.to_string()),
                None if long == "output" => next_value(),
                _ => None,
            }
        } else if let Some(cluster) = arg.strip_prefix('-') {
            // Flags, then at most one option, which takes the rest (or the next argument).
            let mut value = None;
            for (at, short) in cluster.char_indices() {
                let rest = &cluster[at + short.len_utf8()..];
                if short == 'o' {
                    value = match rest {
                        "" => next_value(),
                        _ => Some(rest.strip_prefix('=').unwrap_or(rest).to_string()),
                    };
                }
                if shorts_with_values.contains(&short) {
                    break;
                }
            }
            value
        } else {
            None
        };
        if let Some(asked) = value.and_then(|value| Format::from_str(&value, false).ok()) {
            format = asked;
        }
    }
    format
}

fn shorts_taking_values(command: &clap::Command, into: &mut Vec<char>) {
    for arg in command.get_arguments() {
        if let Some(short) = arg.get_short().filter(|_| arg.get_action().takes_values()) {
            into.push(short);
        }
    }
    for subcommand in command.get_subcommands() {
        shorts_taking_values(subcommand, into);
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scaffold environments/production.yaml, templates/ and a .gitignore entry.
    Init(InitArgs),
    /// Print an environment's desired state (multi-document YAML, apply order); touches no cluster.
    Render(RenderArgs),
    /// Create the environment if missing, provision its cluster, sync, wait until healthy.
    Up(UpArgs),
    /// Re-resolve the source ref and converge the cluster (apply, prune, wait healthy).
    Sync(SyncArgs),
    /// Desired against live, per object; exit 0 without drift, 1 with drift.
    Diff(EnvArg),
    /// Phase, commit, counts, health, drift and last error of one environment (or all).
    Status(StatusArgs),
    /// All environments, one line each.
    List,
    /// Delete everything sprout created for ENV, then its spec file.
    Down(DownArgs),
    /// One lifecycle pass: expired TTLs, due teardowns and wakes, deleted branches, orphans.
    Gc(GcArgs),
    /// Push an environment's expiry (and optionally skip its next scheduled teardown).
    Extend(ExtendArgs),
    /// Delete an environment's cluster (or its objects) but keep its spec and record: `asleep`.
    Sleep(EnvArg),
    /// Bring an asleep environment back from git, at the commit its ref points to now.
    Wake(SyncArgs),
    /// The preview service: generators, schedules, webhooks, /metrics, /healthz.
    Serve(ServeArgs),
    /// Print the manifests that run `sprout serve` for a team in a cluster (`| kubectl apply -f -`).
    Install(InstallArgs),
    /// Move environment records between the file and the cluster state backends.
    #[command(subcommand)]
    State(StateCommand),
    /// A credential for EKS clusters (the kubeconfig's exec plugin runs this).
    #[command(hide = true)]
    EksToken {
        #[arg(long)]
        cluster: String,
        #[arg(long)]
        region: String,
    },
    /// A local Kubernetes control plane in DIR (what the envtest provider runs).
    #[command(hide = true)]
    ControlPlane {
        #[arg(value_parser = ["start", "stop"])]
        action: String,
        dir: PathBuf,
        /// Log every request to DIR/audit.log (for tests that count requests).
        #[arg(long)]
        audit: bool,
    },
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Folder of production's desired state in this repository.
    #[arg(long, default_value = "deploy/production")]
    pub path: String,
    /// Production's branch (default: the branch checked out now, else main).
    #[arg(long = "ref")]
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The environment (a file environments/ENV.yaml).
    pub env: String,
    /// Write one file per object into DIR instead of printing.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EnvArg {
    /// The environment (a file environments/ENV.yaml).
    pub env: String,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The environment (a file environments/ENV.yaml).
    pub env: String,
    #[command(flatten)]
    pub converge: ConvergeArgs,
}

/// How sync converges; shared by `sync` and `up`.
#[derive(Debug, Args, Clone)]
pub struct ConvergeArgs {
    /// Apply requests in flight at once.
    #[arg(long, default_value_t = crate::sync::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Do not wait for objects to become healthy.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for health.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The environment; all of them when absent.
    pub env: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The environment; derived from --branch, --developer or --pr when absent, else yours.
    pub env: Option<String>,
    /// A new environment following this branch (named after it); with --pr or --developer,
    /// the branch that environment follows.
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub branch: Option<String>,
    /// A new environment for this developer (`dev-<name>`), following --branch or the branch
    /// checked out.
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub developer: Option<String>,
    /// A new preview for this pull request (`pr-<N>`).
    #[arg(long)]
    pub pr: Option<u64>,
    /// The environment a new one forks.
    #[arg(long, default_value = "production")]
    pub from: String,
    /// Where a new environment runs (default: kind, else minikube, else a local control plane).
    #[arg(long, value_enum)]
    pub provider: Option<ProviderArg>,
    /// Time to live of a new environment (default 8h); for an existing one it must match its spec.
    #[arg(long, value_parser = valid_ttl)]
    pub ttl: Option<String>,
    /// Teardown schedule of a new developer environment (5-field crontab, default
    /// "0 12 * * 1-5"); for an existing one it must match its spec.
    #[arg(long, value_parser = valid_schedule)]
    pub teardown: Option<String>,
    /// NAME=REF: a container name or image repository and the image to run instead.
    #[arg(long = "image", value_name = "NAME=REF")]
    pub images: Vec<String>,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also add context `sprout-<env>` to your kubeconfig.
    #[arg(long)]
    pub merge_kubeconfig: bool,
    #[command(flatten)]
    pub converge: ConvergeArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderArg {
    Kind,
    Minikube,
    Eks,
    Namespace,
    Envtest,
}

impl ProviderArg {
    pub fn kind(self) -> crate::spec::Provider {
        use crate::spec::Provider;
        match self {
            ProviderArg::Kind => Provider::Kind,
            ProviderArg::Minikube => Provider::Minikube,
            ProviderArg::Eks => Provider::Eks,
            ProviderArg::Namespace => Provider::Namespace,
            ProviderArg::Envtest => Provider::Envtest,
        }
    }
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// The environment.
    pub env: String,
    /// Keep environments/ENV.yaml.
    #[arg(long)]
    pub keep_spec: bool,
    /// Delete the cluster even when it holds objects marked to survive teardown.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Print exactly what the pass would do, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: decide as if it were TIME (RFC 3339), to see what is coming.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Carry out a pass that would take down more than maxDeletePercent of the environments.
    #[arg(long)]
    pub allow_mass_delete: bool,
    #[command(flatten)]
    pub converge: ConvergeArgs,
}

#[derive(Debug, Args)]
pub struct ExtendArgs {
    /// The environment.
    pub env: String,
    /// How much longer it may live, e.g. 2h.
    #[arg(value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// Also skip the next scheduled teardown.
    #[arg(long)]
    pub skip_next: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the webhooks, /healthz, /readyz and /metrics answer.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// How often generators are polled (webhooks only make the next pass come sooner).
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub interval: std::time::Duration,
    /// Run exactly one pass (generators, schedules, TTLs) and exit; non-zero if an operation failed.
    #[arg(long)]
    pub once: bool,
    /// Serve the webhook route of PROVIDER; its secret must be set
    /// (SPROUT_GITHUB_WEBHOOK_SECRET, SPROUT_GITLAB_WEBHOOK_TOKEN, or the same with _FILE).
    #[arg(long = "webhook", value_enum, value_name = "PROVIDER")]
    pub webhooks: Vec<WebhookProvider>,
    /// Log lines as text or as JSON objects.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub converge: ConvergeArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WebhookProvider {
    Github,
    Gitlab,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Which state backend a command uses, overriding sprout.yaml's `state:`; flattened into the
/// commands that take it (`state export`, `state import`, `serve`).
#[derive(Debug, Args, Clone, Default)]
pub struct StateArgs {
    /// Where environment records and locks live: files under stateDir, or a management cluster
    /// (the current kubeconfig context, or state.context of sprout.yaml).
    #[arg(long = "state", value_enum, value_name = "BACKEND")]
    pub backend: Option<StateBackendArg>,
    /// The management namespace of the kubernetes backend (default: state.namespace of
    /// sprout.yaml, else sprout-system), created if missing.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateBackendArg {
    File,
    Kubernetes,
}

impl StateArgs {
    /// `settings` with these flags applied; a bad namespace is refused.
    pub fn apply(
        &self,
        settings: &mut crate::project::StateSettings,
    ) -> Result<(), crate::error::Error> {
        use crate::project::StateBackend;
        if let Some(backend) = self.backend {
            settings.backend = match backend {
                StateBackendArg::File => StateBackend::File,
                StateBackendArg::Kubernetes => StateBackend::Kubernetes,
            };
        }
        if let Some(namespace) = &self.namespace {
            crate::naming::check(namespace, crate::naming::Backend::Namespace)
                .map_err(|why| crate::error::Error::Usage(format!("--namespace: {why}")))?;
            settings.namespace = namespace.clone();
            if settings.backend == StateBackend::File {
                return Err(crate::error::Error::Usage(
                    "--namespace is the kubernetes backend's: add --state kubernetes (or set state.backend in sprout.yaml)".into(),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Print every environment record of the backend as JSON (for `state import`).
    Export(StateArgs),
    /// Write the records of FILE (from `state export`) into the backend; existing records are
    /// kept as they are.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The output of `sprout state export` (`-` for stdin).
    pub file: PathBuf,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The namespace sprout runs in and keeps its records and Leases in.
    #[arg(long, default_value = crate::project::DEFAULT_STATE_NAMESPACE, value_name = "NS")]
    pub namespace: String,
    /// The image to run: sprout with the team's project at /project (see the README).
    #[arg(long, default_value = concat!("sprout:", env!("CARGO_PKG_VERSION")), value_name = "REF")]
    pub image: String,
    /// The PodDisruptionBudget's API version: policy/v1 (Kubernetes 1.21 and later), or
    /// policy/v1beta1 for older clusters.
    #[arg(long, default_value = "policy/v1", value_parser = ["policy/v1", "policy/v1beta1"])]
    pub pdb_api: String,
}

/// A `--ttl` the spec would accept and longer than nothing (`0s` would end the environment at
/// once), refused on the command line before any spec is written.
fn valid_ttl(ttl: &str) -> Result<String, String> {
    match humantime::parse_duration(ttl) {
        Ok(duration) if duration.is_zero() => {
            Err("a time to live must be longer than 0 (try 8h or 90m)".into())
        }
        Ok(_) => Ok(ttl.to_string()),
        Err(e) => Err(format!("{e} (try 8h or 90m)")),
    }
}

/// A `--teardown` the spec would accept, refused on the command line before any spec is written.
fn valid_schedule(expr: &str) -> Result<String, String> {
    crate::lifecycle::schedule::Schedule::parse(expr).map(|_| expr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format_of(line: &str) -> Format {
        let args: Vec<OsString> = std::iter::once("sprout")
            .chain(line.split_whitespace())
            .map(OsString::from)
            .collect();
        requested_format(&args)
    }

    #[test]
    fn the_format_asked_for_anywhere_on_the_line() {
        for line in [
            "-o json list --bogus",
            "list --bogus -o json",
            "-ojson render",
            "-o=json render",
            "--output json render",
            "render --output=json",
            "-qo json list",
            "-vqojson list",
            "--bogus -o json list",
            "render x --out -o json",
            "-C -ojson list",
            "-o yaml -o json list",
        ] {
            assert_eq!(format_of(line), Format::Json, "{line}");
        }
        assert_eq!(format_of("up x --output yaml --bogus"), Format::Yaml);
    }

    #[test]
    fn values_that_only_look_like_it() {
        for line in [
            "list --bogus",
            "render -- -o json",
            "render x --out=-ojson --bogus",
            "-Cojson list --bogus",
            "--outputjson list",
            "--output-json list",
            "-o JSON list",
            "-o jsonl list",
            "-o -- json",
            "up x --branch json --bogus",
            "-o json -o table list",
        ] {
            assert_eq!(format_of(line), Format::Table, "{line}");
        }
    }
}
