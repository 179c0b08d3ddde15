//! Sync, prune, inventory, diff and status on the real control plane.

use crate::cluster::{
    ControlPlane, control_plane, environment_on_control_plane, unique, with_kubeconfig,
};
use crate::util::{TestRepo, stderr_of, stdout_of};
use serde_json::Value;
use std::path::Path;

pub const PRODUCTION: &str = "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {name: production}\n\
                          spec:\n  protected: true\n  source: {ref: main, path: deploy}\n";

/// A CRD of a group of the test's own (tests share one cluster) and two objects of its kind.
fn widgets(group: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: widgets.{group}}}\n\
         spec:\n  group: {group}\n  scope: Namespaced\n  names: {{kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}}\n  \
         versions:\n  - name: v1\n    served: true\n    storage: true\n    \
         schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}\n\
         ---\napiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: small}}\nspec: {{size: 1}}\n\
         ---\napiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: large}}\nspec: {{size: 9}}\n"
    )
}

/// The example production (Online Boutique, adapted for Kubernetes 1.20) plus widgets.
fn boutique_on_control_plane(env: &str) -> TestRepo {
    let mut repo = TestRepo::new();
    repo.copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("environments/production"),
        "deploy",
    );
    repo.write(
        "deploy/widgets.yaml",
        &widgets(&format!("{env}.sprout.test")),
    );
    let kustomization =
        std::fs::read_to_string(repo.path().join("deploy/kustomization.yaml")).unwrap();
    repo.write(
        "deploy/kustomization.yaml",
        &kustomization.replace("- ingress.yaml", "- ingress.yaml\n- widgets.yaml"),
    );
    repo.write("environments/production.yaml", PRODUCTION);
    repo.write(
        &format!("environments/{env}.yaml"),
        &environment_on_control_plane(env, "production", ""),
    );
    repo.commit("production");
    repo
}

/// A project whose production is one file, and environment `env` forked from it onto the
/// test control plane.
pub fn project_on_control_plane(env: &str, file: &str, text: &str) -> TestRepo {
    let mut repo = TestRepo::new();
    repo.write(file, text)
        .write("environments/production.yaml", PRODUCTION)
        .write(
            &format!("environments/{env}.yaml"),
            &environment_on_control_plane(env, "production", ""),
        );
    repo.commit("production");
    repo
}

/// Runs `sprout args...` on the test control plane, expecting exit `code`; (stdout, stderr).
pub fn expect_exit(
    repo: &TestRepo,
    cp: &ControlPlane,
    args: &[&str],
    code: i32,
) -> (String, String) {
    let output = with_kubeconfig(&mut repo.sprout(), cp)
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = (stdout_of(&output), stderr_of(&output));
    assert_eq!(
        output.status.code(),
        Some(code),
        "sprout {args:?}: {stderr}"
    );
    (stdout, stderr)
}

pub fn sync_json(repo: &TestRepo, cp: &ControlPlane, env: &str) -> Value {
    let output = with_kubeconfig(&mut repo.sprout(), cp)
        .args(["-o", "json", "sync", env, "--timeout", "30s"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "sync {env}: {}",
        stderr_of(&output)
    );
    serde_json::from_slice::<Value>(&output.stdout).unwrap()["report"].clone()
}

pub fn names(report: &Value, field: &str) -> Vec<String> {
    report["changes"][field]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Removes the document of `kind`/`name` from a multi-document YAML file.
fn remove_document(repo: &TestRepo, file: &str, kind: &str, name: &str) {
    let text = std::fs::read_to_string(repo.path().join(file)).unwrap();
    let kept: Vec<&str> = text
        .split("\n---\n")
        .filter(|doc| {
            !(doc.contains(&format!("kind: {kind}\n")) && doc.contains(&format!("name: {name}\n")))
        })
        .collect();
    assert_eq!(
        text.split("\n---\n").count(),
        kept.len() + 1,
        "{kind}/{name} not found in {file}"
    );
    repo.write(file, &kept.join("\n---\n"));
}

#[test]
fn sync_follows_git_prunes_safely_and_is_idempotent() {
    let cp = control_plane();
    let env = &unique("sync-boutique");
    let mut repo = boutique_on_control_plane(env);

    let first = sync_json(&repo, &cp, env);
    let created = names(&first, "created");
    assert_eq!(
        created.len(),
        40,
        "37 Online Boutique objects, a CRD and two widgets: {created:?}"
    );
    assert!(created.contains(&format!(
        "CustomResourceDefinition/widgets.{env}.sprout.test"
    )));
    assert_eq!(
        cp.kubectl_ok(&[
            "get",
            &format!("widgets.{env}.sprout.test"),
            "-n",
            env,
            "-o",
            "name"
        ])
        .lines()
        .count(),
        2
    );
    assert_eq!(
        first["health"]["cannotRun"], 12,
        "12 Deployments cannot run on a node-less control plane"
    );

    // A bystander with our labels but outside the inventory, and an object opted out of prune.
    cp.kubectl_stdin(
        &["create", "-f", "-"],
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bystander\n  namespace: {env}\n  labels:\n    \
                  app.kubernetes.io/managed-by: sprout\n    sprout.dev/environment: {env}\n"),
    );
    cp.kubectl_ok(&[
        "annotate",
        "service",
        "emailservice",
        "-n",
        env,
        "sprout.dev/prune=disabled",
    ]);

    // git moves on: a Deployment edited, two Services deleted, a ConfigMap added.
    let frontend = std::fs::read_to_string(repo.path().join("deploy/frontend.yaml")).unwrap();
    repo.write(
        "deploy/frontend.yaml",
        &frontend.replace(
            "- name: ENABLE_PROFILER\n            value: \"0\"",
            "- name: ENABLE_PROFILER\n            value: \"1\"",
        ),
    );
    remove_document(
        &repo,
        "deploy/shippingservice.yaml",
        "Service",
        "shippingservice",
    );
    remove_document(&repo, "deploy/emailservice.yaml", "Service", "emailservice");
    repo.write("deploy/flags.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: feature-flags}\ndata: {NEW_CHECKOUT: \"true\"}\n");
    let kustomization =
        std::fs::read_to_string(repo.path().join("deploy/kustomization.yaml")).unwrap();
    repo.write(
        "deploy/kustomization.yaml",
        &kustomization.replace("- widgets.yaml", "- widgets.yaml\n- flags.yaml"),
    );
    repo.commit("edit frontend, drop two services, add flags");

    let second = sync_json(&repo, &cp, env);
    assert_eq!(
        names(&second, "created"),
        [format!("ConfigMap/{env}/feature-flags")]
    );
    assert_eq!(
        names(&second, "configured"),
        [format!("Deployment/{env}/frontend")]
    );
    assert_eq!(
        names(&second, "pruned"),
        [format!("Service/{env}/shippingservice")]
    );
    assert_eq!(
        names(&second, "kept"),
        [format!(
            "Service/{env}/emailservice (sprout.dev/prune: disabled)"
        )]
    );
    assert!(!cp.exists("service", env, "shippingservice"));
    assert!(
        cp.exists("service", env, "emailservice"),
        "opted out of prune"
    );
    assert!(
        cp.exists("configmap", env, "bystander"),
        "not in the inventory: never deleted"
    );
    let profiler = cp.kubectl_ok(&[
        "get",
        "deploy",
        "frontend",
        "-n",
        env,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env[?(@.name=='ENABLE_PROFILER')].value}",
    ]);
    assert_eq!(profiler, "1");

    // Nothing changed: nothing written, as the server's audit log records it.
    let mark = cp.audit_mark();
    let third = sync_json(&repo, &cp, env);
    assert_eq!(third["changes"]["unchanged"], 38);
    assert_eq!(
        names(&third, "shared"),
        [format!(
            "CustomResourceDefinition/widgets.{env}.sprout.test"
        )],
        "on a shared cluster a CRD is applied only when absent"
    );
    assert_eq!(third["changes"]["writes"], 0);
    assert_eq!(cp.writes_since(mark, env), Vec::<String>::new());

    // A manual edit is drift: diff names it and exits 1; status shows it; sync repairs it.
    cp.kubectl_ok(&[
        "set",
        "image",
        "deployment/frontend",
        "-n",
        env,
        "server=nginx:edited",
    ]);
    let diff = with_kubeconfig(&mut repo.sprout(), &cp)
        .args(["diff", env])
        .output()
        .unwrap();
    assert_eq!(diff.status.code(), Some(1), "{}", stderr_of(&diff));
    let shown = stdout_of(&diff);
    assert!(
        shown.contains(&format!("~ Deployment/{env}/frontend"))
            && shown.contains("-        image: nginx:edited"),
        "{shown}"
    );
    let status = with_kubeconfig(&mut repo.sprout(), &cp)
        .args(["-o", "json", "status", env])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        status["drift"],
        serde_json::json!([format!("Deployment/{env}/frontend (differs)")])
    );
    assert_eq!(status["phase"], "synced");
    let repaired = sync_json(&repo, &cp, env);
    assert_eq!(
        names(&repaired, "configured"),
        [format!("Deployment/{env}/frontend")]
    );
    let clean = with_kubeconfig(&mut repo.sprout(), &cp)
        .args(["diff", env])
        .output()
        .unwrap();
    assert!(
        clean.status.success(),
        "{}{}",
        stdout_of(&clean),
        stderr_of(&clean)
    );
}

#[test]
fn diff_is_not_fooled_by_a_controller_writing_while_it_runs() {
    let cp = control_plane();
    let env = &unique("diff-busy");
    let configmaps: String = (0..20)
        .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\ndata: {{n: \"{i}\"}}\n---\n"))
        .collect();
    let repo = project_on_control_plane(env, "deploy/config.yaml", &configmaps);
    sync_json(&repo, &cp, env);

    // A "controller" keeps annotating the objects (as the deployment controller does with its
    // revision), so their live state moves between diff's read and its dry runs.
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let ticks = std::sync::Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, ticks) = (stop.clone(), ticks.clone());
        let (kubeconfig, env) = (cp.kubeconfig.clone(), env.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let tick = ticks.fetch_add(1, Ordering::SeqCst) + 1;
                let status = std::process::Command::new("kubectl")
                    .env("KUBECONFIG", &kubeconfig)
                    .args(["annotate", "configmap", "--all", "-n", &env, "--overwrite"])
                    .arg(format!("controller.example.com/tick={tick}"))
                    .output()
                    .unwrap()
                    .status;
                assert!(status.success());
            }
        })
    };
    // At least 8 diffs, and as many as it takes for the writer to write 3 times meanwhile (a
    // diff can be quicker than a kubectl run).
    let mut diffs = 0;
    while diffs < 8 || ticks.load(Ordering::SeqCst) < 4 {
        expect_exit(&repo, &cp, &["diff", env], 0);
        diffs += 1;
        assert!(
            diffs < 500,
            "the writer ran {} times",
            ticks.load(Ordering::SeqCst)
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

#[test]
fn conflicts_outside_the_inventory_name_the_manager_and_are_never_forced() {
    let cp = control_plane();
    let env = &unique("sync-conflict");
    let repo = project_on_control_plane(
        env,
        "deploy/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: git}\n",
    );
    // Someone else (kubectl, server-side) already manages data.mode of an object with our labels.
    let labels = format!(
        "  labels: {{app.kubernetes.io/managed-by: sprout, sprout.dev/environment: {env}}}\n"
    );
    cp.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {env}\n{labels}"),
    );
    cp.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {env}\n{labels}data: {{mode: manual}}\n"),
    );
    let (_, stderr) = expect_exit(&repo, &cp, &["sync", env], 1);
    assert!(
        stderr.contains(&format!(
            "environment {env}: sync: ConfigMap/{env}/settings: conflict with field manager kubectl"
        )),
        "{stderr}"
    );
    assert!(stderr.contains(".data.mode"), "{stderr}");
    let mode = cp.kubectl_ok(&[
        "get",
        "configmap",
        "settings",
        "-n",
        env,
        "-o",
        "jsonpath={.data.mode}",
    ]);
    assert_eq!(mode, "manual", "never forced");
}

#[test]
fn objects_of_others_are_refused_before_anything_is_written() {
    let cp = control_plane();
    let env = &unique("sync-foreign");
    let repo = project_on_control_plane(
        env,
        "deploy/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n",
    );
    cp.kubectl_ok(&["create", "namespace", env]);
    let mark = cp.audit_mark();
    let (_, stderr) = expect_exit(&repo, &cp, &["sync", env], 1);
    assert!(
        stderr.contains(&format!(
            "Namespace/{env} already exists and does not belong to this environment"
        )),
        "{stderr}"
    );
    assert_eq!(cp.writes_since(mark, env), Vec::<String>::new());
    assert!(!cp.exists("configmap", env, "app"));
}

#[test]
fn health_timeouts_name_each_stuck_object() {
    let cp = control_plane();
    let env = &unique("sync-health");
    let group = format!("{env}.sprout.test");
    let mut repo = TestRepo::new();
    repo.write("deploy/widgets.yaml", &widgets(&group))
        .write("environments/production.yaml", PRODUCTION)
        .write(
            &format!("environments/{env}.yaml"),
            &environment_on_control_plane(env, "production", ""),
        );
    repo.commit("widgets");
    sync_json(&repo, &cp, env);
    // The widget's controller (simulated) reports it is not ready yet.
    cp.kubectl_ok(&["patch", &format!("widgets.{group}"), "large", "-n", env, "--type", "merge", "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"Unknown","message":"provisioning disks"}]}}"#]);
    let (_, stderr) = expect_exit(&repo, &cp, &["sync", env, "--timeout", "2s"], 1);
    assert!(stderr.contains("not healthy after 2s"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Widget/{env}/large: not ready: provisioning disks"
        )),
        "{stderr}"
    );

    // The controller gives up (it saw generation 3: created, then two status patches): failed
    // objects are not awaited, they fail the sync at once, each named.
    cp.kubectl_ok(&[
        "patch", &format!("widgets.{group}"), "large", "-n", env, "--type", "merge", "-p",
        r#"{"status":{"observedGeneration":3,"conditions":[{"type":"Ready","status":"False","reason":"DiskFull","message":"no space left"}]}}"#,
    ]);
    let (stdout, stderr) = expect_exit(&repo, &cp, &["sync", env], 1);
    assert!(
        stderr.contains(&format!(
            "1 object(s) failed their health check: Widget/{env}/large (DiskFull: no space left)"
        )),
        "{stderr}"
    );
    assert!(
        stdout.contains("failed      Widget/"),
        "the report is shown first: {}",
        stdout
    );
    let status = with_kubeconfig(&mut repo.sprout(), &cp)
        .args(["-o", "json", "status", env])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["phase"], "degraded");
}

#[test]
fn refusals_and_an_unreachable_cluster_change_nothing() {
    let cp = control_plane();
    let env = &unique("sync-refusals");
    let repo = project_on_control_plane(
        env,
        "deploy/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n",
    );

    let (_, protected) = expect_exit(&repo, &cp, &["sync", "production"], 2);
    assert!(
        protected.contains("environment production: cluster: environment is protected"),
        "{protected}"
    );

    repo.write("sprout.yaml", "forbiddenContexts: [envtest]\n");
    let mark = cp.audit_mark();
    let (_, forbidden) = expect_exit(&repo, &cp, &["sync", env], 2);
    assert!(
        forbidden.contains("kube context `envtest` is listed in forbiddenContexts"),
        "{forbidden}"
    );
    assert_eq!(cp.writes_since(mark, env), Vec::<String>::new());
    std::fs::remove_file(repo.path().join("sprout.yaml")).unwrap();

    let nowhere = repo.path().join("nowhere.kubeconfig");
    std::fs::write(
        &nowhere,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\", insecure-skip-tls-verify: true}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: envtest, context: {cluster: c, user: u}}]\ncurrent-context: envtest\n",
    )
    .unwrap();
    let unreachable = repo
        .sprout()
        .env("KUBECONFIG", &nowhere)
        .args(["sync", env])
        .output()
        .unwrap();
    let stderr = stderr_of(&unreachable);
    assert_eq!(unreachable.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cluster https://127.0.0.1:1 is unreachable"),
        "{stderr}"
    );
    assert!(!cp.exists("namespace", env, env));
}

#[test]
fn down_on_a_shared_cluster_deletes_the_inventory_and_keeps_what_must_stay() {
    let cp = control_plane();
    let env = &unique("sync-down");
    let group = format!("{env}.sprout.test");
    let mut repo = project_on_control_plane(
        env,
        "deploy/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: keepme}\n",
    );
    repo.write("deploy/widgets.yaml", &widgets(&group));
    repo.commit("widgets");
    sync_json(&repo, &cp, env);
    let inventory = cp.inventory(env, "jsonpath={.data.entries}");
    assert!(
        !inventory.contains("CustomResourceDefinition"),
        "shared CRDs never enter an inventory: {inventory}"
    );
    let labels = cp.kubectl_ok(&[
        "get",
        "crd",
        &format!("widgets.{group}"),
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert!(
        labels.contains("app.kubernetes.io/managed-by")
            && !labels.contains("sprout.dev/environment"),
        "a shared CRD is labelled for no environment: {labels}"
    );
    cp.kubectl_ok(&[
        "annotate",
        "configmap",
        "keepme",
        "-n",
        env,
        "sprout.dev/prune=disabled",
    ]);

    let (stdout, _) = expect_exit(&repo, &cp, &["down", env], 0);
    assert!(
        stdout.contains(&format!(
            "kept     ConfigMap/{env}/keepme (sprout.dev/prune: disabled)"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "kept     Namespace/{env} (it holds objects sprout did not apply or must keep: ConfigMap/{env}/keepme)"
        )),
        "{stdout}"
    );
    assert!(!cp.exists("configmap", env, "app"));
    assert!(
        !cp.exists(&format!("widgets.{group}"), env, "small"),
        "custom resources are the environment's"
    );
    assert!(cp.exists("configmap", env, "keepme"));
    assert!(
        cp.kubectl(&["get", "crd", &format!("widgets.{group}")])
            .status
            .success(),
        "the shared CRD stays"
    );
    assert!(!cp.exists("configmap", env, "sprout-inventory"));
    assert!(
        !repo
            .path()
            .join(format!("environments/{env}.yaml"))
            .exists()
    );
}

/// kube-prometheus gives its ClusterRoles a `metadata.namespace`, which the server ignores:
/// the fork drops it, so a sync after the first finds them and writes nothing; an inventory an
/// older sprout wrote with that namespace is read as the object it is, and never prunes it.
#[test]
fn a_cluster_scoped_object_with_a_namespace_in_git_is_applied_once_and_never_pruned() {
    let cp = control_plane();
    let env = &unique("scoped-ns");
    let mut repo = project_on_control_plane(
        env,
        "deploy/app.yaml",
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n\
             metadata: {{name: {env}-reader, namespace: monitoring}}\n\
             rules: [{{apiGroups: [\"\"], resources: [configmaps], verbs: [get]}}]\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: app, namespace: monitoring}}\ndata: {{a: \"1\"}}\n"
        ),
    );
    repo.write(
        "sprout.yaml",
        "sharedCluster:\n  allowClusterScoped: [ClusterRole]\n",
    );
    repo.commit("ClusterRoles allowed");
    let first = sync_json(&repo, &cp, env);
    let roles: Vec<String> = names(&first, "created")
        .into_iter()
        .filter(|n| n.starts_with("ClusterRole/"))
        .collect();
    assert_eq!(roles.len(), 1, "{first}");
    let role = roles[0].trim_start_matches("ClusterRole/").to_string();
    assert!(!role.contains('/'), "no namespace in its name: {role}");
    assert!(cp.exists("clusterrole", "", &role));

    let again = sync_json(&repo, &cp, env);
    assert_eq!(again["changes"]["writes"], 0, "{again}");
    assert_eq!(names(&again, "created"), Vec::<String>::new());

    // The inventory as an older sprout wrote it: the ClusterRole under the manifest's namespace.
    // A source of one namespace lands in the environment's own.
    let namespace = env.to_string();
    let inventory: Value = serde_json::from_str(&cp.kubectl_ok(&[
        "get",
        "configmap",
        "sprout-inventory",
        "-n",
        &namespace,
        "-o",
        "json",
    ]))
    .unwrap();
    let entries = inventory["data"]["entries"].as_str().unwrap();
    let older = entries.replace(
        "\"kind\":\"ClusterRole\",\"name\":",
        "\"kind\":\"ClusterRole\",\"namespace\":\"monitoring\",\"name\":",
    );
    assert_ne!(older, entries, "the entry's form: {entries}");
    let patch = serde_json::json!({"data": {"entries": older}}).to_string();
    cp.kubectl_ok(&[
        "patch",
        "configmap",
        "sprout-inventory",
        "-n",
        &namespace,
        "--type",
        "merge",
        "-p",
        &patch,
    ]);
    let after = sync_json(&repo, &cp, env);
    assert_eq!(names(&after, "pruned"), Vec::<String>::new(), "{after}");
    assert!(cp.exists("clusterrole", "", &role), "the ClusterRole stays");
    expect_exit(&repo, &cp, &["down", env], 0);
    assert!(!cp.exists("clusterrole", "", &role), "down deletes it");
}

/// The first apply writes everything pods refer to before any workload (a pod gets the legacy
/// environment variables only of Services that exist when it starts), and starts the Services,
/// which the API server creates one at a time, at once beside the rest rather than after it.
#[test]
fn what_pods_refer_to_is_written_before_workloads_and_services_start_at_once() {
    let cp = control_plane();
    let env = &unique("sync-order");
    let mut text = String::new();
    for i in 0..40 {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\ndata: {{n: \"{i}\"}}\n"
        ));
    }
    for i in 0..12 {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}}}\n\
             spec: {{selector: {{app: d{i}}}, ports: [{{port: 80, protocol: TCP}}]}}\n\
             ---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d{i}}}\n\
             spec:\n  selector: {{matchLabels: {{app: d{i}}}}}\n  template:\n    metadata: {{labels: {{app: d{i}}}}}\n    \
             spec: {{containers: [{{name: app, image: registry.example.com/app:v1}}]}}\n"
        ));
    }
    let repo = project_on_control_plane(env, "deploy/app.yaml", &text);
    let mark = cp.audit_mark();
    let report = sync_json(&repo, &cp, env);
    assert_eq!(names(&report, "created").len(), 1 + 40 + 24, "{report}");

    let applies = cp.applies_since(mark, env);
    let of = |resource: &str| -> Vec<&(String, String, String, String)> {
        applies
            .iter()
            .filter(|(r, name, ..)| r == resource && name != "sprout-inventory")
            .collect()
    };
    let (config_maps, services, deployments) =
        (of("configmaps"), of("services"), of("deployments"));
    assert_eq!(
        (config_maps.len(), services.len(), deployments.len()),
        (40, 12, 12),
        "{applies:#?}"
    );
    let last_done = config_maps
        .iter()
        .chain(&services)
        .map(|a| &a.3)
        .max()
        .unwrap();
    let first_workload = deployments.iter().map(|a| &a.2).min().unwrap();
    assert!(
        last_done < first_workload,
        "a Deployment ({first_workload}) before everything pods refer to was written ({last_done})"
    );
    let first_service = services.iter().map(|a| &a.2).min().unwrap();
    let last_config_map = config_maps.iter().map(|a| &a.2).max().unwrap();
    assert!(
        first_service < last_config_map,
        "the Services waited for the ConfigMaps: first Service {first_service}, last ConfigMap {last_config_map}"
    );
}

/// A first sync on a shared cluster does not look for what cannot be there yet: once its Lease
/// has made the namespace, its Namespace is not dry-run and the environment's identity is made
/// without being looked for (each a round trip to a cluster far away). What is in the namespace
/// is still listed before the first object: Kubernetes and policy controllers fill a new
/// namespace at once, and none of that may be taken for sprout's. The objects go as the
/// environment's identity.
#[test]
fn a_first_sync_does_not_look_for_what_its_lock_s_namespace_cannot_hold() {
    let cp = control_plane();
    let env = &unique("sync-fresh");
    let repo = project_on_control_plane(
        env,
        "deploy/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {a: b}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: app}\n\
         spec: {selector: {app: app}, ports: [{port: 80, protocol: TCP}]}\n",
    );
    let mark = cp.audit_mark();
    let report = sync_json(&repo, &cp, env);
    let mut created = names(&report, "created");
    created.sort();
    assert_eq!(
        created,
        [
            format!("ConfigMap/{env}/app"),
            format!("Namespace/{env}"),
            format!("Service/{env}/app")
        ],
        "{report}"
    );

    let requests = cp.requests_since(mark, env);
    let lock = requests
        .iter()
        .position(|(verb, uri, _)| verb == "create" && uri.contains("/leases"))
        .unwrap_or_else(|| panic!("no Lease made: {requests:#?}"));
    let after = &requests[lock + 1..];
    let looked_for: Vec<_> = after
        .iter()
        .filter(|(verb, uri, _)| {
            uri.contains("dryRun")
                || (verb == "get" && uri.contains("sprout-env"))
                || (verb == "get" && uri.ends_with(&format!("/namespaces/{env}")))
        })
        .collect();
    assert!(
        looked_for.is_empty(),
        "looked for after the Lease made the namespace: {requests:#?}"
    );
    let first_object = after
        .iter()
        .position(|(verb, uri, _)| verb == "patch" && uri.contains("/configmaps/app"))
        .unwrap_or_else(|| panic!("ConfigMap/app not applied: {requests:#?}"));
    for resource in ["configmaps?", "services?"] {
        assert!(
            after[..first_object]
                .iter()
                .any(|(verb, uri, _)| verb == "list" && uri.contains(&format!("/{resource}"))),
            "{resource} not listed under the Lease before the first object: {requests:#?}"
        );
    }
    let tenant = format!("system:serviceaccount:{env}:sprout-env");
    for resource in ["configmaps/app", "services/app"] {
        assert!(
            requests.iter().any(|(verb, uri, user)| verb == "patch"
                && uri.contains(resource)
                && *user == tenant),
            "{resource} not applied as {tenant}: {requests:#?}"
        );
    }
    // And the next sync finds it all as the first left it.
    let again = sync_json(&repo, &cp, env);
    assert_eq!(again["changes"]["writes"], 0, "{again}");
}
