//! Spec patches: tera-rendered YAML/JSON merge patches (RFC 7386) on objects selected by kind
//! and name (and, optionally, source namespace).

use super::ForkError;
use crate::object::Object;
use crate::spec::{Environment, Patch};
use crate::template::{TemplateSite, Templates};
use serde_json::Value;

pub struct PlannedPatch<'a> {
    pub patch: &'a Patch,
    pub site: TemplateSite,
    /// Indices (into the object list) of the objects it applies to.
    pub targets: Vec<usize>,
}

/// Matches each patch to its objects, by their identity in the source (before any renaming).
/// A patch that matches nothing is an error: it is almost always a typo.
pub fn plan<'a>(
    env: &'a Environment,
    objects: &[Object],
    implied_namespace: &str,
) -> Result<Vec<PlannedPatch<'a>>, ForkError> {
    let mut planned = Vec::new();
    for (i, patch) in env.overlay.patches.iter().enumerate() {
        let site = TemplateSite {
            file: env.file.clone(),
            line: nth_line_of(&env.text, "patch:", i) + 1,
            field: format!("overlay.patches[{i}].patch"),
        };
        let target = &patch.target;
        let targets: Vec<usize> = objects
            .iter()
            .enumerate()
            .filter(|(_, o)| o.kind() == target.kind && o.name() == target.name)
            .filter(|(_, o)| {
                target
                    .namespace
                    .as_deref()
                    // An object that names no namespace is in the implied one.
                    .is_none_or(|ns| match o.namespace() {
                        "" => ns == implied_namespace,
                        own => own == ns,
                    })
            })
            .map(|(i, _)| i)
            .collect();
        if targets.is_empty() {
            return Err(ForkError::Spec {
                file: env.file.clone(),
                line: nth_line_of(&env.text, "target:", i),
                field: format!("overlay.patches[{i}].target"),
                message: format!(
                    "no {} named `{}`{} in the source; check the kind and name",
                    target.kind,
                    target.name,
                    target
                        .namespace
                        .as_ref()
                        .map(|n| format!(" in namespace {n}"))
                        .unwrap_or_default()
                ),
            });
        }
        planned.push(PlannedPatch {
            patch,
            site,
            targets,
        });
    }
    Ok(planned)
}

pub fn apply(
    planned: &[PlannedPatch<'_>],
    templates: &Templates,
    context: &tera::Context,
    objects: &mut [Object],
) -> Result<(), ForkError> {
    for p in planned {
        for &index in &p.targets {
            let object = &mut objects[index];
            let mut context = context.clone();
            context.insert("object", &Value::Object(object.body.clone()));
            let text = templates.render(&p.site, &p.patch.patch, &context)?;
            // The patch was a block of text in the spec: its nesting is checked only now.
            crate::yaml::check_depth(&text).map_err(|problem| ForkError::Spec {
                file: p.site.file.clone(),
                line: p.site.line + problem.line.saturating_sub(1),
                field: p.site.field.clone(),
                message: format!("the rendered patch is {}", problem.message),
            })?;
            let patch: Value = serde_yaml::from_str(&text).map_err(|e| ForkError::Spec {
                file: p.site.file.clone(),
                line: p.site.line + e.location().map_or(0, |l| l.line().saturating_sub(1)),
                field: p.site.field.clone(),
                message: format!("the rendered patch is not valid YAML: {e}"),
            })?;
            if !patch.is_object() {
                return Err(ForkError::Spec {
                    file: p.site.file.clone(),
                    line: p.site.line,
                    field: p.site.field.clone(),
                    message: "a patch must be a mapping (a JSON merge patch)".into(),
                });
            }
            let mut value = Value::Object(std::mem::take(&mut object.body));
            json_patch::merge(&mut value, &patch);
            let Value::Object(body) = value else {
                unreachable!("merging a mapping into a mapping gives a mapping")
            };
            object.body = body;
        }
    }
    Ok(())
}

/// The line of the `n`-th (0-based) line starting with `key`, or 1.
fn nth_line_of(text: &str, key: &str, n: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, line)| crate::spec::is_key_of(line, key))
        .nth(n)
        .map_or(1, |(i, _)| i + 1)
}
