//! `sprout up` and `sprout down` with the kind and minikube providers, through stand-in
//! executables on PATH (tests/standins) that record their argv and hand back a kubeconfig for
//! the real test control plane, so provisioning, sync and status run end to end.

use crate::cluster::{ControlPlane, control_plane, unique};
use crate::util::{TestRepo, stderr_of, stdout_of};
use serde_json::Value;
use std::path::{Path, PathBuf};

const PRODUCTION: &str = "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {name: production}\n\
                          spec:\n  protected: true\n  source: {ref: main, path: deploy}\n";
const APP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {greeting: hello}\n---\n\
                   apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec:\n  replicas: 3\n  \
                   selector: {matchLabels: {app: app}}\n  template:\n    metadata: {labels: {app: app}}\n    spec:\n      \
                   containers:\n      - name: app\n        image: registry.example.com/app:v1\n        \
                   resources: {requests: {cpu: 100m, memory: 64Mi}}\n";

struct StandIns {
    state: tempfile::TempDir,
    log: PathBuf,
}

impl StandIns {
    fn new() -> Self {
        let state = tempfile::tempdir().unwrap();
        let log = state.path().join("argv.jsonl");
        StandIns { state, log }
    }

    /// `sprout` in `repo` with the stand-ins first on PATH.
    fn sprout(&self, repo: &TestRepo, cp: &ControlPlane) -> assert_cmd::Command {
        let standins = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standins");
        let path = format!("{}:{}", standins.display(), std::env::var("PATH").unwrap());
        let mut cmd = repo.sprout();
        cmd.env("PATH", path)
            .env("SPROUT_STANDIN_LOG", &self.log)
            .env("SPROUT_STANDIN_STATE", self.state.path().join("clusters"))
            .env("SPROUT_STANDIN_KUBECONFIG", &cp.kubeconfig)
            .env("HOME", self.state.path());
        cmd
    }

    /// `sprout -o json status env`.
    fn status_json(&self, repo: &TestRepo, cp: &ControlPlane, env: &str) -> Value {
        let output = self
            .sprout(repo, cp)
            .args(["-o", "json", "status", env])
            .output()
            .unwrap();
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Every recorded invocation, as argv lists.
    fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A project whose production is a ConfigMap and a Deployment, with `branch` next to main.
fn project_with_branch(branch: &str) -> TestRepo {
    let mut repo = TestRepo::new();
    repo.write("deploy/app.yaml", APP)
        .write("environments/production.yaml", PRODUCTION);
    repo.commit("production");
    repo.branch(branch);
    repo.write(
        "deploy/app.yaml",
        &APP.replace("greeting: hello", "greeting: hello from the branch"),
    );
    repo.commit("branch change");
    repo.checkout("main");
    repo
}

/// environments/<env>.yaml: a fork of production on a kind cluster.
fn write_kind_environment(repo: &TestRepo, env: &str) {
    repo.write(
        &format!("environments/{env}.yaml"),
        &format!("apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  from: production\n  cluster: {{provider: kind}}\n"),
    );
}

/// A kind environment `<name>-<suffix>` (a fork of production following `feature/<name>`),
/// written but not brought up yet.
fn kind_environment(name: &str) -> (ControlPlane, TestRepo, StandIns, String) {
    let repo = project_with_branch(&format!("feature/{name}"));
    let env = unique(name);
    write_kind_environment(&repo, &env);
    (control_plane(), repo, StandIns::new(), env)
}

fn up_json(standins: &StandIns, repo: &TestRepo, cp: &ControlPlane, args: &[&str]) -> Value {
    let output = standins
        .sprout(repo, cp)
        .args(["-o", "json", "up"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "up {args:?}: {}",
        stderr_of(&output)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `sprout down env` with the stand-ins, which must succeed and say `expected`.
fn down_saying(standins: &StandIns, repo: &TestRepo, cp: &ControlPlane, env: &str, expected: &str) {
    let down = standins
        .sprout(repo, cp)
        .args(["down", env])
        .output()
        .unwrap();
    assert!(down.status.success(), "{}", stderr_of(&down));
    assert!(stdout_of(&down).contains(expected), "{}", stdout_of(&down));
}

/// `main"#x` is a valid branch name; written raw into a spec template it closed the quotes and
/// commented out the rest, so the environment followed `main`.
#[test]
fn a_branch_name_holding_quotes_and_a_comment_is_followed_exactly() {
    let cp = control_plane();
    let branch = format!("{}\"#x", unique("main"));
    let repo = project_with_branch(&branch);
    let standins = StandIns::new();
    let up = up_json(
        &standins,
        &repo,
        &cp,
        &["--branch", &branch, "--provider", "kind"],
    );
    let env = up["environment"].as_str().unwrap().to_string();
    let text =
        std::fs::read_to_string(repo.path().join(format!("environments/{env}.yaml"))).unwrap();
    let spec: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(spec["spec"]["source"]["ref"], branch.as_str(), "{text}");
    assert_eq!(
        spec["metadata"]["labels"]["sprout.dev/branch"],
        branch.as_str()
    );
    let greeting = cp.kubectl_ok(&[
        "get",
        "configmap",
        "app",
        "-n",
        &env,
        "-o",
        "jsonpath={.data.greeting}",
    ]);
    assert_eq!(greeting, "hello from the branch");
    down_saying(&standins, &repo, &cp, &env, "deleted");
}

#[test]
fn kind_up_is_idempotent_hostile_branches_never_reach_a_shell_and_down_removes_it() {
    let cp = control_plane();
    // Valid as a git branch, and a command injection if it ever reached a shell.
    let branch = format!(
        "feat/$(touch${{IFS}}pwned);`touch${{IFS}}pwned`;{}",
        unique("x")
    );
    let repo = project_with_branch(&branch);
    let pwned = repo.path().join("pwned");
    let standins = StandIns::new();

    let first = up_json(
        &standins,
        &repo,
        &cp,
        &["--branch", &branch, "--provider", "kind"],
    );
    let env = first["environment"].as_str().unwrap().to_string();
    assert!(env.starts_with("feat-touch-") && env.len() <= 40, "{env}");
    assert_eq!(first["specWritten"], true);
    assert_eq!(
        first["report"]["changes"]["created"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "Namespace, ConfigMap, Deployment"
    );
    let spec =
        std::fs::read_to_string(repo.path().join(format!("environments/{env}.yaml"))).unwrap();
    let parsed: serde_yaml::Value = serde_yaml::from_str(&spec).unwrap();
    assert_eq!(parsed["spec"]["cluster"]["provider"], "kind", "{spec}");
    assert_eq!(
        parsed["metadata"]["labels"]["sprout.dev/origin"], "branch",
        "{spec}"
    );

    let create = standins
        .calls()
        .into_iter()
        .find(|c| c[1..3] == ["create", "cluster"])
        .expect("kind create cluster ran");
    let cluster = first["cluster"]["name"].as_str().unwrap();
    assert_eq!(&create[3..5], ["--name", cluster]);
    assert!(
        cluster.len() <= 50
            && cluster
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "{cluster}"
    );
    assert_eq!(create[5], "--config");
    assert_eq!(create[7], "--kubeconfig");
    assert!(
        create[8].contains(".sprout/clusters/"),
        "sprout's own kubeconfig, never the user's: {create:?}"
    );
    assert!(!pwned.exists(), "the branch name reached a shell");
    let greeting = cp.kubectl_ok(&[
        "get",
        "configmap",
        "app",
        "-n",
        &env,
        "-o",
        "jsonpath={.data.greeting}",
    ]);
    assert_eq!(greeting, "hello from the branch");

    // A second `up` creates nothing and changes nothing.
    let second = up_json(&standins, &repo, &cp, &[&env]);
    assert_eq!(second["specWritten"], false);
    assert_eq!(second["report"]["changes"]["unchanged"], 3);
    let creates = standins
        .calls()
        .iter()
        .filter(|c| c[1..3] == ["create", "cluster"])
        .count();
    assert_eq!(creates, 1);

    let status = standins.status_json(&repo, &cp, &env);
    assert_eq!(status["phase"], "synced");
    assert_eq!(status["cluster"]["provider"], "kind");

    down_saying(
        &standins,
        &repo,
        &cp,
        &env,
        &format!("cluster {cluster} deleted"),
    );
    let delete = standins
        .calls()
        .into_iter()
        .find(|c| c[1..3] == ["delete", "cluster"])
        .expect("kind delete cluster ran");
    assert_eq!(&delete[3..5], ["--name", cluster]);
    assert!(
        !repo
            .path()
            .join(format!("environments/{env}.yaml"))
            .exists(),
        "the spec goes last"
    );
    assert!(!repo.path().join(format!(".sprout/clusters/{env}")).exists());
    assert!(!pwned.exists());
}

#[test]
fn minikube_up_with_a_developer_environment_and_down() {
    let cp = control_plane();
    let developer = unique("dana");
    let repo = project_with_branch("feature/search");
    let standins = StandIns::new();
    // A developer environment follows the branch checked out now.
    repo.checkout("feature/search");
    let up = up_json(
        &standins,
        &repo,
        &cp,
        &[
            "--developer",
            &developer,
            "--provider",
            "minikube",
            "--ttl",
            "2h",
            "--merge-kubeconfig",
        ],
    );
    let env = up["environment"].as_str().unwrap().to_string();
    assert_eq!(env, format!("dev-{developer}"));
    let spec =
        std::fs::read_to_string(repo.path().join(format!("environments/{env}.yaml"))).unwrap();
    let parsed: serde_yaml::Value = serde_yaml::from_str(&spec).unwrap();
    assert_eq!(parsed["spec"]["source"]["ref"], "feature/search", "{spec}");
    assert_eq!(parsed["spec"]["lifecycle"]["ttl"], "2h", "{spec}");
    let labels = &parsed["metadata"]["labels"];
    assert_eq!(labels["sprout.dev/owner"], developer.as_str(), "{spec}");
    assert_eq!(labels["sprout.dev/origin"], "developer", "{spec}");
    assert_eq!(labels["sprout.dev/developer"], developer.as_str(), "{spec}");
    let start = standins
        .calls()
        .into_iter()
        .find(|c| c[1] == "start")
        .expect("minikube start ran");
    assert_eq!(&start[2..4], ["--profile", &format!("sprout-{env}")]);
    let labels = format!(
        "--extra-config=kubelet.node-labels=app.kubernetes.io/managed-by=sprout,sprout.dev/environment={env}"
    );
    // The project's identity too (made on first use).
    assert!(
        start
            .iter()
            .any(|a| a.starts_with(&labels) && a.contains(",sprout.dev/project=")),
        "{start:?}"
    );
    // Resources scaled, replicas capped by the developer template.
    let replicas = cp.kubectl_ok(&[
        "get",
        "deploy",
        "app",
        "-n",
        &env,
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "1");
    // Only on request, the user's kubeconfig gains context sprout-<env>; down takes it away.
    let user_kubeconfig = standins.state.path().join(".kube/config");
    let merged = std::fs::read_to_string(&user_kubeconfig).unwrap();
    assert!(merged.contains(&format!("name: sprout-{env}")), "{merged}");
    standins
        .sprout(&repo, &cp)
        .args(["down", &env])
        .assert()
        .success();
    let after = std::fs::read_to_string(&user_kubeconfig).unwrap();
    assert!(!after.contains(&format!("sprout-{env}")), "{after}");
    assert!(
        standins
            .calls()
            .iter()
            .any(|c| c[1] == "delete" && c[3] == format!("sprout-{env}"))
    );
}

#[test]
fn an_interrupted_up_is_finished_by_the_next() {
    let (cp, repo, standins, env) = kind_environment("resume");
    // The cluster is created, then the run dies before it has a kubeconfig and before any sync.
    let failed = standins
        .sprout(&repo, &cp)
        .env("SPROUT_STANDIN_FAIL", "get kubeconfig")
        .args(["up", &env])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1), "{}", stderr_of(&failed));
    assert!(
        stderr_of(&failed).contains(&format!("environment {env}: cluster: kind:")),
        "{}",
        stderr_of(&failed)
    );
    assert!(!cp.exists("namespace", &env, &env));

    let resumed = up_json(&standins, &repo, &cp, &[&env]);
    assert_eq!(
        resumed["report"]["changes"]["created"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let creates = standins
        .calls()
        .iter()
        .filter(|c| c[1..3] == ["create", "cluster"])
        .count();
    assert_eq!(creates, 1, "the cluster from the first run is reused");
    standins
        .sprout(&repo, &cp)
        .args(["down", &env])
        .assert()
        .success();
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let cp = control_plane();
    let repo = project_with_branch("feature/preview");
    let standins = StandIns::new();
    let output = standins
        .sprout(&repo, &cp)
        .args([
            "up",
            "--pr",
            "4242",
            "--branch",
            "feature/preview",
            "--provider",
            "kind",
            "--dry-run",
            "--image",
            "app=ghcr.io/acme/app:pr-4242",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let plan = stdout_of(&output);
    assert!(
        plan.contains("plan for pr-4242 (dry run: nothing was changed)"),
        "{plan}"
    );
    assert!(
        plan.contains("environments/pr-4242.yaml (would be written)"),
        "{plan}"
    );
    assert!(plan.contains("kind cluster sprout-pr-4242"), "{plan}");
    assert!(plan.contains("3 objects into namespace pr-4242"), "{plan}");
    assert!(!repo.path().join("environments/pr-4242.yaml").exists());
    assert!(!repo.path().join(".sprout").exists());
    assert!(
        standins.calls().is_empty(),
        "no provider command ran: {:?}",
        standins.calls()
    );
}

#[test]
fn invalid_names_and_bad_images_are_usage_errors_before_anything_happens() {
    let cp = control_plane();
    let repo = project_with_branch("feature/x");
    let standins = StandIns::new();
    for args in [
        vec!["up", "Not_Valid", "--provider", "kind"],
        vec![
            "up",
            "--pr",
            "5",
            "--branch",
            "feature/x",
            "--provider",
            "kind",
            "--image",
            "no-equals-sign",
        ],
        vec![
            "up",
            "--pr",
            "6",
            "--branch",
            "feature/x",
            "--provider",
            "kind",
            "--image",
            "nothing-matches=x:1",
        ],
        vec!["up", "production", "--provider", "kind"],
        vec!["up", "production", "--image", "app=x:1"],
    ] {
        let output = standins.sprout(&repo, &cp).args(&args).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr_of(&output)
        );
    }
    assert!(standins.calls().is_empty(), "{:?}", standins.calls());
    assert!(!repo.path().join("environments/pr-5.yaml").exists());
    assert!(!repo.path().join("environments/pr-6.yaml").exists());
}

#[test]
fn list_owned_finds_the_clusters_sprout_made_and_no_others() {
    let (cp, repo, standins, env) = kind_environment("owned");
    up_json(&standins, &repo, &cp, &[&env]);
    // Another team's kind cluster on the same machine.
    let config = standins.state.path().join("other.yaml");
    std::fs::write(
        &config,
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n",
    )
    .unwrap();
    let kind = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standins/kind");
    let mut other = standins.sprout(&repo, &cp);
    let path = other
        .get_envs()
        .find(|(k, _)| *k == "PATH")
        .and_then(|(_, v)| v)
        .unwrap()
        .to_owned();
    let created = std::process::Command::new(&kind)
        .args(["create", "cluster", "--name", "other-team", "--config"])
        .arg(&config)
        .args(["--kubeconfig"])
        .arg(standins.state.path().join("other.kubeconfig"))
        .env("SPROUT_STANDIN_LOG", &standins.log)
        .env(
            "SPROUT_STANDIN_STATE",
            standins.state.path().join("clusters"),
        )
        .env("SPROUT_STANDIN_KUBECONFIG", &cp.kubeconfig)
        .status()
        .unwrap();
    assert!(created.success());

    // Through the library, with the stand-in as the only kind on PATH (one test per process).
    unsafe {
        std::env::set_var("PATH", path);
        std::env::set_var("SPROUT_STANDIN_LOG", &standins.log);
        std::env::set_var(
            "SPROUT_STANDIN_STATE",
            standins.state.path().join("clusters"),
        );
    }
    let project = sprout::project::Project::open(repo.path()).unwrap();
    let environment = project.environment(&env).unwrap();
    let provider =
        sprout::cluster::provider::for_environment(&project, &environment, None).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let owned: Vec<String> = runtime
        .block_on(provider.list_owned())
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(owned, [format!("sprout-{env}")]);
    other.args(["down", &env]).assert().success();
}

#[test]
fn down_refuses_to_delete_a_cluster_holding_objects_marked_to_survive() {
    let (cp, repo, standins, env) = kind_environment("keep");
    up_json(&standins, &repo, &cp, &[&env]);
    cp.kubectl_ok(&[
        "annotate",
        "configmap",
        "app",
        "-n",
        &env,
        "helm.sh/resource-policy=keep",
    ]);

    let refused = standins
        .sprout(&repo, &cp)
        .args(["down", &env])
        .output()
        .unwrap();
    let stderr = stderr_of(&refused);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "ConfigMap/{env}/app (helm.sh/resource-policy: keep)"
        )),
        "{stderr}"
    );
    assert!(
        !standins
            .calls()
            .iter()
            .any(|c| c[1..3] == ["delete", "cluster"]),
        "nothing was deleted"
    );
    assert!(
        repo.path()
            .join(format!("environments/{env}.yaml"))
            .exists()
    );
    let status = standins.status_json(&repo, &cp, &env);
    assert_eq!(
        status["phase"], "synced",
        "a refusal changes nothing, not even the phase"
    );

    standins
        .sprout(&repo, &cp)
        .args(["down", &env, "--force"])
        .assert()
        .success();
    assert!(
        standins
            .calls()
            .iter()
            .any(|c| c[1..3] == ["delete", "cluster"])
    );
}

#[test]
fn down_of_a_cluster_deleted_out_of_band_does_not_hang() {
    let (cp, repo, standins, env) = kind_environment("gone");
    up_json(&standins, &repo, &cp, &[&env]);

    // Someone ran `kind delete cluster` by hand: the cluster is gone and its API port closed.
    let cluster = format!("sprout-{env}");
    let standin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standins/kind");
    let by_hand = std::process::Command::new(&standin)
        .args(["delete", "cluster", "--name", &cluster])
        .env(
            "SPROUT_STANDIN_LOG",
            standins.state.path().join("by-hand.jsonl"),
        )
        .env(
            "SPROUT_STANDIN_STATE",
            standins.state.path().join("clusters"),
        )
        .status()
        .unwrap();
    assert!(by_hand.success());
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = repo
        .path()
        .join(format!(".sprout/clusters/{env}/kubeconfig"));
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string();
    std::fs::write(
        &kubeconfig,
        text.replace(&server, &format!("https://127.0.0.1:{closed_port}")),
    )
    .unwrap();

    let started = std::time::Instant::now();
    down_saying(
        &standins,
        &repo,
        &cp,
        &env,
        &format!("cluster {cluster} was already gone"),
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "down took {:?}",
        started.elapsed()
    );
    assert!(
        !repo
            .path()
            .join(format!("environments/{env}.yaml"))
            .exists()
    );
    assert!(
        !standins.calls().iter().any(|c| c[1] == "delete"),
        "nothing left to delete: {:?}",
        standins.calls()
    );
}

/// A CRD with `properties` under `spec`, for a group of the test's own.
fn gauges(group: &str, properties: &str, gauge_spec: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: gauges.{group}}}\n\
         spec:\n  group: {group}\n  scope: Namespaced\n  names: {{kind: Gauge, plural: gauges}}\n  versions:\n  \
         - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        \
         properties:\n          spec:\n            type: object\n            properties: {{{properties}}}\n\
         ---\napiVersion: {group}/v1\nkind: Gauge\nmetadata: {{name: g}}\nspec: {{{gauge_spec}}}\n"
    )
}

/// On a dedicated cluster CRDs are applied like everything else. A custom resource whose CRD
/// changes in the same sync is judged without a dry run (a dry run answers by the old schema,
/// which would prune the new field and call the object unchanged).
#[test]
fn a_custom_resource_changed_with_its_crd_is_applied_in_the_same_sync() {
    let cp = control_plane();
    let env = unique("crd-change");
    let group = format!("{env}.sprout.test");
    let mut repo = TestRepo::new();
    repo.write(
        "deploy/gauges.yaml",
        &gauges(&group, "size: {type: integer}", "size: 1"),
    )
    .write("environments/production.yaml", PRODUCTION);
    write_kind_environment(&repo, &env);
    repo.commit("production");
    let standins = StandIns::new();
    up_json(&standins, &repo, &cp, &[&env]);

    repo.write(
        "deploy/gauges.yaml",
        &gauges(
            &group,
            "size: {type: integer}, color: {type: string}",
            "size: 1, color: blue",
        ),
    );
    repo.commit("gauges get a color");
    let output = standins
        .sprout(&repo, &cp)
        .args(["-o", "json", "sync", &env, "--timeout", "30s"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let color = cp.kubectl_ok(&[
        "get",
        &format!("gauges.{group}"),
        "g",
        "-n",
        &env,
        "-o",
        "jsonpath={.spec.color}",
    ]);
    assert_eq!(color, "blue");
    down_saying(&standins, &repo, &cp, &env, "");
    cp.kubectl(&["delete", "crd", &format!("gauges.{group}")]);
}
