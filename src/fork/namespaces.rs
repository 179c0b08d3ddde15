//! Namespace mapping: where each source namespace lands, and every reference that must follow.
//!
//! The source's implied namespace (`source.namespace`: what `kubectl -n` would have been, the
//! kustomization's `namespace:`, else `default`) holds the objects that name no namespace and
//! those that name it explicitly: one namespace, which lands in the target namespace. Other
//! namespaces land in the target too when they are the only one, else each in
//! `<target>-<ns>`, so the source's layout survives. References to a mapped namespace follow
//! it: binding subjects, webhook and APIService services, NetworkPolicy namespace selectors,
//! and in-cluster DNS names (`svc.ns`, `pod.svc.ns`, with or without `.svc[.cluster.local]`)
//! in env values, container commands and args, ConfigMap data and Secret data.
//!
//! The system namespaces (kube-system, kube-public, kube-node-lease) keep their names: an
//! object there (the RoleBinding to `extension-apiserver-authentication-reader` of every
//! aggregated API) means that very namespace. A dedicated cluster takes it there; a shared
//! cluster refuses it (see `tenancy`) rather than move it where it means nothing. `default` is not one of them: in most repositories it is the application's own
//! namespace (the implied one), and mapping it keeps every environment in its own namespaces
//! on any provider.
//!
//! On a shared cluster (`namespace` provider) environments also share cluster-scoped names, so
//! cluster-scoped objects other than CRDs and Namespaces get `-<env>` appended and references to
//! them follow.

use super::workloads::{containers_mut, pod_spec_mut};
use crate::naming::{self, Backend};
use crate::object::{Object, Origin, Scopes};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Namespaces every cluster has, which keep their names.
pub const SYSTEM_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

pub struct NamespaceMap {
    /// Source namespace ("" for objects that name none) → target namespace.
    map: BTreeMap<String, String>,
    /// Source namespaces that keep their names (system namespaces on a dedicated cluster).
    kept: BTreeSet<String>,
    /// Namespaced objects of the source by (source namespace, name): a short DNS name
    /// (`svc.ns`, `pod.svc.ns`) is rewritten only when it names one (a Service, or the object
    /// an operator makes a Service for), since `spring.profiles.default` is text, not a host.
    names: BTreeSet<(String, String)>,
    /// Whether any namespace is renamed (else no DNS name can need a rewrite).
    any_renamed: bool,
    /// References to namespaces the source does not contain, for the render to warn about.
    warnings: BTreeSet<String>,
}

impl NamespaceMap {
    /// `implied` is the source's implied namespace.
    pub fn plan(objects: &[Object], scopes: &Scopes, target: &str, implied: &str) -> Self {
        let source_namespace = |object: &Object| match object.namespace() {
            "" => implied.to_string(),
            ns => ns.to_string(),
        };
        let mut named: BTreeSet<String> = BTreeSet::new();
        let mut names = BTreeSet::new();
        for object in objects {
            if object.kind() == "Namespace" && object.group().is_empty() {
                named.insert(object.name().to_string());
            } else if !scopes.is_cluster_scoped(object) {
                named.insert(source_namespace(object));
                names.insert((source_namespace(object), object.name().to_string()));
            }
        }
        let kept: BTreeSet<String> = named
            .iter()
            .filter(|ns| SYSTEM_NAMESPACES.contains(&ns.as_str()))
            .cloned()
            .collect();
        let several = named.difference(&kept).count() > 1;
        let mut map: BTreeMap<String, String> = named
            .into_iter()
            .map(|ns| {
                let to = if kept.contains(&ns) {
                    ns.clone()
                } else if several && ns != implied {
                    naming::derive(&format!("{target}-{ns}"), Backend::Namespace)
                } else {
                    target.to_string()
                };
                (ns, to)
            })
            .collect();
        map.insert(String::new(), target.to_string());
        let any_renamed = map.iter().any(|(from, to)| !from.is_empty() && from != to);
        NamespaceMap {
            map,
            kept,
            names,
            any_renamed,
            warnings: BTreeSet::new(),
        }
    }

    /// What the render should warn about: references to namespaces the source lacks.
    pub fn into_warnings(self) -> Vec<String> {
        self.warnings.into_iter().collect()
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
    /// Namespace objects of kept system namespaces are left out: every cluster has them, and
    /// owning them would let `down` delete them.
    pub fn apply(&mut self, objects: &mut Vec<Object>, scopes: &Scopes) {
        objects.retain(|o| {
            !(o.kind() == "Namespace" && o.group().is_empty() && self.kept.contains(o.name()))
        });
        for object in objects.iter_mut() {
            let who = object.object_ref().to_string();
            if object.kind() == "Namespace" && object.group().is_empty() {
                let to = self.target_of(object.name()).to_string();
                object.set_name(&to);
            } else if !scopes.is_cluster_scoped(object) {
                let to = self.target_of(object.namespace()).to_string();
                object.set_namespace(&to);
            } else if !object.namespace().is_empty() {
                // The server ignores a cluster-scoped object's namespace (kube-prometheus sets
                // one on ClusterRoles); kept, it would name an object that never exists live,
                // so every sync would find it missing and apply it again.
                object.clear_namespace();
            }
            self.rewrite_references(object, &who);
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
            .filter(|ns| !present.contains(ns) && !self.kept.contains(ns))
            .collect();
        for namespace in used {
            objects.push(namespace_object(&namespace));
        }
    }

    fn rewrite_references(&mut self, object: &mut Object, who: &str) {
        match object.kind() {
            "RoleBinding" | "ClusterRoleBinding" => {
                if let Some(Value::Array(subjects)) = object.get_mut(&["subjects"]) {
                    for subject in subjects.iter_mut().filter_map(Value::as_object_mut) {
                        self.rename_field(subject, "namespace", who);
                        self.rename_service_account_name(subject, who);
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
                            self.rename_field(service, "namespace", who);
                        }
                    }
                }
            }
            "APIService" => {
                if let Some(service) = object
                    .get_mut(&["spec", "service"])
                    .and_then(Value::as_object_mut)
                {
                    self.rename_field(service, "namespace", who);
                }
            }
            "CustomResourceDefinition" => {
                if let Some(service) = object
                    .get_mut(&["spec", "conversion", "webhook", "clientConfig", "service"])
                    .and_then(Value::as_object_mut)
                {
                    self.rename_field(service, "namespace", who);
                }
            }
            "NetworkPolicy" => self.rewrite_network_policy(object, who),
            // prometheus-operator's: where a Prometheus sends its alerts, which namespaces a
            // monitor watches (kube-prometheus names `monitoring` in both).
            "Prometheus" if object.group() == PROMETHEUS_OPERATOR => {
                if let Some(Value::Array(managers)) =
                    object.get_mut(&["spec", "alerting", "alertmanagers"])
                {
                    for manager in managers.iter_mut().filter_map(Value::as_object_mut) {
                        self.rename_field(manager, "namespace", who);
                    }
                }
            }
            "ServiceMonitor" | "PodMonitor" if object.group() == PROMETHEUS_OPERATOR => {
                if let Some(Value::Array(names)) =
                    object.get_mut(&["spec", "namespaceSelector", "matchNames"])
                {
                    for name in names.iter_mut() {
                        self.rename_value(name, who);
                    }
                }
            }
            "ConfigMap" => {
                if let Some(Value::Object(data)) = object.get_mut(&["data"]) {
                    for value in data.values_mut() {
                        self.rewrite_dns_value(value, who);
                    }
                }
            }
            // Only present under `secrets: inline`: a connection string there names a host
            // as surely as one in a ConfigMap.
            "Secret" if object.group().is_empty() => {
                if let Some(Value::Object(data)) = object.get_mut(&["stringData"]) {
                    for value in data.values_mut() {
                        self.rewrite_dns_value(value, who);
                    }
                }
                if let Some(Value::Object(data)) = object.get_mut(&["data"]) {
                    for value in data.values_mut() {
                        self.rewrite_dns_base64(value, who);
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
                            self.rewrite_dns_value(value, who);
                        }
                    }
                }
                // A wait-for or probe script naming `svc.ns` would hang in the fork otherwise.
                for field in ["command", "args"] {
                    if let Some(Value::Array(words)) = container.get_mut(field) {
                        for word in words.iter_mut() {
                            self.rewrite_dns_value(word, who);
                        }
                    }
                }
            }
        }
    }

    fn rename_field(&mut self, map: &mut Map<String, Value>, field: &str, who: &str) {
        if let Some(value) = map.get_mut(field) {
            self.rename_value(value, who);
        }
    }

    /// The namespace inside the name of a subject that names service accounts as a user
    /// (`system:serviceaccount:NS:NAME`) or as a group (`system:serviceaccounts:NS`, all of a
    /// namespace's) follows its rename like a `namespace` field.
    fn rename_service_account_name(&mut self, subject: &mut Map<String, Value>, who: &str) {
        const USER: &str = "system:serviceaccount:";
        const GROUP: &str = "system:serviceaccounts:";
        let kind = subject.get("kind").and_then(Value::as_str);
        let Some(name) = subject.get("name").and_then(Value::as_str) else {
            return;
        };
        // The namespace, and the account after it for a user.
        let (prefix, namespace, account) = match kind {
            Some("User") => match name.strip_prefix(USER).and_then(|a| a.split_once(':')) {
                Some((namespace, account)) => (USER, namespace, Some(account)),
                None => return,
            },
            Some("Group") => match name.strip_prefix(GROUP) {
                Some(namespace) => (GROUP, namespace, None),
                None => return,
            },
            _ => return,
        };
        if namespace.is_empty() {
            // Names no namespace: grants nothing, and must not come to grant the fork's.
            return;
        }
        let Some(renamed) = self.renamed(namespace) else {
            let namespace = namespace.to_string();
            self.warn_if_unknown(&namespace, who);
            return;
        };
        let name = match account {
            Some(account) => format!("{prefix}{renamed}:{account}"),
            None => format!("{prefix}{renamed}"),
        };
        subject.insert("name".into(), Value::String(name));
    }

    /// A namespace name follows its rename; one the source lacks is left, with a warning.
    fn rename_value(&mut self, value: &mut Value, who: &str) {
        let Some(ns) = value.as_str() else {
            return;
        };
        match self.renamed(ns) {
            Some(to) => *value = Value::String(to.to_string()),
            None => {
                let ns = ns.to_string();
                self.warn_if_unknown(&ns, who);
            }
        }
    }

    fn warn_if_unknown(&mut self, ns: &str, who: &str) {
        if !self.map.contains_key(ns) && !SYSTEM_NAMESPACES.contains(&ns) {
            self.warnings.insert(format!(
                "{who} refers to namespace `{ns}`, which the source does not contain; left as it is (set source.namespace if the source is applied with `-n {ns}`)"
            ));
        }
    }

    fn rewrite_network_policy(&mut self, object: &mut Object, who: &str) {
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
                            self.rename_field(labels, NAME_LABEL, who);
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

    fn rewrite_dns_value(&mut self, value: &mut Value, who: &str) {
        if let Value::String(text) = value {
            self.warn_about_unknown_hosts(text, who);
            if let Some(rewritten) = self.rewrite_dns(text) {
                *text = rewritten;
            }
        }
    }

    /// A Secret's `data` value: base64 of text that may name hosts; binary data stays as is.
    fn rewrite_dns_base64(&mut self, value: &mut Value, who: &str) {
        let engine = base64::engine::general_purpose::STANDARD;
        let Some(text) = value
            .as_str()
            .and_then(|encoded| engine.decode(encoded).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok())
        else {
            return;
        };
        self.warn_about_unknown_hosts(&text, who);
        if let Some(rewritten) = self.rewrite_dns(&text) {
            *value = Value::String(engine.encode(rewritten));
        }
    }

    /// Warns about `svc.ns.svc[.cluster.local]` names of namespaces the source lacks (the
    /// short forms are too often plain text to warn about).
    fn warn_about_unknown_hosts(&mut self, text: &str, who: &str) {
        if !text.contains(".svc") {
            return;
        }
        let unknown: Vec<String> = dns_names(text)
            .filter(|name| name.qualified)
            .map(|name| text[name.namespace].to_string())
            .filter(|ns| !self.map.contains_key(ns))
            .collect();
        for ns in unknown {
            self.warn_if_unknown(&ns, who);
        }
    }

    /// `text` with in-cluster DNS names of renamed namespaces rewritten, if any matched.
    pub fn rewrite_dns(&self, text: &str) -> Option<String> {
        if !self.any_renamed || !text.contains('.') {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for name in dns_names(text) {
            let ns = &text[name.namespace.clone()];
            // `svc.ns` or `pod.svc.ns`: only an object of the source makes it a host.
            if !name.qualified
                && !self
                    .names
                    .contains(&(ns.to_string(), name.service.to_string()))
            {
                continue;
            }
            let Some(to) = self.renamed(ns) else {
                continue;
            };
            out.push_str(&text[last..name.namespace.start]);
            out.push_str(to);
            last = name.namespace.end;
        }
        if last == 0 {
            return None;
        }
        out.push_str(&text[last..]);
        Some(out)
    }
}

/// An in-cluster DNS name of a Service (or of a pod behind one) found in text.
struct DnsName<'t> {
    service: &'t str,
    /// Where the namespace label is in the text.
    namespace: std::ops::Range<usize>,
    /// `.svc` or `.svc.cluster.local` follows: a host whatever the source holds.
    qualified: bool,
}

/// The in-cluster DNS names in `text`: `svc.ns` or `pod.svc.ns`, alone or followed by `.svc` or
/// `.svc.cluster.local` (and the root's `.`); a qualified one may be a wildcard,
/// `*.ns.svc.cluster.local` (a certificate's or a mesh's host). A name is a whole run of host characters between
/// other characters, never part of one: `cart.shop` is no name inside `cart.shop-db`,
/// `a.ns.example.com` or `web.ops.svc.corp.example` (hosts outside the cluster), nor in
/// `my_cart.shop`. `kubernetes.default` (the API server of whatever cluster the object runs
/// in) is none either.
fn dns_names(text: &str) -> impl Iterator<Item = DnsName<'_>> {
    let is_host_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*');
    let mut runs = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (is_host_char(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push(s..text.len());
    }
    runs.into_iter().filter_map(move |run| {
        let mut whole = &text[run.clone()];
        // The root's dot ends a fully qualified name, and nothing else.
        if whole.ends_with(".svc.cluster.local.") {
            whole = &whole[..whole.len() - 1];
        }
        let labels: Vec<&str> = whole.split('.').collect();
        let wildcard = labels.first() == Some(&"*");
        if !labels
            .iter()
            .skip(usize::from(wildcard))
            .all(|l| is_dns_label(l))
        {
            return None;
        }
        let (head, qualified) = match labels.as_slice() {
            [head @ .., "svc", "cluster", "local"] => (head, true),
            [head @ .., "svc"] => (head, true),
            all => (all, false),
        };
        if wildcard && !qualified {
            return None;
        }
        let (service, namespace) = match head {
            [service, namespace] | [_, service, namespace] => (*service, *namespace),
            _ => return None,
        };
        if is_api_server(service, namespace) {
            return None;
        }
        // The namespace is the last label of `head`; the labels before it and their dots
        // come first.
        let before: usize = head[..head.len() - 1].iter().map(|l| l.len() + 1).sum();
        let begin = run.start + before;
        Some(DnsName {
            service,
            namespace: begin..begin + namespace.len(),
            qualified,
        })
    })
}

/// A DNS-1123 label: lowercase letters, digits and `-`, not at either end.
fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// `kubernetes.default[.svc…]` is the API server of whatever cluster the object runs in, not a
/// Service of the source: it never moves.
fn is_api_server(service: &str, ns: &str) -> bool {
    service == "kubernetes" && ns == "default"
}

/// The API group of prometheus-operator's kinds.
const PROMETHEUS_OPERATOR: &str = "monitoring.coreos.com";

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
pub fn isolate_cluster_scoped(objects: &mut [Object], scopes: &Scopes, env: &str) -> Vec<String> {
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
        return Vec::new();
    }
    let lookup =
        |kind: &str, name: &str| renamed.get(&(kind.to_string(), name.to_string())).cloned();
    // Any renamed object by its old name, whatever its kind: what a container's args and env
    // values name (`--webhook-name=x`, an IngressClass a controller watches, a ClusterRole).
    let by_name: BTreeMap<&str, (&str, &str)> = renamed
        .iter()
        .map(|((kind, from), to)| (from.as_str(), (kind.as_str(), to.as_str())))
        .collect();
    let namespaced = namespaced_names(objects, scopes);
    let mut warnings = Vec::new();
    for object in objects.iter_mut() {
        let described = object.object_ref().to_string();
        follow_storage_class_annotations(object, &lookup);
        if let Some(pod) = pod_spec_mut(object) {
            for container in containers_mut(pod) {
                let container_name = container
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let mut unfollowed = Vec::new();
                follow_container_values(container, &by_name, &namespaced, &mut unfollowed);
                warnings.extend(unfollowed.into_iter().map(|(value, from, kind)| {
                    format!(
                        "{described}: container {container_name} value `{value}` mentions {kind} `{from}`, renamed `{from}-{env}` on this shared cluster; the fork cannot follow it"
                    )
                }));
            }
        }
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
    warnings
}

/// The legacy `volume.beta.kubernetes.io/storage-class` annotation (a PVC's, or a StatefulSet
/// claim template's) names a StorageClass like `storageClassName` does.
fn follow_storage_class_annotations(
    object: &mut Object,
    lookup: &dyn Fn(&str, &str) -> Option<String>,
) {
    const ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";
    let mut metadatas: Vec<&mut Value> = Vec::new();
    match object.kind() {
        "PersistentVolumeClaim" => metadatas.extend(object.get_mut(&["metadata"])),
        "StatefulSet" => {
            if let Some(Value::Array(templates)) = object.get_mut(&["spec", "volumeClaimTemplates"])
            {
                metadatas.extend(templates.iter_mut().filter_map(|t| t.get_mut("metadata")));
            }
        }
        _ => {}
    }
    for metadata in metadatas {
        rename_ref(
            metadata.get_mut("annotations"),
            ANNOTATION,
            "StorageClass",
            lookup,
        );
    }
}

/// Names namespaced objects go by in the source: the objects' own, and what pods name in typed
/// references (a Secret volume, an env var's ConfigMap, a claim). ingress-nginx names its
/// webhook Secret, ClusterRole and ValidatingWebhookConfiguration alike.
fn namespaced_names(objects: &[Object], scopes: &Scopes) -> BTreeSet<String> {
    fn gather(value: &Value, names: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    let named = |v: &Value| v.get("name").and_then(Value::as_str).map(String::from);
                    let found = match key.as_str() {
                        "secretName" | "claimName" | "serviceAccountName" | "serviceAccount" => {
                            value.as_str().map(String::from)
                        }
                        "secret" | "configMap" | "secretRef" | "configMapRef" | "secretKeyRef"
                        | "configMapKeyRef" => named(value),
                        _ => None,
                    };
                    names.extend(found);
                    if key == "imagePullSecrets"
                        && let Value::Array(items) = value
                    {
                        names.extend(items.iter().filter_map(named));
                    }
                    gather(value, names);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| gather(item, names)),
            _ => {}
        }
    }
    let mut names = BTreeSet::new();
    for object in objects {
        if !scopes.is_cluster_scoped(object) {
            names.insert(object.name().to_string());
        }
        if let Some(spec) = object.get(&["spec"]) {
            gather(spec, &mut names);
        }
    }
    names
}

/// Whether a flag says it names an object of `kind` (`--webhook-name` a webhook
/// configuration, `--ingress-class` an IngressClass) rather than a namespaced one.
fn flag_names_kind(flag: &str, kind: &str) -> bool {
    let words: &[&str] = match kind {
        "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => &["webhook"],
        "ClusterRole" | "ClusterRoleBinding" => &["role", "binding"],
        "IngressClass" | "StorageClass" | "PriorityClass" | "RuntimeClass" => &["class"],
        _ => &[],
    };
    flag_says(flag, words) || flag_says(flag, &[&kind.to_ascii_lowercase()])
}

/// Whether `flag` (`--secret-name`, `--webhook_name`) holds one of `words`, case and dashes
/// aside.
fn flag_says(flag: &str, words: &[&str]) -> bool {
    let flag = flag.to_ascii_lowercase().replace(['-', '_'], "");
    words.iter().any(|w| flag.contains(w))
}

/// Container args and env values that are, whole, the name of a renamed cluster-scoped object
/// (or `--flag=<name>`) follow it; values that mention one as a word of a list among other
/// text are returned as (value, name, kind): the fork cannot know what they mean. So are
/// names a namespaced object also goes by (`namespaced`, which keeps its name), unless the
/// flag says which it means: `--webhook-name=x` follows the webhook configuration,
/// `--secret-name=x` stays with the Secret.
fn follow_container_values(
    container: &mut Map<String, Value>,
    by_name: &BTreeMap<&str, (&str, &str)>,
    namespaced: &BTreeSet<String>,
    unfollowed: &mut Vec<(String, String, String)>,
) {
    let mut follow = |value: &mut Value| {
        let Some(text) = value.as_str() else {
            return;
        };
        if let Some((kind, to)) = by_name.get(text) {
            if namespaced.contains(text) {
                unfollowed.push((text.to_string(), text.to_string(), kind.to_string()));
            } else {
                *value = Value::String(to.to_string());
            }
            return;
        }
        if let Some((flag, argument)) = text.split_once('=')
            && flag.starts_with('-')
            && let Some((kind, to)) = by_name.get(argument)
        {
            let names_namespaced =
                flag_says(flag, &["secret", "configmap", "serviceaccount", "claim"]);
            if !namespaced.contains(argument) || flag_names_kind(flag, kind) {
                *value = Value::String(format!("{flag}={to}"));
            } else if !names_namespaced {
                unfollowed.push((text.to_string(), argument.to_string(), kind.to_string()));
            }
            return;
        }
        // Words of a list (`--classes=a,b`, `a b`), each whole: a name inside a path, an image
        // or a URL (`quay.io/prometheus-operator/reloader:v1`, `k8s.io/ingress-nginx`) or
        // inside a longer name (`ingress-nginx-controller`) is part of something else.
        let words = text.split(|c: char| {
            !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '/' | ':' | '@'))
        });
        for word in words {
            if let Some((kind, _)) = by_name.get(word) {
                unfollowed.push((text.to_string(), word.to_string(), kind.to_string()));
                return;
            }
        }
    };
    for key in ["args", "command"] {
        if let Some(Value::Array(values)) = container.get_mut(key) {
            // A command's first word is a program, not a reference.
            let skip = usize::from(key == "command");
            values.iter_mut().skip(skip).for_each(&mut follow);
        }
    }
    if let Some(Value::Array(env)) = container.get_mut("env") {
        for variable in env.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(value) = variable.get_mut("value") {
                follow(value);
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

    use crate::object::test_object as object;

    fn service(ns: &str, name: &str) -> Object {
        let metadata = if ns.is_empty() {
            json!({ "name": name })
        } else {
            json!({ "name": name, "namespace": ns })
        };
        object(json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata}))
    }

    fn map_of(pairs: &[(&str, &str)]) -> NamespaceMap {
        let objects: Vec<Object> = pairs.iter().map(|(ns, name)| service(ns, name)).collect();
        NamespaceMap::plan(&objects, &Scopes::default(), "pr-1", "default")
    }

    /// Forks `objects` through the namespace map alone, as a dedicated cluster would.
    fn mapped(objects: Vec<Object>, implied: &str) -> (Vec<Object>, Vec<String>) {
        let mut objects = objects;
        let scopes = Scopes::from_objects(&objects);
        let mut map = NamespaceMap::plan(&objects, &scopes, "pr-1", implied);
        map.apply(&mut objects, &scopes);
        (objects, map.into_warnings())
    }

    fn find<'a>(objects: &'a [Object], kind: &str, name: &str) -> &'a Object {
        objects
            .iter()
            .find(|o| o.kind() == kind && o.name() == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
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
        let map = map_of(&[
            ("shop", "cart"),
            ("shop", "redis"),
            ("payments", "pay"),
            ("payments", "db"),
        ]);
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
            // StatefulSet members: `pod.service.ns` in every form, and seed lists.
            (
                "db-0.db.payments.svc.cluster.local",
                Some("db-0.db.pr-1-payments.svc.cluster.local"),
            ),
            ("db-0.db.payments.svc", Some("db-0.db.pr-1-payments.svc")),
            (
                "db-0.db.payments:9042,db-1.db.payments:9042",
                Some("db-0.db.pr-1-payments:9042,db-1.db.pr-1-payments:9042"),
            ),
            // A qualified name is a host even for a Service the source lacks.
            (
                "other.shop.svc.cluster.local",
                Some("other.pr-1-shop.svc.cluster.local"),
            ),
            (
                "*.payments.svc.cluster.local,*.shop.svc",
                Some("*.pr-1-payments.svc.cluster.local,*.pr-1-shop.svc"),
            ),
            ("*.shop", None),
            ("a*b.shop.svc", None),
            ("cdn.shop.example.com", None),
            ("myshop:80", None),
            ("x.shopping", None),
            // Short forms that name no object of the source are text (`logging.level.shop`).
            ("logging.level.shop", None),
            ("unknown.shop:80", None),
        ];
        for (input, expected) in cases {
            assert_eq!(map.rewrite_dns(input).as_deref(), expected, "{input}");
        }
    }

    /// A namespace whose name holds another's (`shop` in `shop-db`, `myshop`, `shopping`) is
    /// matched whole: each name follows its own namespace, and no warning comes of a part.
    #[test]
    fn names_that_contain_a_namespace_name_are_matched_whole() {
        let map = map_of(&[
            ("shop", "cart"),
            ("shop-db", "pg"),
            ("shop-db", "cart"),
            ("payments", "pay"),
        ]);
        assert_eq!(map.target_of("shop-db"), "pr-1-shop-db");
        let cases = [
            ("pg.shop-db:5432", Some("pg.pr-1-shop-db:5432")),
            (
                "pg.shop-db.svc.cluster.local",
                Some("pg.pr-1-shop-db.svc.cluster.local"),
            ),
            (
                "cart.shop-db:1,cart.shop:2",
                Some("cart.pr-1-shop-db:1,cart.pr-1-shop:2"),
            ),
            ("pg-0.pg.shop-db.svc", Some("pg-0.pg.pr-1-shop-db.svc")),
            ("cart.myshop.svc.cluster.local", None),
            ("cart.shopping:80", None),
            ("my_cart.shop", None),
            ("cart.shop.svc.cluster.localhost", None),
            (
                "cart.shop.svc.cluster.local.",
                Some("cart.pr-1-shop.svc.cluster.local."),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(map.rewrite_dns(input).as_deref(), expected, "{input}");
        }

        // Hosts outside the cluster whose labels look like one are not warned about.
        let objects = vec![
            service("shop", "cart"),
            service("shop-db", "pg"),
            object(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "config", "namespace": "shop"},
                "data": {"DB": "pg.shop-db.svc.cluster.local",
                         "GRAFANA": "https://grafana.ops.svc.corp.example.com",
                         "LEGACY": "cart.myshop.svc.cluster.local"}})),
        ];
        let (objects, warnings) = mapped(objects, "default");
        assert_eq!(
            find(&objects, "ConfigMap", "config").body["data"]["DB"],
            "pg.pr-1-shop-db.svc.cluster.local"
        );
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert!(warnings[0].contains("`myshop`"), "{warnings:#?}");
    }

    /// Objects without a namespace and objects in the implied one are one namespace: the
    /// Ingress stays beside its Service, and references to `default` follow.
    #[test]
    fn prometheus_alertmanagers_and_monitor_namespaces_follow_renamed_namespaces() {
        let objects = vec![
            service("monitoring", "alertmanager-main"),
            service("shop", "web"),
            object(
                json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
                "metadata": {"name": "k8s", "namespace": "monitoring"},
                "spec": {"alerting": {"alertmanagers": [
                    {"name": "alertmanager-main", "namespace": "monitoring", "port": "web"},
                    {"name": "elsewhere", "namespace": "ops", "port": "web"}]}}}),
            ),
            object(
                json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                "metadata": {"name": "web", "namespace": "monitoring"},
                "spec": {"namespaceSelector": {"matchNames": ["shop", "kube-system"]}}}),
            ),
        ];
        let (objects, warnings) = mapped(objects, "default");
        let prometheus = find(&objects, "Prometheus", "k8s");
        let managers = &prometheus.body["spec"]["alerting"]["alertmanagers"];
        assert_eq!(managers[0]["namespace"], "pr-1-monitoring");
        assert_eq!(
            managers[1]["namespace"], "ops",
            "not in the source: left, and said"
        );
        let monitor = find(&objects, "ServiceMonitor", "web");
        assert_eq!(
            monitor.body["spec"]["namespaceSelector"]["matchNames"],
            json!(["pr-1-shop", "kube-system"])
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("`ops`"), "{warnings:?}");
    }

    #[test]
    fn the_implied_namespace_is_one_with_its_explicit_name() {
        let objects = vec![
            service("", "web"),
            service("default", "redis"),
            service("payments", "pay"),
            object(
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "web", "namespace": "default"}}),
            ),
            object(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "reader"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "default"},
                             {"kind": "ServiceAccount", "name": "x", "namespace": "monitoring"},
                             {"kind": "User", "name": "system:serviceaccount:default:web"},
                             {"kind": "Group", "name": "system:serviceaccounts:payments"},
                             {"kind": "Group", "name": "system:serviceaccounts:logging"},
                             {"kind": "Group", "name": "system:serviceaccounts:"},
                             {"kind": "User", "name": "alice"}]}),
            ),
            object(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "config"},
                "data": {"REDIS": "redis.default.svc.cluster.local:6379",
                         "API": "https://kubernetes.default.svc:443",
                         "PAY": "pay.payments:80", "PROMETHEUS": "prom.monitoring.svc:9090"}})),
        ];
        let (objects, warnings) = mapped(objects, "default");
        assert_eq!(find(&objects, "Service", "web").namespace(), "pr-1");
        assert_eq!(find(&objects, "Service", "redis").namespace(), "pr-1");
        assert_eq!(find(&objects, "Ingress", "web").namespace(), "pr-1");
        assert_eq!(
            find(&objects, "Service", "pay").namespace(),
            "pr-1-payments"
        );
        let binding = find(&objects, "ClusterRoleBinding", "reader");
        assert_eq!(binding.body["subjects"][0]["namespace"], "pr-1");
        assert_eq!(binding.body["subjects"][1]["namespace"], "monitoring");
        // Service accounts named as a user or a group follow too; an unknown namespace, a
        // missing one and a plain user stay.
        let names: Vec<&str> = binding.body["subjects"].as_array().unwrap()[2..]
            .iter()
            .map(|subject| subject["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "system:serviceaccount:pr-1:web",
                "system:serviceaccounts:pr-1-payments",
                "system:serviceaccounts:logging",
                "system:serviceaccounts:",
                "alice"
            ]
        );
        let config = find(&objects, "ConfigMap", "config");
        assert_eq!(
            config.body["data"]["REDIS"],
            "redis.pr-1.svc.cluster.local:6379"
        );
        assert_eq!(config.body["data"]["PAY"], "pay.pr-1-payments:80");
        assert_eq!(
            config.body["data"]["API"],
            "https://kubernetes.default.svc:443"
        );
        let namespaces: Vec<&str> = objects
            .iter()
            .filter(|o| o.kind() == "Namespace")
            .map(|o| o.name())
            .collect();
        assert_eq!(namespaces, ["pr-1", "pr-1-payments"]);
        assert_eq!(warnings.len(), 3, "{warnings:#?}");
        assert!(
            warnings
                .iter()
                .all(|w| w.contains("`monitoring`") || w.contains("`logging`")),
            "{warnings:#?}"
        );
        assert!(
            warnings[0].contains("ClusterRoleBinding/reader")
                || warnings[1].contains("ClusterRoleBinding/reader")
        );

        // `kubectl -n shop`: the implied namespace is `shop`, and `default` is just another.
        let (objects, _) = mapped(vec![service("", "web"), service("shop", "api")], "shop");
        assert_eq!(find(&objects, "Service", "web").namespace(), "pr-1");
        assert_eq!(find(&objects, "Service", "api").namespace(), "pr-1");
    }

    #[test]
    fn system_namespaces_keep_their_names() {
        let objects = vec![
            object(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}),
            ),
            service("metrics", "metrics-server"),
            object(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "metrics-server-auth-reader", "namespace": "kube-system"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                            "name": "extension-apiserver-authentication-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "metrics-server", "namespace": "metrics"}]}),
            ),
        ];
        let before = objects[2].body.clone();
        let (objects, warnings) = mapped(objects, "default");
        let binding = find(&objects, "RoleBinding", "metrics-server-auth-reader");
        assert_eq!(binding.namespace(), "kube-system");
        assert_eq!(binding.body["roleRef"], before["roleRef"]);
        // The only other namespace is the application's: it lands in the target itself.
        assert_eq!(binding.body["subjects"][0]["namespace"], "pr-1");
        assert_eq!(
            find(&objects, "Service", "metrics-server").namespace(),
            "pr-1"
        );
        assert!(
            !objects
                .iter()
                .any(|o| o.kind() == "Namespace" && o.name() == "kube-system"),
            "kube-system exists on every cluster and must never be owned (down would delete it)"
        );
        assert!(warnings.is_empty(), "{warnings:#?}");
    }

    #[test]
    fn inline_secret_data_follows_like_config_map_data() {
        let engine = base64::engine::general_purpose::STANDARD;
        let objects = vec![
            service("shop", "db"),
            service("pay", "api"),
            object(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "conn", "namespace": "shop"},
                "data": {"url": engine.encode("postgres://u:p@db-0.db.shop.svc.cluster.local:5432/x"),
                         "binary": engine.encode([0xff_u8, 0xfe, 0x00])},
                "stringData": {"seeds": "db-0.db.shop:9042,db-1.db.shop:9042"}})),
        ];
        let binary_before = objects[2].body["data"]["binary"].clone();
        let (objects, _) = mapped(objects, "default");
        let secret = find(&objects, "Secret", "conn");
        let url = engine
            .decode(secret.body["data"]["url"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(url).unwrap(),
            "postgres://u:p@db-0.db.pr-1-shop.svc.cluster.local:5432/x"
        );
        assert_eq!(secret.body["data"]["binary"], binary_before);
        assert_eq!(
            secret.body["stringData"]["seeds"],
            "db-0.db.pr-1-shop:9042,db-1.db.pr-1-shop:9042"
        );
    }
}

#[cfg(test)]
mod renamed_reference_tests {
    use super::*;

    use crate::object::test_object as object;

    #[test]
    fn legacy_annotations_args_and_env_follow_renamed_cluster_scoped_objects() {
        let mut objects = vec![
            object(
                json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "fast"}}),
            ),
            object(
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "internal"}}),
            ),
            object(
                json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "guard"}}),
            ),
            object(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "namespace": "pr-1", "annotations": {"volume.beta.kubernetes.io/storage-class": "fast"}}})),
            object(
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ctl", "namespace": "pr-1"},
                "spec": {"template": {"spec": {"containers": [{"name": "ctl", "image": "x",
                    "command": ["guard"],
                    "args": ["--webhook-name=guard", "internal", "--classes=internal,public", "--other=fast-lane",
                             "--reloader=quay.io/internal/reloader:v1", "--controller-class=k8s.io/internal",
                             "--config=/etc/guard/fast.yaml", "--leader=internal-leader"],
                    "env": [{"name": "CLASS", "value": "internal"}, {"name": "SC", "value": "fast"}]}]}}}}),
            ),
        ];
        let scopes = Scopes::from_objects(&objects);
        let warnings = isolate_cluster_scoped(&mut objects, &scopes, "pr-1");
        assert_eq!(
            objects[3].get(&["metadata", "annotations"]).unwrap(),
            &json!({"volume.beta.kubernetes.io/storage-class": "fast-pr-1"})
        );
        let container = &objects[4]
            .get(&["spec", "template", "spec", "containers"])
            .unwrap()[0];
        assert_eq!(container["command"], json!(["guard"]));
        assert_eq!(
            container["args"],
            json!([
                "--webhook-name=guard-pr-1",
                "internal-pr-1",
                "--classes=internal,public",
                "--other=fast-lane",
                "--reloader=quay.io/internal/reloader:v1",
                "--controller-class=k8s.io/internal",
                "--config=/etc/guard/fast.yaml",
                "--leader=internal-leader"
            ])
        );
        assert_eq!(container["env"][0]["value"], "internal-pr-1");
        assert_eq!(container["env"][1]["value"], "fast-pr-1");
        // Only the list naming `internal` as a word of its own is a mention; paths, images
        // and longer names that contain a renamed name are not.
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with(
            "Deployment/pr-1/ctl: container ctl value `--classes=internal,public` mentions IngressClass `internal`, renamed `internal-pr-1`"
        ), "{warnings:?}");
    }

    #[test]
    fn a_name_a_namespaced_object_also_goes_by_follows_only_a_flag_that_says_which() {
        // ingress-nginx: the webhook's ClusterRole, its configuration and its Secret share a
        // name; the Jobs name the Secret and the configuration, the controller mounts the
        // Secret.
        let pod = |args: Value| {
            json!({"template": {"spec": {"containers": [{"name": "c", "image": "x", "args": args}],
                "volumes": [{"name": "cert", "secret": {"secretName": "adm"}}]}}})
        };
        let mut objects = vec![
            object(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "adm"}}),
            ),
            object(
                json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "adm"}}),
            ),
            object(
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "patch", "namespace": "pr-1"},
                "spec": pod(json!(["--webhook-name=adm", "--secret-name=adm", "--name=adm", "adm"]))}),
            ),
        ];
        let scopes = Scopes::from_objects(&objects);
        let warnings = isolate_cluster_scoped(&mut objects, &scopes, "pr-1");
        let spec = objects[2].get(&["spec", "template", "spec"]).unwrap();
        assert_eq!(
            spec["containers"][0]["args"],
            json!([
                "--webhook-name=adm-pr-1",
                "--secret-name=adm",
                "--name=adm",
                "adm"
            ])
        );
        assert_eq!(spec["volumes"][0]["secret"]["secretName"], "adm");
        // What the flag does not settle is left, and said.
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings.iter().any(|w| w.contains("value `--name=adm`")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("value `adm`")),
            "{warnings:?}"
        );
    }
}
