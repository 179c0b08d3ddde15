//! Running external programs (kustomize, helm, kind, minikube) the careful way: argv only, never
//! a shell, stdout and stderr captured separately, a timeout, and errors that quote stderr.

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("`{program}` is not installed (not found on PATH)")]
    NotFound { program: String },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` did not finish within {}s and was stopped", timeout.as_secs())]
    TimedOut { command: String, timeout: Duration },
    #[error("`{command}` could not be run: {source}")]
    Io {
        command: String,
        source: std::io::Error,
    },
}

/// Whether `program` can be found on PATH (or is a path to an executable).
pub fn exists(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let candidate = dir.join(program);
            candidate.is_file()
                && std::fs::metadata(&candidate)
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
                    .unwrap_or(false)
        })
    })
}

/// Runs `program args...` in `dir`, returning stdout. stderr is kept for the error only.
pub fn run<I, S>(
    program: &str,
    args: I,
    dir: Option<&Path>,
    timeout: Duration,
) -> Result<Vec<u8>, ProcessError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_with_env(program, args, &[], dir, timeout)
}

/// [`run`] with extra environment variables for the child.
pub fn run_with_env<I, S>(
    program: &str,
    args: I,
    env: &[(String, std::ffi::OsString)],
    dir: Option<&Path>,
    timeout: Duration,
) -> Result<Vec<u8>, ProcessError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let command = std::iter::once(program.to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new(program);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ProcessError::NotFound {
            program: program.to_string(),
        },
        _ => ProcessError::Io {
            command: command.clone(),
            source,
        },
    })?;
    // Read both pipes on their own threads: a child that fills one pipe while we block on the
    // other would otherwise deadlock.
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProcessError::TimedOut { command, timeout });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(source) => return Err(ProcessError::Io { command, source }),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(ProcessError::Failed {
            command,
            status: status.to_string(),
            stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
        });
    }
    Ok(stdout)
}

fn read_in_background<R: Read + Send + 'static>(
    pipe: Option<R>,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_never_interpreted_by_a_shell() {
        let out = run("echo", ["$(id)", ";", "`x`"], None, Duration::from_secs(5)).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "$(id) ; `x`\n");
    }

    #[test]
    fn missing_programs_are_named() {
        let err = run("sprout-no-such-tool", ["x"], None, Duration::from_secs(5)).unwrap_err();
        assert!(
            matches!(err, ProcessError::NotFound { ref program } if program == "sprout-no-such-tool")
        );
    }

    #[test]
    fn failures_quote_stderr_and_timeouts_stop_the_child() {
        let err = run(
            "sh",
            ["-c", "echo boom >&2; exit 3"],
            None,
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
        let err = run("sleep", ["5"], None, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, ProcessError::TimedOut { .. }));
    }
}
