//! Stage 2, fork: a pure, deterministic function from production's objects and an environment
//! spec to the environment's objects. Same input, byte-identical output, in apply order.

mod exclude;
mod hosts;
mod namespaces;
pub mod ownership;
mod patches;
pub mod quantity;
pub mod tenancy;
mod workloads;

pub use exclude::Excluded;

use crate::object::{Object, Scopes, sort_for_apply};
use crate::spec::Environment;
use crate::template::{self, TemplateError, TemplateSite, Templates};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    #[error("{file}:{line}: {field}: {message}")]
    Spec {
        file: String,
        line: usize,
        field: String,
        message: String,
    },
    #[error("{object} ({origin}): {message}")]
    Object {
        object: String,
        origin: String,
        message: String,
    },
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// Objects the environment may not apply (see [`tenancy`]), all of them, before any write.
    #[error("{} object(s) refused:\n  {}", refusals.len(), refusals.join("\n  "))]
    Refused { refusals: Vec<String> },
}

/// The environment's desired state, plus what the fork left out and what looks wrong.
#[derive(Debug)]
pub struct Forked {
    pub objects: Vec<Object>,
    pub excluded: Excluded,
    /// References the fork could not follow (a namespace the source does not contain).
    pub warnings: Vec<String>,
}

/// Forks `objects` (production's desired state at `commit`) into `env`'s desired state.
/// `implied_namespace` holds the source's objects that name no namespace (see
/// [`implied_namespace`]).
pub fn fork(
    mut objects: Vec<Object>,
    env: &Environment,
    commit: &str,
    implied_namespace: &str,
) -> Result<Forked, ForkError> {
    let overlay = &env.overlay;
    let context = template::environment_context(env, commit);
    let mut templates = Templates::new();

    let excluded = exclude::exclude(&mut objects, &overlay.drop, &overlay.secrets);
    let planned_patches = patches::plan(env, &objects, implied_namespace)?;
    for p in &planned_patches {
        templates.add(&p.site, &p.patch.patch)?;
    }
    let images = render_images(env, &mut templates, &context)?;
    let hosts_site = TemplateSite {
        file: env.file.clone(),
        line: env.line_of("hosts:"),
        field: "overlay.hosts".into(),
    };
    if let Some(hosts) = &overlay.hosts {
        templates.add(&hosts_site, hosts)?;
    }

    let scopes = Scopes::from_objects(&objects);
    let mut namespace_map = namespaces::NamespaceMap::plan(
        &objects,
        &scopes,
        env.target_namespace(),
        implied_namespace,
    );
    namespace_map.apply(&mut objects, &scopes);
    let mut warnings = namespace_map.into_warnings();
    let mut refusals = tenancy::reserved_name_refusals(&objects, env.on_shared_cluster());
    if env.on_shared_cluster() {
        warnings.extend(namespaces::isolate_cluster_scoped(
            &mut objects,
            &scopes,
            &env.name,
        ));
        let mut own_namespaces: std::collections::BTreeSet<String> = objects
            .iter()
            .filter(|o| o.kind() == "Namespace" && o.group().is_empty())
            .map(|o| o.name().to_string())
            .collect();
        own_namespaces.insert(env.target_namespace().to_string());
        let boundary = tenancy::Boundary {
            env: &env.name,
            project: &env.project,
            namespaces: own_namespaces,
            allowed_kinds: &env.allow_cluster_scoped,
        };
        let confined = tenancy::confine(&mut objects, &scopes, &boundary);
        refusals.extend(confined.refusals);
        warnings.extend(confined.rewrites);
    }
    if !refusals.is_empty() {
        return Err(ForkError::Refused { refusals });
    }

    let scale = match &overlay.resources {
        Some(resources) => Some(
            quantity::Ratio::parse_decimal(&resources.scale.to_string()).ok_or_else(|| {
                ForkError::Spec {
                    file: env.file.clone(),
                    line: env.line_of("scale:"),
                    field: "overlay.resources.scale".into(),
                    message: format!("`{}` is not a decimal number", resources.scale),
                }
            })?,
        ),
        None => None,
    };
    let mut host_rewriter = overlay.hosts.as_ref().map(|text| hosts::HostRewriter {
        templates: &templates,
        site: &hosts_site,
        text,
        context: &context,
        rendered: BTreeMap::new(),
    });
    let mut images_used = std::collections::BTreeSet::new();
    for object in objects.iter_mut() {
        if let Some(replicas) = &overlay.replicas {
            workloads::cap_replicas(object, replicas.max);
        }
        if let Some(factor) = scale {
            workloads::scale_resources(object, factor)?;
        }
        images_used.extend(workloads::replace_images(object, &images));
        if !overlay.env.is_empty() {
            workloads::set_env(object, &overlay.env);
        }
        if let Some(rewriter) = host_rewriter.as_mut() {
            rewriter.apply(object)?;
        }
    }
    if let Some(rewriter) = host_rewriter.as_mut() {
        rewriter.check_unused()?;
    }

    // A key that matches nothing would leave production's image running in a preview that
    // claims to test another: a typo must be an error, not a silent no-op.
    if let Some(unused) = images.keys().find(|k| !images_used.contains(k.as_str())) {
        return Err(ForkError::Spec {
            file: env.file.clone(),
            line: env.line_of(&format!("{unused}:")),
            field: format!("overlay.images.{unused}"),
            message: format!(
                "`{unused}` matches no container name or image repository in the source"
            ),
        });
    }
    patches::apply(&planned_patches, &templates, &context, &mut objects)?;
    for object in objects.iter_mut() {
        if env.on_shared_cluster() && is_custom_resource_definition(object) {
            ownership::mark_shared(object, &env.project);
        } else {
            ownership::mark_owned(object, &env.name, &env.project);
        }
    }
    sort_for_apply(&mut objects);
    Ok(Forked {
        objects,
        excluded,
        warnings,
    })
}

fn is_custom_resource_definition(object: &Object) -> bool {
    object.kind() == "CustomResourceDefinition" && object.group() == "apiextensions.k8s.io"
}

/// The namespace a source is applied into when its objects name none: `source.namespace`,
/// else the kustomization's `namespace:`, else `default` (where `kubectl apply` puts them).
pub fn implied_namespace<'a>(env: &'a Environment, kustomization: Option<&'a str>) -> &'a str {
    env.source
        .namespace
        .as_deref()
        .or(kustomization)
        .unwrap_or("default")
}

/// Image values are templates that do not depend on the object: render each once.
fn render_images(
    env: &Environment,
    templates: &mut Templates,
    context: &tera::Context,
) -> Result<BTreeMap<String, String>, ForkError> {
    let mut images = BTreeMap::new();
    for (key, text) in &env.overlay.images {
        let site = TemplateSite {
            file: env.file.clone(),
            line: env.line_of(&format!("{key}:")),
            field: format!("overlay.images.{key}"),
        };
        templates.add(&site, text)?;
        let image = templates.render(&site, text, context)?.trim().to_string();
        if image.is_empty() || image.contains(char::is_whitespace) {
            return Err(ForkError::Spec {
                file: site.file,
                line: site.line,
                field: site.field,
                message: format!("`{text}` rendered to `{image}`, which is not an image reference"),
            });
        }
        images.insert(key.clone(), image);
    }
    Ok(images)
}
