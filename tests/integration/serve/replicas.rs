//! A team's `sprout serve`: replicas in checkouts of their own that share records, specs, webhooks
//! and one leader through a management cluster (the real control plane), with the fake GitHub.

use super::fake_scm::{FakeRequest, FakeScm, GITHUB_REPO};
use super::previews::{Setup, http, leader_metric, push_head, replica_checkout, serve_once, setup};
use crate::cluster::{ControlPlane, config_maps, control_plane, unique};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The project keeps its records, generated specs and locks in management namespace
/// `namespace` (before [`replica_checkout`], which copies sprout.yaml).
fn use_cluster_state(setup: &Setup, namespace: &str) {
    let path = setup.project.path().join("sprout.yaml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "state: {{backend: kubernetes, namespace: {namespace}}}\n"
    ));
    std::fs::write(path, text).unwrap();
}

fn record_field(cp: &ControlPlane, namespace: &str, env: &str, path: &str) -> Option<String> {
    let out = cp.kubectl(&[
        "get",
        "environments.sprout.dev",
        env,
        "-n",
        namespace,
        "-o",
        &format!("jsonpath={path}"),
    ]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Namespaces labelled with this project (a sweep that counts whatever exists, whoever made it).
fn project_namespaces(cp: &ControlPlane, setup: &Setup) -> Vec<String> {
    let text = std::fs::read_to_string(setup.project.path().join("sprout.yaml")).unwrap();
    let project = text
        .lines()
        .find_map(|l| l.strip_prefix("project: "))
        .unwrap()
        .trim()
        .to_string();
    cp.kubectl_ok(&[
        "get",
        "namespaces",
        "-l",
        &format!("sprout.dev/project={project}"),
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

/// Waits until the server has finished deleting every namespace of the project.
async fn no_namespace_left(cp: &ControlPlane, setup: &Setup) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !project_namespaces(cp, setup).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left behind: {:?}",
            project_namespaces(cp, setup)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_preview_one_replica_made_is_torn_down_by_another_that_never_had_its_spec_file() {
    let cp = control_plane();
    let fake = FakeScm::start().await;
    let number = 2000 + (std::process::id() as u64 % 900);
    let setup = setup(&fake, number);
    let namespace = unique("sprout-specs");
    use_cluster_state(&setup, &namespace);
    let other = replica_checkout(&setup);
    let env = setup.env.clone();

    let (code, report, stderr) = serve_once(setup.project.path(), &cp).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["operations"][0]["kind"], "up", "{report}");
    assert_eq!(cp.app_version(&env).as_deref(), Some("1"));
    // The spec lives with the record in the cluster, not in the checkout that generated it.
    assert!(
        !setup
            .project
            .path()
            .join(format!("environments/{env}.yaml"))
            .exists()
    );
    let definition = record_field(&cp, &namespace, &env, "{.spec.definition}").unwrap();
    assert!(
        definition.contains("kind: Environment") && definition.contains("sprout.dev/generator"),
        "{definition}"
    );

    // The other checkout knows it from the cluster: render, list and status read it.
    let rendered = crate::util::sprout_in(other.path())
        .env("KUBECONFIG", &cp.kubeconfig)
        .args(["render", &env])
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&rendered.stderr);
    assert!(
        rendered.status.success()
            && summary.contains(&format!("objects from deploy@refs/pull/{number}/head")),
        "{summary}"
    );
    let status = crate::util::sprout_in(other.path())
        .env("KUBECONFIG", &cp.kubeconfig)
        .args(["-o", "json", "status", &env])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["phase"], "synced", "{status}");

    // The pull request closes while the first replica is gone: the other one, which never
    // generated the spec, tears the preview down (a listing that emptied is believed when a
    // second agrees).
    fake.data().github[0].state = "closed".into();
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let (code, report, stderr) = serve_once(other.path(), &cp).await;
        assert_eq!(code, 0, "{stderr}");
        kinds.extend(
            report["operations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["kind"].as_str().unwrap().to_string()),
        );
        if kinds.iter().any(|k| k == "down") {
            break;
        }
    }
    assert_eq!(kinds, ["down"]);
    assert_eq!(cp.app_version(&env), None);
    assert_eq!(
        record_field(&cp, &namespace, &env, "{.metadata.name}"),
        None
    );
    no_namespace_left(&cp, &setup).await;
}

/// A `serve` replica in `dir` on the cluster backend, its log in `log`.
struct Replica {
    address: String,
    child: tokio::process::Child,
    log: PathBuf,
}

fn start_replica(dir: &Path, cp: &ControlPlane, interval: &str, log: PathBuf) -> Replica {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sprout"))
        .current_dir(dir)
        .args([
            "serve",
            "--listen",
            &address,
            "--interval",
            interval,
            "--webhook",
            "github",
        ])
        .env("KUBECONFIG", &cp.kubeconfig)
        .env("FAKE_GITHUB_TOKEN", "t0ken")
        .env("SPROUT_GITHUB_WEBHOOK_SECRET", super::webhook::SECRET)
        .env_remove("SPROUT_LOG")
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    Replica {
        address,
        child,
        log,
    }
}

impl Replica {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Waits until both replicas answer and exactly one leads; returns (leader, follower).
async fn elected(a: Replica, b: Replica) -> (Replica, Replica) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ready_a = http(&a.address, "GET", "/readyz", &[], b"").await.0 == 200;
        let ready_b = http(&b.address, "GET", "/readyz", &[], b"").await.0 == 200;
        if ready_a && ready_b {
            match (
                leader_metric(&a.address).await,
                leader_metric(&b.address).await,
            ) {
                (Some(true), Some(false)) => return (a, b),
                (Some(false), Some(true)) => return (b, a),
                _ => {}
            }
        }
        assert!(Instant::now() < deadline, "no single leader");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A signed `pull_request` delivery for `number` to the replica at `address`.
async fn deliver(address: &str, action: &str, number: u64) {
    let body = format!(
        "{{\"action\":\"{action}\",\"number\":{number},\"repository\":{{\"full_name\":\"{GITHUB_REPO}\"}}}}"
    );
    let (status, answer) = http(
        address,
        "POST",
        "/hooks/github",
        &[
            ("x-hub-signature-256", super::webhook::sign(body.as_bytes())),
            ("x-github-event", "pull_request".into()),
            ("x-github-delivery", unique("delivery")),
            ("content-type", "application/json".into()),
        ],
        body.as_bytes(),
    )
    .await;
    assert!(status == 202 || status == 200, "{status} {answer}");
}

/// How many lines of `logs` about environment `env` contain all of `what`.
fn count_in_logs(logs: &[String], env: &str, what: &[&str]) -> usize {
    logs.iter()
        .flat_map(|log| log.lines())
        .filter(|line| {
            what.iter().all(|w| line.contains(w))
                && (line.contains(&format!("environment={env} "))
                    || line.contains(&format!("environment=\"{env}\"")))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_a_follower_accepts_reach_the_leader_and_each_preview_is_made_and_torn_down_once()
{
    let cp = control_plane();
    let fake = FakeScm::start().await;
    let base = 3000 + (std::process::id() as u64 % 100) * 8;
    let setup = setup(&fake, base);
    fake.data().github.clear();
    let namespace = unique("sprout-hooks");
    use_cluster_state(&setup, &namespace);
    let other = replica_checkout(&setup);
    let logs = tempfile::tempdir().unwrap();
    // An hour between passes: only webhooks bring one sooner.
    let a = start_replica(setup.project.path(), &cp, "1h", logs.path().join("a.log"));
    let b = start_replica(other.path(), &cp, "1h", logs.path().join("b.log"));
    let (mut leader, mut follower) = elected(a, b).await;
    let mark = cp.audit_mark();

    // Six pull requests open; every delivery goes to the follower.
    let numbers: Vec<u64> = (base..base + 6).collect();
    for &number in &numbers {
        let mut request = FakeRequest::new(number, &format!("feature/{number}"));
        request.sha = push_head(&setup, number, &format!("v{number}"));
        fake.data().github.push(request);
        deliver(&follower.address, "opened", number).await;
    }
    let opened = Instant::now();
    let deadline = opened + Duration::from_secs(120);
    for &number in &numbers {
        while cp.app_version(&format!("pr-{number}")) != Some(format!("v{number}")) {
            assert!(
                Instant::now() < deadline,
                "pr-{number} has no preview; leader log:\n{}\nfollower log:\n{}",
                leader.log(),
                follower.log()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    eprintln!(
        "six previews up {:?} after the first delivery",
        opened.elapsed()
    );

    // They close, half and then the rest; the deliveries still go to the follower (repeated, as
    // GitHub redelivers: a listing that emptied at once is believed when a second agrees).
    for (round, closing) in [&numbers[..3], &numbers[3..]].into_iter().enumerate() {
        for &number in closing {
            let mut data = fake.data();
            let request = data.github.iter_mut().find(|r| r.number == number).unwrap();
            request.state = "closed".into();
            data.github.retain(|r| r.number != number);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut deliveries = 0;
        while closing
            .iter()
            .any(|n| cp.app_version(&format!("pr-{n}")).is_some())
        {
            assert!(
                Instant::now() < deadline,
                "round {round}: not torn down; leader log:\n{}\nfollower log:\n{}",
                leader.log(),
                follower.log()
            );
            if deliveries < 10 {
                deliver(&follower.address, "closed", closing[0]).await;
                deliveries += 1;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    // The follower handed every delivery on and acted on none; the leader acted on them.
    let (leader_log, follower_log) = (leader.log(), follower.log());
    assert!(
        follower_log.contains("webhook handed to the leader through the store"),
        "{follower_log}"
    );
    assert!(
        leader_log.contains("webhook handed over by a follower"),
        "{leader_log}"
    );
    assert!(
        !follower_log.contains("converging preview") && !follower_log.contains("tearing"),
        "the follower acted:\n{follower_log}"
    );
    // Each preview was made once and torn down once: by the operations the leader ran, and by
    // the server's record of namespaces created.
    let both = [leader_log, follower_log];
    for &number in &numbers {
        let env = format!("pr-{number}");
        assert_eq!(
            count_in_logs(&both, &env, &["converging preview", "operation=\"up\""]),
            1,
            "{env} made once"
        );
        assert_eq!(
            count_in_logs(&both, &env, &["tearing the preview down"]),
            1,
            "{env} torn down once"
        );
        assert_eq!(cp.namespaces_created_since(mark, &env), 1, "{env}");
    }
    // Nothing left behind: no namespace of the project (once the server has finished deleting
    // them), no record.
    no_namespace_left(&cp, &setup).await;
    let records = cp.kubectl_ok(&[
        "get",
        "environments.sprout.dev",
        "-n",
        &namespace,
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(records.trim(), "");
    leader.child.start_kill().ok();
    follower.child.start_kill().ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_follower_finishes_the_preview_a_killed_leader_was_making() {
    let cp = control_plane();
    let fake = FakeScm::start().await;
    let number = 1000 + (std::process::id() as u64 % 900);
    let mut setup = setup(&fake, number);
    // A pull request big enough that its first sync takes a while (1,200 ConfigMaps), so the
    // test sees it syncing whatever the machine's speed.
    setup
        .origin
        .write("deploy/many.yaml", &config_maps(1200, "1"));
    setup.origin.commit("many");
    let opened = {
        let mut data = fake.data();
        let mut request = data.github.pop().unwrap();
        request.sha = push_head(&setup, number, "1");
        request
    };
    let namespace = unique("sprout-takeover");
    use_cluster_state(&setup, &namespace);
    let other = replica_checkout(&setup);
    let logs = tempfile::tempdir().unwrap();
    let a = start_replica(setup.project.path(), &cp, "1s", logs.path().join("a.log"));
    let b = start_replica(other.path(), &cp, "1s", logs.path().join("b.log"));
    let (mut leader, follower) = elected(a, b).await;
    let env = setup.env.clone();

    // The pull request opens; the leader is killed while it applies the preview.
    fake.data().github.push(opened);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let phase = record_field(&cp, &namespace, &env, "{.status.phase}");
        if phase.as_deref() == Some("syncing") {
            break;
        }
        assert!(
            Instant::now() < deadline && phase.as_deref() != Some("synced"),
            "never caught syncing: {phase:?}\n{}",
            leader.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    leader.child.start_kill().unwrap();
    leader.child.wait().await.unwrap();
    let killed = Instant::now();
    assert_eq!(
        record_field(&cp, &namespace, &env, "{.status.phase}").as_deref(),
        Some("syncing"),
        "interrupted"
    );

    // The follower leads once the lease runs out and finishes the preview, once.
    let deadline = Instant::now() + Duration::from_secs(90);
    while record_field(&cp, &namespace, &env, "{.status.phase}").as_deref() != Some("synced") {
        assert!(
            Instant::now() < deadline,
            "not finished:\n{}",
            follower.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let finished = killed.elapsed();
    eprintln!("the follower finished the preview {finished:?} after the kill");
    assert_eq!(leader_metric(&follower.address).await, Some(true));
    assert_eq!(cp.app_version(&env).as_deref(), Some("1"));
    assert_eq!(cp.assert_labelled_in_inventory(&env), 1201);
    let follower_log = follower.log();
    assert!(
        follower_log.contains("converging preview"),
        "{follower_log}"
    );
    assert_eq!(
        project_namespaces(&cp, &setup),
        vec![env.clone()],
        "one namespace, after {finished:?}"
    );
    drop(follower);
    crate::util::sprout_in(setup.project.path())
        .env("KUBECONFIG", &cp.kubeconfig)
        .args(["down", &env])
        .output()
        .unwrap();
}
