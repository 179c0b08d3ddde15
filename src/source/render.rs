//! Render tools for kustomize and helm sources, run on a temporary checkout of the commit.

use super::SourceError;
use crate::process::{self, ProcessError};
use crate::spec::HelmOptions;
use std::path::Path;
use std::time::Duration;

const RENDER_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a render tool's HTTP requests go when it must stay off the network: a loopback port
/// nobody listens on (the discard port).
const NOWHERE: &str = "http://127.0.0.1:9";

/// The environment that keeps a render tool off the network whatever its input asks: every
/// HTTP(S) request goes through a proxy that is not there (Go's clients, kustomize's and
/// helm's, honour these variables and then resolve no name themselves; a request to loopback
/// is not proxied, and stays on the machine), and git may clone nothing.
fn offline() -> Vec<(String, std::ffi::OsString)> {
    let proxies = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"]
        .into_iter()
        .flat_map(|name| [name.to_string(), name.to_lowercase()])
        .map(|name| (name, NOWHERE.into()));
    let no_exceptions = ["NO_PROXY", "no_proxy"].map(|name| (name.to_string(), "".into()));
    proxies
        .chain(no_exceptions)
        // No protocol by that name: git may clone nothing, not even a local repository.
        .chain([("GIT_ALLOW_PROTOCOL".to_string(), "none".into())])
        .collect()
}

/// `kubectl kustomize DIR`, or `kustomize build DIR` when kubectl is absent; `online` only
/// when the kustomizations use an allow-listed remote resource (see `kustomization::inspect`).
pub fn kustomize(dir: &Path, online: bool) -> Result<(String, Vec<u8>), SourceError> {
    let dir_arg = dir.as_os_str();
    let (tool, args): (&str, Vec<&std::ffi::OsStr>) = if process::exists("kubectl") {
        ("kubectl", vec!["kustomize".as_ref(), dir_arg])
    } else if process::exists("kustomize") {
        ("kustomize", vec!["build".as_ref(), dir_arg])
    } else {
        return Err(SourceError::ToolMissing {
            tool: "kubectl (or kustomize)".into(),
            render: "kustomize",
            hint: "install kubectl (it bundles kustomize) or the kustomize binary",
        });
    };
    let env = if online { Vec::new() } else { offline() };
    let output = process::run_with_env(tool, args, &env, None, RENDER_TIMEOUT)
        .map_err(|e| tool_error(e, "kustomize"))?;
    Ok((format!("{tool} kustomize"), output))
}

/// `helm template RELEASE DIR [-f values]... [-f inline-values]`, offline: a chart renders
/// from the commit alone.
pub fn helm(
    dir: &Path,
    options: &HelmOptions,
    default_release: &str,
) -> Result<(String, Vec<u8>), SourceError> {
    if !process::exists("helm") {
        return Err(SourceError::ToolMissing {
            tool: "helm".into(),
            render: "helm",
            hint: "install helm 3 (https://helm.sh/docs/intro/install/)",
        });
    }
    let release = options.release.as_deref().unwrap_or(default_release);
    let mut args: Vec<std::ffi::OsString> = vec!["template".into(), release.into(), dir.into()];
    for file in &options.values_files {
        args.push("--values".into());
        args.push(dir.join(file).into());
    }
    // Inline values go through a file, not --set, so no value is ever parsed by helm's own
    // mini-language.
    let inline = tempfile::NamedTempFile::new().map_err(|e| SourceError::Checkout {
        path: "helm values".into(),
        source: e,
    })?;
    if let Some(values) = &options.values {
        let text = serde_yaml::to_string(values).unwrap_or_default();
        std::fs::write(inline.path(), text).map_err(|e| SourceError::Checkout {
            path: inline.path().display().to_string(),
            source: e,
        })?;
        args.push("--values".into());
        args.push(inline.path().into());
    }
    let output = process::run_with_env("helm", &args, &offline(), None, RENDER_TIMEOUT)
        .map_err(|e| tool_error(e, "helm"))?;
    Ok(("helm template".into(), output))
}

fn tool_error(error: ProcessError, render: &'static str) -> SourceError {
    match error {
        ProcessError::NotFound { program } => SourceError::ToolMissing {
            tool: program,
            render,
            hint: "install it or choose another `render` mode",
        },
        other => SourceError::Render {
            render,
            source: other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Behind sprout's own check of every field (see `kustomization::inspect`): whatever a
    /// kustomization asks, kustomize run offline reaches no other host. Its HTTP request goes
    /// to the proxy that is not there, and its git fetch is not allowed.
    #[test]
    fn kustomize_run_offline_reaches_no_other_host() {
        let dir = tempfile::tempdir().unwrap();
        for (entry, stopped_by) in [
            ("https://sprout-offline.invalid/x.yaml", "127.0.0.1:9"),
            (
                "github.com/acme/platform//deploy?ref=v1",
                "transport 'https' not allowed",
            ),
        ] {
            std::fs::write(
                dir.path().join("kustomization.yaml"),
                format!("resources:\n- {entry}\n"),
            )
            .unwrap();
            let error = kustomize(dir.path(), false).unwrap_err().to_string();
            assert!(error.contains(stopped_by), "{entry}: {error}");
        }
    }
}
