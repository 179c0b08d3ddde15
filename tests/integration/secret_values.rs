//! Secret values never leave the cluster through sprout, on the real control plane: `diff`
//! masks them and every annotation that may hold a copy of them, and a value the server refuses
//! is named by its field in the error, the state files and `status`, never shown.

use crate::cluster::{ControlPlane, control_plane, environment_on_control_plane, unique};
use crate::sync::{PRODUCTION, expect_exit, sync_json};
use crate::util::TestRepo;
use base64::Engine;

fn secret(name: &str, string_data: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData: {{{string_data}}}\n"
    )
}

fn project(env: &str, secrets: &str) -> TestRepo {
    let mut repo = TestRepo::new();
    repo.write("deploy/secrets.yaml", secrets)
        .write("environments/production.yaml", PRODUCTION)
        .write(
            &format!("environments/{env}.yaml"),
            &environment_on_control_plane(env, "production", "  overlay:\n    secrets: inline\n"),
        );
    repo.commit("production");
    repo
}

fn base64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn assert_hidden(shown: &str, values: &[&str]) {
    for value in values {
        assert!(!shown.contains(value), "«{value}» shown in:\n{shown}");
        assert!(
            !shown.contains(&base64(value)),
            "«{value}» (base64) shown in:\n{shown}"
        );
    }
}

#[test]
fn diff_masks_secret_values_and_the_annotations_that_copy_them() {
    let cp: ControlPlane = control_plane();
    let env = &unique("secret-diff");
    let mut repo = project(env, &secret("creds", "password: first-hunter2"));
    sync_json(&repo, &cp, env);
    // What `kubectl apply` leaves behind, and a tool's note that quotes the stored value.
    cp.kubectl_ok(&[
        "annotate",
        "secret",
        "creds",
        "-n",
        env,
        r#"kubectl.kubernetes.io/last-applied-configuration={"apiVersion":"v1","kind":"Secret","metadata":{"name":"creds"},"stringData":{"password":"first-hunter2"}}"#,
        &format!("example.com/checksum-source={}", base64("first-hunter2")),
        "example.com/owner=team-a",
    ]);
    // The rotation also stamps an annotation, so the diff shows the annotations around it.
    repo.write(
        "deploy/secrets.yaml",
        &secret("creds", "password: second-hunter2").replace(
            "name: creds}",
            "name: creds, annotations: {zz.example.com/rotated: \"2\"}}",
        ),
    );
    repo.commit("rotate");
    let (shown, _) = expect_exit(&repo, &cp, &["diff", env], 1);
    assert!(shown.contains(&format!("~ Secret/{env}/creds")), "{shown}");
    assert!(shown.contains("password: '*** (changed)'"), "{shown}");
    assert!(
        shown.contains(
            "kubectl.kubernetes.io/last-applied-configuration: '*** (may hold Secret values)'"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("example.com/checksum-source: '*** (may hold Secret values)'"),
        "{shown}"
    );
    assert!(shown.contains("example.com/owner: team-a"), "{shown}");
    assert_hidden(&shown, &["first-hunter2", "second-hunter2"]);
    let (json, _) = expect_exit(&repo, &cp, &["-o", "json", "diff", env], 1);
    assert_hidden(&json, &["first-hunter2", "second-hunter2"]);
}

#[test]
fn a_refused_secret_value_is_named_by_its_field_never_shown() {
    let cp = control_plane();
    let env = &unique("secret-invalid");
    let repo = project(
        env,
        &format!(
            "{}---\n{}",
            secret("fine", "token: fine-value-1"),
            secret("bad", "pin: 987654321, name: visible-hunter2")
        ),
    );
    // A number where a string goes: refused before the first write (exit 2).
    let (stdout, stderr) = expect_exit(&repo, &cp, &["sync", env], 2);
    assert!(stderr.contains(&format!("Secret/{env}/bad")), "{stderr}");
    assert!(stderr.contains("stringData[pin]"), "{stderr}");
    assert_hidden(&(stdout + &stderr), &["987654321", "visible-hunter2"]);

    let mut stored = String::new();
    for entry in walk(&repo.path().join(".sprout")) {
        stored.push_str(&String::from_utf8_lossy(&std::fs::read(entry).unwrap()));
    }
    assert!(
        stored.contains("stringData[pin]"),
        "the error is stored: {stored}"
    );
    assert_hidden(&stored, &["987654321", "visible-hunter2"]);
    let (status, _) = expect_exit(&repo, &cp, &["-o", "json", "status", env], 0);
    assert!(status.contains("stringData[pin]"), "{status}");
    assert_hidden(&status, &["987654321", "visible-hunter2"]);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
