//! Sync converges on manifests as real repositories write them, on the real control plane: zero
//! values the server omits, values it normalizes, fields it drops and ports without a protocol
//! cost no write on a no-op sync, and `status`, `diff` and `sync` agree; objects whose change
//! touches an immutable field are recreated when they allow it, and refused (before any write,
//! in a few lines) when they do not.

use crate::cluster::{control_plane, with_kubeconfig};
use crate::sync::{expect_exit, names, project_on_control_plane, sync_json};
use crate::util::stdout_of;
use serde_json::Value;

/// Objects written the way real repositories write them.
const AS_WRITTEN: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  creationTimestamp: null
spec:
  minReadySeconds: 0
  paused: false
  selector: {matchLabels: {app: web}}
  strategy: {}
  template:
    metadata:
      labels: {app: web}
      creationTimestamp: null
    spec:
      containers:
      - name: web
        image: nginx:1.25
        args: []
        env: []
        ports:
        - containerPort: 8080
          name: http
        resources:
          requests: {cpu: 0.5, memory: 64Mi}
          limits: {memory: 0.125Gi}
        volumeMounts:
        - name: cache
          mountPath: /cache
          readOnly: false
      volumes:
      - name: cache
        emptyDir: {}
status: {}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ipFamilyPolicy: SingleStack
  ports:
  - port: 80
    targetPort: http
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, annotations: {}}
data: {mode: git}
"#;

fn audit_writes(cp: &crate::cluster::ControlPlane, env: &str, mark: usize) -> Vec<String> {
    cp.writes_since(mark, env)
}

#[test]
fn a_sync_with_nothing_to_change_sends_no_write_on_real_manifests() {
    let cp = control_plane();
    let env = &crate::cluster::unique("converge-noop");
    let mut repo = project_on_control_plane(env, "deploy/app.yaml", AS_WRITTEN);

    let first = sync_json(&repo, &cp, env);
    assert_eq!(names(&first, "created").len(), 4, "{first}");
    let protocol = cp.kubectl_ok(&[
        "get",
        "service",
        "web",
        "-n",
        env,
        "-o",
        "jsonpath={.spec.ports[0].protocol}",
    ]);
    assert_eq!(
        protocol, "TCP",
        "the port without a protocol was applied, as TCP"
    );

    for _ in 0..2 {
        let mark = cp.audit_mark();
        let again = sync_json(&repo, &cp, env);
        assert_eq!(again["changes"]["writes"], 0, "{again}");
        assert_eq!(again["changes"]["unchanged"], 4, "{again}");
        assert_eq!(audit_writes(&cp, env, mark), Vec::<String>::new());
    }
    let (_, _) = expect_exit(&repo, &cp, &["diff", env], 0);
    let status = with_kubeconfig(&mut repo.sprout(), &cp)
        .args(["-o", "json", "status", env])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["drift"], serde_json::json!([]), "{status}");

    // A manual edit of a field git sets is drift for all three, and sync repairs only it.
    cp.kubectl_ok(&[
        "patch",
        "configmap",
        "settings",
        "-n",
        env,
        "--type",
        "merge",
        "-p",
        r#"{"data":{"mode":"manual"}}"#,
    ]);
    let (shown, _) = expect_exit(&repo, &cp, &["diff", env], 1);
    assert!(
        shown.contains(&format!("~ ConfigMap/{env}/settings")),
        "{shown}"
    );
    let status = with_kubeconfig(&mut repo.sprout(), &cp)
        .args(["-o", "json", "status", env])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        status["drift"],
        serde_json::json!([format!("ConfigMap/{env}/settings (differs)")])
    );
    let repaired = sync_json(&repo, &cp, env);
    assert_eq!(
        names(&repaired, "configured"),
        [format!("ConfigMap/{env}/settings")]
    );

    // A git change that the server sees as no change (0.5 CPU is 500m) writes nothing to the
    // objects; only the inventory records the new desired state.
    let text = std::fs::read_to_string(repo.path().join("deploy/app.yaml")).unwrap();
    repo.write("deploy/app.yaml", &text.replace("cpu: 0.5", "cpu: 500m"));
    repo.commit("same CPU, other spelling");
    let mark = cp.audit_mark();
    let same = sync_json(&repo, &cp, env);
    assert_eq!(same["changes"]["unchanged"], 4, "{same}");
    let (lock, writes) = cp.lock_and_other_writes_since(mark, env);
    assert!(
        writes.len() == 1 && writes[0].contains("configmaps/sprout-inventory"),
        "{writes:?}"
    );
    // A write needs the environment's lock: taken once, given up once.
    assert!(
        lock.len() == 2 && lock.iter().all(|w| w.starts_with("\"update\"")),
        "{lock:?}"
    );
}

fn job(image: &str, annotations: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations: {{{annotations}}}\nspec:\n  \
         template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: migrate\n        image: {image}\n"
    )
}

fn database(storage: &str, annotations: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\n  annotations: {{{annotations}}}\nspec:\n  \
         serviceName: db\n  selector: {{matchLabels: {{app: db}}}}\n  template:\n    metadata: {{labels: {{app: db}}}}\n    \
         spec:\n      containers:\n      - name: db\n        image: postgres:16\n  volumeClaimTemplates:\n  \
         - metadata: {{name: data}}\n    spec:\n      accessModes: [ReadWriteOnce]\n      \
         resources: {{requests: {{storage: {storage}}}}}\n"
    )
}

fn uid_of(cp: &crate::cluster::ControlPlane, kind: &str, env: &str, name: &str) -> String {
    cp.kubectl_ok(&[
        "get",
        kind,
        name,
        "-n",
        env,
        "-o",
        "jsonpath={.metadata.uid}",
    ])
}

#[test]
fn immutable_changes_recreate_what_allows_it_and_refuse_the_rest_before_any_write() {
    let cp = control_plane();
    let env = &crate::cluster::unique("converge-immutable");
    let mut repo = project_on_control_plane(
        env,
        "deploy/app.yaml",
        &format!("{}---\n{}", job("busybox:1.36", ""), database("1Gi", "")),
    );
    sync_json(&repo, &cp, env);
    let job_uid = uid_of(&cp, "job", env, "migrate");

    // A new image for the Job (its template cannot change): deleted and created again.
    repo.write(
        "deploy/app.yaml",
        &format!("{}---\n{}", job("busybox:1.37", ""), database("1Gi", "")),
    );
    repo.commit("new migration image");
    let output = with_kubeconfig(&mut repo.sprout(), &cp)
        .args(["sync", env, "--timeout", "30s"])
        .output()
        .unwrap();
    let table = stdout_of(&output);
    assert!(output.status.success(), "{table}");
    assert!(
        table.contains(&format!("recreated Job/{env}/migrate")),
        "{table}"
    );
    assert_ne!(uid_of(&cp, "job", env, "migrate"), job_uid);
    let image = cp.kubectl_ok(&[
        "get",
        "job",
        "migrate",
        "-n",
        env,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "busybox:1.37");

    // A StatefulSet's volumeClaimTemplates: refused, in a few lines, before any write.
    repo.write(
        "deploy/app.yaml",
        &format!("{}---\n{}", job("busybox:1.38", ""), database("2Gi", "")),
    );
    repo.commit("bigger disks, new image");
    let mark = cp.audit_mark();
    let (_, stderr) = expect_exit(&repo, &cp, &["sync", env], 1);
    assert!(
        stderr.contains(&format!(
            "StatefulSet/{env}/db: spec.volumeClaimTemplates[0].spec.resources.requests.storage \
             cannot change once created"
        )) && stderr.contains("sprout.dev/sync-options: Replace=true"),
        "{stderr}"
    );
    assert!(stderr.len() < 1000, "a bounded message: {stderr}");
    assert_eq!(cp.writes_since(mark, env), Vec::<String>::new());

    // Opted in: recreated. The Job, marked to survive prune, is refused with the reason.
    let db_uid = uid_of(&cp, "statefulset", env, "db");
    repo.write(
        "deploy/app.yaml",
        &format!(
            "{}---\n{}",
            job("busybox:1.38", "helm.sh/resource-policy: keep"),
            database("2Gi", "sprout.dev/sync-options: Replace=true")
        ),
    );
    repo.commit("opt in");
    let (_, stderr) = expect_exit(&repo, &cp, &["sync", env], 1);
    assert!(
        stderr.contains(&format!("Job/{env}/migrate: spec.template cannot change once created; it is marked to survive prune (helm.sh/resource-policy: keep)")),
        "{stderr}"
    );
    repo.write(
        "deploy/app.yaml",
        &format!(
            "{}---\n{}",
            job("busybox:1.38", ""),
            database("2Gi", "argocd.argoproj.io/sync-options: Replace=true")
        ),
    );
    repo.commit("opt in, the Argo CD way");
    let report = sync_json(&repo, &cp, env);
    assert_eq!(
        names(&report, "recreated"),
        [
            format!("Job/{env}/migrate"),
            format!("StatefulSet/{env}/db")
        ]
    );
    assert_ne!(uid_of(&cp, "statefulset", env, "db"), db_uid);
    // Kubernetes leaves the claims made from the old templates as they are: said once.
    assert_eq!(
        report["changes"]["notes"],
        serde_json::json!([format!(
            "StatefulSet/{env}/db: recreated with new volumeClaimTemplates, but its existing PersistentVolumeClaims keep their old size and spec (Kubernetes does not change them); delete them (and their data) to have them made anew, or resize them if their StorageClass allows expansion"
        )]),
        "{report}"
    );
    let mark = cp.audit_mark();
    let again = sync_json(&repo, &cp, env);
    assert_eq!(again["changes"]["writes"], 0, "{again}");
    assert_eq!(cp.writes_since(mark, env), Vec::<String>::new());
}

/// Each kind's refusal of an immutable change, in the words the server uses for it (a
/// selector, a binding's roleRef, a StatefulSet's serviceName where the server names only
/// `spec`): every object is named with its field, before any write.
#[test]
fn immutable_changes_are_named_by_their_fields_for_every_kind() {
    let cp = control_plane();
    let env = &crate::cluster::unique("converge-fields");
    let objects = |label: &str, role: &str, service: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  selector: {{matchLabels: {{app: web, tier: {label}}}}}\n  \
             template:\n    metadata: {{labels: {{app: web, tier: {label}}}}}\n    spec: {{containers: [{{name: web, image: nginx}}]}}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: readers}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\nsubjects: []\n---\n\
             apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db}}\nspec:\n  serviceName: {service}\n  replicas: 1\n  \
             selector: {{matchLabels: {{app: db}}}}\n  template:\n    metadata: {{labels: {{app: db}}}}\n    \
             spec: {{containers: [{{name: db, image: postgres:16}}]}}\n"
        )
    };
    let mut repo = project_on_control_plane(env, "deploy/app.yaml", &objects("a", "view", "db"));
    sync_json(&repo, &cp, env);
    // replicas may change: it is not named beside serviceName.
    let changed = objects("b", "edit", "database").replace("replicas: 1", "replicas: 2");
    repo.write("deploy/app.yaml", &changed);
    repo.commit("immutable changes");
    let mark = cp.audit_mark();
    let (_, stderr) = expect_exit(&repo, &cp, &["sync", env], 1);
    for line in [
        format!("Deployment/{env}/web: spec.selector cannot change once created"),
        format!("RoleBinding/{env}/readers: roleRef cannot change once created"),
        format!("StatefulSet/{env}/db: spec.serviceName cannot change once created"),
    ] {
        assert!(stderr.contains(&line), "missing «{line}» in:\n{stderr}");
    }
    assert!(stderr.len() < 1500, "a bounded message: {stderr}");
    assert_eq!(cp.writes_since(mark, env), Vec::<String>::new());
}
