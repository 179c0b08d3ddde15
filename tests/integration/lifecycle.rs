//! Lifecycle on the real control plane: TTL, schedules, sleep and wake, branch deletion,
//! orphans, `gc --dry-run --at`, and locks between concurrent runs.
//!
//! Time is moved the way it moves for users: a record's times are set back (as if the
//! environment had been created days ago), and `--at` asks what a pass would do at another
//! time. Every deletion is checked against the cluster, not against sprout's own report.

use crate::cluster::{
    ControlPlane, config_maps, config_maps_from, control_plane, environment_on_control_plane,
    unique, with_kubeconfig,
};
use crate::sync::PRODUCTION;
use crate::util::{TestRepo, stderr_of, stdout_of};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Production is one ConfigMap; `env` forks it onto the control plane with `lifecycle`.
fn project(env: &str, lifecycle: &str, settings: &str) -> TestRepo {
    let mut repo = TestRepo::new();
    repo.write("deploy/app.yaml", &app("1"))
        .write("environments/production.yaml", PRODUCTION)
        .write(
            &format!("environments/{env}.yaml"),
            &environment_on_control_plane(
                env,
                "production",
                &format!("  lifecycle: {lifecycle}\n"),
            ),
        )
        .write(
            "sprout.yaml",
            &format!("project: {}\n{settings}", unique("lifecycle-test")),
        );
    repo.commit("production");
    repo
}

fn app(version: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: app}}\ndata: {{version: \"{version}\"}}\n"
    )
}

/// Runs sprout on the control plane; (exit code, stdout, stderr).
fn run(repo: &Path, cp: &ControlPlane, args: &[&str]) -> (i32, String, String) {
    let output = with_kubeconfig(&mut crate::util::sprout_in(repo), cp)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        stdout_of(&output),
        stderr_of(&output),
    )
}

fn ok(repo: &Path, cp: &ControlPlane, args: &[&str]) -> String {
    let (code, stdout, stderr) = run(repo, cp, args);
    assert_eq!(code, 0, "sprout {args:?}: {stderr}");
    stdout
}

fn gc(repo: &Path, cp: &ControlPlane, extra: &[&str]) -> Value {
    let mut args = vec!["-o", "json", "gc"];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(repo, cp, &args)).unwrap()
}

/// (environment, action, reason, outcome) of each action of a gc report.
fn actions(report: &Value) -> Vec<(String, String, String, String)> {
    report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let field = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            (
                field("environment"),
                field("action"),
                field("reason"),
                field("outcome"),
            )
        })
        .collect()
}

fn record(repo: &Path, env: &str) -> Value {
    let path = repo.join(format!(".sprout/envs/{env}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Moves the record's times back by `days`, as if it had all happened that long ago.
fn age_record(repo: &Path, env: &str, days: i64) {
    let mut state = record(repo, env);
    for field in [
        "createdAt",
        "wokenAt",
        "extendedAt",
        "asleepSince",
        "syncedAt",
        "expiresAt",
    ] {
        if let Some(at) = state[field].as_str() {
            let at =
                chrono::DateTime::parse_from_rfc3339(at).unwrap() - chrono::Duration::days(days);
            state[field] = at.to_rfc3339().into();
        }
    }
    std::fs::write(
        repo.join(format!(".sprout/envs/{env}.json")),
        serde_json::to_string_pretty(&state).unwrap(),
    )
    .unwrap();
}

#[test]
fn an_expired_environment_is_torn_down_by_gc_and_a_dry_run_writes_nothing() {
    let cp = control_plane();
    let env = &unique("lc-ttl");
    let repo = project(env, "{ttl: 1h}", "");
    ok(repo.path(), &cp, &["up", env]);
    assert_eq!(cp.app_version(env).as_deref(), Some("1"));
    let created = record(repo.path(), env)["createdAt"]
        .as_str()
        .unwrap()
        .to_string();

    // Not yet: a pass now has nothing to do.
    assert_eq!(actions(&gc(repo.path(), &cp, &[])), vec![]);

    // Planning: what would a pass do two hours from now? The audit log says: nothing written.
    let later = (chrono::DateTime::parse_from_rfc3339(&created).unwrap()
        + chrono::Duration::hours(2))
    .to_rfc3339();
    let mark = cp.audit_mark();
    let planned = gc(repo.path(), &cp, &["--dry-run", "--at", &later]);
    assert_eq!(
        actions(&planned),
        vec![(
            env.clone(),
            "teardown".into(),
            "ttl".into(),
            "planned".into()
        )]
    );
    // Other tests write to the same cluster at the same time: count what touches this
    // environment (its namespace, the Namespace itself, its lock).
    let touching: Vec<String> = cp
        .all_writes_since(mark)
        .into_iter()
        .filter(|w| w.contains(env.as_str()))
        .collect();
    assert_eq!(touching, Vec::<String>::new(), "a dry run writes nothing");
    assert_eq!(
        record(repo.path(), env)["createdAt"],
        created.as_str(),
        "nor any record"
    );

    // `--at` alone would act at a time that is not now: refused.
    let (code, _, stderr) = run(repo.path(), &cp, &["gc", "--at", &later]);
    assert_eq!(code, 2, "{stderr}");

    // Two hours later (the record aged), the real pass tears it down.
    age_record(repo.path(), env, 1);
    let done = gc(repo.path(), &cp, &[]);
    assert_eq!(
        actions(&done),
        vec![(env.clone(), "teardown".into(), "ttl".into(), "done".into())]
    );
    assert_eq!(cp.app_version(env), None, "its objects are gone");
    assert!(
        !repo
            .path()
            .join(format!("environments/{env}.yaml"))
            .exists(),
        "and its spec"
    );
    assert_eq!(
        actions(&gc(repo.path(), &cp, &[])),
        vec![],
        "a second pass finds nothing"
    );
}

#[test]
fn lunch_teardown_is_due_on_the_right_weekday_only_then_done_by_gc() {
    let cp = control_plane();
    let env = &unique("lc-lunch");
    // Fridays at noon, Berlin time.
    let repo = project(
        env,
        "{teardown: \"0 12 * * fri\", timezone: Europe/Berlin}",
        "",
    );
    ok(repo.path(), &cp, &["up", env]);
    age_record(repo.path(), env, 30);
    let created = chrono::DateTime::parse_from_rfc3339(
        record(repo.path(), env)["createdAt"].as_str().unwrap(),
    )
    .unwrap();
    // The first Friday noon (Berlin) after creation, and a moment before it that no Friday noon
    // precedes since creation: the Thursday 12:07 before it, or, when the record was made
    // after that (a Thursday afternoon), Friday 11:59. Whatever weekday the test runs on.
    let berlin = |day: chrono::NaiveDate, hour: u32, minute: u32| {
        use chrono::TimeZone;
        chrono_tz::Europe::Berlin
            .from_local_datetime(&day.and_hms_opt(hour, minute, 0).unwrap())
            .unwrap()
    };
    let mut friday = created.date_naive();
    while chrono::Datelike::weekday(&friday) != chrono::Weekday::Fri
        || berlin(friday, 12, 0) <= created
    {
        friday += chrono::Duration::days(1);
    }
    let thursday = berlin(friday - chrono::Duration::days(1), 12, 7);
    let before = if thursday > created {
        thursday
    } else {
        berlin(friday, 11, 59)
    };
    let on_thursday = gc(
        repo.path(),
        &cp,
        &["--dry-run", "--at", &before.to_rfc3339()],
    );
    assert_eq!(actions(&on_thursday), vec![], "not before Friday noon");
    let on_friday = gc(
        repo.path(),
        &cp,
        &["--dry-run", "--at", &berlin(friday, 12, 7).to_rfc3339()],
    );
    assert_eq!(
        actions(&on_friday),
        vec![(
            env.clone(),
            "teardown".into(),
            "schedule".into(),
            "planned".into()
        )]
    );

    // `list` shows the teardown coming.
    let list: Value = serde_json::from_str(&ok(repo.path(), &cp, &["-o", "json", "list"])).unwrap();
    let line = list
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["environment"] == env.as_str())
        .unwrap();
    assert!(
        line["nextTeardown"].as_str().unwrap().ends_with('Z'),
        "{line}"
    );

    // The record is 30 days old: a Friday noon has passed since, so a pass now takes it down.
    let done = gc(repo.path(), &cp, &[]);
    assert_eq!(
        actions(&done),
        vec![(
            env.clone(),
            "teardown".into(),
            "schedule".into(),
            "done".into()
        )]
    );
    assert_eq!(cp.app_version(env), None);
}

/// Daily schedules whose last events before now are, in order, `first` then `second` hours
/// ago (on the Berlin clock), so a test knows which came last whatever time it runs.
fn daily(teardown_hours_ago: i64, wake_hours_ago: i64) -> String {
    use chrono::Timelike;
    let hour = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Berlin)
        .hour() as i64;
    let at = |ago: i64| (hour - ago).rem_euclid(24);
    format!(
        "{{teardown: \"0 {} * * *\", wake: \"0 {} * * *\", timezone: Europe/Berlin}}",
        at(teardown_hours_ago),
        at(wake_hours_ago)
    )
}

#[test]
fn a_passed_teardown_time_puts_it_to_sleep_and_a_passed_wake_time_brings_it_back_at_the_new_commit()
{
    let cp = control_plane();
    let env = &unique("lc-sleep");
    // Its teardown time came after its wake time: due to sleep.
    let mut repo = project(env, &daily(1, 2), "");
    ok(repo.path(), &cp, &["up", env]);
    age_record(repo.path(), env, 2);
    assert_eq!(
        actions(&gc(repo.path(), &cp, &[])),
        vec![(
            env.clone(),
            "sleep".into(),
            "schedule".into(),
            "done".into()
        )]
    );
    assert_eq!(record(repo.path(), env)["phase"], "asleep");
    assert_eq!(
        cp.app_version(env),
        None,
        "an asleep environment keeps nothing running"
    );
    assert!(
        repo.path()
            .join(format!("environments/{env}.yaml"))
            .exists(),
        "its spec stays"
    );
    let status: Value =
        serde_json::from_str(&ok(repo.path(), &cp, &["-o", "json", "status", env])).unwrap();
    assert_eq!(status["phase"], "asleep");
    assert!(status["nextWake"].is_string(), "{status}");
    assert_eq!(
        actions(&gc(repo.path(), &cp, &[])),
        vec![],
        "asleep until its wake time"
    );

    // Another environment, whose wake time came after its teardown time, was put to sleep by
    // hand a day ago; the branch moved on since.
    let woken = &unique("lc-woken");
    repo.write(
        &format!("environments/{woken}.yaml"),
        &environment_on_control_plane(
            woken,
            "production",
            &format!("  lifecycle: {}\n", daily(2, 1)),
        ),
    );
    repo.commit("a second environment");
    ok(repo.path(), &cp, &["up", woken]);
    ok(repo.path(), &cp, &["sleep", woken]);
    assert_eq!(cp.app_version(woken), None);
    repo.write("deploy/app.yaml", &app("2"));
    repo.commit("version 2");
    age_record(repo.path(), woken, 1);
    assert_eq!(
        actions(&gc(repo.path(), &cp, &[])),
        vec![(
            woken.clone(),
            "wake".into(),
            "schedule".into(),
            "done".into()
        )]
    );
    assert_eq!(
        cp.app_version(woken).as_deref(),
        Some("2"),
        "back at the new commit"
    );
    assert_eq!(record(repo.path(), woken)["phase"], "synced");

    // By hand: wake the first one (also at the new commit); waking it twice is refused.
    ok(repo.path(), &cp, &["wake", env]);
    assert_eq!(cp.app_version(env).as_deref(), Some("2"));
    let (code, _, stderr) = run(repo.path(), &cp, &["wake", env]);
    assert_eq!(code, 2, "waking an awake environment is refused: {stderr}");
}

/// A remote of its own, which the environment follows (branch `feature/x`).
fn remote_with_branch(branch: &str) -> TestRepo {
    let mut remote = TestRepo::new();
    remote.write("deploy/app.yaml", &app("1"));
    remote.commit("app");
    remote.branch(branch);
    remote.checkout("main");
    remote
}

#[test]
fn a_deleted_branch_is_kept_once_then_torn_down_and_an_unreachable_remote_deletes_nothing() {
    let cp = control_plane();
    let env = &unique("lc-branch");
    let remote = remote_with_branch("feature/x");
    let repo = TestRepo::new();
    repo.write(
        "environments/production.yaml",
        &format!(
            "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {{name: production}}\n\
             spec:\n  protected: true\n  source: {{repo: \"{}\", ref: main, path: deploy}}\n",
            remote.path().display()
        ),
    )
    .write(
        &format!("environments/{env}.yaml"),
        &environment_on_control_plane(
            env,
            "production",
            "  source: {ref: feature/x}\n  lifecycle: {onBranchDelete: true}\n",
        ),
    )
    .write(
        "sprout.yaml",
        &format!("project: {}\ngracePeriod: 2s\n", unique("lc")),
    );
    ok(repo.path(), &cp, &["up", env]);

    // Seen on the remote.
    assert_eq!(actions(&gc(repo.path(), &cp, &[])), vec![]);
    assert!(record(repo.path(), env)["branch"]["lastSeen"].is_string());

    // The remote becomes unreachable: frozen, nothing deleted, and status says so.
    let moved = remote.path().with_extension("moved");
    std::fs::rename(remote.path(), &moved).unwrap();
    let frozen = gc(repo.path(), &cp, &[]);
    assert_eq!(actions(&frozen), vec![]);
    assert!(
        frozen["notes"].to_string().contains("deletions frozen"),
        "{frozen}"
    );
    let status = ok(repo.path(), &cp, &["status", env]);
    assert!(status.contains("branch: frozen"), "{status}");
    std::fs::rename(&moved, remote.path()).unwrap();

    // The branch is deleted: kept on the first pass that misses it ...
    remote
        .repo
        .find_branch("feature/x", git2::BranchType::Local)
        .unwrap()
        .delete()
        .unwrap();
    assert_eq!(actions(&gc(repo.path(), &cp, &[])), vec![]);
    assert!(record(repo.path(), env)["branch"]["missingSince"].is_string());
    assert_eq!(cp.app_version(env).as_deref(), Some("1"));

    // ... and torn down by the first pass a grace period later.
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        actions(&gc(repo.path(), &cp, &[])),
        vec![(
            env.clone(),
            "teardown".into(),
            "branch-deleted".into(),
            "done".into()
        )]
    );
    assert_eq!(cp.app_version(env), None);
}

#[test]
fn orphaned_namespaces_of_this_project_go_after_the_grace_period_others_are_only_reported() {
    let cp = control_plane();
    let env = &unique("lc-orphans");
    let repo = project(env, "{}", "gracePeriod: 1s\n");
    ok(repo.path(), &cp, &["up", env]);
    let identity = std::fs::read_to_string(repo.path().join("sprout.yaml"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("project: ").map(str::to_string))
        .unwrap();
    let ours = unique("lc-ours-orphan");
    let theirs = unique("lc-their-orphan");
    // Ours too, but what `down` would keep: it holds an object sprout did not apply.
    let holding = unique("lc-holding-orphan");
    let labels = |project: &str| {
        [
            "app.kubernetes.io/managed-by=sprout".to_string(),
            "sprout.dev/environment=gone".to_string(),
            format!("sprout.dev/project={project}"),
        ]
    };
    for (namespace, project) in [
        (&ours, identity.as_str()),
        (&theirs, "someone-else"),
        (&holding, identity.as_str()),
    ] {
        cp.kubectl_ok(&["create", "namespace", namespace]);
        let mut label = vec!["label", "namespace", namespace];
        let labels = labels(project);
        label.extend(labels.iter().map(String::as_str));
        cp.kubectl_ok(&label);
        // What sprout applied for the environment goes with its namespace.
        cp.kubectl_ok(&["create", "configmap", "applied", "-n", namespace]);
        let mut label = vec!["label", "configmap", "applied", "-n", namespace];
        label.extend(labels.iter().map(String::as_str));
        cp.kubectl_ok(&label);
    }
    cp.kubectl_ok(&["create", "configmap", "foreign", "-n", &holding]);
    let first = gc(repo.path(), &cp, &[]);
    assert_eq!(
        actions(&first),
        vec![],
        "first seen: kept for the grace period"
    );
    assert!(first["notes"].to_string().contains(&theirs), "{first}");
    let stays = format!(
        "namespace {holding} (envtest) belongs to no environment but stays: it holds objects \
         sprout did not apply or must keep: ConfigMap/{holding}/foreign"
    );
    assert!(first["notes"].to_string().contains(&stays), "{first}");

    std::thread::sleep(Duration::from_millis(1100));
    let planned = gc(repo.path(), &cp, &["--dry-run"]);
    assert_eq!(
        actions(&planned),
        vec![(
            "gone".into(),
            "delete-orphan".into(),
            "orphan".into(),
            "planned".into()
        )]
    );
    let done = gc(repo.path(), &cp, &[]);
    assert_eq!(actions(&done)[0].3, "done", "{done}");
    let phase = cp.kubectl_ok(&["get", "namespace", &ours, "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Terminating", "ours is being deleted");
    assert!(
        cp.kubectl(&["get", "namespace", &theirs]).status.success(),
        "theirs stays"
    );
    assert!(
        cp.exists("configmap", &holding, "foreign"),
        "what sprout did not apply stays, and its namespace"
    );
    cp.kubectl_ok(&["delete", "namespace", &holding, "--wait=false"]);
    assert_eq!(
        cp.app_version(env).as_deref(),
        Some("1"),
        "the live environment stays"
    );
}

#[test]
fn extend_pushes_the_expiry_and_survives_later_syncs_and_ups() {
    let cp = control_plane();
    let env = &unique("lc-extend");
    let repo = project(env, "{ttl: 1h, teardown: \"0 12 * * *\"}", "");
    ok(repo.path(), &cp, &["up", env]);
    let before = record(repo.path(), env);
    let extended: Value = serde_json::from_str(&ok(
        repo.path(),
        &cp,
        &["-o", "json", "extend", env, "3h", "--skip-next"],
    ))
    .unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(extended["expiresAt"].as_str().unwrap()).unwrap();
    let created =
        chrono::DateTime::parse_from_rfc3339(before["createdAt"].as_str().unwrap()).unwrap();
    assert_eq!(expires - created, chrono::Duration::hours(4), "1h ttl + 3h");
    assert!(extended["skippedTeardown"].is_string());
    ok(repo.path(), &cp, &["sync", env]);
    ok(repo.path(), &cp, &["up", env]);
    let after = record(repo.path(), env);
    assert_eq!(
        after["expiresAt"], extended["expiresAt"],
        "kept by sync and up"
    );
    // Two hours on, the extension still holds; five hours on, it does not.
    let at = |hours| (created + chrono::Duration::hours(hours)).to_rfc3339();
    let planned = |hours| actions(&gc(repo.path(), &cp, &["--dry-run", "--at", &at(hours)]));
    assert!(planned(2).iter().all(|a| a.2 != "ttl"));
    assert!(planned(5).iter().any(|a| a.2 == "ttl"));

    // A different --ttl or --teardown for the existing environment is refused, not ignored.
    let (code, _, stderr) = run(repo.path(), &cp, &["up", env, "--ttl", "2h"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("sprout extend"), "{stderr}");
    ok(repo.path(), &cp, &["up", env, "--ttl", "1h"]);
}

#[test]
fn two_syncs_of_one_shared_environment_from_two_checkouts_take_turns() {
    // Without the environment's Lease, about one round in four lost objects from the inventory.
    for _ in 0..4 {
        syncs_from_two_checkouts_at_once(&unique("lc-twice"));
    }
}

fn syncs_from_two_checkouts_at_once(env: &str) {
    let cp = control_plane();
    let mut repo = TestRepo::new();
    repo.write("deploy/many.yaml", &config_maps(40, "1"))
        .write("environments/production.yaml", PRODUCTION)
        .write(
            &format!("environments/{env}.yaml"),
            &environment_on_control_plane(env, "production", ""),
        )
        .write("sprout.yaml", &format!("project: {}\n", unique("lc")));
    repo.commit("many");
    // A second checkout: its own .sprout/, so only the cluster can tell them apart.
    let second = tempfile::tempdir().unwrap();
    git2::Repository::clone(repo.path().to_str().unwrap(), second.path()).unwrap();
    std::fs::copy(
        repo.path().join("sprout.yaml"),
        second.path().join("sprout.yaml"),
    )
    .unwrap();
    // The first checkout is ahead by ten objects: whichever sync runs last decides, and
    // without a lock on the cluster their inventory writes would lose one another's objects.
    repo.write("deploy/more.yaml", &config_maps_from(40, 50, "1"));
    repo.commit("more");

    let spawn = |dir: &Path| {
        with_kubeconfig(&mut crate::util::sprout_in(dir), &cp)
            .args(["sync", env, "--no-wait"])
            .output()
    };
    let (first, other) = (repo.path().to_path_buf(), second.path().to_path_buf());
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn(&first).unwrap());
        let b = s.spawn(|| spawn(&other).unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success(), "{}", stderr_of(&a));
    assert!(b.status.success(), "{}", stderr_of(&b));
    // Every object labelled for the environment is in its inventory.
    let count = cp.assert_labelled_in_inventory(env);
    assert!(count == 40 || count == 50, "{count} objects");
    let waited = format!("{}{}", stderr_of(&a), stderr_of(&b));
    assert!(!waited.contains("error"), "{waited}");
}

#[test]
fn a_sync_with_nothing_to_change_takes_no_lock_but_waits_for_another_runs() {
    let cp = control_plane();
    let env = &unique("lc-noop-lock");
    let repo = project(env, "{}", "");
    ok(repo.path(), &cp, &["sync", env, "--no-wait"]);

    // Nothing to change and nobody else at work: not a single write, not even to the lock.
    let mark = cp.audit_mark();
    ok(repo.path(), &cp, &["sync", env, "--no-wait"]);
    assert_eq!(cp.writes_since(mark, env), Vec::<String>::new());

    // Another machine's run holds the environment (its Lease, renewed just now, for 3 s): the
    // sync waits for it, then takes its turn under the lock, even with nothing to change.
    let now = chrono::Utc::now();
    let holder = serde_json::json!({
        "command": "sync elsewhere", "pid": 4242, "host": "another-machine",
        "since": now.to_rfc3339(),
    });
    let lease = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "sprout-lock", "namespace": env,
                     "annotations": {"sprout.dev/holder": holder.to_string()}},
        "spec": {"holderIdentity": "another-machine/4242/1", "leaseDurationSeconds": 3,
                 "renewTime": now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                 "acquireTime": now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()},
    });
    let file = repo.path().join("lease.json");
    std::fs::write(&file, lease.to_string()).unwrap();
    cp.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    let mark = cp.audit_mark();
    let started = std::time::Instant::now();
    ok(repo.path(), &cp, &["sync", env, "--no-wait"]);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2), "waited {waited:?}");
    let (lock, others) = cp.lock_and_other_writes_since(mark, env);
    assert_eq!(others, Vec::<String>::new());
    assert_eq!(lock.len(), 2, "taken once, given up once: {lock:?}");
    let holder = cp.kubectl_ok(&[
        "get",
        "lease",
        "sprout-lock",
        "-n",
        env,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, "", "given up before the command returned");
}

#[test]
fn distinct_origins_that_map_to_one_name_never_share_an_environment() {
    let cp = control_plane();
    let mut repo = TestRepo::new();
    repo.write("deploy/app.yaml", &app("1"))
        .write("environments/production.yaml", PRODUCTION)
        .write("sprout.yaml", &format!("project: {}\n", unique("origins")));
    repo.commit("production");
    repo.branch("feature/login");
    let up = |args: &[&str]| run(repo.path(), &cp, args);
    let (code, stdout, stderr) = up(&[
        "-o",
        "json",
        "up",
        "--branch",
        "feature/login",
        "--provider",
        "namespace",
        "--no-wait",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let name = serde_json::from_str::<Value>(&stdout).unwrap()["environment"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(name.starts_with("feature-login-"), "{name}");
    // A branch literally named like the environment maps to the same name: refused, both named.
    let (code, _, stderr) = up(&["up", "--branch", &name, "--dry-run"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("branch `feature/login`") && stderr.contains(&format!("branch `{name}`")),
        "{stderr}"
    );
    // The same branch again is the same environment.
    let (code, _, stderr) = up(&["up", "--branch", "feature/login", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    // `--pr 42` and a branch called pr-42 are two origins of one name.
    std::fs::write(
        repo.path().join("environments/pr-42.yaml"),
        "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: pr-42\n  labels: {sprout.dev/origin: branch, sprout.dev/branch: pr-42}\nspec:\n  from: production\n  cluster: {provider: namespace}\n",
    )
    .unwrap();
    let (code, _, stderr) = up(&["up", "--pr", "42", "--branch", "feature/login", "--dry-run"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("pull request #42") && stderr.contains("branch `pr-42`"),
        "{stderr}"
    );
    run(repo.path(), &cp, &["down", &name]);

    // `--developer` with `--branch`: that developer's environment, following that branch (it
    // was silently the branch's environment before); with `--pr`, two names: refused.
    let developer = unique("bob");
    let (code, stdout, stderr) = up(&[
        "-o",
        "json",
        "up",
        "--developer",
        &developer,
        "--branch",
        "feature/login",
        "--provider",
        "namespace",
        "--no-wait",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let env = format!("dev-{developer}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()["environment"],
        env.as_str()
    );
    let spec =
        std::fs::read_to_string(repo.path().join(format!("environments/{env}.yaml"))).unwrap();
    assert!(
        spec.lines()
            .any(|line| line.trim_start().starts_with("ref:") && line.contains("feature/login")),
        "{spec}"
    );
    let (code, _, stderr) = up(&[
        "up",
        "--developer",
        &developer,
        "--branch",
        "main",
        "--dry-run",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--branch main: {env} exists following `feature/login`"
        )),
        "{stderr}"
    );
    let (code, _, stderr) = up(&["up", "--developer", &developer, "--pr", "7", "--dry-run"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("name two environments"), "{stderr}");
    run(repo.path(), &cp, &["down", &env]);
}

#[test]
fn a_namespace_left_behind_on_a_shared_cluster_is_found_after_its_spec_is_gone() {
    let cp = control_plane();
    let env = &unique("lc-leftover");
    let repo = project(env, "{}", "gracePeriod: 1s\n");
    ok(repo.path(), &cp, &["up", env]);
    // The spec goes (deleted by hand, or `down` had to keep the namespace): no spec points at
    // the cluster any more, but the project remembers it was used.
    std::fs::remove_file(repo.path().join(format!("environments/{env}.yaml"))).unwrap();
    let first = gc(repo.path(), &cp, &[]);
    assert!(
        first["notes"]
            .to_string()
            .contains(&format!("namespace {env}")),
        "{first}"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let done = gc(repo.path(), &cp, &[]);
    assert!(
        actions(&done)
            .iter()
            .any(|(_, action, _, outcome)| action == "delete-orphan" && outcome == "done"),
        "{done}"
    );
}
