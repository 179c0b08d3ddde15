//! The shared clusters this project's environments have used, remembered in
//! `<stateDir>/shared-clusters.json`, so that `gc` still looks for orphans on a cluster after
//! the last spec pointing at it is gone (a namespace `down` had to keep, say).

use crate::cluster::Target;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Remembered {
    kubeconfig: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    context: Option<String>,
}

fn file(state_dir: &Path) -> PathBuf {
    state_dir.join("shared-clusters.json")
}

fn read(state_dir: &Path) -> Vec<Remembered> {
    std::fs::read_to_string(file(state_dir))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// Adds `target` to the list (written only when it is new).
pub fn remember(state_dir: &Path, target: &Target) -> Result<()> {
    let entry = Remembered {
        kubeconfig: target.kubeconfig.clone(),
        context: target.context.clone(),
    };
    let mut all = read(state_dir);
    if all.contains(&entry) {
        return Ok(());
    }
    all.push(entry);
    let path = file(state_dir);
    std::fs::create_dir_all(state_dir)
        .and_then(|_| {
            std::fs::write(
                &path,
                serde_json::to_string_pretty(&all).expect("serializes"),
            )
        })
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// Every shared cluster remembered.
pub fn all(state_dir: &Path) -> Vec<Target> {
    read(state_dir)
        .into_iter()
        .map(|r| Target {
            kubeconfig: r.kubeconfig,
            context: r.context,
        })
        .collect()
}
