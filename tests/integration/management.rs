//! Running sprout for a team in a management cluster, on the real control plane: the cluster
//! state backend (records as Environments, resourceVersion preconditions, per-environment
//! Leases), leader election (including a partition of the leader through a proxy we cut),
//! `sprout install` and its RBAC, and `sprout state export`/`import`.

use crate::cluster::{ControlPlane, control_plane};
use crate::util::{boutique_project, sprout_in, stderr_of, stdout_of};
use serde_json::Value;
use sprout::state::leader::{self, ElectionConfig, Leadership};
use sprout::state::lock::Wait;
use sprout::state::{StateError, StateStore};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

fn unique(prefix: &str) -> String {
    let mut random = [0u8; 3];
    getrandom::fill(&mut random).unwrap();
    format!(
        "{prefix}-{}",
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// A namespace of the test's own, deleted when dropped.
struct Namespace<'a> {
    plane: &'a ControlPlane,
    name: String,
}

impl<'a> Namespace<'a> {
    fn new(plane: &'a ControlPlane, prefix: &str) -> Self {
        let name = unique(prefix);
        plane.kubectl_ok(&["create", "namespace", &name]);
        Namespace { plane, name }
    }
}

impl Drop for Namespace<'_> {
    fn drop(&mut self) {
        self.plane
            .kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
    }
}

fn kube_project(dir: &Path, project: &str, namespace: &str) -> sprout::project::Project {
    std::fs::write(
        dir.join("sprout.yaml"),
        format!("project: {project}\nstate: {{backend: kubernetes, namespace: {namespace}}}\n"),
    )
    .unwrap();
    sprout::project::Project::open(dir).unwrap()
}

#[test]
fn concurrent_writers_on_one_record_never_both_win_and_lose_no_update() {
    let plane = control_plane();
    let namespace = Namespace::new(&plane, "mgmt-writers");
    let dir = tempfile::tempdir().unwrap();
    let project = kube_project(dir.path(), "writers-1", &namespace.name);
    let store = StateStore::for_project(&project, Some(&plane.kubeconfig));

    let mut first = store.load("dev").unwrap();
    first.phase = sprout::state::Phase::Synced;
    store.save(&first).unwrap();

    // Two writers read the same version; the first write wins, the second is refused.
    let one = store.load("dev").unwrap();
    let two = store.load("dev").unwrap();
    let mut one = one;
    one.counts.created = 1;
    store.save(&one).unwrap();
    let mut two = two;
    two.counts.pruned = 1;
    let refused = store.save(&two).unwrap_err();
    assert!(
        matches!(
            refused,
            sprout::error::Error::State(StateError::Conflict { .. })
        ),
        "{refused}"
    );
    // The loser retries from the new version: both changes are there.
    let mut again = store.load("dev").unwrap();
    assert_eq!(again.counts.created, 1);
    again.counts.pruned = 1;
    store.save(&again).unwrap();
    let both = store.load("dev").unwrap();
    assert_eq!((both.counts.created, both.counts.pruned), (1, 1));

    // Four writers at once, ten increments each, through read-modify-write with retries.
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let store = StateStore::for_project(&project, Some(&plane.kubeconfig));
                for _ in 0..10 {
                    store
                        .update("dev", |state| {
                            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            state.counts.configured += 1;
                        })
                        .unwrap();
                }
            });
        }
    });
    let last = store.load("dev").unwrap();
    assert_eq!(last.counts.configured, 40, "an update was lost");
    eprintln!(
        "40 updates took {} attempts",
        attempts.load(std::sync::atomic::Ordering::Relaxed)
    );
    // What kubectl sees: the record, and the columns.
    let seen = plane.kubectl_ok(&[
        "get",
        "environments",
        "-n",
        &namespace.name,
        "dev",
        "-o",
        "jsonpath={.status.phase} {.status.record.counts.configured}",
    ]);
    assert_eq!(seen, "synced 40");
    let table = plane.kubectl_ok(&["get", "environments", "-n", &namespace.name]);
    assert!(
        table.contains("PHASE") && table.contains("NEXT-TEARDOWN"),
        "{table}"
    );
}

#[test]
fn the_environment_lock_is_a_lease_that_names_its_holder() {
    let plane = control_plane();
    let namespace = Namespace::new(&plane, "mgmt-locks");
    let dir = tempfile::tempdir().unwrap();
    let project = kube_project(dir.path(), "locks-1", &namespace.name);
    let store = StateStore::for_project(&project, Some(&plane.kubeconfig));
    let export = serde_json::json!({
        "kind": "EnvironmentRecords",
        "project": "locks-1",
        "records": [{"version": 2, "environment": "dev", "phase": "synced"}],
    });
    std::fs::write(dir.path().join("records.json"), export.to_string()).unwrap();

    let held = store.lock("dev", "hold for the test", Wait::No).unwrap();
    assert!(store.is_locked("dev"));
    let holder = plane.kubectl_ok(&[
        "get",
        "lease",
        "-n",
        &namespace.name,
        "sprout-env-dev",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert!(holder.contains(&std::process::id().to_string()), "{holder}");
    // Another process (another machine, as far as the Lease is concerned) is refused, and told
    // who holds the environment.
    let refused = sprout_in(dir.path())
        .env("KUBECONFIG", &plane.kubeconfig)
        .args(["state", "import", "records.json"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", stderr_of(&refused));
    let message = stderr_of(&refused);
    assert!(
        message.contains("being changed by another sprout run")
            && message.contains(&format!(
                "`sprout hold for the test` (pid {}",
                std::process::id()
            )),
        "{message}"
    );
    assert!(store.names().unwrap().is_empty(), "nothing was written");

    drop(held);
    assert!(
        !store.is_locked("dev"),
        "released at once, not after expiry"
    );
    let imported = sprout_in(dir.path())
        .env("KUBECONFIG", &plane.kubeconfig)
        .args(["state", "import", "records.json"])
        .output()
        .unwrap();
    assert!(imported.status.success(), "{}", stderr_of(&imported));
    assert_eq!(store.names().unwrap(), ["dev"]);
}

#[test]
fn records_exported_from_files_and_imported_into_the_cluster_list_the_same() {
    let plane = control_plane();
    let namespace = Namespace::new(&plane, "mgmt-move");
    let repo = boutique_project();
    let project = "boutique-move-1";
    std::fs::write(
        repo.path().join("sprout.yaml"),
        format!("project: {project}\n"),
    )
    .unwrap();
    std::fs::create_dir_all(repo.path().join(".sprout/envs")).unwrap();
    // A spec sprout generated (it carries its origin) moves with the records.
    let generated = "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: pr-7\n  labels: {sprout.dev/origin: pr, sprout.dev/pr: \"7\"}\nspec:\n  from: production\n";
    std::fs::write(repo.path().join("environments/pr-7.yaml"), generated).unwrap();
    for (env, phase) in [
        ("dev-alice", "synced"),
        ("pr-42", "asleep"),
        ("pr-7", "synced"),
    ] {
        std::fs::write(
            repo.path().join(format!(".sprout/envs/{env}.json")),
            serde_json::json!({
                "version": 2, "environment": env, "phase": phase,
                "commit": "0123456789abcdef0123456789abcdef01234567",
                "createdAt": "2026-11-25T08:00:00Z",
                "asleepSince": if phase == "asleep" { Some("2026-11-25T09:00:00Z") } else { None },
            })
            .to_string(),
        )
        .unwrap();
    }
    let run = |args: &[&str]| {
        let out = sprout_in(repo.path())
            .env("KUBECONFIG", &plane.kubeconfig)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
        stdout_of(&out)
    };
    let before = run(&["-o", "json", "list"]);
    let exported = run(&["state", "export"]);
    std::fs::write(repo.path().join("records.json"), &exported).unwrap();
    let imported = run(&[
        "state",
        "import",
        "records.json",
        "--state",
        "kubernetes",
        "--namespace",
        &namespace.name,
    ]);
    assert!(imported.starts_with("imported 3 record(s)"), "{imported}");

    // The project moves to the cluster backend; the files are gone, the generated spec too.
    std::fs::remove_dir_all(repo.path().join(".sprout")).unwrap();
    std::fs::remove_file(repo.path().join("environments/pr-7.yaml")).unwrap();
    std::fs::write(
        repo.path().join("sprout.yaml"),
        format!(
            "project: {project}\nstate: {{backend: kubernetes, namespace: {}}}\n",
            namespace.name
        ),
    )
    .unwrap();
    let after = run(&["-o", "json", "list"]);
    assert_eq!(
        serde_json::from_str::<Value>(&before).unwrap(),
        serde_json::from_str::<Value>(&after).unwrap()
    );
    assert_eq!(
        serde_json::from_str::<Value>(&run(&["state", "export"])).unwrap(),
        serde_json::from_str::<Value>(&exported).unwrap(),
        "a round trip changes no record"
    );
    assert!(
        !after.contains("no spec in this checkout"),
        "the generated spec came along: {after}"
    );
    assert_eq!(
        plane.kubectl_ok(&[
            "get",
            "environments",
            "pr-7",
            "-n",
            &namespace.name,
            "-o",
            "jsonpath={.spec.definition}",
        ]),
        generated
    );
    let table = plane.kubectl_ok(&["get", "environments", "-n", &namespace.name]);
    assert!(
        table.contains("dev-alice") && table.contains("pr-42") && table.contains("asleep"),
        "{table}"
    );
}

#[test]
fn a_bad_import_file_changes_nothing_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sprout.yaml"), "project: bad-1\n").unwrap();
    std::fs::write(
        dir.path().join("records.json"),
        "{\n  \"kind\": \"EnvironmentRecords\",\n  \"project\": \"bad-1\",\n  \"records\": [\n    {\"version\": 2, \"environment\": \"Not_A_Name\", \"phase\": \"synced\"}\n  ]\n}\n",
    )
    .unwrap();
    let out = sprout_in(dir.path())
        .args(["state", "import", "records.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("records.json:5: environment name"),
        "{}",
        stderr_of(&out)
    );
    assert!(!dir.path().join(".sprout").exists());
}

#[test]
fn the_install_manifests_apply_and_grant_only_what_sprout_needs() {
    let plane = control_plane();
    let namespace = Namespace::new(&plane, "mgmt-install");
    let out = sprout_in(Path::new("/"))
        .args([
            "install",
            "--namespace",
            &namespace.name,
            "--image",
            "registry.example/team/sprout:1",
            // The test control plane is Kubernetes 1.20, before policy/v1.
            "--pdb-api",
            "policy/v1beta1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let manifests = stdout_of(&out);
    let dry = plane.kubectl_stdin(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        &manifests,
    );
    assert!(
        dry.contains("deployment.apps/sprout serverside-applied (server dry run)"),
        "{dry}"
    );
    let applied = plane.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &manifests);
    for object in [
        "customresourcedefinition.apiextensions.k8s.io/environments.sprout.dev",
        "serviceaccount/sprout",
        "role.rbac.authorization.k8s.io/sprout",
        "rolebinding.rbac.authorization.k8s.io/sprout",
        "deployment.apps/sprout",
        "service/sprout",
        "poddisruptionbudget.policy/sprout",
    ] {
        assert!(applied.contains(object), "{object} not applied: {applied}");
    }
    let replicas = plane.kubectl_ok(&[
        "get",
        "deployment",
        "sprout",
        "-n",
        &namespace.name,
        "-o",
        "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].readinessProbe.httpGet.path}",
    ]);
    assert_eq!(replicas, "2 /readyz");

    let me = format!("system:serviceaccount:{}:sprout", namespace.name);
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i", "--as", &me];
        all.extend_from_slice(args);
        let out = plane.kubectl(&all);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    let ns = namespace.name.as_str();
    for needed in [
        ["create", "environments.sprout.dev", "-n", ns],
        ["update", "environments.sprout.dev", "-n", ns],
        ["delete", "environments.sprout.dev", "-n", ns],
        ["list", "environments.sprout.dev", "-n", ns],
        ["create", "leases.coordination.k8s.io", "-n", ns],
        ["update", "leases.coordination.k8s.io", "-n", ns],
        ["create", "events", "-n", ns],
        ["patch", "configmaps", "-n", ns],
        ["watch", "configmaps", "-n", ns],
    ] {
        assert!(can(&needed), "sprout needs {needed:?}");
    }
    assert!(can(&[
        "update",
        "environments.sprout.dev",
        "--subresource=status",
        "-n",
        ns
    ]));
    for forbidden in [
        ["get", "secrets", "-n", ns],
        ["get", "secrets", "-n", "default"],
        ["list", "secrets", "-n", "kube-system"],
        ["create", "environments.sprout.dev", "-n", "default"],
        ["update", "leases.coordination.k8s.io", "-n", "kube-system"],
        ["delete", "namespaces", "-n", ns],
        ["create", "customresourcedefinitions", "-n", ns],
        ["create", "rolebindings", "-n", ns],
        ["create", "pods", "-n", ns],
        ["patch", "configmaps", "-n", "default"],
    ] {
        assert!(!can(&forbidden), "sprout must not be allowed {forbidden:?}");
    }
    assert!(!can(&["list", "secrets", "--all-namespaces"]));
}

// Leader election.

const LEASE: Duration = Duration::from_secs(4);
const RENEW_DEADLINE: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(500);

fn election(namespace: &str, identity: &str) -> ElectionConfig {
    ElectionConfig {
        lease_duration: LEASE,
        renew_deadline: RENEW_DEADLINE,
        retry_period: RETRY,
        ..ElectionConfig::new(namespace, identity)
    }
}

/// A client of the control plane, optionally through `via` (a proxy in front of it).
async fn client(plane: &ControlPlane, via: Option<SocketAddr>) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = kube::config::Kubeconfig::read_from(&plane.kubeconfig).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    if let Some(via) = via {
        config.cluster_url = format!("https://{via}").parse().unwrap();
    }
    kube::Client::try_from(config).unwrap()
}

fn api_server(plane: &ControlPlane) -> SocketAddr {
    let kubeconfig = kube::config::Kubeconfig::read_from(&plane.kubeconfig).unwrap();
    let server = kubeconfig.clusters[0]
        .cluster
        .as_ref()
        .unwrap()
        .server
        .clone()
        .unwrap();
    let url: http::Uri = server.parse().unwrap();
    format!("{}:{}", url.host().unwrap(), url.port_u16().unwrap())
        .parse()
        .unwrap()
}

/// A TCP proxy on loopback that can be cut: while cut, it forwards nothing (connections stay
/// open and silent, as in a real partition); healed, it closes what it held and forwards again.
struct Proxy {
    addr: SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watch) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(forward(inbound, upstream, watch.clone()));
            }
        });
        Proxy { addr, cut, task }
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    mut inbound: tokio::net::TcpStream,
    upstream: SocketAddr,
    mut cut: tokio::sync::watch::Receiver<bool>,
) {
    if !*cut.borrow() {
        let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
            return;
        };
        let stalled = tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
            _ = cut.wait_for(|cut| *cut) => true,
        };
        if !stalled {
            return;
        }
    }
    // Cut: hold the connection without a byte either way until healed, then drop it.
    let _ = cut.wait_for(|cut| !*cut).await;
}

/// Polls until `done` or `limit`, asserting at every sample that at most one leads.
async fn until(
    limit: Duration,
    electors: &[&Leadership],
    mut done: impl FnMut() -> bool,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        let leaders = electors.iter().filter(|e| e.is_leader()).count();
        assert!(leaders <= 1, "{leaders} replicas lead at once");
        if done() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

fn holder(plane: &ControlPlane, namespace: &str) -> String {
    plane.kubectl_ok(&[
        "get",
        "lease",
        leader::LEASE_NAME,
        "-n",
        namespace,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_electors_one_leader_and_the_other_takes_over_when_it_dies() {
    let plane = control_plane();
    // Not made here: the management client of `serve` makes its namespace.
    let namespace = Namespace {
        plane: &plane,
        name: unique("mgmt-elect"),
    };
    let settings = sprout::project::StateSettings {
        backend: sprout::project::StateBackend::Kubernetes,
        namespace: namespace.name.clone(),
        context: None,
    };
    let management = sprout::state::kube::management_client(&settings, Some(&plane.kubeconfig))
        .await
        .unwrap();
    let transitions = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = transitions.clone();
    let a = leader::campaign(management, election(&namespace.name, "a"), move |leading| {
        seen.lock().unwrap().push(leading)
    })
    .unwrap();
    let b = leader::campaign(
        client(&plane, None).await,
        election(&namespace.name, "b"),
        |_| {},
    )
    .unwrap();
    until(Duration::from_secs(10), &[&a, &b], || {
        a.is_leader() || b.is_leader()
    })
    .await
    .expect("someone leads");
    // Exactly one, for many renewals.
    assert!(
        until(LEASE * 2, &[&a, &b], || !(a.is_leader() ^ b.is_leader()))
            .await
            .is_none(),
        "exactly one leads all along"
    );
    let (first, second) = if a.is_leader() { (a, b) } else { (b, a) };
    assert_eq!(
        holder(&plane, &namespace.name),
        first.identity(),
        "the Lease names the leader"
    );
    if first.identity() == "a" {
        assert_eq!(*transitions.lock().unwrap(), [true], "the hook saw it");
    }
    assert!(*first.subscribe().borrow());
    assert!(!*second.subscribe().borrow());

    // The leader dies without a word (its Lease is not released).
    drop(first);
    let took = until(LEASE * 3, &[&second], || second.is_leader())
        .await
        .expect("the other takes over");
    assert!(
        took <= LEASE + RETRY * 2 + Duration::from_secs(1),
        "took over after {took:?}, lease {LEASE:?}"
    );
    assert!(
        took >= LEASE - RETRY * 2,
        "took over after {took:?}, before the lease could expire"
    );
    assert_eq!(holder(&plane, &namespace.name), second.identity());

    // A graceful stop releases the Lease at once.
    second.stop().await;
    assert_eq!(holder(&plane, &namespace.name), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_stops_before_the_other_takes_over_and_waits_to_win_again() {
    let plane = control_plane();
    let namespace = Namespace::new(&plane, "mgmt-partition");
    let proxy = Proxy::start(api_server(&plane)).await;
    let a = leader::campaign(
        client(&plane, Some(proxy.addr)).await,
        election(&namespace.name, "a"),
        |_| {},
    )
    .unwrap();
    until(Duration::from_secs(10), &[&a], || a.is_leader())
        .await
        .expect("a leads through the proxy");
    let b = leader::campaign(
        client(&plane, None).await,
        election(&namespace.name, "b"),
        |_| {},
    )
    .unwrap();
    tokio::time::sleep(RETRY * 3).await;
    assert!(a.is_leader() && !b.is_leader());

    // What a destructive step deep in the loop asks.
    let a_check = a.checker();
    proxy.cut();
    let cut_at = Instant::now();
    let mut a_stopped = None;
    let b_won = until(LEASE * 4, &[&a, &b], || {
        if a_stopped.is_none() && !a_check.is_leader() {
            a_stopped = Some(cut_at.elapsed());
        }
        b.is_leader()
    })
    .await
    .expect("b takes over");
    let a_stopped = a_stopped.expect("a stopped acting before b won");
    assert!(
        a_stopped <= RENEW_DEADLINE + Duration::from_millis(200),
        "a stopped {a_stopped:?} after the cut, renew deadline {RENEW_DEADLINE:?}"
    );
    assert!(
        a_stopped < b_won && b_won - a_stopped >= LEASE - RENEW_DEADLINE - RETRY,
        "a stopped at {a_stopped:?}, b won at {b_won:?}"
    );
    assert!(!*a.subscribe().borrow(), "a announced that it stopped");

    // Reconnected, the old leader follows: it does not act until it wins again.
    proxy.heal();
    assert!(
        until(LEASE * 2, &[&a, &b], || a.is_leader() || !b.is_leader())
            .await
            .is_none(),
        "a stays a follower while b leads"
    );
    b.stop().await;
    until(LEASE * 2, &[&a], || a.is_leader())
        .await
        .expect("a wins again once b lets go");
    assert_eq!(holder(&plane, &namespace.name), "a");
    a.stop().await;
}

#[test]
fn gc_keeps_records_of_the_shared_store_that_have_no_spec_here() {
    let plane = control_plane();
    let namespace = Namespace::new(&plane, "mgmt-gc");
    let dir = tempfile::tempdir().unwrap();
    let project = kube_project(dir.path(), "gc-1", &namespace.name);
    let store = StateStore::for_project(&project, Some(&plane.kubeconfig));
    // A preview `serve` made from a template in its pod: no spec in this checkout.
    let mut record = store.load("pr-99").unwrap();
    record.phase = sprout::state::Phase::Synced;
    store.save(&record).unwrap();
    let out = sprout_in(dir.path())
        .env("KUBECONFIG", &plane.kubeconfig)
        .args(["gc"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let said = format!("{}{}", stdout_of(&out), stderr_of(&out));
    assert!(
        said.contains("pr-99 has no spec in this checkout: kept"),
        "{said}"
    );
    assert_eq!(store.names().unwrap(), ["pr-99"]);
}

#[test]
fn a_bad_state_setting_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    for (settings, expected) in [
        (
            "project: p-1\nstate:\n  backend: kubernetes\n  namespace: Sprout_System\n",
            "sprout.yaml:4: state.namespace",
        ),
        ("project: p-1\nstate:\n  backend: etcd\n", "sprout.yaml:3"),
        (
            "project: p-1\nstate: {backend: kubernetes, nameSpace: x}\n",
            "sprout.yaml:2",
        ),
    ] {
        std::fs::write(dir.path().join("sprout.yaml"), settings).unwrap();
        let out = sprout_in(dir.path()).args(["list"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{settings}");
        assert!(
            stderr_of(&out).contains(expected),
            "{settings}: {}",
            stderr_of(&out)
        );
    }
    std::fs::write(dir.path().join("sprout.yaml"), "project: p-1\n").unwrap();
    let out = sprout_in(dir.path())
        .args(["state", "export", "--namespace", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("--namespace is the kubernetes backend's"),
        "{}",
        stderr_of(&out)
    );
}
