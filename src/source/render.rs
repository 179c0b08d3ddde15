//! Render tools for kustomize and helm sources, run on a temporary checkout of the commit.

use super::SourceError;
use crate::process::{self, ProcessError};
use crate::spec::HelmOptions;
use std::path::Path;
use std::time::Duration;

const RENDER_TIMEOUT: Duration = Duration::from_secs(120);

/// `kubectl kustomize DIR`, or `kustomize build DIR` when kubectl is absent.
pub fn kustomize(dir: &Path) -> Result<(String, Vec<u8>), SourceError> {
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
    let output =
        process::run(tool, args, None, RENDER_TIMEOUT).map_err(|e| tool_error(e, "kustomize"))?;
    Ok((format!("{tool} kustomize"), output))
}

/// `helm template RELEASE DIR [-f values]... [-f inline-values]`.
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
    let output =
        process::run("helm", &args, None, RENDER_TIMEOUT).map_err(|e| tool_error(e, "helm"))?;
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
