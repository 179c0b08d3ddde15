//! Bad input: each case exits 2, names the file and line, and writes nothing.

use crate::util::{TestRepo, boutique_project, sprout_in, stderr_of};

/// Runs `render ENV --out DIR` and checks: exit 2, stderr holds every `expected` part, and the
/// output folder was not created.
fn rejects(repo: &TestRepo, env: &str, expected: &[&str]) -> String {
    let out = repo.path().join("rendered-out");
    let output = repo
        .sprout()
        .args(["render", env, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for part in expected {
        assert!(stderr.contains(part), "expected {part:?} in: {stderr}");
    }
    assert!(!out.exists(), "nothing may be written on bad input");
    stderr
}

fn minimal_repo() -> TestRepo {
    let mut repo = TestRepo::new();
    repo.write(
        "deploy/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n",
    );
    repo.write(
        "environments/production.yaml",
        "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {name: production}\nspec:\n  protected: true\n  source: {ref: main, path: deploy}\n",
    );
    repo.commit("production");
    repo
}

const HEADER: &str = "apiVersion: sprout.dev/v1alpha1\nkind: Environment\n";

#[test]
fn malformed_spec_yaml() {
    let repo = minimal_repo();
    repo.write(
        "environments/dev.yaml",
        &format!(
            "{HEADER}metadata: {{name: dev}}\nspec:\n  from: production\n  overlay: {{replicas: [\n"
        ),
    );
    rejects(&repo, "dev", &["environments/dev.yaml:6"]);
}

#[test]
fn malformed_manifest_yaml() {
    let mut repo = minimal_repo();
    repo.write("deploy/broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\nkind: ConfigMap\nmetadata:\n  name: [broken\n");
    repo.commit("broken");
    repo.write(
        "environments/dev.yaml",
        &format!("{HEADER}metadata: {{name: dev}}\nspec:\n  from: production\n"),
    );
    rejects(
        &repo,
        "dev",
        &["environment dev: source: deploy/broken.yaml:", "document 2"],
    );
}

#[test]
fn unknown_spec_field() {
    let repo = minimal_repo();
    repo.write("environments/dev.yaml", &format!("{HEADER}metadata: {{name: dev}}\nspec:\n  from: production\n  overlay:\n    replica: {{max: 1}}\n"));
    rejects(
        &repo,
        "dev",
        &["environments/dev.yaml:7", "unknown field `replica`"],
    );
}

#[test]
fn from_cycle() {
    let repo = minimal_repo();
    repo.write(
        "environments/a.yaml",
        &format!("{HEADER}metadata: {{name: a}}\nspec:\n  from: b\n"),
    )
    .write(
        "environments/b.yaml",
        &format!("{HEADER}metadata: {{name: b}}\nspec:\n  from: a\n"),
    );
    rejects(&repo, "a", &["environments/b.yaml:5", "cycle: a → b → a"]);
}

#[test]
fn undefined_template_variable() {
    let repo = minimal_repo();
    repo.write(
        "environments/dev.yaml",
        &format!("{HEADER}metadata: {{name: dev}}\nspec:\n  from: production\n  overlay:\n    patches:\n      - target: {{kind: ConfigMap, name: app}}\n        patch: |\n          data:\n            who: \"{{{{ env.name }}}}\"\n            oops: \"{{{{ env.nmae }}}}\"\n"),
    );
    rejects(
        &repo,
        "dev",
        &[
            "environments/dev.yaml:12",
            "overlay.patches[0].patch",
            "nmae",
        ],
    );

    // A hosts template is checked even when the source has no Ingress for it yet.
    repo.write(
        "environments/dev.yaml",
        &format!("{HEADER}metadata: {{name: dev}}\nspec:\n  from: production\n  overlay:\n    hosts: \"{{{{ host }}}}.{{{{ env.nmae }}}}.example.com\"\n"),
    );
    rejects(
        &repo,
        "dev",
        &["environments/dev.yaml:7", "overlay.hosts", "nmae"],
    );
}

#[test]
fn invalid_environment_names() {
    let repo = minimal_repo();
    rejects(
        &repo,
        "Bad_Name",
        &["invalid environment name", "lowercase"],
    );
    repo.write(
        "environments/dev.yaml",
        &format!("{HEADER}metadata: {{name: Dev}}\nspec:\n  from: production\n"),
    );
    rejects(
        &repo,
        "dev",
        &["environments/dev.yaml:3", "invalid environment name"],
    );
}

#[test]
fn a_patch_or_image_that_matches_nothing() {
    let repo = minimal_repo();
    repo.write("environments/dev.yaml", &format!("{HEADER}metadata: {{name: dev}}\nspec:\n  from: production\n  overlay:\n    patches:\n      - target: {{kind: ConfigMap, name: typo}}\n        patch: '{{}}'\n"));
    rejects(
        &repo,
        "dev",
        &["environments/dev.yaml:8", "no ConfigMap named `typo`"],
    );
}

#[test]
fn invalid_schedule_and_ttl() {
    let repo = minimal_repo();
    repo.write("environments/dev.yaml", &format!("{HEADER}metadata: {{name: dev}}\nspec:\n  from: production\n  lifecycle:\n    ttl: 8h\n    teardown: \"0 12 * *\"\n"));
    rejects(
        &repo,
        "dev",
        &["environments/dev.yaml:8", "expected 5 fields"],
    );
    repo.write("environments/dev.yaml", &format!("{HEADER}metadata: {{name: dev}}\nspec:\n  from: production\n  lifecycle:\n    ttl: eight hours\n"));
    rejects(&repo, "dev", &["environments/dev.yaml:7", "lifecycle.ttl"]);

    // On `up`'s command line they are refused before a spec is made, naming the flag, not a
    // file that was never written; so are an empty branch or developer.
    for (args, expected) in [
        (
            &["--ttl", "0s"][..],
            "'--ttl <TTL>': a time to live must be longer than 0",
        ),
        (
            &["--teardown", "0 12 * *"][..],
            "'--teardown <TEARDOWN>': expected 5 fields",
        ),
        (&["--branch", ""][..], "'--branch <BRANCH>'"),
        (&["--developer", ""][..], "'--developer <DEVELOPER>'"),
    ] {
        let output = repo
            .sprout()
            .arg("up")
            .args(args)
            .arg("--dry-run")
            .output()
            .unwrap();
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("environments/"), "{args:?}: {stderr}");
    }
}

#[test]
fn missing_render_tools() {
    let project = boutique_project();
    let empty_path = tempfile::tempdir().unwrap();
    let out = project.path().join("rendered-out");
    let output = project
        .sprout()
        .env("PATH", empty_path.path())
        .args(["render", "dev-alice", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "environment dev-alice: source: render: kustomize needs kubectl (or kustomize)"
        ),
        "{stderr}"
    );
    assert!(!out.exists());

    let mut repo = minimal_repo();
    repo.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: app\nversion: 0.1.0\n",
    )
    .write(
        "chart/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n",
    );
    repo.commit("a chart");
    repo.write(
        "environments/charted.yaml",
        &format!(
            "{HEADER}metadata: {{name: charted}}\nspec:\n  source: {{ref: main, path: chart}}\n"
        ),
    );
    let output = repo
        .sprout()
        .env("PATH", empty_path.path())
        .args(["render", "charted"])
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("render: helm needs helm, which is not installed"),
        "{stderr}"
    );
}

#[test]
fn duplicate_keys_and_invalid_utf8_in_manifests_and_specs() {
    let mut repo = minimal_repo();
    repo.write(
        "environments/dev.yaml",
        &format!("{HEADER}metadata: {{name: dev}}\nspec:\n  from: production\n"),
    );
    repo.write(
        "deploy/twice.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: real\ndata: {a: b}\nmetadata:\n  name: renamed\n",
    );
    repo.commit("a second metadata");
    rejects(
        &repo,
        "dev",
        &["deploy/twice.yaml:6", "duplicate key `metadata`"],
    );

    repo.write(
        "deploy/twice.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: real}\n",
    );
    std::fs::write(
        repo.path().join("deploy/latin1.yaml"),
        b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: latin1}\ndata: {city: M\xfcnchen}\n",
    )
    .unwrap();
    repo.commit("a Latin-1 file");
    rejects(&repo, "dev", &["deploy/latin1.yaml:4", "invalid UTF-8"]);

    std::fs::remove_file(repo.path().join("deploy/latin1.yaml")).unwrap();
    repo.commit("UTF-8 again");
    repo.write(
        "environments/dev.yaml",
        &format!(
            "{HEADER}metadata:\n  name: dev\n  labels:\n    sprout.dev/owner: alice\n    sprout.dev/owner: mallory\nspec:\n  from: production\n"
        ),
    );
    rejects(
        &repo,
        "dev",
        &[
            "environments/dev.yaml:7",
            "duplicate key `sprout.dev/owner`",
        ],
    );
    std::fs::write(
        repo.path().join("environments/dev.yaml"),
        [
            format!("{HEADER}metadata: {{name: dev}}\nspec:\n  from: production\n").as_bytes(),
            b"  overlay: {env: {CITY: M\xfcnchen}}\n",
        ]
        .concat(),
    )
    .unwrap();
    rejects(&repo, "dev", &["environments/dev.yaml:6", "invalid UTF-8"]);

    // The project's own settings are read as strictly.
    repo.write(
        "environments/dev.yaml",
        &format!("{HEADER}metadata: {{name: dev}}\nspec:\n  from: production\n"),
    );
    std::fs::write(
        repo.path().join("sprout.yaml"),
        b"project: bad-input\nstateDir: \xc3\x28\n",
    )
    .unwrap();
    rejects(&repo, "dev", &["sprout.yaml:2", "invalid UTF-8"]);
}

#[test]
fn deeply_nested_yaml_fails_fast_wherever_it_is_read() {
    let mut repo = minimal_repo();
    repo.write(
        "environments/dev.yaml",
        &format!("{HEADER}metadata: {{name: dev}}\nspec:\n  from: production\n"),
    );
    repo.write(
        "deploy/deep.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep}}\ndata: {}\n",
            "[".repeat(500_000)
        ),
    );
    repo.commit("500 KB of nesting");
    let started = std::time::Instant::now();
    rejects(
        &repo,
        "dev",
        &["deploy/deep.yaml:4", "nested deeper than 128"],
    );
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(1), "took {took:?}");

    // The project's settings too: they are read by every command.
    repo.write(
        "deploy/deep.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\n",
    );
    repo.commit("shallow again");
    repo.write(
        "sprout.yaml",
        &format!("project: deep\nstateDir: {}\n", "[".repeat(500_000)),
    );
    let started = std::time::Instant::now();
    rejects(&repo, "dev", &["sprout.yaml:2", "nested deeper than 128"]);
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(1), "took {took:?}");

    // And a patch, which the spec holds as a block of text until it is rendered.
    repo.write("sprout.yaml", "project: deep\n");
    repo.write(
        "environments/dev.yaml",
        &format!(
            "{HEADER}metadata: {{name: dev}}\nspec:\n  from: production\n  overlay:\n    patches:\n      - target: {{kind: ConfigMap, name: deep}}\n        patch: |\n          data: {}\n",
            "[".repeat(100_000)
        ),
    );
    let started = std::time::Instant::now();
    rejects(
        &repo,
        "dev",
        &["environments/dev.yaml:", "patch is nested deeper than 128"],
    );
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
}

#[test]
fn templates_cannot_read_sprouts_environment() {
    let repo = minimal_repo();
    repo.write(
        "environments/dev.yaml",
        &format!(
            "{HEADER}metadata: {{name: dev}}\nspec:\n  from: production\n  overlay:\n    patches:\n      - target: {{kind: ConfigMap, name: app}}\n        patch: |\n          data:\n            leaked: \"{{{{ get_env(name='SPROUT_TEST_SECRET') }}}}\"\n"
        ),
    );
    let output = repo
        .sprout()
        .args(["render", "dev"])
        .env("SPROUT_TEST_SECRET", "hunter2")
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("environments/dev.yaml:11: overlay.patches[0].patch:"),
        "{stderr}"
    );
    assert!(stderr.contains("`get_env()` is disabled"), "{stderr}");
    assert!(
        !stderr.contains("hunter2") && output.stdout.is_empty(),
        "{stderr}"
    );
}

/// A reader of `-o json` gets the error as JSON on stdout, with the exit code it comes with;
/// `-o yaml` likewise; the table format leaves stdout empty.
#[test]
fn a_json_reader_gets_the_error_as_json_on_stdout() {
    let mut repo = minimal_repo();
    repo.write(
        "deploy/broken.yaml",
        "kind: ConfigMap\nmetadata:\n  name: [broken\n",
    );
    repo.commit("broken");
    repo.write(
        "environments/dev.yaml",
        &format!("{HEADER}metadata: {{name: dev}}\nspec:\n  from: production\n"),
    );
    let output = repo
        .sprout()
        .args(["-o", "json", "render", "dev"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    let error = &report["error"];
    assert_eq!(error["environment"], "dev", "{report}");
    assert_eq!(error["stage"], "source", "{report}");
    assert_eq!(error["exitCode"], 2, "{report}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("deploy/broken.yaml:"), "{report}");
    assert!(stderr_of(&output).contains(message), "stderr says the same");

    // An error of no environment (an unknown one is a usage error).
    let output = repo
        .sprout()
        .args(["-o", "yaml", "sync", "nowhere"])
        .output()
        .unwrap();
    let code = output.status.code().unwrap();
    assert_ne!(code, 0);
    let report: serde_json::Value = serde_yaml::from_slice(&output.stdout).unwrap();
    assert_eq!(report["error"]["exitCode"], code, "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nowhere")
    );

    let output = repo.sprout().args(["render", "dev"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
}

#[test]
fn a_json_reader_gets_a_refused_command_line_as_json_too() {
    let dir = tempfile::tempdir().unwrap();
    // `-o json` before and after the subcommand, in each of its spellings; clap's colours forced
    // on, for stderr only.
    let refused: [(&[&str], &str); 7] = [
        (
            &["-o", "json", "list", "--bogus"],
            "unexpected argument '--bogus'",
        ),
        (
            &["list", "--bogus", "-o", "json"],
            "unexpected argument '--bogus'",
        ),
        (
            &["-ojson", "render"],
            "required arguments were not provided",
        ),
        (
            &["render", "--output=json"],
            "required arguments were not provided",
        ),
        (
            &["--output", "json", "--lock-timeout", "forever", "list"],
            "invalid value 'forever'",
        ),
        (
            &["install", "--pdb-api", "policy/v2", "-qojson"],
            "invalid value 'policy/v2'",
        ),
        (&["-o", "json"], "requires a subcommand"),
    ];
    for (args, says) in refused {
        let output = sprout_in(dir.path())
            .args(args)
            .env("CLICOLOR_FORCE", "1")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
                panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&output.stdout))
            });
        let error = &report["error"];
        assert_eq!(error["environment"], serde_json::Value::Null, "{report}");
        assert_eq!(error["stage"], "usage", "{report}");
        assert_eq!(error["exitCode"], 2, "{report}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(says), "{args:?}: {report}");
        assert!(!message.contains('\x1b'), "no colours: {report}");
        let stderr = stderr_of(&output);
        assert!(
            stderr.contains("\x1b["),
            "clap's coloured text as usual: {stderr}"
        );
    }

    let output = sprout_in(dir.path())
        .args(["--output=yaml", "up", "demo", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let report: serde_json::Value = serde_yaml::from_slice(&output.stdout).unwrap();
    assert_eq!(report["error"]["stage"], "usage", "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(stderr_of(&output).contains(message), "stderr says the same");

    // Values that only look like `-o json`, and no `-o json` at all: clap's text alone.
    let plain: [&[&str]; 4] = [
        &["render", "--", "-o", "json"],
        &["-Cojson", "list", "--bogus"],
        &["render", "dev", "--out=-ojson", "--bogus"],
        &["list", "--bogus"],
    ];
    for args in plain {
        let output = sprout_in(dir.path()).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(stderr_of(&output).starts_with("error: "), "{args:?}");
    }

    // Help and version are not errors: printed as always.
    let output = sprout_in(dir.path())
        .args(["-o", "json", "render", "--help"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Usage: sprout render"));
    let output = sprout_in(dir.path())
        .args(["--version", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        concat!("sprout ", env!("CARGO_PKG_VERSION"), "\n")
    );
}
