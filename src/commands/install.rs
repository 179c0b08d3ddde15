//! `sprout install [--namespace NS] [--image REF]`: prints the manifests that run `sprout
//! serve` for a team — namespace, CRD, service account and RBAC, a two-replica Deployment, a
//! Service for webhooks and metrics, a PodDisruptionBudget — for `kubectl apply -f -`.

use super::print;
use crate::cli::InstallArgs;
use crate::error::{Error, Result};
use crate::template::{TemplateSite, render_yaml_document};

const TEMPLATE_FILE: &str = "templates/install/sprout.yaml.tera";
const TEMPLATE: &str = include_str!("../../templates/install/sprout.yaml.tera");

pub fn run(args: &InstallArgs) -> Result<()> {
    print(&manifests(args)?)
}

/// The CRD first (the others do not depend on it, but a reader finds it on top), then every
/// document of the template, each rendered with its values quoted.
pub fn manifests(args: &InstallArgs) -> Result<String> {
    crate::naming::check(&args.namespace, crate::naming::Backend::Namespace)
        .map_err(|why| Error::Usage(format!("--namespace: {why}")))?;
    if args.image.trim().is_empty() || args.image.chars().any(char::is_whitespace) {
        return Err(Error::Usage(format!(
            "--image: `{}` is not an image reference",
            args.image
        )));
    }
    let mut context = tera::Context::new();
    context.insert("namespace", &args.namespace);
    context.insert("image", &args.image);
    context.insert("pdb_api", &args.pdb_api);
    let mut out = String::from(crate::state::kube::CRD);
    let mut line = 1;
    for document in TEMPLATE.split("\n---\n") {
        let site = TemplateSite {
            file: TEMPLATE_FILE.into(),
            line,
            field: "install".into(),
        };
        line += document.lines().count() + 1;
        let rendered = render_yaml_document(&site, document, &context)
            .map_err(|e| Error::Usage(e.to_string()))?;
        out.push_str("---\n");
        out.push_str(rendered.trim_end());
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn args(namespace: &str, image: &str) -> InstallArgs {
        InstallArgs {
            namespace: namespace.into(),
            image: image.into(),
            pdb_api: "policy/v1".into(),
        }
    }

    #[test]
    fn every_document_parses_and_lands_in_the_namespace() {
        let text = manifests(&args("team-a", "registry.example/sprout:1")).unwrap();
        let mut kinds = Vec::new();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(document).unwrap();
            let kind = value["kind"].as_str().unwrap().to_string();
            if !["Namespace", "CustomResourceDefinition"].contains(&kind.as_str()) {
                assert_eq!(
                    value["metadata"]["namespace"].as_str(),
                    Some("team-a"),
                    "{kind}"
                );
            }
            kinds.push(kind);
        }
        assert_eq!(
            kinds,
            [
                "CustomResourceDefinition",
                "Namespace",
                "ServiceAccount",
                "Role",
                "RoleBinding",
                "Deployment",
                "Service",
                "PodDisruptionBudget"
            ]
        );
        assert!(
            text.contains("image: \"registry.example/sprout:1\""),
            "{text}"
        );
    }

    #[test]
    fn a_bad_namespace_or_image_is_refused() {
        let error = manifests(&args("Team_A", "x")).unwrap_err();
        assert!(error.to_string().contains("--namespace"), "{error}");
        assert_eq!(error.exit_code(), 2);
        let error = manifests(&args("team-a", "a b")).unwrap_err();
        assert!(error.to_string().contains("--image"), "{error}");
    }
}
