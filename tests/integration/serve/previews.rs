//! `sprout serve` end to end: the real binary against the fake GitHub, a real git remote that
//! keeps `refs/pull/N/head`, and the real control plane. A pull request opens, is pushed to,
//! the SCM misbehaves, and it closes.

use super::fake_scm::{FakeRequest, FakeScm, GITHUB_REPO, Misbehaviour};
use crate::cluster::{ControlPlane, control_plane, unique};
use crate::sync::PRODUCTION;
use crate::util::TestRepo;
use serde_json::Value;
use std::path::Path;

const APP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {version: main}\n\
---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n  rules:\n  - host: shop.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n";

/// Previews on the shared test control plane, one namespace each.
const PREVIEW_TEMPLATE: &str = "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: {{ name }}\n\
spec:\n  from: {{ from }}\n  source:\n    ref: {{ ref }}\n  cluster:\n    provider: namespace\n    namespace: {context: envtest}\n";

pub(super) struct Setup {
    pub(super) origin: TestRepo,
    pub(super) project: tempfile::TempDir,
    pub(super) env: String,
    pub(super) number: u64,
}

/// A remote with `main` and a pull request's head under `refs/pull/N/head` (as GitHub keeps
/// it, for forks too), and a project cloned from it with a github generator.
pub(super) fn setup(fake: &FakeScm, number: u64) -> Setup {
    let mut origin = TestRepo::new();
    origin.write("deploy/app.yaml", APP);
    origin.commit("main");
    let project = tempfile::tempdir().unwrap();
    git2::Repository::clone(origin.path().to_str().unwrap(), project.path()).unwrap();
    let write = |path: &str, text: &str| {
        let full = project.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    };
    write("environments/production.yaml", PRODUCTION);
    write("templates/preview.yaml.tera", PREVIEW_TEMPLATE);
    write(
        "sprout.yaml",
        &format!(
            "project: {}\ngracePeriod: 1s\ngenerators:\n- github: {{repository: {GITHUB_REPO}, api: \"{}\", tokenEnv: FAKE_GITHUB_TOKEN}}\n  template: preview\n",
            unique("serve-test"),
            fake.github_api()
        ),
    );
    let setup = Setup {
        origin,
        project,
        env: format!("pr-{number}"),
        number,
    };
    let sha = push_pull_request(&setup, "1");
    let mut request = FakeRequest::new(number, "feature/x");
    request.sha = sha;
    fake.data().github.push(request);
    setup
}

/// Commits `version` on top of main as the pull request's head; returns the commit id.
fn push_pull_request(setup: &Setup, version: &str) -> String {
    push_head(setup, setup.number, version)
}

/// Commits `version` on top of main as the head of pull request `number`; returns its id.
pub(super) fn push_head(setup: &Setup, number: u64, version: &str) -> String {
    let repo = &setup.origin.repo;
    let main = repo
        .find_reference("refs/heads/main")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let text = APP.replace("version: main", &format!("version: \"{version}\""));
    let blob = repo.blob(text.as_bytes()).unwrap();
    let mut deploy = repo
        .treebuilder(Some(
            &main
                .tree()
                .unwrap()
                .get_name("deploy")
                .unwrap()
                .to_object(repo)
                .unwrap()
                .peel_to_tree()
                .unwrap(),
        ))
        .unwrap();
    deploy.insert("app.yaml", blob, 0o100644).unwrap();
    let deploy = deploy.write().unwrap();
    let mut root = repo.treebuilder(Some(&main.tree().unwrap())).unwrap();
    root.insert("deploy", deploy, 0o040000).unwrap();
    let tree = repo.find_tree(root.write().unwrap()).unwrap();
    let signature = git2::Signature::now("dev", "dev@example.com").unwrap();
    let commit = repo
        .commit(
            None,
            &signature,
            &signature,
            &format!("version {version}"),
            &tree,
            &[&main],
        )
        .unwrap();
    repo.reference(&format!("refs/pull/{number}/head"), commit, true, "push")
        .unwrap();
    commit.to_string()
}

pub(super) async fn serve_once(project: &Path, cp: &ControlPlane) -> (i32, Value, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sprout"))
        .current_dir(project)
        .args(["-o", "json", "serve", "--once"])
        .env("KUBECONFIG", &cp.kubeconfig)
        .env("FAKE_GITHUB_TOKEN", "t0ken")
        .env_remove("SPROUT_LOG")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), report, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_request_gets_a_preview_that_follows_pushes_survives_a_lying_scm_and_goes_when_closed()
 {
    let cp = control_plane();
    let fake = FakeScm::start().await;
    let number = 9000 + (std::process::id() as u64 % 900);
    let setup = setup(&fake, number);
    let (project, env) = (setup.project.path(), setup.env.clone());

    // Opened: the preview is created at the pull request's head and announced.
    let (code, report, stderr) = serve_once(project, &cp).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["operations"][0]["kind"], "up", "{report}");
    assert_eq!(cp.app_version(&env).as_deref(), Some("1"));
    {
        let data = fake.data();
        let ours: Vec<_> = data.comments.iter().filter(|c| c.issue == number).collect();
        assert_eq!(ours.len(), 1, "one comment");
        assert!(
            ours[0]
                .body
                .contains(&"http://shop.example.com/".to_string()),
            "{}",
            ours[0].body
        );
        let deployment = data.deployments.last().expect("a deployment");
        assert_eq!(deployment.payload["environment"], format!("preview/{env}"));
        let (state, url) = deployment.statuses.last().unwrap();
        assert_eq!(state, "success");
        assert_eq!(
            url.as_deref(),
            Some("http://shop.example.com/".to_string().as_str())
        );
    }

    // Nothing changed: a pass does nothing.
    let (_, report, _) = serve_once(project, &cp).await;
    assert_eq!(report["operations"], Value::Array(vec![]), "{report}");

    // Pushed: re-synced to the new commit, the same comment edited.
    let sha = push_pull_request(&setup, "2");
    fake.data().github[0].sha = sha;
    let (code, report, stderr) = serve_once(project, &cp).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["operations"][0]["kind"], "sync", "{report}");
    assert_eq!(cp.app_version(&env).as_deref(), Some("2"));
    assert_eq!(
        fake.data()
            .comments
            .iter()
            .filter(|c| c.issue == number)
            .count(),
        1,
        "the same comment, edited"
    );

    // The SCM misbehaves while the pull request is really closed: nothing is deleted, and the
    // freeze shows in the report and in status.
    fake.data().github[0].state = "closed".into();
    for misbehaviour in [
        Misbehaviour::ServerError,
        Misbehaviour::RateLimited(1),
        Misbehaviour::Html,
        Misbehaviour::EmptyList,
        Misbehaviour::TruncatedJson,
    ] {
        fake.misbehave(misbehaviour);
        let (code, report, stderr) = serve_once(project, &cp).await;
        assert_eq!(code, 0, "{misbehaviour:?}: {stderr}");
        assert!(
            report["frozen"].as_object().is_some_and(|f| !f.is_empty()),
            "{misbehaviour:?}: {report}"
        );
        assert_eq!(
            cp.app_version(&env).as_deref(),
            Some("2"),
            "{misbehaviour:?}: nothing deleted"
        );
        assert!(project.join(format!("environments/{env}.yaml")).exists());
    }
    let status = crate::util::sprout_in(project)
        .env("KUBECONFIG", &cp.kubeconfig)
        .args(["status", &env])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("generator listing: frozen"), "{status}");

    // Closed, and the SCM answers again. A listing that shrank to nothing is believed only
    // when a second one agrees (the empty answer of the misbehaving pass may count as the
    // first); then a direct read confirms it closed, and it is torn down.
    fake.behave();
    let mut passes = 0;
    let report = loop {
        passes += 1;
        let (code, report, stderr) = serve_once(project, &cp).await;
        assert_eq!(code, 0, "{stderr}");
        if !report["operations"].as_array().unwrap().is_empty() || passes == 2 {
            break report;
        }
        assert!(
            report["frozen"].to_string().contains("held back"),
            "{report}"
        );
        assert_eq!(cp.app_version(&env).as_deref(), Some("2"));
    };
    assert_eq!(report["operations"][0]["kind"], "down", "{report}");
    assert_eq!(cp.app_version(&env), None);
    assert!(!project.join(format!("environments/{env}.yaml")).exists());
    let data = fake.data();
    let (state, _) = data.deployments.last().unwrap().statuses.last().unwrap();
    assert_eq!(state, "inactive");
}

/// A plain HTTP/1.1 exchange on loopback: (status, body).
pub(super) async fn http(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
        return (0, String::new());
    };
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_is_ready_after_its_first_pass_exposes_metrics_and_a_webhook_brings_the_next_pass_forward()
 {
    let cp = control_plane();
    let fake = FakeScm::start().await;
    let number = 8000 + (std::process::id() as u64 % 900);
    let setup = setup(&fake, number);
    // Not open yet: the first pass finds nothing.
    let opened = fake.data().github.pop().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_sprout"))
        .current_dir(setup.project.path())
        .args([
            "serve",
            "--listen",
            &address,
            "--interval",
            "1h",
            "--webhook",
            "github",
            "--log-format",
            "json",
        ])
        .env("KUBECONFIG", &cp.kubeconfig)
        .env("FAKE_GITHUB_TOKEN", "t0ken")
        .env("SPROUT_GITHUB_WEBHOOK_SECRET", super::webhook::SECRET)
        .env_remove("SPROUT_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while http(&address, "GET", "/readyz", &[], b"").await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, metrics) = http(&address, "GET", "/metrics", &[], b"").await;
    assert!(metrics.lines().any(|l| l == "sprout_leader 1"), "{metrics}");
    assert!(
        metrics.contains("sprout_environments{phase=\"queued\"} 0"),
        "{metrics}"
    );

    // The pull request opens; its webhook (signed) brings the next pass forward by an hour.
    fake.data().github.push(opened);
    let body = format!(
        "{{\"action\":\"opened\",\"number\":{number},\"repository\":{{\"full_name\":\"{GITHUB_REPO}\"}}}}"
    );
    let (status, _) = http(
        &address,
        "POST",
        "/hooks/github",
        &[
            ("x-hub-signature-256", super::webhook::sign(body.as_bytes())),
            ("x-github-event", "pull_request".into()),
            ("x-github-delivery", "delivery-1".into()),
            ("content-type", "application/json".into()),
        ],
        body.as_bytes(),
    )
    .await;
    assert!(status == 202 || status == 200, "{status}");
    let env = setup.env.clone();
    while cp.app_version(&env).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the webhook did not bring a pass"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(cp.app_version(&env).as_deref(), Some("1"));

    // SIGTERM: it stops cleanly.
    let pid = daemon.id().unwrap() as i32;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let output = daemon.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(
        logs.lines()
            .any(|l| l.starts_with('{') && l.contains("\"level\":\"INFO\"")),
        "JSON logs: {logs}"
    );
    crate::util::sprout_in(setup.project.path())
        .env("KUBECONFIG", &cp.kubeconfig)
        .args(["down", &env])
        .output()
        .unwrap();
}

/// A second checkout of the same project (another replica's `/project`).
pub(super) fn replica_checkout(setup: &Setup) -> tempfile::TempDir {
    let second = tempfile::tempdir().unwrap();
    git2::Repository::clone(setup.origin.path().to_str().unwrap(), second.path()).unwrap();
    for file in [
        "environments/production.yaml",
        "templates/preview.yaml.tera",
        "sprout.yaml",
    ] {
        let to = second.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(setup.project.path().join(file), to).unwrap();
    }
    second
}

pub(super) async fn leader_metric(address: &str) -> Option<bool> {
    let (status, body) = http(address, "GET", "/metrics", &[], b"").await;
    (status == 200).then(|| body.lines().any(|line| line.trim() == "sprout_leader 1"))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_on_the_cluster_backend_one_acts_and_the_other_takes_over_when_it_dies() {
    let cp = control_plane();
    let fake = FakeScm::start().await;
    let number = 7000 + (std::process::id() as u64 % 900);
    let setup = setup(&fake, number);
    let second = replica_checkout(&setup);
    let namespace = unique("sprout-mgmt");
    let start = |dir: &Path| {
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
                "2s",
                "--state",
                "kubernetes",
                "--namespace",
                &namespace,
            ])
            .env("KUBECONFIG", &cp.kubeconfig)
            .env("FAKE_GITHUB_TOKEN", "t0ken")
            .env_remove("SPROUT_LOG")
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        (address, child)
    };
    let (first_address, mut first) = start(setup.project.path());
    let (second_address, mut other) = start(second.path());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    // Exactly one leads, and the preview is made once.
    let leaders = loop {
        let a = leader_metric(&first_address).await;
        let b = leader_metric(&second_address).await;
        if let (Some(a), Some(b)) = (a, b)
            && a != b
            && cp.app_version(&setup.env).is_some()
        {
            break (a, b);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no single leader with a preview: {a:?} {b:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    assert!(leaders.0 ^ leaders.1, "exactly one leader");
    // kill -9 of the leader: the follower takes over within the lease and acts (a second pull
    // request gets its preview from it).
    let (leader, follower_address) = if leaders.0 {
        (&mut first, second_address.clone())
    } else {
        (&mut other, first_address.clone())
    };
    leader.start_kill().unwrap();
    leader.wait().await.unwrap();
    let killed_at = std::time::Instant::now();
    while leader_metric(&follower_address).await != Some(true) {
        assert!(
            killed_at.elapsed() < std::time::Duration::from_secs(40),
            "the follower never took over"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let took_over = killed_at.elapsed();
    assert!(
        took_over < std::time::Duration::from_secs(30),
        "took over after {took_over:?}"
    );
    // Every preview namespace exists once (a label sweep), whoever made it.
    let sweep = cp.kubectl_ok(&[
        "get",
        "namespaces",
        "-l",
        &format!("sprout.dev/environment={}", setup.env),
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(sweep.split_whitespace().count(), 1, "{sweep}");
    first.start_kill().ok();
    other.start_kill().ok();
    crate::util::sprout_in(setup.project.path())
        .env("KUBECONFIG", &cp.kubeconfig)
        .args([
            "down",
            &setup.env,
            "--state",
            "kubernetes",
            "--namespace",
            &namespace,
        ])
        .output()
        .unwrap();
}
