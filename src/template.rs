//! Strict tera templates: hosts, images and patches in specs, and the YAML documents sprout
//! writes from templates (environment specs for `up`, production's spec for `init`, the kind
//! cluster config). An undefined variable is an error (tera's default), reported with the
//! template's file and line.
//!
//! Rendering is a function of the spec and the commit: tera's functions that read the process
//! environment, the clock or a random source are replaced by ones that fail with a clear error,
//! so a template cannot copy a CI secret into an object or a spec.
//!
//! In a YAML document template every `{{ value }}` comes out as one double-quoted YAML scalar
//! ([`render_yaml_document`]): a branch named `main"#` or `x\nspec: {}` is a value, never
//! structure, whatever the template around it looks like.

use crate::spec::Environment;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt::Write as _;
use tera::{Context, Tera};

/// Functions that would make a render depend on the machine rather than the spec and commit:
/// `get_env` reads sprout's environment; `now` and `get_random` exist with tera's `builtins`
/// feature and are refused too, so enabling that feature cannot bring them back unnoticed.
const REFUSED_FUNCTIONS: &[&str] = &["get_env", "now", "get_random"];

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
        refuse_host_access(&mut tera);
        Templates { tera }
    }

    /// Templates whose every rendered value is a double-quoted YAML scalar.
    fn yaml() -> Self {
        let mut templates = Templates::new();
        templates
            .tera
            .register_filter(YAML_QUOTE, yaml_quote_filter);
        templates
    }

    /// Makes every `{{ }}` of the template `site.field` end with the YAML-quoting filter: after
    /// any expression (a variable, `~` concatenation, arithmetic, a function call), so nothing a
    /// template can compute reaches the document unquoted. tera's own autoescape would not do:
    /// it leaves concatenations and "safe" filters alone.
    fn quote_every_value(&mut self, site: &TemplateSite, text: &str) -> Result<(), TemplateError> {
        let template = self
            .tera
            .templates
            .get_mut(&site.field)
            .expect("the template was just added");
        quote_values(&mut template.ast).map_err(|tag| TemplateError {
            site: TemplateSite {
                line: site.line
                    + text
                        .lines()
                        .position(|l| l.contains("{%") && l.contains(tag))
                        .unwrap_or(0),
                ..site.clone()
            },
            message: format!(
                "`{{% {tag} %}}` is not supported in a YAML document template (values are quoted one by one); use `{{{{ }}}}`, `{{% if %}}`, `{{% for %}}` and `{{% set %}}`"
            ),
        })
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
            let line = culprit(&message)
                .and_then(|needle| text.lines().position(|l| l.contains(&needle)))
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

/// Renders a YAML document template once (an environment spec, a cluster config). Every value
/// comes out as a double-quoted YAML scalar, so templates write `ref: {{ branch }}` without
/// quotes, and a value holding quotes, `#`, `: `, newlines or `{{` stays one scalar, in a
/// comment too (a newline is written `\n`). A placeholder inside quotes or glued to other
/// text would hold the quotes inside another scalar, so such a template is refused with its
/// line; the rendered text must parse as YAML.
pub fn render_yaml_document(
    site: &TemplateSite,
    text: &str,
    context: &Context,
) -> Result<String, TemplateError> {
    check_placeholders_stand_alone(site, text)?;
    let mut templates = Templates::yaml();
    templates.add(site, text)?;
    templates.quote_every_value(site, text)?;
    let rendered = templates.render(site, text, context)?;
    if let Err(problem) = crate::yaml::check_depth(&rendered) {
        return Err(TemplateError {
            site: TemplateSite {
                line: site.line + problem.line.saturating_sub(1),
                ..site.clone()
            },
            message: format!("the template renders YAML {}", problem.message),
        });
    }
    if let Err(e) = serde_yaml::from_str::<serde_yaml::Value>(&rendered) {
        return Err(TemplateError {
            site: TemplateSite {
                line: site.line + e.location().map_or(0, |l| l.line().saturating_sub(1)),
                ..site.clone()
            },
            message: format!("the template renders invalid YAML: {e}"),
        });
    }
    Ok(rendered)
}

/// A double-quoted YAML scalar holding exactly `value`, readable by YAML 1.1 and 1.2 parsers.
/// Only printable characters that are not line breaks in any YAML version stay as they are;
/// everything else is escaped, so the scalar is always one line.
pub fn yaml_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            ' '..='~' => out.push(c),
            // YAML's printable set, minus NEL, LS, PS (line breaks to libyaml and YAML 1.1)
            // and the byte-order mark.
            '\u{a0}'..='\u{2027}' | '\u{202a}'..='\u{d7ff}' | '\u{e000}'..='\u{fefe}' => {
                out.push(c)
            }
            '\u{ff00}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}' => out.push(c),
            c if (c as u32) <= 0xffff => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Refuses what would undo the quoting of [`render_yaml_document`]: a placeholder inside
/// quotes (`"{{ x }}"` would close the quotes) or glued to other text (`pr-{{ x }}` would hold
/// the quotes inside a plain scalar). Full-line comments may hold
/// placeholders anywhere: a quoted value cannot end a comment.
fn check_placeholders_stand_alone(site: &TemplateSite, text: &str) -> Result<(), TemplateError> {
    for (offset, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        let problem = placeholders(line).find_map(|(start, end)| {
            let before = line[..start].chars().next_back();
            let after = line[end..].chars().next();
            if before.is_some_and(|c| !(c.is_whitespace() || "[{,".contains(c)))
                || after.is_some_and(|c| !(c.is_whitespace() || "]},".contains(c)))
            {
                Some(format!(
                    "`{}` is glued to other text: sprout quotes every value itself, so write it alone without quotes (`key: {{{{ x }}}}`), or join text in tera (`{{{{ \"prefix-\" ~ x }}}}`)",
                    &line[start..end]
                ))
            } else {
                None
            }
        });
        if let Some(message) = problem {
            return Err(TemplateError {
                site: TemplateSite {
                    line: site.line + offset,
                    ..site.clone()
                },
                message,
            });
        }
    }
    Ok(())
}

/// Byte ranges of the `{{ ... }}` placeholders of one line.
fn placeholders(line: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut from = 0;
    std::iter::from_fn(move || {
        let start = from + line[from..].find("{{")?;
        let end = start + 2 + line[start + 2..].find("}}")? + 2;
        from = end;
        Some((start, end))
    })
}

const YAML_QUOTE: &str = "sprout_yaml_quote";

/// Appends the quoting filter to every value of `nodes`; a tag that could write text around
/// that filter (a filter section, a macro, a block, an include) is an error naming the tag.
fn quote_values(nodes: &mut [tera::ast::Node]) -> Result<(), &'static str> {
    use tera::ast::{FunctionCall, Node};
    for node in nodes {
        match node {
            Node::VariableBlock(_, expr) => expr.filters.push(FunctionCall {
                name: YAML_QUOTE.into(),
                args: HashMap::new(),
            }),
            Node::If(branches, _) => {
                for (_, _, body) in branches.conditions.iter_mut() {
                    quote_values(body)?;
                }
                if let Some((_, body)) = branches.otherwise.as_mut() {
                    quote_values(body)?;
                }
            }
            Node::Forloop(_, forloop, _) => {
                quote_values(&mut forloop.body)?;
                if let Some(body) = forloop.empty_body.as_mut() {
                    quote_values(body)?;
                }
            }
            Node::FilterSection(..) => return Err("filter"),
            Node::MacroDefinition(..) => return Err("macro"),
            Node::ImportMacro(..) => return Err("import"),
            Node::Block(..) | Node::Super => return Err("block"),
            Node::Extends(..) => return Err("extends"),
            Node::Include(..) => return Err("include"),
            Node::Text(_)
            | Node::Set(..)
            | Node::Raw(..)
            | Node::Break(_)
            | Node::Continue(_)
            | Node::Comment(..) => {}
        }
    }
    Ok(())
}

/// The quoting filter: any scalar as its text, quoted; lists and maps have no one text.
fn yaml_quote_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        Value::Array(_) | Value::Object(_) => {
            return Err(tera::Error::msg(
                "a list or a map cannot be one value of a YAML document template; write its items one by one",
            ));
        }
    };
    Ok(Value::String(yaml_quoted(&text)))
}

/// Replaces every function that reads the environment, the clock or randomness with one that
/// says why it is refused.
fn refuse_host_access(tera: &mut Tera) {
    for name in REFUSED_FUNCTIONS {
        tera.register_function(name, refused(name));
    }
}

fn refused(name: &'static str) -> impl tera::Function {
    move |_: &HashMap<String, Value>| -> tera::Result<Value> {
        Err(tera::Error::msg(format!(
            "`{name}()` is disabled: a render must depend only on the spec and the commit, never on sprout's environment, clock or randomness; write the value into the spec instead"
        )))
    }
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

/// What to look for in the template text to find the line of an error: the undefined
/// variable, or the call of the function that failed.
fn culprit(message: &str) -> Option<String> {
    let between = |open: &str, close: char| {
        let start = message.find(open)? + open.len();
        let len = message[start..].find(close)?;
        Some(message[start..start + len].to_string())
    };
    between("Variable `", '`').or_else(|| between("Function call '", '\'').map(|f| format!("{f}(")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin_templates::{BRANCH, DEVELOPER, PREVIEW, PRODUCTION};
    use proptest::prelude::*;

    fn render_once(
        site: &TemplateSite,
        text: &str,
        context: &Context,
    ) -> Result<String, TemplateError> {
        let mut templates = Templates::new();
        templates.add(site, text)?;
        templates.render(site, text, context)
    }

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

    #[test]
    fn functions_reading_the_host_fail_with_file_and_line() {
        let text = "spec:\n  a: {{ env.name }}\n  b: {{ get_env(name=\"HOME\") }}\n";
        let mut context = Context::new();
        context.insert("env", &json!({"name": "pr-1"}));
        let err = render_once(&site(), text, &context).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("environments/pr-1.yaml:12: overlay.patches[0].patch:"),
            "{message}"
        );
        assert!(message.contains("`get_env()` is disabled"), "{message}");
        for call in ["now()", "get_random(start=1, end=9)"] {
            let text = format!("a: 1\nb: {{{{ {call} }}}}\n");
            let err = render_yaml_document(&site(), &text, &Context::new()).unwrap_err();
            assert_eq!(err.site.line, 11, "{err}");
            assert!(err.message.contains("is disabled"), "{err}");
        }
    }

    #[test]
    fn yaml_documents_refuse_placeholders_that_would_undo_quoting() {
        let mut context = Context::new();
        context.insert("branch", "main");
        for (text, needle) in [
            ("a: 1\nref: \"{{ branch }}\"\n", "glued"),
            ("a: 1\nref: pr-{{ branch }}\n", "glued"),
            (
                "a: 1\n{% filter upper %}\nref: {{ branch }}\n{% endfilter %}\n",
                "filter",
            ),
        ] {
            let err = render_yaml_document(&site(), text, &context).unwrap_err();
            assert_eq!(err.site.line, 11, "{text}: {err}");
            assert!(err.message.contains(needle), "{text}: {err}");
        }
        let out = render_yaml_document(
            &site(),
            "# for {{ branch }}'s sake\nref: {{ \"pr-\" ~ branch }}\nlist: [{{ branch | safe }}, {{ 40 + 2 }}]\n",
            &context,
        )
        .unwrap();
        assert_eq!(
            out,
            "# for \"main\"'s sake\nref: \"pr-main\"\nlist: [\"main\", \"42\"]\n"
        );
    }

    #[test]
    fn quoted_scalars_escape_what_yaml_would_read_as_structure() {
        for (value, quoted) in [
            ("main", r#""main""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("x\ny\r\t", r#""x\ny\r\t""#),
            (
                "\u{85}\u{2028}\u{2029}\u{feff}\u{7f}\u{0}",
                r#""\u0085\u2028\u2029\uFEFF\u007F\u0000""#,
            ),
            ("Ünï 🌱", "\"Ünï 🌱\""),
        ] {
            assert_eq!(yaml_quoted(value), quoted);
            let back: String = serde_yaml::from_str(&yaml_quoted(value)).unwrap();
            assert_eq!(back, value);
        }
    }

    /// Everything that is hard for a YAML template: quotes, comments, shell, line breaks of
    /// every YAML version, template syntax, indicators that start structure.
    fn hostile_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("\"".to_string()),
            Just("'".to_string()),
            Just("#".to_string()),
            Just(" #".to_string()),
            Just("$(touch x)".to_string()),
            Just(";id;".to_string()),
            Just("\n".to_string()),
            Just("\r\n".to_string()),
            Just("\u{85}\u{2028}\u{2029}".to_string()),
            Just("{{ name }}".to_string()),
            Just("{% raw %}".to_string()),
            Just(": ".to_string()),
            Just("- ".to_string()),
            Just("*a".to_string()),
            Just("&a".to_string()),
            Just("!!binary".to_string()),
            Just("|".to_string()),
            Just(">".to_string()),
            Just("Ünï".to_string()),
            Just("\\".to_string()),
            Just("\t".to_string()),
            Just("feat/login".to_string()),
            any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(piece, 1..10).prop_map(|parts| parts.concat())
    }

    fn spec_context(branch: &str) -> Context {
        let mut context = Context::new();
        context.insert("name", "pr-42");
        context.insert("owner", branch);
        context.insert("branch", branch);
        context.insert("from", "production");
        context.insert("provider", "kind");
        context.insert("ttl", "8h");
        context.insert("teardown", "0 12 * * 1-5");
        context.insert("pr", &42);
        context.insert("ref", branch);
        context.insert("path", branch);
        context
    }

    fn render_spec(text: &str, branch: &str) -> crate::spec::EnvironmentDocument {
        let rendered = render_yaml_document(&site(), text, &spec_context(branch))
            .unwrap_or_else(|e| panic!("{branch:?}: {e}"));
        serde_yaml::from_str(&rendered).unwrap_or_else(|e| panic!("{branch:?}: {e}\n{rendered}"))
    }

    #[test]
    fn a_template_rendering_deep_nesting_is_refused_before_it_is_parsed() {
        let text = format!("spec:\n  overlay: {}\n", "[".repeat(100_000));
        let started = std::time::Instant::now();
        let error = render_yaml_document(&site(), &text, &spec_context("main")).unwrap_err();
        assert!(error.message.contains("nested deeper than"), "{error}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn any_branch_name_is_one_value_of_every_builtin_spec(branch in hostile_text()) {
            for text in [BRANCH, DEVELOPER, PREVIEW, PRODUCTION] {
                let reference = serde_json::to_value(render_spec(text, "main")).unwrap();
                let hostile = render_spec(text, &branch);
                prop_assert_eq!(hostile.spec.source.reference.as_deref(), Some(branch.as_str()));
                let mut hostile = serde_json::to_value(hostile).unwrap();
                // Put "main" back where the branch went: what remains must be the same spec.
                for pointer in ["/spec/source/ref", "/spec/source/path", "/metadata/labels/sprout.dev~1branch", "/metadata/labels/sprout.dev~1owner"] {
                    if let Some(value) = hostile.pointer_mut(pointer) {
                        prop_assert_eq!(value.as_str(), Some(branch.as_str()));
                        *value = json!("main");
                    }
                }
                prop_assert_eq!(hostile, reference);
            }
        }
    }
}
