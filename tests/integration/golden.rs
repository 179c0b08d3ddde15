//! Golden files: Online Boutique forked into developer and pull-request environments, from the
//! multi-namespace kustomize production and from the plain release file. The outputs live in
//! tests/golden/; regenerate with `INSTA_UPDATE=always scripts/test` (CI fails on drift).

use crate::util::{boutique_project, stdout_of};

const ENVIRONMENTS: [&str; 4] = ["dev-alice", "pr-42", "release-dev", "release-pr-7"];

#[test]
fn forks_match_the_golden_files() {
    let project = boutique_project();
    for env in ENVIRONMENTS {
        let output = project.sprout().args(["render", env]).output().unwrap();
        assert!(
            output.status.success(),
            "{env}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let rendered = stdout_of(&output);
        assert!(
            !rendered.contains("production-secret-value"),
            "{env}: an inline Secret leaked"
        );
        insta::with_settings!({snapshot_path => "../golden", prepend_module_to_snapshot => false, omit_expression => true}, {
            insta::assert_snapshot!(env, rendered);
        });
    }
}

#[test]
fn renders_are_byte_identical_across_runs() {
    let project = boutique_project();
    for env in ["pr-42", "release-dev"] {
        let first = project.sprout().args(["render", env]).output().unwrap();
        let second = project.sprout().args(["render", env]).output().unwrap();
        assert!(first.status.success());
        assert_eq!(first.stdout, second.stdout, "{env}");
    }
}

#[test]
fn json_output_and_out_dir_hold_the_same_objects() {
    let project = boutique_project();
    let yaml = project.sprout().args(["render", "pr-42"]).output().unwrap();
    let json = project
        .sprout()
        .args(["-o", "json", "render", "pr-42"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let items = list["items"].as_array().unwrap();
    let documents = stdout_of(&yaml).matches("\n---\n").count() + 1;
    assert_eq!(items.len(), documents);
    assert_eq!(
        items[0]["kind"], "Namespace",
        "apply order starts with namespaces"
    );

    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("rendered");
    project
        .sprout()
        .args(["render", "pr-42", "--out"])
        .arg(&dir)
        .assert()
        .success();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), items.len());
    assert!(files[0].starts_with("0001-namespace-"), "{files:?}");
}

#[test]
fn the_fork_rewrites_what_must_differ() {
    let project = boutique_project();
    let output = project
        .sprout()
        .args(["-o", "json", "render", "pr-42"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let items = list["items"].as_array().unwrap();
    let find = |kind: &str, name: &str| {
        items
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind}/{name}"))
    };
    // Two source namespaces → each mapped under the environment, references following.
    assert_eq!(
        find("Deployment", "frontend")["metadata"]["namespace"],
        "pr-42-shop"
    );
    assert_eq!(
        find("Deployment", "gateway")["metadata"]["namespace"],
        "pr-42-edge"
    );
    let upstreams = find("ConfigMap", "gateway-upstreams")["data"]["upstreams"]
        .as_str()
        .unwrap();
    assert!(
        upstreams.contains("frontend.pr-42-shop.svc.cluster.local:80"),
        "{upstreams}"
    );
    assert!(
        upstreams.contains("cartservice.pr-42-shop:7070"),
        "{upstreams}"
    );
    assert!(
        upstreams.contains("https://cdn.shop.example.com"),
        "an outside host is left alone: {upstreams}"
    );
    let init = &find("Deployment", "gateway")["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(
        init["command"][2],
        "until nslookup frontend.pr-42-shop.svc; do sleep 1; done"
    );
    assert_eq!(init["env"][0]["value"], "frontend.pr-42-shop.svc");
    let subjects = &find("RoleBinding", "gateway-reads-shop")["subjects"];
    assert_eq!(subjects[1]["namespace"], "pr-42-shop");
    assert_eq!(
        find("NetworkPolicy", "from-shop")["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]
            ["kubernetes.io/metadata.name"],
        "pr-42-shop"
    );
    // Hosts, images, replicas, resources, patches, secrets, the branch's own objects.
    let ingress = find("Ingress", "frontend");
    assert_eq!(
        ingress["spec"]["rules"][0]["host"],
        "shop.pr-42.preview.example.com"
    );
    assert_eq!(
        ingress["spec"]["tls"][0]["hosts"][1],
        "www.pr-42.preview.example.com"
    );
    let frontend = find("Deployment", "frontend");
    let image = frontend["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    assert!(
        image.starts_with("ghcr.io/acme/frontend:")
            && image.len() == "ghcr.io/acme/frontend:".len() + 40,
        "{image}"
    );
    assert_eq!(
        frontend["spec"]["template"]["metadata"]["annotations"]["preview.example.com/pr"],
        "42"
    );
    let cart = find("Deployment", "cartservice");
    assert_eq!(
        cart["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/acme/cartservice:pr-42"
    );
    let gateway = find("Deployment", "gateway");
    assert_eq!(
        gateway["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27-alpine",
        "by container name"
    );
    assert_eq!(gateway["spec"]["replicas"], 2);
    let limits = &gateway["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"];
    assert_eq!(limits["cpu"], "1");
    assert_eq!(limits["memory"], "1Gi");
    assert_eq!(
        limits["nvidia.com/gpu"], "1",
        "extended resources are not scaled"
    );
    assert!(items.iter().all(|o| o["kind"] != "Secret"));
    assert_eq!(
        find("ExternalSecret", "payment-keys")["metadata"]["namespace"],
        "pr-42-shop"
    );
    assert_eq!(
        find("HorizontalPodAutoscaler", "frontend")["spec"]["maxReplicas"],
        2
    );
    find("ConfigMap", "login-flags");
    for object in items {
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "sprout"
        );
        assert_eq!(
            object["metadata"]["labels"]["sprout.dev/environment"],
            "pr-42"
        );
    }
}
