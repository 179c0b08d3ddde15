//! The user's kubeconfig is changed only on request (`up --merge-kubeconfig`): one context,
//! `sprout-<env>`, with its own cluster and user entries, added and later removed by `down`.

use crate::error::{Error, Result};
use kube::config::Kubeconfig;
use std::path::Path;

fn read(path: &Path) -> Result<Kubeconfig> {
    if !path.exists() {
        return Ok(Kubeconfig::default());
    }
    Kubeconfig::read_from(path).map_err(|e| {
        Error::io(
            format!("cannot read kubeconfig {}", path.display()),
            std::io::Error::other(e),
        )
    })
}

fn write(path: &Path, config: &Kubeconfig) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    let text = serde_yaml::to_string(config).expect("a kubeconfig serializes");
    std::fs::write(path, text)
        .map_err(|e| Error::io(format!("cannot write kubeconfig {}", path.display()), e))
}

/// Copies the current context of `ours` into `user` under `name`.
pub fn merge(user: &Path, ours: &Path, name: &str) -> Result<()> {
    let source = read(ours)?;
    let mut target = read(user)?;
    remove_entries(&mut target, name);
    let current = source.current_context.clone().unwrap_or_default();
    let context = source
        .contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.clone());
    let Some(mut context) = context else {
        return Err(Error::Usage(format!(
            "{} has no current context to merge",
            ours.display()
        )));
    };
    if let Some(cluster) = source.clusters.iter().find(|c| c.name == context.cluster) {
        let mut cluster = cluster.clone();
        cluster.name = name.to_string();
        target.clusters.push(cluster);
    }
    if let Some(user_name) = &context.user
        && let Some(auth) = source.auth_infos.iter().find(|a| &a.name == user_name)
    {
        let mut auth = auth.clone();
        auth.name = name.to_string();
        target.auth_infos.push(auth);
    }
    context.cluster = name.to_string();
    context.user = Some(name.to_string());
    target.contexts.push(kube::config::NamedContext {
        name: name.to_string(),
        context: Some(context),
        ..Default::default()
    });
    write(user, &target)
}

/// Removes context, cluster and user `name` from `user`, if present.
pub fn remove(user: &Path, name: &str) -> Result<bool> {
    if !user.exists() {
        return Ok(false);
    }
    let mut config = read(user)?;
    let before = config.contexts.len();
    remove_entries(&mut config, name);
    if config.contexts.len() == before {
        return Ok(false);
    }
    write(user, &config).map(|_| true)
}

fn remove_entries(config: &mut Kubeconfig, name: &str) {
    config.contexts.retain(|c| c.name != name);
    config.clusters.retain(|c| c.name != name);
    config.auth_infos.retain(|a| a.name != name);
    if config.current_context.as_deref() == Some(name) {
        config.current_context = None;
    }
}
