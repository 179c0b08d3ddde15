//! Teardown on a shared cluster (`down`, `sleep`, a `gc` pass) where the cluster makes it hard:
//! the claims a StatefulSet's controller made, and an aggregated API whose backend is down.

use crate::cluster::{ControlPlane, OwnControlPlane, control_plane, unique, with_kubeconfig};
use crate::sync::{expect_exit, project_on_control_plane};
use crate::tenancy::gone_or_going;
use crate::util::{TestRepo, stderr_of};
use serde_json::Value;
use std::time::{Duration, Instant};

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The aggregator answers 503 for an APIService whose Service is missing, as long as it is.
fn break_metrics_api(cp: &ControlPlane) {
    cp.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {name: v1beta1.metrics.k8s.io}\n\
         spec: {group: metrics.k8s.io, version: v1beta1, groupPriorityMinimum: 100, versionPriority: 100, \
         insecureSkipTLSVerify: true, service: {name: prometheus-adapter, namespace: monitoring}}\n",
    );
    let started = Instant::now();
    loop {
        let answer = cp.kubectl(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1"]);
        if String::from_utf8_lossy(&answer.stderr).contains("ServiceUnavailable") {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the APIService never became unavailable: {}",
            stderr_of(&answer)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs `sprout args` on `cp`, expecting exit 0 within `limit`; stdout as JSON.
fn timed_json(repo: &TestRepo, cp: &ControlPlane, args: &[&str], limit: Duration) -> Value {
    let started = Instant::now();
    let output = with_kubeconfig(&mut repo.sprout(), cp)
        .args(args)
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(output.status.success(), "{args:?}: {}", stderr_of(&output));
    assert!(took < limit, "{args:?} took {took:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `down`, `sleep` and a `gc` teardown while an aggregated API is down: the objects go at once,
/// and each namespace, whose contents cannot all be listed, is kept with the reason (a blind
/// delete could take what sprout did not apply). A control plane of its own: every other
/// test's `down` lists all groups too.
#[test]
fn down_sleep_and_gc_keep_a_namespace_they_cannot_list_and_take_seconds() {
    let own = OwnControlPlane::start();
    let cp = &own.plane;
    let env = &unique("down-503");
    let app = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n";
    let mut repo = project_on_control_plane(env, "deploy/app.yaml", app);
    let asleep = &format!("{env}-sleep");
    let expired = &format!("{env}-gc");
    for (name, lifecycle) in [(asleep, ""), (expired, "  lifecycle: {ttl: 1s}\n")] {
        repo.write(
            &format!("environments/{name}.yaml"),
            &crate::cluster::environment_on_control_plane(name, "production", lifecycle),
        );
    }
    repo.write("sprout.yaml", "gracePeriod: 1s\n");
    repo.commit("two more");
    break_metrics_api(cp);
    for name in [env, asleep, expired] {
        expect_exit(&repo, cp, &["up", name], 0);
    }
    let kept = |name: &str| {
        format!(
            "Namespace/{name} (could not list metrics.k8s.io/v1beta1: service unavailable (503), \
             so it may hold objects sprout did not apply (`sprout gc` deletes it once it can list \
             everything in it and finds only sprout's))"
        )
    };
    let limit = Duration::from_secs(30);

    let down = timed_json(&repo, cp, &["-o", "json", "down", env], limit);
    assert_eq!(
        strings(&down["objects"]["pruned"]),
        vec![format!("ConfigMap/{env}/app")]
    );
    assert_eq!(strings(&down["objects"]["kept"]), vec![kept(env)], "{down}");
    assert!(cp.exists("namespace", "", env));
    assert!(!cp.exists("configmap", env, "sprout-inventory"));
    assert!(!cp.exists("serviceaccount", env, "sprout-env"));
    assert!(!cp.exists("lease", env, "sprout-lock"), "nor its lock");
    assert!(
        !repo
            .path()
            .join(format!(".sprout/envs/{env}.json"))
            .exists()
    );
    assert!(
        !repo
            .path()
            .join(format!("environments/{env}.yaml"))
            .exists()
    );

    let slept = timed_json(&repo, cp, &["-o", "json", "sleep", asleep], limit);
    assert_eq!(
        strings(&slept["released"]["objects"]["kept"]),
        vec![kept(asleep)],
        "{slept}"
    );
    assert!(!cp.exists("configmap", asleep, "app"));

    std::thread::sleep(Duration::from_secs(2));
    let pass = timed_json(&repo, cp, &["-o", "json", "gc"], limit);
    let teardown = pass["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["environment"] == expired.as_str())
        .unwrap_or_else(|| panic!("{pass}"));
    assert_eq!(teardown["outcome"], "done", "{pass}");
    assert_eq!(
        teardown["message"],
        format!("kept {}", kept(expired)),
        "{pass}"
    );
    assert!(!cp.exists("configmap", expired, "app"));
    assert!(cp.exists("namespace", "", expired));
    assert!(!cp.exists("configmap", expired, "sprout-inventory"));

    // The namespaces kept are orphans now (their specs are gone): gc keeps them as long as it
    // cannot list them, and deletes them once it can.
    let stays = format!(
        "namespace {env} (envtest) belongs to no environment but stays: could not list metrics.k8s.io/v1beta1"
    );
    assert!(pass["notes"].to_string().contains(&stays), "{pass}");
    std::thread::sleep(Duration::from_secs(2));
    let again = timed_json(&repo, cp, &["-o", "json", "gc"], limit);
    assert_eq!(again["actions"], serde_json::json!([]), "{again}");
    assert!(cp.exists("namespace", "", env));
    cp.kubectl_ok(&["delete", "apiservice", "v1beta1.metrics.k8s.io"]);
    timed_json(&repo, cp, &["-o", "json", "gc"], limit);
    std::thread::sleep(Duration::from_secs(2));
    let repaired = timed_json(&repo, cp, &["-o", "json", "gc"], limit);
    let removed: Vec<&str> = repaired["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "delete-orphan" && a["outcome"] == "done")
        .filter_map(|a| a["environment"].as_str())
        .collect();
    assert_eq!(removed, vec![env.as_str(), expired.as_str()], "{repaired}");
    assert!(gone_or_going(cp, env) && gone_or_going(cp, expired));
}

/// A StatefulSet `web` with two claim templates, its pods made in parallel (the control plane
/// has no nodes: no pod gets ready, so an ordered StatefulSet would stop at the first).
const STATEFULSET: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n\
    spec: {clusterIP: None, selector: {app: web}, ports: [{port: 80, protocol: TCP}]}\n---\n\
    apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web}\nspec:\n  serviceName: web\n  \
    replicas: 2\n  podManagementPolicy: Parallel\n  selector: {matchLabels: {app: web}}\n  \
    template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}\n  \
    volumeClaimTemplates:\n  \
    - metadata: {name: data, labels: {tier: db}}\n    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n  \
    - metadata: {name: logs}\n    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n";

const CLAIMS: [&str; 4] = ["data-web-0", "data-web-1", "logs-web-0", "logs-web-1"];

/// Syncs `env` (without waiting for health: no pod runs here) and waits until the StatefulSet's
/// controller has made its claims.
fn sync_and_wait_for_claims(repo: &TestRepo, cp: &ControlPlane, env: &str) {
    expect_exit(repo, cp, &["sync", env, "--no-wait"], 0);
    let started = Instant::now();
    while !CLAIMS.iter().all(|c| cp.exists("pvc", env, c)) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the controller made no claims"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn down_json(repo: &TestRepo, cp: &ControlPlane, env: &str) -> Value {
    let (stdout, _) = expect_exit(repo, cp, &["-o", "json", "down", env], 0);
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn down_deletes_the_claims_its_statefulsets_made_and_leaves_nothing() {
    let cp = control_plane();
    let env = &unique("down-claims");
    let repo = project_on_control_plane(env, "deploy/web.yaml", STATEFULSET);
    sync_and_wait_for_claims(&repo, &cp, env);

    let report = down_json(&repo, &cp, env);
    let pruned = strings(&report["objects"]["pruned"]);
    for claim in CLAIMS {
        assert!(
            pruned.contains(&format!("PersistentVolumeClaim/{env}/{claim}")),
            "{report}"
        );
        assert!(!cp.exists("pvc", env, claim));
    }
    assert_eq!(strings(&report["objects"]["kept"]), Vec::<String>::new());
    assert!(gone_or_going(&cp, env), "nothing keeps the namespace");
}

#[test]
fn down_never_deletes_a_claim_its_statefulset_did_not_make() {
    let cp = control_plane();
    let env = &unique("down-claims-safe");
    let repo = project_on_control_plane(env, "deploy/web.yaml", STATEFULSET);
    sync_and_wait_for_claims(&repo, &cp, env);
    // Claims that are not the StatefulSet's: a name no ordinal of it has, the name of a pod it
    // does not have without the labels its controller sets, and one marked to survive.
    let claim = |name: &str, labels: &str, annotations: &str| {
        format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}, labels: {labels}, annotations: {annotations}}}\n\
             spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}\n"
        )
    };
    let decoys = [
        claim("data-web-x", "{app: web, tier: db}", "{}"),
        claim("data-web-7", "{app: web}", "{}"),
        claim("data-web-8", "{tier: db}", "{}"),
        claim("logs-web-9", "{app: web}", "{sprout.dev/prune: disabled}"),
    ];
    cp.kubectl_stdin(&["apply", "-n", env, "-f", "-"], &decoys.join("---\n"));

    let report = down_json(&repo, &cp, env);
    let pruned = strings(&report["objects"]["pruned"]);
    for claim in CLAIMS {
        assert!(
            pruned.contains(&format!("PersistentVolumeClaim/{env}/{claim}")),
            "{report}"
        );
    }
    let kept = strings(&report["objects"]["kept"]);
    assert_eq!(
        kept,
        vec![format!(
            "Namespace/{env} (it holds objects sprout did not apply or must keep: \
             PersistentVolumeClaim/{env}/data-web-7, PersistentVolumeClaim/{env}/data-web-8, \
             PersistentVolumeClaim/{env}/data-web-x, PersistentVolumeClaim/{env}/logs-web-9)"
        )],
        "{report}"
    );
    for decoy in ["data-web-x", "data-web-7", "data-web-8", "logs-web-9"] {
        assert!(
            cp.exists("pvc", env, decoy),
            "{decoy} is not the StatefulSet's"
        );
    }
    cp.kubectl_ok(&["delete", "namespace", env, "--wait=false"]);
}
