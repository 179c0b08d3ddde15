//! One module per subcommand; each turns validated input into calls on the pipeline stages.

mod diff;
mod down;
mod extend;
mod gc;
mod helpers;
mod init;
mod install;
mod list;
mod render;
mod serve;
mod sleep;
mod state;
mod status;
mod sync;
mod up;

use crate::cli::{Cli, Command, ConvergeArgs, Format};
use crate::cluster::provider::Progress;
use crate::error::{Error, Result};
use crate::ops::Session;
use crate::project::Project;
use crate::state::lock::Wait;
use crate::sync::SyncOptions;
use std::io::Write;
use std::path::PathBuf;

/// What every command gets: the project root and the global flags.
pub struct Context {
    pub root: PathBuf,
    pub format: Format,
    pub quiet: bool,
    /// `--kubeconfig` or `KUBECONFIG`, for environments on an existing cluster.
    pub kubeconfig: Option<PathBuf>,
    pub lock_timeout: std::time::Duration,
}

impl Context {
    pub fn project(&self) -> Result<Project> {
        Ok(Project::open(&self.root)?)
    }

    /// What the operations run with, reporting progress to `progress`.
    pub fn session<'a>(&self, progress: &'a dyn Progress) -> Result<Session<'a>> {
        let mut project = self.project()?;
        crate::ops::adopt_stored_specs(&mut project, self.kubeconfig.as_deref())?;
        Ok(Session {
            project,
            user_kubeconfig: self.kubeconfig.clone(),
            progress,
            lock_wait: Wait::Upto(self.lock_timeout),
        })
    }

    /// Like [`Context::session`], giving the project an identity first when it has none (for
    /// the commands that create or delete), with a note saying so.
    pub fn session_with_identity<'a>(&self, progress: &'a dyn Progress) -> Result<Session<'a>> {
        let mut session = self.session(progress)?;
        if let Some(identity) = session.project.ensure_identity()? {
            self.note(format!(
                "this project now has an identity, `{identity}`, written to sprout.yaml: sprout labels what it creates with it (commit sprout.yaml)"
            ));
            init::ignore_state_dir(self, &self.root)?;
        }
        Ok(session)
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
        lock_timeout: cli.lock_timeout,
    };
    match cli.command {
        Command::Init(args) => init::run(&context, &args),
        Command::Render(args) => render::run(&context, &args),
        Command::Up(args) => up::run(&context, &args),
        Command::Down(args) => down::run(&context, &args),
        Command::Gc(args) => gc::run(&context, &args),
        Command::Extend(args) => extend::run(&context, &args),
        Command::Sleep(args) => sleep::sleep(&context, &args),
        Command::Wake(args) => sleep::wake(&context, &args),
        Command::Serve(args) => serve::run(&context, &args),
        Command::Install(args) => install::run(&args),
        Command::State(command) => state::run(&context, &command),
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

/// Whether a command wrote its output to stdout (see [`print_error`]).
static STDOUT_WRITTEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes to stdout; a closed pipe (`sprout render x | head`) is not an error.
pub fn print(text: &str) -> Result<()> {
    STDOUT_WRITTEN.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::io("stdout", e)),
        _ => Ok(()),
    }
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

/// A failed command's error for a reader of `-o json` or `-o yaml`: the error object of
/// [`Error::report`] on stdout, so that stdout always holds one document to parse. Not when the
/// command already wrote its output (`diff` with drift, a `sync` report before an unhealthy
/// exit): that output is the document, and the error is on stderr as always.
pub fn print_error(format: Format, error: &Error) {
    if format == Format::Table || STDOUT_WRITTEN.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let _ = print_structured(format, &error.report());
}

/// clap's refusal of the command line, or its help or version text, printed as clap prints it;
/// a refusal also as [`print_error`] gives an error to a reader of `-o json` or `-o yaml`, who
/// asked for one document on stdout whatever happens. Returns the exit code (clap's: 2, or 0).
pub fn print_refusal(args: &[std::ffi::OsString], refusal: &clap::Error) -> u8 {
    let _ = refusal.print();
    let format = crate::cli::requested_format(args);
    if refusal.use_stderr() && format != Format::Table {
        let _ = print_structured(format, &crate::error::usage_report(refusal));
    }
    u8::try_from(refusal.exit_code()).unwrap_or(2)
}

/// How `--concurrency`, `--no-wait` and `--timeout` shape a sync.
pub fn sync_options(args: &ConvergeArgs) -> SyncOptions {
    SyncOptions {
        concurrency: usize::from(args.concurrency),
        wait: !args.no_wait,
        timeout: args.timeout,
    }
}
