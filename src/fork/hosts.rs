//! Ingress hosts (rules and TLS) rewritten through the spec's `hosts` template.

use super::ForkError;
use crate::object::Object;
use crate::template::{TemplateSite, Templates};
use serde_json::Value;
use std::collections::BTreeMap;

pub struct HostRewriter<'a> {
    pub templates: &'a Templates,
    pub site: &'a TemplateSite,
    pub text: &'a str,
    pub context: &'a tera::Context,
    /// Original host → new host, so each host is rendered once.
    pub rendered: BTreeMap<String, String>,
}

impl HostRewriter<'_> {
    pub fn apply(&mut self, object: &mut Object) -> Result<(), ForkError> {
        if object.kind() != "Ingress" {
            return Ok(());
        }
        let mut hosts: Vec<&mut Value> = Vec::new();
        let Some(spec) = object.get_mut(&["spec"]).and_then(Value::as_object_mut) else {
            return Ok(());
        };
        for (key, value) in spec.iter_mut() {
            let Some(list) = value.as_array_mut() else {
                continue;
            };
            match key.as_str() {
                "rules" => hosts.extend(list.iter_mut().filter_map(|r| r.get_mut("host"))),
                "tls" => hosts.extend(
                    list.iter_mut()
                        .filter_map(|t| t.get_mut("hosts"))
                        .filter_map(Value::as_array_mut)
                        .flatten(),
                ),
                _ => {}
            }
        }
        for host in hosts {
            let Some(original) = host.as_str().map(str::to_string) else {
                continue;
            };
            let new_host = self.render(&original)?;
            *host = Value::String(new_host);
        }
        Ok(())
    }

    /// When no Ingress had a host to rewrite, renders the template once for a sample host: a
    /// template error (an undefined variable) must not wait for the first Ingress to appear.
    pub fn check_unused(&mut self) -> Result<(), ForkError> {
        if self.rendered.is_empty() {
            self.render("app.example.com")?;
        }
        Ok(())
    }

    fn render(&mut self, original: &str) -> Result<String, ForkError> {
        if let Some(done) = self.rendered.get(original) {
            return Ok(done.clone());
        }
        let mut context = self.context.clone();
        context.insert("host", original);
        let host = self
            .templates
            .render(self.site, self.text, &context)?
            .trim()
            .to_string();
        if !is_valid_host(&host) {
            return Err(ForkError::Spec {
                file: self.site.file.clone(),
                line: self.site.line,
                field: self.site.field.clone(),
                message: format!(
                    "host `{original}` became `{host}`, which is not a valid DNS name"
                ),
            });
        }
        self.rendered.insert(original.to_string(), host.clone());
        Ok(host)
    }
}

/// A DNS-1123 subdomain, optionally with a leading `*.` (as Ingress allows).
fn is_valid_host(host: &str) -> bool {
    let host = host.strip_prefix("*.").unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts() {
        assert!(super::is_valid_host("shop.pr-1.preview.example.com"));
        assert!(super::is_valid_host("*.pr-1.example.com"));
        assert!(!super::is_valid_host("Shop.example.com"));
        assert!(!super::is_valid_host("a..b"));
        assert!(!super::is_valid_host(""));
    }
}
