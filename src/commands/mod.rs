//! One module per subcommand; each turns validated input into calls on the pipeline stages.

mod diff;
mod down;
mod helpers;
mod init;
mod kubeconfig;
mod list;
mod render;
mod status;
mod sync;
mod up;

use crate::cli::{Cli, Command, Format};
use crate::error::{Error, Result};
use crate::project::Project;
use std::io::Write;
use std::path::PathBuf;

/// What every command gets: the project root and the global flags.
pub struct Context {
    pub root: PathBuf,
    pub format: Format,
    pub quiet: bool,
    /// `--kubeconfig` or `KUBECONFIG`, for environments on an existing cluster.
    pub kubeconfig: Option<PathBuf>,
}

impl Context {
    pub fn project(&self) -> Result<Project> {
        Ok(Project::open(&self.root)?)
    }

    /// A line for the human on stderr (silenced by -q).
    pub fn note(&self, message: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", message.as_ref());
        }
    }
}

pub fn run(cli: Cli) -> Result<()> {
    let root = match &cli.directory {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().map_err(|e| Error::io("current directory", e))?,
    };
    let context = Context {
        root,
        format: cli.output,
        quiet: cli.quiet,
        kubeconfig: cli.kubeconfig.clone(),
    };
    match cli.command {
        Command::Init(args) => init::run(&context, &args),
        Command::Render(args) => render::run(&context, &args),
        Command::Up(args) => up::run(&context, &args),
        Command::Down(args) => down::run(&context, &args),
        Command::EksToken { cluster, region } => helpers::eks_token(&cluster, &region),
        Command::ControlPlane { action, dir, audit } => {
            helpers::control_plane(&action, &dir, audit)
        }
        Command::Sync(args) => sync::run(&context, &args),
        Command::Diff(args) => diff::run(&context, &args),
        Command::Status(args) => status::run(&context, &args),
        Command::List => list::run(&context),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "sprout", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Writes to stdout; a closed pipe (`sprout render x | head`) is not an error.
pub fn print(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::io("stdout", e)),
        _ => Ok(()),
    }
}

/// What every command that touches an environment's cluster needs, checked before any side
/// effect: the spec, where it lives, and its desired state.
pub struct Prepared {
    pub project: crate::project::Project,
    pub env: crate::spec::Environment,
    pub target: crate::cluster::Target,
    pub desired: crate::desired::DesiredState,
}

pub fn prepare(context: &Context, name: &str) -> Result<Prepared> {
    use crate::error::{InStage, Stage};
    let project = context.project()?;
    let env = project.environment(name).in_stage(name, Stage::Spec)?;
    let target = crate::cluster::target_for(&project, &env, context.kubeconfig.as_deref())
        .in_stage(&env.name, Stage::Cluster)?;
    let desired = crate::desired::compute(&project, &env)?;
    Ok(Prepared {
        project,
        env,
        target,
        desired,
    })
}

/// A runtime for the commands that talk to clusters (the rest stay synchronous).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))
}

/// JSON for `-o json` (stable field names) or YAML for `-o yaml`.
pub fn print_structured<T: serde::Serialize>(format: Format, value: &T) -> Result<()> {
    let text = match format {
        Format::Yaml => serde_yaml::to_string(value).expect("reports serialize"),
        _ => {
            let mut text = serde_json::to_string_pretty(value).expect("reports serialize");
            text.push('\n');
            text
        }
    };
    print(&text)
}
