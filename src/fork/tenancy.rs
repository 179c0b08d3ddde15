//! The tenant boundary on a shared cluster (`cluster.provider: namespace`): what a fork may do
//! there, as pure rules over the forked objects. Namespaced objects must stay in the
//! environment's namespaces (the API server enforces that too: sprout applies them as the
//! environment's ServiceAccount, see `sync::tenant`). Cluster-scoped objects are a privilege:
//! refused unless sprout.yaml allow-lists the kind (`sharedCluster.allowClusterScoped`), and
//! when allowed, confined — rewritten where a rewrite confines them (each rewrite a warning),
//! refused where nothing can. Every refusal names the object and the rule, before any write.

use super::namespaces::SYSTEM_NAMESPACES;
use crate::fork::ownership::{ENVIRONMENT_LABEL, PROJECT_LABEL};
use crate::object::{Object, Scopes};
use crate::sync::messages::capped_inline;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The ServiceAccount (in the environment's namespace) sprout applies namespaced objects as,
/// and the RoleBinding in each of the environment's namespaces that gives it its rights.
pub const TENANT_IDENTITY: &str = "sprout-env";
/// The ClusterRole that RoleBinding grants: every verb on every namespaced resource, which a
/// RoleBinding confines to one namespace (a ClusterRole bound by a RoleBinding grants nothing
/// cluster-wide).
pub const TENANT_ROLE: &str = "sprout-tenant";

/// Cluster-scoped kinds every environment has without an allow-list: its own Namespaces, and
/// CRDs, which are shared (applied only when absent, never pruned; see `sync::is_shared`).
const ALWAYS_ALLOWED: &[&str] = &["Namespace", "CustomResourceDefinition"];

/// Cluster-scoped resources a cluster-wide binding may grant read access to: reading them
/// reveals no other tenant's data (no Secrets, no ConfigMaps), at most names and resource use.
const CLUSTER_READABLE: &[&str] = &[
    "nodes",
    "namespaces",
    "persistentvolumes",
    "storageclasses",
    "ingressclasses",
    "priorityclasses",
    "runtimeclasses",
    "csidrivers",
    "csinodes",
    "customresourcedefinitions",
    "apiservices",
];
const READ_VERBS: &[&str] = &["get", "list", "watch"];

/// Subresources of those a cluster-wide binding may grant reads of too: an object's status, and
/// what the kubelet tells of its node's resource use. Not `nodes/proxy`, which reaches the whole
/// kubelet API (every pod's logs, and exec into it over a websocket, which opens with a GET),
/// nor `nodes/log`, the node's own log files.
const READABLE_SUBRESOURCES: &[&str] = &["status", "metrics", "stats", "spec"];

/// Non-resource URLs a cluster-wide binding may grant reads of: metrics, health, version and
/// discovery. Not `/logs/*` (the API server's host logs), `/debug/*`, nor `*`.
const READABLE_URLS: &[&str] = &[
    "/metrics",
    "/metrics/*",
    "/healthz",
    "/healthz/*",
    "/livez",
    "/livez/*",
    "/readyz",
    "/readyz/*",
    "/version",
    "/version/",
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/openapi",
    "/openapi/*",
];

/// Cluster-scoped resources of Kubernetes itself, as RBAC rules name them: rights over them
/// exist only cluster-wide (a RoleBinding grants nothing on them). The reviews are created and
/// answered for the whole cluster, never stored.
const CLUSTER_SCOPED_RESOURCES: &[&str] = &[
    "apiservices",
    "certificatesigningrequests",
    "clusterrolebindings",
    "clusterroles",
    "componentstatuses",
    "csidrivers",
    "csinodes",
    "customresourcedefinitions",
    "flowschemas",
    "ingressclasses",
    "mutatingwebhookconfigurations",
    "namespaces",
    "nodes",
    "persistentvolumes",
    "podsecuritypolicies",
    "priorityclasses",
    "prioritylevelconfigurations",
    "runtimeclasses",
    "selfsubjectaccessreviews",
    "selfsubjectrulesreviews",
    "storageclasses",
    "subjectaccessreviews",
    "tokenreviews",
    "validatingadmissionpolicies",
    "validatingadmissionpolicybindings",
    "validatingwebhookconfigurations",
    "volumeattachments",
];

/// The most resources one refusal names, and verbs per resource.
const RESOURCES_SHOWN: usize = 5;
const VERBS_SHOWN: usize = 4;

const AGGREGATE_PREFIX: &str = "rbac.authorization.k8s.io/aggregate-to-";

/// What the boundary needs to know about the environment.
pub struct Boundary<'a> {
    /// The environment and its project, whose labels every namespace of the environment
    /// carries (and no tenant can put on a namespace: namespaces are cluster-scoped).
    pub env: &'a str,
    pub project: &'a str,
    /// The namespaces the environment owns: its target namespace and the Namespaces it applies.
    pub namespaces: BTreeSet<String>,
    /// Cluster-scoped kinds sprout.yaml allows (`sharedCluster.allowClusterScoped`).
    pub allowed_kinds: &'a [String],
}

impl Boundary<'_> {
    fn owns(&self, namespace: &str) -> bool {
        self.namespaces.contains(namespace)
    }

    fn allows(&self, kind: &str) -> bool {
        ALWAYS_ALLOWED.contains(&kind) || self.allowed_kinds.iter().any(|k| k == kind)
    }
}

/// The outcome: rewrites made (warnings for `render`), and refusals (each "object: rule").
#[derive(Debug, Default, PartialEq)]
pub struct Confined {
    pub rewrites: Vec<String>,
    pub refusals: Vec<String>,
}

/// Applies the boundary to a shared-cluster fork's objects (after namespaces are mapped and
/// cluster-scoped names suffixed).
// Each kind's arm rewrites the object and then says so: the rewrites stay out of match guards,
// where a change to the object would read as a mere test.
#[allow(clippy::collapsible_match)]
pub fn confine(objects: &mut [Object], scopes: &Scopes, boundary: &Boundary<'_>) -> Confined {
    let mut out = Confined::default();
    let own_cluster_roles: BTreeSet<String> = objects
        .iter()
        .filter(|o| o.kind() == "ClusterRole")
        .map(|o| o.name().to_string())
        .collect();
    let aggregating: BTreeSet<String> = objects
        .iter()
        .filter(|o| o.kind() == "ClusterRole" && o.get(&["aggregationRule"]).is_some())
        .map(|o| o.name().to_string())
        .collect();
    let cluster_scoped_resources = cluster_scoped_resources(objects);
    let cluster_role_rules: Vec<(String, Value)> = objects
        .iter()
        .filter(|o| o.kind() == "ClusterRole")
        .map(|o| {
            (
                o.name().to_string(),
                o.get(&["rules"]).cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    for object in objects.iter_mut() {
        let name = object.object_ref().to_string();
        let mut refuse = |rule: String| out.refusals.push(format!("{name}: {rule}"));
        let cluster_scoped = scopes.is_cluster_scoped(object);
        if cluster_scoped {
            if !boundary.allows(object.kind()) {
                refuse(format!(
                    "cluster-scoped {} is not allowed on a shared cluster (allow the kind in sprout.yaml: sharedCluster.allowClusterScoped)",
                    object.kind()
                ));
                continue;
            }
        } else {
            let namespace = object.namespace().to_string();
            if SYSTEM_NAMESPACES.contains(&namespace.as_str()) {
                refuse(format!(
                    "objects in the system namespace {namespace} are never applied on a shared cluster: leave it out (`overlay.drop: [{}/{}]`) or run the environment on a cluster of its own (provider kind, minikube, eks or envtest)",
                    object.kind(),
                    object.name()
                ));
                continue;
            }
            if !boundary.owns(&namespace) {
                refuse(format!(
                    "namespace {namespace} is not one of the environment's namespaces"
                ));
                continue;
            }
        }
        let mut rewrites = Vec::new();
        match object.kind() {
            "RoleBinding" | "ClusterRoleBinding" => {
                let roles = Roles {
                    own: &own_cluster_roles,
                    aggregating: &aggregating,
                    rules: &cluster_role_rules,
                    cluster_scoped_resources: &cluster_scoped_resources,
                };
                for rule in binding_refusals(object, boundary, &roles) {
                    refuse(rule);
                }
            }
            "ClusterRole" => {
                if drop_labels(object, |k| k.starts_with(AGGREGATE_PREFIX)) {
                    rewrites.push(
                        "its aggregate-to-* labels are dropped (they would add its rules to roles other tenants hold)",
                    );
                }
            }
            "PriorityClass" => {
                if object.body.remove("globalDefault").is_some() {
                    rewrites.push(
                        "globalDefault is dropped (it would set every tenant's pods' priority)",
                    );
                }
            }
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => {
                for rule in webhook_refusals(object, boundary) {
                    refuse(rule);
                }
                confine_webhooks(object, boundary);
                rewrites.push(
                    "its webhooks get a namespaceSelector confining them to the environment's namespaces, and rules for namespaced objects only",
                );
            }
            "APIService" => refuse(
                "an APIService serves its API group to every tenant of the cluster; it cannot be confined to one environment".into(),
            ),
            "CustomResourceDefinition" => {
                if let Some(config) = object
                    .get(&["spec", "conversion", "webhook", "clientConfig"])
                    .cloned()
                    && let Some(rule) = client_config_refusal(&config, boundary)
                {
                    refuse(format!("its conversion webhook {rule}"));
                }
            }
            "Service" => {
                if drop_node_ports(object) {
                    rewrites.push(
                        "fixed nodePorts are dropped (a node port is one per cluster; the server picks a free one)",
                    );
                }
            }
            _ => {}
        }
        out.rewrites
            .extend(rewrites.into_iter().map(|r| format!("{name}: {r}")));
    }
    out
}

/// Source objects named like sprout's own in the environment's namespaces: the inventory, the
/// lock and the environment's identity. Applying one would replace sprout's bookkeeping.
pub fn reserved_name_refusals(objects: &[Object], identity_too: bool) -> Vec<String> {
    objects
        .iter()
        .filter_map(|o| {
            let name = o.name();
            let what = match o.kind() {
                "ConfigMap" if is_inventory_name(name) => "the environment's inventory",
                "Lease" if name == crate::state::lease::LEASE_NAME => "the environment's lock",
                "ServiceAccount" | "RoleBinding" if identity_too && name == TENANT_IDENTITY => {
                    "the environment's identity"
                }
                _ => return None,
            };
            Some(format!(
                "{}: the name is sprout's own ({what}); rename the object",
                o.object_ref()
            ))
        })
        .collect()
}

fn is_inventory_name(name: &str) -> bool {
    let base = crate::sync::inventory::INVENTORY_NAME;
    name == base
        || name
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The fork's ClusterRoles, as a binding's rules need them.
struct Roles<'a> {
    own: &'a BTreeSet<String>,
    /// Those whose rules an aggregationRule gathers.
    aggregating: &'a BTreeSet<String>,
    rules: &'a [(String, Value)],
    /// Resources rights over which exist only cluster-wide (see [`cluster_scoped_resources`]).
    cluster_scoped_resources: &'a BTreeSet<String>,
}

/// Kubernetes' cluster-scoped resources and those of the fork's cluster-scoped CRDs.
fn cluster_scoped_resources(objects: &[Object]) -> BTreeSet<String> {
    let custom = objects
        .iter()
        .filter(|o| o.kind() == "CustomResourceDefinition")
        .filter(|o| o.str_at(&["spec", "scope"]) == Some("Cluster"))
        .filter_map(|o| o.str_at(&["spec", "names", "plural"]));
    CLUSTER_SCOPED_RESOURCES
        .iter()
        .copied()
        .chain(custom)
        .map(str::to_string)
        .collect()
}

fn binding_refusals(binding: &Object, boundary: &Boundary<'_>, roles: &Roles<'_>) -> Vec<String> {
    let mut refusals = Vec::new();
    let cluster_wide = binding.kind() == "ClusterRoleBinding";
    let role_kind = binding.str_at(&["roleRef", "kind"]).unwrap_or_default();
    let role_name = binding.str_at(&["roleRef", "name"]).unwrap_or_default();
    if cluster_wide {
        if !roles.own.contains(role_name) {
            refusals.push(format!(
                "binds ClusterRole `{role_name}`, which the fork does not create (a cluster-wide binding may only grant a role of the environment)"
            ));
        } else if roles.aggregating.contains(role_name) {
            refusals.push(format!(
                "binds ClusterRole `{role_name}` cluster-wide, whose rules an aggregationRule gathers from other roles"
            ));
        } else if let Some((_, rules)) = roles.rules.iter().find(|(n, _)| n == role_name) {
            let grants = Grants::of(rules, roles.cluster_scoped_resources);
            refusals.extend(grants.refusal(role_name, binding, boundary));
        }
    } else if role_kind != "ClusterRole" && role_kind != "Role" {
        refusals.push(format!("roleRef kind `{role_kind}` is not a role"));
    }
    let subjects = binding
        .get(&["subjects"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for subject in &subjects {
        let kind = subject["kind"].as_str().unwrap_or_default();
        let name = subject["name"].as_str().unwrap_or_default();
        match kind {
            "ServiceAccount" => {
                let namespace = subject["namespace"]
                    .as_str()
                    .unwrap_or_else(|| binding.namespace());
                if !boundary.owns(namespace) {
                    refusals.push(format!(
                        "subject ServiceAccount {namespace}/{name} is outside the environment's namespaces"
                    ));
                }
            }
            _ => refusals.push(format!(
                "subject {kind} `{name}` is outside the environment (only its own ServiceAccounts may be bound)"
            )),
        }
    }
    refusals
}

/// What a fork's ClusterRole grants beyond reads of the cluster-scoped resources anyone may
/// read, which is all a cluster-wide binding of it may grant: anything else reaches every
/// tenant's namespaces, or the cluster itself.
#[derive(Default)]
struct Grants {
    /// Over namespaced resources, in every namespace: a RoleBinding grants the same in one.
    namespaced: BTreeMap<Granted, BTreeSet<String>>,
    /// Over cluster-scoped resources (and every resource, `*`), and non-resource URLs beyond
    /// reads: rights that exist only cluster-wide, so no RoleBinding can stand in.
    cluster_scoped: BTreeMap<Granted, BTreeSet<String>>,
}

/// What a rule grants verbs on: a resource (`nodes`, `pods/log`, `*`) or a non-resource URL.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Granted {
    Resource(String),
    Url(String),
}

impl Grants {
    fn of(rules: &Value, cluster_scoped_resources: &BTreeSet<String>) -> Self {
        let mut grants = Grants::default();
        for rule in rules.as_array().into_iter().flatten() {
            let list = |key: &str| -> Vec<String> {
                rule[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            };
            let verbs = list("verbs");
            let reads_only = verbs.iter().all(|v| READ_VERBS.contains(&v.as_str()));
            for resource in list("resources") {
                let (base, subresource) = match resource.split_once('/') {
                    Some((base, subresource)) => (base, Some(subresource)),
                    None => (resource.as_str(), None),
                };
                let found = if base == "*" || cluster_scoped_resources.contains(base) {
                    let readable = subresource.is_none_or(|s| READABLE_SUBRESOURCES.contains(&s));
                    if reads_only && readable && CLUSTER_READABLE.contains(&base) {
                        continue;
                    }
                    &mut grants.cluster_scoped
                } else {
                    &mut grants.namespaced
                };
                found
                    .entry(Granted::Resource(resource))
                    .or_default()
                    .extend(verbs.iter().cloned());
            }
            for url in list("nonResourceURLs") {
                if !(reads_only && READABLE_URLS.contains(&url.as_str())) {
                    grants
                        .cluster_scoped
                        .entry(Granted::Url(url))
                        .or_default()
                        .extend(verbs.iter().cloned());
                }
            }
        }
        grants
    }

    /// Why the binding may not grant these, and what the user can do, if it may not: for
    /// namespaced rights a RoleBinding in the environment's namespace; for cluster-scoped ones
    /// nothing inside a shared cluster can, so the way out is to leave the binding out, give the
    /// environment a cluster of its own, or have the cluster's administrators grant them.
    fn refusal(&self, role: &str, binding: &Object, boundary: &Boundary<'_>) -> Option<String> {
        if !self.cluster_scoped.is_empty() {
            // The fork appended the environment's name; `drop` takes the name in the source.
            let suffix = format!("-{}", boundary.env);
            let source_name = binding
                .name()
                .strip_suffix(&suffix)
                .unwrap_or(binding.name());
            // Metrics scrapers (Prometheus, Promtail, collectors) often read the kubelets through
            // `nodes/proxy` where `nodes/metrics` and `nodes/stats` would do.
            let scrapes_kubelets = self
                .cluster_scoped
                .contains_key(&Granted::Resource("nodes/proxy".into()));
            let kubelet_hint = if scrapes_kubelets {
                "; a role that scrapes the kubelets can read `nodes/metrics` and `nodes/stats` instead of `nodes/proxy` (those pass)"
            } else {
                ""
            };
            return Some(format!(
                "binds ClusterRole `{role}` cluster-wide, which grants rights over cluster-scoped resources ({}); an environment on a shared cluster cannot hold cluster-wide rights: leave the binding out (`overlay.drop: [{}/{source_name}]`), run the environment on a cluster of its own (provider kind, minikube, eks or envtest), or have the cluster's administrators grant them outside sprout{kubelet_hint}",
                Self::described(&self.cluster_scoped),
                binding.kind(),
            ));
        }
        (!self.namespaced.is_empty()).then(|| {
            format!(
                "binds ClusterRole `{role}` cluster-wide, which grants access to {} in every namespace (grant namespaced rights with a RoleBinding in the environment's namespace)",
                Self::described(&self.namespaced)
            )
        })
    }

    /// `` `tokenreviews` (create), `nodes` (delete, patch) ``, bounded.
    fn described(grants: &BTreeMap<Granted, BTreeSet<String>>) -> String {
        let items: Vec<String> = grants
            .iter()
            .map(|(granted, verbs)| {
                let verbs: Vec<String> = verbs.iter().cloned().collect();
                let verbs = capped_inline(&verbs, VERBS_SHOWN);
                match granted {
                    Granted::Resource(resource) => format!("`{resource}` ({verbs})"),
                    Granted::Url(url) => format!("non-resource URL `{url}` ({verbs})"),
                }
            })
            .collect();
        capped_inline(&items, RESOURCES_SHOWN)
    }
}

fn webhook_refusals(object: &Object, boundary: &Boundary<'_>) -> Vec<String> {
    object
        .get(&["webhooks"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|hook| {
            let name = hook["name"].as_str().unwrap_or_default();
            client_config_refusal(&hook["clientConfig"], boundary)
                .map(|rule| format!("webhook `{name}` {rule}"))
        })
        .collect()
}

/// A webhook may only call a Service of the environment: a URL reaches anywhere, with every
/// object it is sent.
fn client_config_refusal(config: &Value, boundary: &Boundary<'_>) -> Option<String> {
    if let Some(url) = config["url"].as_str() {
        return Some(format!(
            "calls the URL `{url}` (a webhook may only call a Service of the environment)"
        ));
    }
    let namespace = config["service"]["namespace"].as_str().unwrap_or_default();
    if !boundary.owns(namespace) {
        let name = config["service"]["name"].as_str().unwrap_or_default();
        return Some(format!(
            "calls Service {namespace}/{name}, outside the environment's namespaces"
        ));
    }
    None
}

/// Adds to every webhook's namespaceSelector requirements that the namespace is one of the
/// environment's, keeping the webhook's own requirements (selectors are ANDed). By sprout's
/// labels, which every namespace of the environment carries, rather than by name: the
/// `kubernetes.io/metadata.name` label only exists from Kubernetes 1.21.
fn confine_webhooks(object: &mut Object, boundary: &Boundary<'_>) {
    let mut required = vec![json!({
        "key": ENVIRONMENT_LABEL, "operator": "In", "values": [boundary.env],
    })];
    if !boundary.project.is_empty() {
        required.push(json!({
            "key": PROJECT_LABEL, "operator": "In", "values": [boundary.project],
        }));
    }
    let Some(Value::Array(hooks)) = object.get_mut(&["webhooks"]) else {
        return;
    };
    for hook in hooks.iter_mut() {
        let Some(hook) = hook.as_object_mut() else {
            continue;
        };
        // A namespaceSelector does not apply to cluster-scoped objects: a rule for them would
        // see (and could block) every tenant's.
        if let Some(Value::Array(rules)) = hook.get_mut("rules") {
            for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
                rule.insert("scope".into(), json!("Namespaced"));
            }
        }
        let selector = hook.entry("namespaceSelector").or_insert_with(|| json!({}));
        if !selector.is_object() {
            *selector = json!({});
        }
        let expressions = selector
            .as_object_mut()
            .expect("an object")
            .entry("matchExpressions")
            .or_insert_with(|| json!([]));
        if !expressions.is_array() {
            *expressions = json!([]);
        }
        expressions
            .as_array_mut()
            .expect("an array")
            .extend(required.iter().cloned());
    }
}

fn drop_labels(object: &mut Object, drop: impl Fn(&str) -> bool) -> bool {
    let Some(Value::Object(labels)) = object.get_mut(&["metadata", "labels"]) else {
        return false;
    };
    let before = labels.len();
    labels.retain(|k, _| !drop(k));
    before != labels.len()
}

fn drop_node_ports(service: &mut Object) -> bool {
    let mut dropped = false;
    if let Some(Value::Object(spec)) = service.get_mut(&["spec"]) {
        dropped |= spec.remove("healthCheckNodePort").is_some();
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                dropped |= port.remove("nodePort").is_some();
            }
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(yaml: &str) -> Object {
        crate::object::test_object(serde_yaml::from_str(yaml).unwrap())
    }

    fn run(yamls: &[&str], allowed: &[&str]) -> (Vec<Object>, Confined) {
        let mut objects: Vec<Object> = yamls.iter().map(|y| object(y)).collect();
        let scopes = Scopes::from_objects(&objects);
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        let boundary = Boundary {
            env: "pr-1",
            project: "shop",
            namespaces: ["pr-1".to_string(), "pr-1-jobs".to_string()].into(),
            allowed_kinds: &allowed,
        };
        let confined = confine(&mut objects, &scopes, &boundary);
        (objects, confined)
    }

    const ALL: &[&str] = &[
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "PriorityClass",
    ];

    #[test]
    fn refusals_name_the_object_and_the_rule() {
        let table: &[(&str, &[&str], &str)] = &[
            (
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r-pr-1}\n",
                &[],
                "ClusterRole/r-pr-1: cluster-scoped ClusterRole is not allowed on a shared cluster",
            ),
            (
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects: [{kind: ServiceAccount, name: app, namespace: pr-1}]\n",
                ALL,
                "ClusterRoleBinding/b: binds ClusterRole `cluster-admin`, which the fork does not create",
            ),
            (
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: pr-1}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\nsubjects: [{kind: Group, name: 'system:authenticated', apiGroup: rbac.authorization.k8s.io}]\n",
                &[],
                "RoleBinding/pr-1/b: subject Group `system:authenticated` is outside the environment",
            ),
            (
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: pr-1}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}\nsubjects: [{kind: User, name: mallory}]\n",
                &[],
                "RoleBinding/pr-1/b: subject User `mallory` is outside the environment",
            ),
            (
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: pr-1}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}\nsubjects: [{kind: ServiceAccount, name: ci, namespace: other}]\n",
                &[],
                "RoleBinding/pr-1/b: subject ServiceAccount other/ci is outside the environment's namespaces",
            ),
            (
                "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: w}\nwebhooks: [{name: a.b.c, clientConfig: {url: 'https://evil.example/'}}]\n",
                ALL,
                "ValidatingWebhookConfiguration/w: webhook `a.b.c` calls the URL `https://evil.example/`",
            ),
            (
                "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: w}\nwebhooks: [{name: a.b.c, clientConfig: {service: {name: s, namespace: other}}}]\n",
                ALL,
                "MutatingWebhookConfiguration/w: webhook `a.b.c` calls Service other/s, outside",
            ),
            (
                "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {name: v1beta1.metrics.k8s.io}\n",
                &["APIService"],
                "APIService/v1beta1.metrics.k8s.io: an APIService serves its API group to every tenant",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: kube-system}\n",
                ALL,
                "ConfigMap/kube-system/c: objects in the system namespace kube-system",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\n",
                ALL,
                "ConfigMap/shop/c: namespace shop is not one of the environment's namespaces",
            ),
        ];
        for (yaml, allowed, expected) in table {
            let (_, confined) = run(&[yaml], allowed);
            assert!(
                confined.refusals.iter().any(|r| r.starts_with(expected)),
                "{expected}\n got {:?}",
                confined.refusals
            );
        }
    }

    #[test]
    fn cluster_wide_bindings_may_grant_only_reads_of_cluster_scoped_resources() {
        let binding = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r}\nsubjects: [{kind: ServiceAccount, name: app, namespace: pr-1}]\n";
        let role = |rules: &str| {
            format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: r}}\nrules: {rules}\n"
            )
        };
        let table = [
            (
                "[{apiGroups: [''], resources: [nodes], verbs: [get, list]}]",
                None,
            ),
            (
                "[{apiGroups: [''], resources: [secrets], verbs: [get]}]",
                Some(
                    "grants access to `secrets` (get) in every namespace (grant namespaced rights with a RoleBinding",
                ),
            ),
            (
                "[{apiGroups: ['*'], resources: ['*'], verbs: [get]}]",
                Some("grants rights over cluster-scoped resources (`*` (get))"),
            ),
            (
                "[{apiGroups: [''], resources: [nodes], verbs: [delete]}]",
                Some("grants rights over cluster-scoped resources (`nodes` (delete))"),
            ),
            // Prometheus reads the kubelets' metrics (kube-prometheus grants this).
            (
                "[{apiGroups: [''], resources: [nodes/metrics, nodes/stats], verbs: [get]}]",
                None,
            ),
            // The kubelet's whole API, exec into every pod on the node included.
            (
                "[{apiGroups: [''], resources: [nodes/proxy], verbs: [get]}]",
                Some("grants rights over cluster-scoped resources (`nodes/proxy` (get))"),
            ),
            // With the way out a scraper can take.
            (
                "[{apiGroups: [''], resources: [nodes/proxy], verbs: [get]}]",
                Some(
                    "a role that scrapes the kubelets can read `nodes/metrics` and `nodes/stats` instead of `nodes/proxy` (those pass)",
                ),
            ),
            (
                "[{apiGroups: [''], resources: [nodes/log], verbs: [get, list]}]",
                Some("grants rights over cluster-scoped resources (`nodes/log` (get, list))"),
            ),
            ("[{nonResourceURLs: [/metrics], verbs: [get]}]", None),
            // The API server's host logs, and every URL.
            (
                "[{nonResourceURLs: ['/logs/*'], verbs: [get]}]",
                Some(
                    "grants rights over cluster-scoped resources (non-resource URL `/logs/*` (get))",
                ),
            ),
            (
                "[{nonResourceURLs: ['*'], verbs: [get]}]",
                Some("grants rights over cluster-scoped resources (non-resource URL `*` (get))"),
            ),
        ];
        for (rules, expected) in table {
            let (_, confined) = run(&[&role(rules), binding], ALL);
            match expected {
                None => assert_eq!(confined.refusals, Vec::<String>::new(), "{rules}"),
                Some(rule) => assert!(
                    confined.refusals.iter().any(|r| r.contains(rule)),
                    "{rule}: {:?}",
                    confined.refusals
                ),
            }
        }
    }

    /// kube-rbac-proxy's reviews, an admission controller's webhook configurations: rights a
    /// RoleBinding cannot give, so the refusal says what can be done instead, and names the
    /// binding as the source does (before the fork appended the environment's name).
    #[test]
    fn cluster_scoped_rights_are_refused_with_the_ways_out() {
        let binding = |name: &str, role: &str| {
            format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {name}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\nsubjects: [{{kind: ServiceAccount, name: app, namespace: pr-1}}]\n"
            )
        };
        let proxy = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: proxy-pr-1}\nrules:\n- {apiGroups: [authentication.k8s.io], resources: [tokenreviews], verbs: [create]}\n- {apiGroups: [authorization.k8s.io], resources: [subjectaccessreviews], verbs: [create]}\n- {apiGroups: [''], resources: [configmaps], verbs: [get]}\n";
        let admission = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: admission-pr-1}\nrules:\n- {apiGroups: [admissionregistration.k8s.io], resources: [validatingwebhookconfigurations], verbs: [get, update]}\n";
        let (_, confined) = run(
            &[
                proxy,
                &binding("proxy-pr-1", "proxy-pr-1"),
                admission,
                &binding("admission-pr-1", "admission-pr-1"),
            ],
            ALL,
        );
        assert_eq!(
            confined.refusals,
            [
                "ClusterRoleBinding/proxy-pr-1: binds ClusterRole `proxy-pr-1` cluster-wide, which grants rights over cluster-scoped resources (`subjectaccessreviews` (create), `tokenreviews` (create)); an environment on a shared cluster cannot hold cluster-wide rights: leave the binding out (`overlay.drop: [ClusterRoleBinding/proxy]`), run the environment on a cluster of its own (provider kind, minikube, eks or envtest), or have the cluster's administrators grant them outside sprout",
                "ClusterRoleBinding/admission-pr-1: binds ClusterRole `admission-pr-1` cluster-wide, which grants rights over cluster-scoped resources (`validatingwebhookconfigurations` (get, update)); an environment on a shared cluster cannot hold cluster-wide rights: leave the binding out (`overlay.drop: [ClusterRoleBinding/admission]`), run the environment on a cluster of its own (provider kind, minikube, eks or envtest), or have the cluster's administrators grant them outside sprout",
            ]
        );
    }

    #[test]
    fn a_cluster_scoped_crd_s_resources_are_cluster_scoped_rights() {
        let (_, confined) = run(
            &[
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: globals.example.com}\nspec: {group: example.com, scope: Cluster, names: {kind: Global, plural: globals}}\n",
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\nrules: [{apiGroups: [example.com], resources: [globals, globals/status], verbs: ['*']}]\n",
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r}\nsubjects: [{kind: ServiceAccount, name: app, namespace: pr-1}]\n",
            ],
            ALL,
        );
        assert!(
            confined.refusals[0]
                .contains("cluster-scoped resources (`globals` (*), `globals/status` (*))"),
            "{:?}",
            confined.refusals
        );
    }

    #[test]
    fn allowed_objects_are_confined_by_rewriting() {
        let (objects, confined) = run(
            &[
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r, labels: {rbac.authorization.k8s.io/aggregate-to-admin: 'true', app: x}}\n",
                "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: p}\nvalue: 1000\nglobalDefault: true\n",
                "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: w}\nwebhooks:\n- name: a.b.c\n  clientConfig: {service: {name: s, namespace: pr-1}}\n  namespaceSelector: {matchLabels: {team: a}, matchExpressions: [{key: tier, operator: Exists}]}\n  rules: [{operations: [CREATE], apiGroups: ['*'], apiVersions: ['*'], resources: ['*'], scope: '*'}]\n",
                "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: pr-1}\nspec: {type: NodePort, ports: [{port: 80, nodePort: 30080}]}\n",
            ],
            ALL,
        );
        assert_eq!(confined.refusals, Vec::<String>::new());
        assert_eq!(confined.rewrites.len(), 4, "{:?}", confined.rewrites);
        let role = &objects[0];
        assert_eq!(
            role.get(&["metadata", "labels"]).unwrap(),
            &json!({"app": "x"})
        );
        assert!(objects[1].get(&["globalDefault"]).is_none());
        assert_eq!(
            objects[2].get(&["webhooks"]).unwrap()[0]["namespaceSelector"],
            json!({"matchLabels": {"team": "a"}, "matchExpressions": [
                {"key": "tier", "operator": "Exists"},
                {"key": "sprout.dev/environment", "operator": "In", "values": ["pr-1"]},
                {"key": "sprout.dev/project", "operator": "In", "values": ["shop"]},
            ]})
        );
        assert_eq!(
            objects[2].get(&["webhooks"]).unwrap()[0]["rules"][0]["scope"],
            "Namespaced"
        );
        assert_eq!(
            objects[3].get(&["spec", "ports"]).unwrap(),
            &json!([{"port": 80}])
        );
    }

    #[test]
    fn own_roles_and_own_accounts_may_be_bound() {
        let (_, confined) = run(
            &[
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: pr-1-jobs}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\nsubjects: [{kind: ServiceAccount, name: app, namespace: pr-1}, {kind: ServiceAccount, name: job}]\n",
            ],
            &[],
        );
        assert_eq!(confined, Confined::default());
    }

    #[test]
    fn sprout_s_own_names_are_reserved() {
        let objects: Vec<Object> = [
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: sprout-inventory, namespace: pr-1}\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: sprout-inventory-2, namespace: pr-1}\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: sprout-inventory-old, namespace: pr-1}\n",
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: sprout-lock, namespace: pr-1}\n",
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sprout-env, namespace: pr-1}\n",
        ]
        .iter()
        .map(|y| object(y))
        .collect();
        let refusals = reserved_name_refusals(&objects, true);
        assert_eq!(refusals.len(), 4, "{refusals:?}");
        assert!(refusals[0].starts_with(
            "ConfigMap/pr-1/sprout-inventory: the name is sprout's own (the environment's inventory)"
        ));
        assert_eq!(reserved_name_refusals(&objects, false).len(), 3);
    }
}
