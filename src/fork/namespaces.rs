//! Namespace mapping: where each source namespace lands, and every reference that must follow.
//!
//! A source with one namespace (or none) maps it to the target namespace; a source with several
//! maps each to `<target>-<ns>`, so their relative layout survives. References to a renamed
//! namespace follow it: binding subjects, webhook and APIService services, NetworkPolicy
//! namespace selectors, and in-cluster DNS names in env values, container commands and args,
//! and ConfigMap data.
//!
//! On a shared cluster (`namespace` provider) environments also share cluster-scoped names, so
//! cluster-scoped objects other than CRDs and Namespaces get `-<env>` appended and references to
//! them follow.

use super::workloads::{containers_mut, pod_spec_mut};
use crate::naming::{self, Backend};
use crate::object::{Object, Origin, Scopes};
use regex::Regex;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

pub struct NamespaceMap {
    /// Source namespace ("" for objects that name none) → target namespace.
    map: BTreeMap<String, String>,
    dns: Option<Regex>,
}

impl NamespaceMap {
    pub fn plan(objects: &[Object], scopes: &Scopes, target: &str) -> Self {
        let mut named: BTreeSet<String> = BTreeSet::new();
        for object in objects {
            if object.kind() == "Namespace" && object.group().is_empty() {
                named.insert(object.name().to_string());
            } else if !scopes.is_cluster_scoped(object) && !object.namespace().is_empty() {
                named.insert(object.namespace().to_string());
            }
        }
        let several = named.len() > 1;
        let mut map: BTreeMap<String, String> = named
            .into_iter()
            .map(|ns| {
                let to = if several {
                    naming::derive(&format!("{target}-{ns}"), Backend::Namespace)
                } else {
                    target.to_string()
                };
                (ns, to)
            })
            .collect();
        map.insert(String::new(), target.to_string());
        let renamed: Vec<String> = map
            .iter()
            .filter(|(from, to)| !from.is_empty() && from != to)
            .map(|(from, _)| regex::escape(from))
            .collect();
        // `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`; boundaries are checked by hand
        // because the regex crate has no look-around.
        let dns = (!renamed.is_empty()).then(|| {
            Regex::new(&format!(
                r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?\.({})(\.svc(?:\.cluster\.local)?)?",
                renamed.join("|")
            ))
            .expect("escaped alternatives form a valid regex")
        });
        NamespaceMap { map, dns }
    }

    pub fn target_of<'a>(&'a self, source: &'a str) -> &'a str {
        self.map.get(source).map_or(source, String::as_str)
    }

    fn renamed(&self, source: &str) -> Option<&str> {
        self.map
            .get(source)
            .filter(|to| *to != source)
            .map(String::as_str)
    }

    /// Moves objects to their target namespaces and adds Namespace objects that are missing.
    pub fn apply(&self, objects: &mut Vec<Object>, scopes: &Scopes) {
        for object in objects.iter_mut() {
            if object.kind() == "Namespace" && object.group().is_empty() {
                let to = self.target_of(object.name()).to_string();
                object.set_name(&to);
            } else if !scopes.is_cluster_scoped(object) {
                let to = self.target_of(object.namespace()).to_string();
                object.set_namespace(&to);
            }
            self.rewrite_references(object);
        }
        let present: BTreeSet<String> = objects
            .iter()
            .filter(|o| o.kind() == "Namespace" && o.group().is_empty())
            .map(|o| o.name().to_string())
            .collect();
        // Every namespace an object lands in must exist, and so must the target namespace even
        // when a multi-namespace source puts nothing there: it holds the environment's inventory.
        let used: BTreeSet<String> = objects
            .iter()
            .filter(|o| !scopes.is_cluster_scoped(o))
            .map(|o| o.namespace().to_string())
            .chain([self.target_of("").to_string()])
            .filter(|ns| !present.contains(ns))
            .collect();
        for namespace in used {
            objects.push(namespace_object(&namespace));
        }
    }

    fn rewrite_references(&self, object: &mut Object) {
        match object.kind() {
            "RoleBinding" | "ClusterRoleBinding" => {
                if let Some(Value::Array(subjects)) = object.get_mut(&["subjects"]) {
                    for subject in subjects.iter_mut().filter_map(Value::as_object_mut) {
                        self.rename_field(subject, "namespace");
                    }
                }
            }
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => {
                if let Some(Value::Array(webhooks)) = object.get_mut(&["webhooks"]) {
                    for hook in webhooks.iter_mut() {
                        if let Some(service) = hook
                            .pointer_mut("/clientConfig/service")
                            .and_then(Value::as_object_mut)
                        {
                            self.rename_field(service, "namespace");
                        }
                    }
                }
            }
            "APIService" => {
                if let Some(service) = object
                    .get_mut(&["spec", "service"])
                    .and_then(Value::as_object_mut)
                {
                    self.rename_field(service, "namespace");
                }
            }
            "CustomResourceDefinition" => {
                if let Some(service) = object
                    .get_mut(&["spec", "conversion", "webhook", "clientConfig", "service"])
                    .and_then(Value::as_object_mut)
                {
                    self.rename_field(service, "namespace");
                }
            }
            "NetworkPolicy" => self.rewrite_network_policy(object),
            "ConfigMap" => {
                if let Some(Value::Object(data)) = object.get_mut(&["data"]) {
                    for value in data.values_mut() {
                        self.rewrite_dns_value(value);
                    }
                }
            }
            _ => {}
        }
        if let Some(pod) = pod_spec_mut(object) {
            for container in containers_mut(pod) {
                if let Some(Value::Array(env)) = container.get_mut("env") {
                    for var in env.iter_mut() {
                        if let Some(value) = var.get_mut("value") {
                            self.rewrite_dns_value(value);
                        }
                    }
                }
                // A wait-for or probe script naming `svc.ns` would hang in the fork otherwise.
                for field in ["command", "args"] {
                    if let Some(Value::Array(words)) = container.get_mut(field) {
                        words
                            .iter_mut()
                            .for_each(|word| self.rewrite_dns_value(word));
                    }
                }
            }
        }
    }

    fn rename_field(&self, map: &mut Map<String, Value>, field: &str) {
        if let Some(to) = map
            .get(field)
            .and_then(Value::as_str)
            .and_then(|ns| self.renamed(ns))
        {
            map.insert(field.into(), Value::String(to.to_string()));
        }
    }

    fn rewrite_network_policy(&self, object: &mut Object) {
        const NAME_LABEL: &str = "kubernetes.io/metadata.name";
        for direction in ["ingress", "egress"] {
            let Some(Value::Array(rules)) = object.get_mut(&["spec", direction]) else {
                continue;
            };
            for rule in rules.iter_mut() {
                for peers in ["from", "to"] {
                    let Some(Value::Array(peers)) = rule.get_mut(peers) else {
                        continue;
                    };
                    for selector in peers
                        .iter_mut()
                        .filter_map(|p| p.get_mut("namespaceSelector"))
                    {
                        if let Some(labels) = selector
                            .get_mut("matchLabels")
                            .and_then(Value::as_object_mut)
                        {
                            self.rename_field(labels, NAME_LABEL);
                        }
                        if let Some(Value::Array(exprs)) = selector.get_mut("matchExpressions") {
                            for expr in exprs.iter_mut() {
                                if expr.get("key").and_then(Value::as_str) != Some(NAME_LABEL) {
                                    continue;
                                }
                                if let Some(Value::Array(values)) = expr.get_mut("values") {
                                    for value in values.iter_mut() {
                                        if let Some(to) =
                                            value.as_str().and_then(|v| self.renamed(v))
                                        {
                                            *value = Value::String(to.to_string());
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn rewrite_dns_value(&self, value: &mut Value) {
        if let Value::String(text) = value
            && let Some(rewritten) = self.rewrite_dns(text)
        {
            *text = rewritten;
        }
    }

    /// `text` with in-cluster DNS names of renamed namespaces rewritten, if any matched.
    pub fn rewrite_dns(&self, text: &str) -> Option<String> {
        let dns = self.dns.as_ref()?;
        let bytes = text.as_bytes();
        let is_name_char = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        let mut changed = false;
        for caps in dns.captures_iter(text) {
            let whole = caps.get(0).expect("match");
            let before_ok = whole.start() == 0 || {
                let b = bytes[whole.start() - 1];
                !is_name_char(b) && b != b'.'
            };
            let after_ok = whole.end() == text.len() || {
                let b = bytes[whole.end()];
                // `a.ns.example.com` is an outside host, not service `a` in `ns`.
                !is_name_char(b)
                    && (b != b'.' || caps.get(2).is_some_and(|s| s.as_str().ends_with("local")))
            };
            if !(before_ok && after_ok) {
                continue;
            }
            let ns = caps.get(1).expect("namespace group");
            let Some(to) = self.renamed(ns.as_str()) else {
                continue;
            };
            out.push_str(&text[last..ns.start()]);
            out.push_str(to);
            last = ns.end();
            changed = true;
        }
        if !changed {
            return None;
        }
        out.push_str(&text[last..]);
        Some(out)
    }
}

fn namespace_object(name: &str) -> Object {
    let Value::Object(body) =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    else {
        unreachable!("a literal map")
    };
    Object::new(
        body,
        Origin {
            file: "(added by sprout: the environment's namespace)".into(),
            document: 1,
        },
    )
}

/// On a shared cluster: `<name>-<env>` for cluster-scoped objects other than CRDs and
/// Namespaces, with references to them (binding roleRefs, priority, storage and ingress classes)
/// following.
pub fn isolate_cluster_scoped(objects: &mut [Object], scopes: &Scopes, env: &str) {
    let mut renamed: BTreeMap<(String, String), String> = BTreeMap::new();
    for object in objects.iter_mut() {
        let kind = object.kind().to_string();
        if !scopes.is_cluster_scoped(object)
            || kind == "CustomResourceDefinition"
            || kind == "Namespace"
        {
            continue;
        }
        let name = object.name().to_string();
        let new_name = format!("{name}-{env}");
        object.set_name(&new_name);
        renamed.insert((kind, name), new_name);
    }
    if renamed.is_empty() {
        return;
    }
    let lookup =
        |kind: &str, name: &str| renamed.get(&(kind.to_string(), name.to_string())).cloned();
    for object in objects.iter_mut() {
        match object.kind() {
            "RoleBinding" | "ClusterRoleBinding" => {
                if let Some(role_ref) = object.get_mut(&["roleRef"]).and_then(Value::as_object_mut)
                    && role_ref.get("kind").and_then(Value::as_str) == Some("ClusterRole")
                    && let Some(to) = role_ref
                        .get("name")
                        .and_then(Value::as_str)
                        .and_then(|n| lookup("ClusterRole", n))
                {
                    role_ref.insert("name".into(), Value::String(to));
                }
            }
            "PersistentVolumeClaim" => rename_ref(
                object.get_mut(&["spec"]),
                "storageClassName",
                "StorageClass",
                &lookup,
            ),
            "Ingress" => rename_ref(
                object.get_mut(&["spec"]),
                "ingressClassName",
                "IngressClass",
                &lookup,
            ),
            "StatefulSet" => {
                if let Some(Value::Array(templates)) =
                    object.get_mut(&["spec", "volumeClaimTemplates"])
                {
                    for template in templates.iter_mut() {
                        rename_ref(
                            template.get_mut("spec"),
                            "storageClassName",
                            "StorageClass",
                            &lookup,
                        );
                    }
                }
            }
            _ => {}
        }
        if let Some(pod) = pod_spec_mut(object) {
            if let Some(to) = pod
                .get("priorityClassName")
                .and_then(Value::as_str)
                .and_then(|n| lookup("PriorityClass", n))
            {
                pod.insert("priorityClassName".into(), Value::String(to));
            }
            if let Some(to) = pod
                .get("runtimeClassName")
                .and_then(Value::as_str)
                .and_then(|n| lookup("RuntimeClass", n))
            {
                pod.insert("runtimeClassName".into(), Value::String(to));
            }
        }
    }
}

fn rename_ref(
    spec: Option<&mut Value>,
    field: &str,
    kind: &str,
    lookup: &dyn Fn(&str, &str) -> Option<String>,
) {
    if let Some(spec) = spec.and_then(Value::as_object_mut)
        && let Some(to) = spec
            .get(field)
            .and_then(Value::as_str)
            .and_then(|n| lookup(kind, n))
    {
        spec.insert(field.into(), Value::String(to));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_of(pairs: &[(&str, &str)]) -> NamespaceMap {
        let objects: Vec<Object> = pairs
            .iter()
            .map(|(ns, name)| {
                let Value::Object(body) = json!({"apiVersion":"v1","kind":"Service","metadata":{"name":name,"namespace":ns}}) else {
                    unreachable!()
                };
                Object::new(body, Origin { file: "t".into(), document: 1 })
            })
            .collect();
        NamespaceMap::plan(&objects, &Scopes::default(), "pr-1")
    }

    #[test]
    fn one_namespace_maps_to_the_target_several_to_prefixed_names() {
        let single = map_of(&[("shop", "a")]);
        assert_eq!(single.target_of("shop"), "pr-1");
        let multi = map_of(&[("shop", "a"), ("payments", "b")]);
        assert_eq!(multi.target_of("shop"), "pr-1-shop");
        assert_eq!(multi.target_of("payments"), "pr-1-payments");
        assert_eq!(multi.target_of(""), "pr-1");
    }

    #[test]
    fn dns_names_follow_renamed_namespaces() {
        let map = map_of(&[("shop", "a"), ("payments", "b")]);
        let cases = [
            ("cart.shop:7070", Some("cart.pr-1-shop:7070")),
            (
                "http://pay.payments.svc.cluster.local/x",
                Some("http://pay.pr-1-payments.svc.cluster.local/x"),
            ),
            (
                "redis.shop.svc:6379,pay.payments",
                Some("redis.pr-1-shop.svc:6379,pay.pr-1-payments"),
            ),
            ("cdn.shop.example.com", None),
            ("myshop:80", None),
            ("x.shopping", None),
        ];
        for (input, expected) in cases {
            assert_eq!(map.rewrite_dns(input).as_deref(), expected, "{input}");
        }
    }
}
