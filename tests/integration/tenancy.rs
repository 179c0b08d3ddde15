//! Shared clusters are multi-tenant (issue 7), on the real control plane: escalations refused
//! before any write, allowed cluster-scoped objects confined, namespaced objects applied as the
//! environment's own account, two projects' same-named environments apart, teardown that
//! deletes only what sprout applied, and an inventory written first and sharded.

use crate::cluster::{ControlPlane, control_plane, environment_on_control_plane, unique};
use crate::sync::{PRODUCTION, expect_exit, names, sync_json};
use crate::util::TestRepo;
use std::time::{Duration, Instant};

const ALLOW_ALL: &str = "sharedCluster:\n  allowClusterScoped: [ClusterRole, ClusterRoleBinding, ValidatingWebhookConfiguration, PriorityClass]\n";

/// A project `project` whose environment `env` (on the control plane) forks `deploy/`.
fn tenant(project: &str, env: &str, settings: &str, deploy: &str, extra: &str) -> TestRepo {
    let mut repo = TestRepo::new();
    repo.write("sprout.yaml", &format!("project: {project}\n{settings}"))
        .write("deploy/app.yaml", deploy)
        .write("environments/production.yaml", PRODUCTION)
        .write(
            &format!("environments/{env}.yaml"),
            &environment_on_control_plane(env, "production", extra),
        );
    repo.commit("production");
    repo
}

const APP: &str = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: app}\n---\n\
                   apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {v: \"1\"}\n";

/// `kubectl auth can-i` as someone: whether the API server would allow it.
fn can(cp: &ControlPlane, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    String::from_utf8_lossy(&cp.kubectl(&all).stdout).trim() == "yes"
}

/// The rights that no environment may grant: checked before and after every attempt.
fn no_escalation(cp: &ControlPlane, other: &str) {
    assert!(!can(
        cp,
        &[
            "delete",
            "namespaces",
            "--as=someone",
            "--as-group=system:authenticated"
        ]
    ));
    assert!(!can(
        cp,
        &[
            "get",
            "secrets",
            "-n",
            other,
            &format!("--as=system:serviceaccount:{other}:viewer")
        ]
    ));
    assert!(!can(
        cp,
        &[
            "list",
            "secrets",
            "--all-namespaces",
            &format!("--as=system:serviceaccount:{other}:viewer")
        ]
    ));
}

#[test]
fn escalations_are_refused_before_any_write_and_allowed_kinds_are_confined() {
    let cp = control_plane();
    // Another tenant: a namespace whose viewer may read its ConfigMaps, not its Secrets.
    let other = &unique("tenancy-other");
    cp.kubectl_ok(&["create", "namespace", other]);
    cp.kubectl_ok(&["create", "serviceaccount", "viewer", "-n", other]);
    cp.kubectl_ok(&[
        "create",
        "rolebinding",
        "viewer",
        "--clusterrole=view",
        &format!("--serviceaccount={other}:viewer"),
        "-n",
        other,
    ]);
    no_escalation(&cp, other);

    let env = &unique("tenancy-esc");
    let project = &unique("proj-esc");
    let binding = |role: &str, subject: &str| {
        format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: grab}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\nsubjects: [{subject}]\n"
        )
    };
    let authenticated =
        "{kind: Group, name: 'system:authenticated', apiGroup: rbac.authorization.k8s.io}";
    let escalations: Vec<(String, String)> = vec![
        (
            binding("cluster-admin", authenticated),
            "ClusterRoleBinding/grab-ENV: binds ClusterRole `cluster-admin`, which the fork does not create".into(),
        ),
        (
            format!(
                "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: mine}}\nrules: []\n{}",
                binding("mine", authenticated)
            ),
            "ClusterRoleBinding/grab-ENV: subject Group `system:authenticated` is outside the environment".into(),
        ),
        (
            binding("cluster-admin", &format!("{{kind: ServiceAccount, name: viewer, namespace: {other}}}")),
            format!("subject ServiceAccount {other}/viewer is outside the environment's namespaces"),
        ),
        (
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: users}\n\
             roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}\nsubjects: [{kind: User, name: mallory}]\n".into(),
            "RoleBinding/ENV/users: subject User `mallory` is outside the environment".into(),
        ),
        (
            "---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: spy}\n\
             webhooks:\n- name: spy.sprout.test\n  admissionReviewVersions: [v1]\n  sideEffects: None\n  clientConfig: {url: 'https://127.0.0.1:9/'}\n  \
             rules: [{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [secrets]}]\n".into(),
            "ValidatingWebhookConfiguration/spy-ENV: webhook `spy.sprout.test` calls the URL `https://127.0.0.1:9/`".into(),
        ),
        (
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: sprout-inventory}\ndata: {entries: '[]'}\n".into(),
            "ConfigMap/ENV/sprout-inventory: the name is sprout's own (the environment's inventory)".into(),
        ),
        (
            "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sprout-env}\n".into(),
            "ServiceAccount/ENV/sprout-env: the name is sprout's own (the environment's identity)".into(),
        ),
    ];
    let mut repo = tenant(project, env, ALLOW_ALL, APP, "");
    for (escalation, rule) in &escalations {
        repo.write("deploy/app.yaml", &format!("{APP}{escalation}"));
        repo.commit("an escalation");
        let rule = rule.replace("ENV", env);
        let (_, stderr) = expect_exit(&repo, &cp, &["render", env], 2);
        assert!(stderr.contains(&rule), "render: {rule}\n{stderr}");
        let mark = cp.audit_mark();
        let (_, stderr) = expect_exit(&repo, &cp, &["sync", env], 2);
        assert!(stderr.contains(&rule), "sync: {rule}\n{stderr}");
        // Other tests write meanwhile: this environment's writes name it (its namespace, or the
        // `-<env>` suffix of its cluster-scoped names).
        let writes: Vec<String> = cp
            .all_writes_since(mark)
            .into_iter()
            .filter(|w| w.contains(env.as_str()))
            .collect();
        assert_eq!(writes, Vec::<String>::new(), "{rule}");
        assert!(!cp.exists("namespace", env, env));
        no_escalation(&cp, other);
    }

    // Not allow-listed, a cluster-scoped kind is refused whatever it does.
    let mut plain = tenant(
        project,
        env,
        "",
        &format!(
            "{APP}---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: mine}}\nrules: []\n"
        ),
        "",
    );
    plain.commit("a ClusterRole");
    let (_, stderr) = expect_exit(&plain, &cp, &["sync", env], 2);
    assert!(
        stderr.contains(&format!(
            "ClusterRole/mine-{env}: cluster-scoped ClusterRole is not allowed on a shared cluster (allow the kind in sprout.yaml: sharedCluster.allowClusterScoped)"
        )),
        "{stderr}"
    );

    // Allowed, the same kinds are confined: the aggregation label, globalDefault and the fixed
    // nodePort are dropped (render says so), and nothing grants another tenant a right.
    let confined = format!(
        "{APP}---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: secrets, labels: {{rbac.authorization.k8s.io/aggregate-to-view: 'true'}}}}\n\
         rules: [{{apiGroups: [''], resources: [secrets], verbs: [get, list]}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: app-secrets}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secrets}}\nsubjects: [{{kind: ServiceAccount, name: app}}]\n---\n\
         apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {{name: urgent}}\nvalue: 1000\nglobalDefault: true\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{type: NodePort, ports: [{{port: 80, nodePort: 30917}}]}}\n"
    );
    repo.write("deploy/app.yaml", &confined);
    repo.commit("confined");
    let (_, stderr) = expect_exit(&repo, &cp, &["render", env], 0);
    for warning in [
        format!("ClusterRole/secrets-{env}: its aggregate-to-* labels are dropped"),
        format!("PriorityClass/urgent-{env}: globalDefault is dropped"),
        format!("Service/{env}/web: fixed nodePorts are dropped"),
    ] {
        assert!(stderr.contains(&warning), "{warning}\n{stderr}");
    }
    sync_json(&repo, &cp, env);
    no_escalation(&cp, other);
    let role_labels = cp.kubectl_ok(&[
        "get",
        "clusterrole",
        &format!("secrets-{env}"),
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert!(!role_labels.contains("aggregate-to"), "{role_labels}");
    let global = cp.kubectl_ok(&[
        "get",
        "priorityclass",
        &format!("urgent-{env}"),
        "-o",
        "jsonpath={.globalDefault}",
    ]);
    assert_ne!(global, "true");
    // The environment's account may do anything in its namespace, nothing outside it; its
    // own app may read its own Secrets only.
    let account = format!("--as=system:serviceaccount:{env}:sprout-env");
    assert!(can(&cp, &["create", "configmaps", "-n", env, &account]));
    assert!(!can(&cp, &["create", "configmaps", "-n", other, &account]));
    assert!(!can(&cp, &["create", "clusterroles", &account]));
    let app = format!("--as=system:serviceaccount:{env}:app");
    assert!(can(&cp, &["get", "secrets", "-n", env, &app]));
    assert!(!can(&cp, &["get", "secrets", "-n", other, &app]));
    assert_eq!(
        writers_of(&cp, "configmaps", env, "app"),
        vec![format!("system:serviceaccount:{env}:sprout-env")],
        "namespaced objects are written as the environment's account"
    );

    expect_exit(&repo, &cp, &["down", env], 0);
    assert!(!cp.exists("clusterrole", "", &format!("secrets-{env}")));
    cp.kubectl_ok(&["delete", "namespace", other, "--wait=false"]);
}

/// Whether a namespace is deleted or being deleted.
pub fn gone_or_going(cp: &ControlPlane, namespace: &str) -> bool {
    let out = cp.kubectl(&[
        "get",
        "namespace",
        namespace,
        "-o",
        "jsonpath={.status.phase}",
    ]);
    !out.status.success() || String::from_utf8_lossy(&out.stdout) == "Terminating"
}

/// The users that wrote (create, patch, update) an object, as the audit log names them.
fn writers_of(cp: &ControlPlane, resource: &str, namespace: &str, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(cp.kubeconfig.parent().unwrap().join("audit.log"))
        .unwrap_or_default();
    let mut users: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| {
            e["objectRef"]["resource"] == resource
                && e["objectRef"]["namespace"] == namespace
                && e["objectRef"]["name"] == name
                && matches!(e["verb"].as_str(), Some("create" | "patch" | "update"))
                && !e["requestURI"]
                    .as_str()
                    .is_some_and(|u| u.contains("dryRun"))
        })
        .map(|e| {
            e["impersonatedUser"]["username"]
                .as_str()
                .or(e["user"]["username"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    users.dedup();
    users
}

#[test]
fn two_projects_with_an_environment_of_the_same_name_never_touch_each_other() {
    let cp = control_plane();
    let env = &unique("tenancy-pr");
    let (a, b) = (&unique("proj-a"), &unique("proj-b"));
    let overlay = |ns: &str| format!("  overlay: {{namespace: {ns}}}\n");
    let (ns_a, ns_b) = (&format!("{env}-a"), &format!("{env}-b"));
    let two = format!("{APP}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: extra}}\n");
    let mut repo_a = tenant(a, env, "", &two, &overlay(ns_a));
    let mut repo_b = tenant(b, env, "", &two, &overlay(ns_b));
    sync_json(&repo_a, &cp, env);
    sync_json(&repo_b, &cp, env);

    // B pointed at A's namespace: refused, naming A, nothing changed.
    let intruder = tenant(b, env, "", APP, &overlay(ns_a));
    let (_, stderr) = expect_exit(&intruder, &cp, &["sync", env], 1);
    assert!(stderr.contains(&format!("project `{a}`")), "{stderr}");
    let (_, stderr) = expect_exit(&intruder, &cp, &["down", env], 1);
    assert!(stderr.contains(&format!("project `{a}`")), "{stderr}");
    assert!(cp.exists("configmap", ns_a, "extra"));

    // Each prunes its own.
    repo_a.write("deploy/app.yaml", APP);
    repo_a.commit("no extra");
    let report = sync_json(&repo_a, &cp, env);
    assert_eq!(
        names(&report, "pruned"),
        vec![format!("ConfigMap/{ns_a}/extra")]
    );
    assert!(cp.exists("configmap", ns_b, "extra"));
    repo_b.write("deploy/app.yaml", APP);
    repo_b.commit("no extra");
    sync_json(&repo_b, &cp, env);

    expect_exit(&repo_a, &cp, &["down", env], 0);
    assert!(gone_or_going(&cp, ns_a));
    assert!(cp.exists("configmap", ns_b, "app"));
    assert!(cp.exists("configmap", ns_b, "sprout-inventory"));
    expect_exit(&repo_b, &cp, &["down", env], 0);
    assert!(!cp.exists("configmap", ns_b, "app"));
}

#[test]
fn down_keeps_a_foreign_object_an_opted_out_one_and_their_namespace() {
    let cp = control_plane();
    let env = &unique("tenancy-down");
    let repo = tenant(&unique("proj-down"), env, "", APP, "");
    sync_json(&repo, &cp, env);
    cp.kubectl_ok(&["create", "configmap", "foreign", "-n", env]);
    cp.kubectl_ok(&[
        "annotate",
        "configmap",
        "app",
        "-n",
        env,
        "sprout.dev/prune=disabled",
    ]);
    let (stdout, _) = expect_exit(&repo, &cp, &["down", env], 0);
    assert!(
        stdout.contains(&format!(
            "kept     Namespace/{env} (it holds objects sprout did not apply or must keep: ConfigMap/{env}/app, ConfigMap/{env}/foreign)"
        )),
        "{stdout}"
    );
    assert!(cp.exists("namespace", env, env));
    assert!(cp.exists("configmap", env, "foreign"));
    assert!(cp.exists("configmap", env, "app"));
    assert!(
        !cp.exists("serviceaccount", env, "app"),
        "what sprout applied goes"
    );
    assert!(!cp.exists("configmap", env, "sprout-inventory"));
    assert!(
        !cp.exists("rolebinding", env, "sprout-env"),
        "the environment's identity goes with its inventory"
    );
    assert!(!cp.exists("lease", env, "sprout-lock"), "and its lock");
    cp.kubectl_ok(&["delete", "namespace", env, "--wait=false"]);
}

#[test]
fn a_failed_inventory_write_stops_the_sync_and_leaves_no_namespace() {
    let cp = control_plane();
    let env = &unique("tenancy-inv");
    // A webhook that cannot be reached and fails closed, for ConfigMaps labelled for this
    // environment: the first of them sprout writes is its inventory.
    let (ip, port, calls) = crate::network::listener_in_service_range();
    let hook_ns = &format!("{env}-hook");
    cp.kubectl_ok(&["create", "namespace", hook_ns]);
    cp.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: hook, namespace: {hook_ns}}}\nspec: {{clusterIP: {ip}, ports: [{{port: {port}}}]}}\n---\n\
             apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: {env}}}\n\
             webhooks:\n- name: deny.{env}.sprout.test\n  admissionReviewVersions: [v1]\n  sideEffects: None\n  \
             failurePolicy: Fail\n  timeoutSeconds: 5\n  objectSelector: {{matchLabels: {{sprout.dev/environment: {env}}}}}\n  \
             clientConfig:\n    service: {{name: hook, namespace: {hook_ns}, port: {port}}}\n  \
             rules: [{{operations: [CREATE, UPDATE], apiGroups: [\"\"], apiVersions: [v1], resources: [configmaps]}}]\n"
        ),
    );
    let repo = tenant(&unique("proj-inv"), env, "", APP, "");
    let (_, stderr) = expect_exit(&repo, &cp, &["sync", env], 1);
    cp.kubectl_ok(&["delete", "validatingwebhookconfiguration", env]);
    cp.kubectl_ok(&["delete", "namespace", hook_ns, "--wait=false"]);
    assert!(stderr.contains("write the inventory"), "{stderr}");
    assert!(calls.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(
        !cp.exists("serviceaccount", env, "app"),
        "nothing is applied before the inventory records it"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while cp.exists("namespace", env, env) {
        assert!(Instant::now() < deadline, "namespace {env} is left behind");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A sharded inventory (a small shard size, so a few dozen objects need three ConfigMaps):
/// synced, pruned down to fewer shards, and gone with `down`.
#[test]
fn the_inventory_is_sharded_and_every_shard_is_read_pruned_and_deleted() {
    let cp = control_plane();
    let env = &unique("tenancy-shard");
    let many = |n: usize| -> String {
        (0..n)
            .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i:03}}}\n"))
            .collect::<Vec<_>>()
            .join("---\n")
    };
    let mut repo = tenant(&unique("proj-shard"), env, "", &many(90), "");
    let shards = |cp: &ControlPlane| -> usize {
        cp.kubectl_ok(&[
            "get",
            "configmaps",
            "-n",
            env,
            "-l",
            &format!("sprout.dev/inventory={env}"),
            "-o",
            "name",
        ])
        .lines()
        .count()
    };
    let run = |repo: &TestRepo, args: &[&str]| {
        let output = crate::cluster::with_kubeconfig(&mut repo.sprout(), &cp)
            .env("SPROUT_INVENTORY_SHARD_BYTES", "4096")
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            crate::util::stderr_of(&output)
        );
        crate::util::stdout_of(&output)
    };
    run(&repo, &["sync", env, "--timeout", "30s"]);
    assert!(shards(&cp) >= 3, "{}", shards(&cp));
    let status = run(&repo, &["status", env]);
    assert!(!status.contains("no longer desired"), "{status}");
    repo.write("deploy/app.yaml", &many(10));
    repo.commit("fewer");
    let stdout = run(&repo, &["sync", env, "--timeout", "30s"]);
    assert!(
        stdout.contains("50 pruned") || stdout.contains("pruned"),
        "{stdout}"
    );
    assert!(!cp.exists("configmap", env, "c059"));
    assert_eq!(shards(&cp), 1);
    run(&repo, &["down", env]);
    assert!(!cp.exists("configmap", env, "c000"));
}

/// 20,000 small objects: sync and down. Too slow for CI on a shared machine; run with
/// `SPROUT_TEST_KUBECONFIG=... cargo nextest run --run-ignored only twenty_thousand`.
#[test]
#[ignore]
fn twenty_thousand_objects_sync_and_go_down() {
    let cp = control_plane();
    let env = &unique("tenancy-20k");
    let text = (0..20_000)
        .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i:05}}}\n"))
        .collect::<Vec<_>>()
        .join("---\n");
    let repo = tenant(&unique("proj-20k"), env, "", &text, "");
    let started = Instant::now();
    let output = crate::cluster::with_kubeconfig(&mut repo.sprout(), &cp)
        .args(["sync", env, "--no-wait"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        crate::util::stderr_of(&output)
    );
    eprintln!("sync of 20,000 objects: {:?}", started.elapsed());
    let parts = cp.kubectl_ok(&[
        "get",
        "configmaps",
        "-n",
        env,
        "-l",
        &format!("sprout.dev/inventory={env}"),
        "-o",
        "name",
    ]);
    assert!(parts.lines().count() > 1, "{parts}");
    let started = Instant::now();
    expect_exit(&repo, &cp, &["down", env], 0);
    eprintln!("down of 20,000 objects: {:?}", started.elapsed());
}

#[test]
fn two_forks_share_a_webhook_and_a_node_port_and_a_third_tenant_never_meets_them() {
    let cp = control_plane();
    let (first, second, third) = (
        &unique("tenancy-w1"),
        &unique("tenancy-w2"),
        &unique("tenancy-w3"),
    );
    let project = &unique("proj-hooks");
    // The webhook's Service has no endpoint: a call fails, and fails the write (Fail).
    let hooked = format!(
        "{APP}---\napiVersion: v1\nkind: Service\nmetadata: {{name: hook}}\nspec: {{ports: [{{port: 443}}]}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{type: NodePort, ports: [{{port: 80, nodePort: 30918}}]}}\n---\n\
         apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: guard}}\n\
         webhooks:\n- name: guard.sprout.test\n  admissionReviewVersions: [v1]\n  sideEffects: None\n  failurePolicy: Fail\n  timeoutSeconds: 3\n  \
         clientConfig: {{service: {{name: hook, namespace: default}}}}\n  \
         rules: [{{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [configmaps]}}]\n"
    );
    let one = tenant(project, first, ALLOW_ALL, &hooked, "");
    let two = tenant(project, second, ALLOW_ALL, &hooked, "");
    sync_json(&one, &cp, first);
    sync_json(&two, &cp, second);
    for env in [first, second] {
        let port = cp.kubectl_ok(&[
            "get",
            "service",
            "web",
            "-n",
            env,
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ]);
        assert_ne!(port, "30918", "the fixed node port is dropped");
    }
    // Each webhook is live in its own namespace...
    let denied = cp.kubectl(&["create", "configmap", "probe", "-n", first]);
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("guard.sprout.test"));
    // ...and never called for a third tenant's writes.
    let three = tenant(project, third, "", APP, "");
    let report = sync_json(&three, &cp, third);
    assert!(names(&report, "created").contains(&format!("ConfigMap/{third}/app")));
    cp.kubectl_ok(&["create", "configmap", "probe", "-n", third]);
    cp.kubectl_ok(&["delete", "configmap", "probe", "-n", third]);
    for (repo, env) in [(&one, first), (&two, second), (&three, third)] {
        expect_exit(repo, &cp, &["down", env], 0);
        assert!(gone_or_going(&cp, env), "namespace {env} is deleted");
    }
}
