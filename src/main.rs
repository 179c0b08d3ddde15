use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = sprout::cli::Cli::parse();
    // kube's client logs every refused connection at error level; sprout reports failures
    // itself, with the environment and stage, so those lines are noise.
    let filter = match (cli.quiet, cli.verbose) {
        (true, _) => "error,kube_client=off",
        (_, 0) => "warn,kube_client=off",
        (_, 1) => "sprout=debug",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SPROUT_LOG")
                .unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
    match sprout::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
