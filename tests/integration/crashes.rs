//! `kill -9` at any point, and two runs at once: the next run of the same command converges,
//! with no duplicate clusters, no leftover processes and nothing labelled for an environment
//! that its inventory does not list. Envtest environments (a local control plane each) and
//! environments on the shared test control plane.

use crate::cluster::{
    config_maps, control_plane, environment_on_control_plane, unique, with_kubeconfig,
};
use crate::sync::PRODUCTION;
use crate::util::{TestRepo, sprout_in, stderr_of};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn envtest_project(env: &str, lifecycle: &str) -> TestRepo {
    let mut repo = TestRepo::new();
    repo.write(
        "deploy/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {version: \"1\"}\n",
    )
    .write("environments/production.yaml", PRODUCTION)
    .write(
        &format!("environments/{env}.yaml"),
        &format!(
            "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  from: production\n  \
             cluster: {{provider: envtest}}\n  lifecycle: {lifecycle}\n"
        ),
    )
    .write("sprout.yaml", &format!("project: {}\n", unique("crash")));
    repo.commit("production");
    repo
}

fn sprout(dir: &Path, args: &[&str]) -> std::process::Output {
    sprout_in(dir).args(args).output().unwrap()
}

fn ok(dir: &Path, args: &[&str]) {
    let output = sprout(dir, args);
    assert!(
        output.status.success(),
        "sprout {args:?}: {}",
        stderr_of(&output)
    );
}

fn spawn(dir: &Path, args: &[&str], kubeconfig: Option<&Path>) -> Child {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sprout"));
    command
        .current_dir(dir)
        .args(args)
        .env_remove("SPROUT_LOG")
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(kubeconfig) = kubeconfig {
        command.env("KUBECONFIG", kubeconfig);
    }
    command.spawn().unwrap()
}

/// Processes whose command line names this environment's cluster folder (etcd's data dir,
/// the apiserver's certificates): what a leaked control plane would leave running.
fn processes_of(repo: &Path, env: &str) -> Vec<u32> {
    let marker = repo
        .canonicalize()
        .unwrap()
        .join(format!(".sprout/clusters/{env}"))
        .display()
        .to_string();
    let plain = repo
        .join(format!(".sprout/clusters/{env}"))
        .display()
        .to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        let is_sprout = std::fs::read_link(entry.path().join("exe"))
            .is_ok_and(|exe| exe.file_name().is_some_and(|f| f == "sprout"));
        if (cmdline.contains(&marker) || cmdline.contains(&plain)) && !is_sprout {
            pids.push(pid);
        }
    }
    pids
}

fn record(repo: &Path, env: &str) -> Option<Value> {
    let text = std::fs::read_to_string(repo.join(format!(".sprout/envs/{env}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Down, then nothing of the environment is left running or on disk.
fn down_leaves_nothing(repo: &Path, env: &str) {
    ok(repo, &["down", env]);
    assert_eq!(
        processes_of(repo, env),
        Vec::<u32>::new(),
        "no process left"
    );
    assert!(!repo.join(format!(".sprout/clusters/{env}")).exists());
    assert!(record(repo, env).is_none());
}

#[test]
fn up_killed_at_any_point_is_finished_by_the_next_up_with_one_control_plane() {
    let env = &unique("crash-up");
    let repo = envtest_project(env, "{ttl: 8h}");
    for delay in [100, 800, 2500] {
        let mut up = spawn(repo.path(), &["up", env], None);
        std::thread::sleep(Duration::from_millis(delay));
        up.kill().unwrap(); // SIGKILL
        up.wait().unwrap();
        ok(repo.path(), &["up", env]);
        let running = processes_of(repo.path(), env);
        assert_eq!(
            running.len(),
            3,
            "one etcd, apiserver and controller-manager after a kill at {delay} ms: {running:?}"
        );
        assert_eq!(record(repo.path(), env).unwrap()["phase"], "synced");
    }
    down_leaves_nothing(repo.path(), env);
}

#[test]
fn sleep_wake_and_down_killed_midway_converge_when_run_again() {
    let env = &unique("crash-sleep");
    let repo = envtest_project(env, "{ttl: 8h}");
    ok(repo.path(), &["up", env]);
    for command in ["sleep", "wake", "down"] {
        let mut child = spawn(repo.path(), &[command, env], None);
        std::thread::sleep(Duration::from_millis(300));
        child.kill().unwrap();
        child.wait().unwrap();
        // Interrupted: `status` says so and names what to run (unless it had already finished).
        if let Some(state) = record(repo.path(), env)
            && ["sleeping", "deleting", "provisioning", "syncing"]
                .contains(&state["phase"].as_str().unwrap())
        {
            let status = sprout(repo.path(), &["status", env]);
            let text = String::from_utf8_lossy(&status.stdout);
            assert!(text.contains("interrupted"), "{text}");
        }
        let again = sprout(repo.path(), &[command, env]);
        let stderr = stderr_of(&again);
        // A command that had finished before the kill is refused as already done, never half-done.
        assert!(
            again.status.success() || stderr.contains("is not asleep"),
            "{command} again: {stderr}"
        );
        match command {
            "sleep" => {
                assert_eq!(record(repo.path(), env).unwrap()["phase"], "asleep");
                assert_eq!(processes_of(repo.path(), env), Vec::<u32>::new());
            }
            "wake" => {
                assert_eq!(record(repo.path(), env).unwrap()["phase"], "synced");
                assert_eq!(processes_of(repo.path(), env).len(), 3);
            }
            _ => {
                assert_eq!(processes_of(repo.path(), env), Vec::<u32>::new());
                assert!(record(repo.path(), env).is_none());
            }
        }
    }
}

#[test]
fn two_ups_of_one_envtest_environment_take_turns_and_leak_nothing() {
    let env = &unique("crash-twice");
    let repo = envtest_project(env, "{ttl: 8h}");
    let first = spawn(repo.path(), &["up", env], None);
    let second = spawn(repo.path(), &["up", env], None);
    for child in [first, second] {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(processes_of(repo.path(), env).len(), 3, "one control plane");
    down_leaves_nothing(repo.path(), env);
}

#[test]
fn gc_skips_an_environment_being_brought_up_then_takes_it_down() {
    let env = &unique("crash-gc");
    let repo = envtest_project(env, "{ttl: 1s}");
    let up = spawn(repo.path(), &["up", env], None);
    wait_for(
        "the up to record its cluster",
        Duration::from_secs(30),
        || record(repo.path(), env).is_some_and(|r| r["createdAt"].is_string()),
    );
    std::thread::sleep(Duration::from_millis(1100));
    let busy = sprout(repo.path(), &["-o", "json", "gc"]);
    let report: Value = serde_json::from_slice(&busy.stdout).unwrap();
    let up_output = up.wait_with_output().unwrap();
    // Unless the up finished first, gc found it busy, skipped it, and named the holder.
    let action = &report["actions"][0];
    if action["outcome"] == "skipped" {
        assert!(
            action["message"]
                .as_str()
                .unwrap()
                .contains(&format!("sprout up {env}")),
            "{report}"
        );
        assert!(
            up_output.status.success(),
            "{}",
            String::from_utf8_lossy(&up_output.stderr)
        );
        let done: Value =
            serde_json::from_slice(&sprout(repo.path(), &["-o", "json", "gc"]).stdout).unwrap();
        assert_eq!(done["actions"][0]["outcome"], "done", "{done}");
    } else {
        assert_eq!(action["outcome"], "done", "{report}");
    }
    assert_eq!(processes_of(repo.path(), env), Vec::<u32>::new());
    assert!(
        !repo
            .path()
            .join(format!("environments/{env}.yaml"))
            .exists()
    );
}

/// `count` ConfigMaps as production, and `env` forked from it onto the shared test control
/// plane with a TTL of one second (long over by the time a test runs `gc`).
fn shared_project_with_ttl(env: &str, count: usize) -> TestRepo {
    let mut repo = TestRepo::new();
    repo.write("deploy/many.yaml", &config_maps(count, "1"))
        .write("environments/production.yaml", PRODUCTION)
        .write(
            &format!("environments/{env}.yaml"),
            &environment_on_control_plane(env, "production", "  lifecycle: {ttl: 1s}\n"),
        )
        .write("sprout.yaml", &format!("project: {}\n", unique("crash")));
    repo.commit(&format!("{count} ConfigMaps"));
    repo
}

#[test]
fn sync_and_gc_killed_mid_apply_mid_prune_and_mid_teardown_converge() {
    let cp = control_plane();
    let env = &unique("crash-sync");
    let mut repo = shared_project_with_ttl(env, 300);
    let kubeconfig: PathBuf = cp.kubeconfig.clone();
    let dir = repo.path().to_path_buf();
    let run = |args: &[&str]| {
        with_kubeconfig(&mut sprout_in(&dir), &cp)
            .args(args)
            .output()
            .unwrap()
    };
    let kill_after = |args: &[&str], millis: u64| {
        let mut child = spawn(&dir, args, Some(&kubeconfig));
        std::thread::sleep(Duration::from_millis(millis));
        child.kill().unwrap();
        child.wait().unwrap();
    };
    // Mid-apply.
    kill_after(&["sync", env, "--no-wait"], 700);
    let status = String::from_utf8_lossy(&run(&["status", env]).stdout).into_owned();
    if status.contains("syncing") {
        assert!(status.contains("interrupted"), "{status}");
    }
    assert!(run(&["sync", env, "--no-wait"]).status.success());
    assert_eq!(cp.assert_labelled_in_inventory(env), 300);
    // Mid-prune: 250 objects leave git.
    repo.write("deploy/many.yaml", &config_maps(50, "1"));
    repo.commit("50");
    kill_after(&["sync", env, "--no-wait"], 700);
    cp.assert_labelled_in_inventory(env);
    assert!(run(&["sync", env, "--no-wait"]).status.success());
    assert_eq!(cp.assert_labelled_in_inventory(env), 50);
    // Mid-teardown by gc (its ttl of 1s is long over).
    kill_after(&["gc"], 500);
    let again = run(&["-o", "json", "gc"]);
    assert!(again.status.success(), "{}", stderr_of(&again));
    assert_eq!(
        cp.labelled_config_maps(env),
        Vec::<String>::new(),
        "a label sweep finds nothing of the environment"
    );
    assert!(
        !repo
            .path()
            .join(format!("environments/{env}.yaml"))
            .exists()
    );
}

#[test]
fn two_gc_passes_at_once_take_an_environment_down_once() {
    let cp = control_plane();
    let env = &unique("crash-gc2");
    let repo = shared_project_with_ttl(env, 100);
    let up = with_kubeconfig(&mut sprout_in(repo.path()), &cp)
        .args(["up", env, "--no-wait"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr_of(&up));
    std::thread::sleep(Duration::from_millis(1100));
    let passes: Vec<_> = (0..2)
        .map(|_| spawn(repo.path(), &["-o", "json", "gc"], Some(&cp.kubeconfig)))
        .collect();
    let mut done = 0;
    for pass in passes {
        let output = pass.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        for action in report["actions"].as_array().unwrap() {
            match action["outcome"].as_str().unwrap() {
                "done" => done += 1,
                "skipped" => {}
                other => panic!("{other}: {report}"),
            }
        }
    }
    assert_eq!(done, 1, "taken down exactly once");
    assert_eq!(cp.labelled_config_maps(env), Vec::<String>::new());
}
