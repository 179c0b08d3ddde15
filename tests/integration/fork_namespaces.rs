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
