//! Strict tera templates: hosts, images and patches in specs, and the spec templates `up`
//! writes from. An undefined variable is an error (tera's default), reported with the template's
//! file and line.

use crate::spec::Environment;
use serde_json::{Value, json};
use tera::{Context, Tera};

/// A set of templates, each parsed once and rendered many times with different contexts.
pub struct Templates {
    tera: Tera,
}

/// Where a template was written, to point the reader at it.
#[derive(Debug, Clone)]
pub struct TemplateSite {
    pub file: String,
    /// Line where the template text starts.
    pub line: usize,
    /// The spec field, e.g. `overlay.hosts` or `overlay.patches[0].patch`.
    pub field: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{}:{}: {}: {message}", site.file, site.line, site.field)]
pub struct TemplateError {
    pub site: TemplateSite,
    pub message: String,
}

impl Templates {
    pub fn new() -> Self {
        let mut tera = Tera::default();
        tera.autoescape_on(vec![]);
        Templates { tera }
    }

    /// Adds a template under `site.field`; a syntax error is reported at once.
    pub fn add(&mut self, site: &TemplateSite, text: &str) -> Result<(), TemplateError> {
        self.tera
            .add_raw_template(&site.field, text)
            .map_err(|e| TemplateError {
                site: site.clone(),
                message: format!("invalid template: {}", error_chain(&e)),
            })
    }

    pub fn render(
        &self,
        site: &TemplateSite,
        text: &str,
        context: &Context,
    ) -> Result<String, TemplateError> {
        self.tera.render(&site.field, context).map_err(|e| {
            let message = error_chain(&e);
            let line = undefined_variable(&message)
                .and_then(|var| text.lines().position(|l| l.contains(var)))
                .map_or(site.line, |offset| site.line + offset);
            TemplateError {
                site: TemplateSite {
                    line,
                    ..site.clone()
                },
                message,
            }
        })
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

/// Renders a template used once (e.g. a spec template for `up`).
pub fn render_once(
    site: &TemplateSite,
    text: &str,
    context: &Context,
) -> Result<String, TemplateError> {
    let mut templates = Templates::new();
    templates.add(site, text)?;
    templates.render(site, text, context)
}

/// The context every template sees: `env`, `source`, `branch` and, when there is one, `pr`.
pub fn environment_context(env: &Environment, commit: &str) -> Context {
    let mut context = Context::new();
    let mut env_value = json!({ "name": env.name });
    if let Some(owner) = env.owner() {
        env_value["owner"] = Value::String(owner.to_string());
    }
    context.insert("env", &env_value);
    context.insert(
        "source",
        &json!({
            "repo": crate::source::repo::redact(&env.source.repo),
            "ref": env.source.reference,
            "commit": commit,
            "path": env.source.path,
        }),
    );
    context.insert("branch", env.branch());
    if let Some(pr) = env.pull_request() {
        context.insert("pr", &pr);
    }
    context
}

/// tera nests the useful part ("Variable `x` not found in context") in its error sources.
fn error_chain(error: &tera::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        parts.push(inner.to_string());
        source = inner.source();
    }
    parts.retain(|p| !p.starts_with("Failed to render"));
    if parts.is_empty() {
        return error.to_string();
    }
    parts.join(": ")
}

fn undefined_variable(message: &str) -> Option<&str> {
    let start = message.find("Variable `")? + "Variable `".len();
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> TemplateSite {
        TemplateSite {
            file: "environments/pr-1.yaml".into(),
            line: 10,
            field: "overlay.patches[0].patch".into(),
        }
    }

    #[test]
    fn undefined_variables_are_errors_with_file_and_line() {
        let text = "spec:\n  a: {{ env.name }}\n  b: {{ nope }}\n";
        let mut context = Context::new();
        context.insert("env", &json!({"name": "pr-1"}));
        let err = render_once(&site(), text, &context).unwrap_err();
        assert_eq!(err.site.line, 12, "{err}");
        assert!(
            err.to_string()
                .starts_with("environments/pr-1.yaml:12: overlay.patches[0].patch:"),
            "{err}"
        );
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn host_templates_use_builtin_filters() {
        let mut context = Context::new();
        context.insert("host", "shop.example.com");
        let out = render_once(
            &site(),
            "{{ host | split(pat='.') | first }}.pr-1.preview.dev",
            &context,
        )
        .unwrap();
        assert_eq!(out, "shop.pr-1.preview.dev");
    }
}
