//! The namespace a source leaves implicit, and system namespaces, seen through `render`.

use crate::util::{TestRepo, stderr_of};
use serde_json::Value;

const AUTH_READER: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: metrics-server-auth-reader, namespace: kube-system}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}\nsubjects:\n- {kind: ServiceAccount, name: metrics-server, namespace: default}\n";

fn project(provider: &str, spec_extra: &str) -> TestRepo {
    let mut repo = TestRepo::new();
    repo.write(
        "environments/production.yaml",
        "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {name: production}\nspec:\n  protected: true\n  source: {ref: main, path: deploy}\n",
    )
    .write(
        "environments/dev.yaml",
        &format!("apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {{name: dev}}\nspec:\n  from: production\n  cluster: {{provider: {provider}}}\n{spec_extra}"),
    )
    .write(
        "deploy/app.yaml",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: metrics-server}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80, protocol: TCP}]}\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web, namespace: default}\nspec: {defaultBackend: {service: {name: web, port: {number: 80}}}}\n",
    )
    .write("deploy/auth-reader.yaml", AUTH_READER);
    repo.commit("production");
    repo
}

fn rendered(repo: &TestRepo) -> Vec<Value> {
    let output = repo
        .sprout()
        .args(["-o", "json", "render", "dev"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let list: Value = serde_json::from_slice(&output.stdout).unwrap();
    list["items"].as_array().unwrap().clone()
}

fn find<'a>(items: &'a [Value], kind: &str, name: &str) -> &'a Value {
    items
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn kube_system_stays_and_the_implied_namespace_is_one_on_a_dedicated_cluster() {
    let repo = project("envtest", "");
    let items = rendered(&repo);
    let binding = find(&items, "RoleBinding", "metrics-server-auth-reader");
    assert_eq!(binding["metadata"]["namespace"], "kube-system");
    assert_eq!(
        binding["roleRef"]["name"],
        "extension-apiserver-authentication-reader"
    );
    assert_eq!(binding["subjects"][0]["namespace"], "dev");
    assert_eq!(
        find(&items, "Service", "web")["metadata"]["namespace"],
        "dev"
    );
    assert_eq!(
        find(&items, "Ingress", "web")["metadata"]["namespace"],
        "dev"
    );
    let namespaces: Vec<&str> = items
        .iter()
        .filter(|o| o["kind"] == "Namespace")
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, ["dev"]);
}

/// On a shared cluster the binding in kube-system is refused, naming the way out, instead of
/// being moved to a namespace where the Role it binds does not exist.
#[test]
fn kube_system_is_refused_on_a_shared_cluster_not_moved() {
    let mut repo = project("envtest", "");
    repo.write(
        "environments/dev.yaml",
        "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {name: dev}\nspec:\n  from: production\n  cluster: {provider: namespace, namespace: {context: shared}}\n",
    );
    let output = repo.sprout().args(["render", "dev"]).output().unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("RoleBinding/kube-system/metrics-server-auth-reader: objects in the system namespace kube-system are never applied on a shared cluster"),
        "{stderr}"
    );
    assert!(
        stderr.contains("overlay.drop: [RoleBinding/metrics-server-auth-reader]"),
        "{stderr}"
    );
    assert!(!stderr.contains("dev-kube-system"), "{stderr}");

    // Dropped as the message says, the rest renders.
    repo.write(
        "environments/dev.yaml",
        "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {name: dev}\nspec:\n  from: production\n  cluster: {provider: namespace, namespace: {context: shared}}\n  overlay:\n    drop: [RoleBinding/metrics-server-auth-reader]\n",
    );
    repo.commit("no auth reader");
    let items = rendered(&repo);
    assert!(
        items
            .iter()
            .all(|o| o["metadata"]["namespace"] != "kube-system")
    );
}

#[test]
fn source_namespace_says_what_kubectl_n_would_have_been_and_patches_find_it() {
    // Applied with `kubectl -n shop`: the explicit `default` Ingress is then another namespace.
    let repo = project(
        "kind",
        "  source: {namespace: shop}\n  overlay:\n    patches:\n    - target: {kind: Service, name: web, namespace: shop}\n      patch: |\n        metadata: {annotations: {patched: \"yes\"}}\n",
    );
    let items = rendered(&repo);
    let web = find(&items, "Service", "web");
    assert_eq!(web["metadata"]["namespace"], "dev");
    assert_eq!(web["metadata"]["annotations"]["patched"], "yes");
    assert_eq!(
        find(&items, "Ingress", "web")["metadata"]["namespace"],
        "dev-default"
    );
}

/// On a shared cluster CRDs are every environment's: they carry sprout's and the project's
/// labels, never one environment's. `replicas.max` caps custom resources with a whole
/// `spec.replicas` as it caps Deployments.
#[test]
fn shared_crds_name_no_environment_and_custom_resources_are_capped() {
    let mut repo = TestRepo::new();
    repo.write("sprout.yaml", "project: acme\n")
        .write(
            "environments/production.yaml",
            "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {name: production}\nspec:\n  protected: true\n  source: {ref: main, path: deploy}\n",
        )
        .write(
            "deploy/crd.yaml",
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: prometheuses.monitoring.coreos.com\n  labels: {sprout.dev/environment: production}\n\
             spec:\n  group: monitoring.coreos.com\n  scope: Namespaced\n  names: {kind: Prometheus, plural: prometheuses}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    \
             schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}\n---\n\
             apiVersion: monitoring.coreos.com/v1\nkind: Prometheus\nmetadata: {name: k8s}\nspec: {replicas: 2, retention: 7d}\n",
        );
    for (env, provider) in [
        (
            "shared",
            "{provider: namespace, namespace: {context: elsewhere}}",
        ),
        ("own", "{provider: envtest}"),
    ] {
        repo.write(
            &format!("environments/{env}.yaml"),
            &format!("apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  from: production\n  cluster: {provider}\n  overlay: {{replicas: {{max: 1}}}}\n"),
        );
    }
    repo.commit("production");
    for env in ["shared", "own"] {
        let output = repo
            .sprout()
            .args(["-o", "json", "render", env])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr_of(&output));
        let list: Value = serde_json::from_slice(&output.stdout).unwrap();
        let items = list["items"].as_array().unwrap();
        let crd = find(
            items,
            "CustomResourceDefinition",
            "prometheuses.monitoring.coreos.com",
        );
        let labels = &crd["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/managed-by"], "sprout", "{env}");
        assert_eq!(labels["sprout.dev/project"], "acme", "{env}");
        let environment = &labels["sprout.dev/environment"];
        if env == "shared" {
            assert!(environment.is_null(), "a shared CRD is no one's: {labels}");
        } else {
            assert_eq!(environment, "own", "a dedicated cluster's CRDs are its own");
        }
        let prometheus = find(items, "Prometheus", "k8s");
        assert_eq!(prometheus["spec"]["replicas"], 1, "{env}");
        assert_eq!(prometheus["spec"]["retention"], "7d");
        assert_eq!(
            prometheus["metadata"]["labels"]["sprout.dev/environment"],
            env
        );
    }
}
