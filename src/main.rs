use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    let cli = match sprout::cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(refusal) => return ExitCode::from(sprout::commands::print_refusal(&args, &refusal)),
    };
    // kube's client logs every refused connection at error level; sprout reports failures
    // itself, with the environment and stage, so those lines are noise.
    // The daemon logs what it does (info); a command only what went wrong (warn).
    let serve = match &cli.command {
        sprout::cli::Command::Serve(args) => Some(args.log_format),
        _ => None,
    };
    let filter = match (cli.quiet, cli.verbose, serve.is_some()) {
        (true, _, _) => "error,kube_client=off",
        (_, 0, true) => "info,kube_client=off,tower_http=off,hyper=off",
        (_, 0, false) => "warn,kube_client=off",
        (_, 1, _) => "sprout=debug",
        _ => "debug",
    };
    let env_filter =
        tracing_subscriber::EnvFilter::try_from_env("SPROUT_LOG").unwrap_or_else(|_| filter.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr);
    match serve {
        Some(sprout::cli::LogFormat::Json) => logs.json().init(),
        Some(sprout::cli::LogFormat::Text) => {
            logs.with_ansi(std::io::stderr().is_terminal()).init()
        }
        None => logs
            .with_ansi(std::io::stderr().is_terminal())
            .without_time()
            .init(),
    }
    let format = cli.output;
    match sprout::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            sprout::commands::print_error(format, &error);
            ExitCode::from(error.exit_code())
        }
    }
}
