//! One module per subcommand; each turns validated input into calls on the pipeline stages.

mod init;
mod render;

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
    };
    match cli.command {
        Command::Init(args) => init::run(&context, &args),
        Command::Render(args) => render::run(&context, &args),
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
