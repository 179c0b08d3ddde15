//! `overlay.secrets: copy` on the real control plane: Secrets read from an allow-listed
//! namespace at sync time, kept in step with their source, pruned when dropped, and their
//! values never shown.

use crate::cluster::{ControlPlane, control_plane, environment_on_control_plane, unique};
use crate::sync::{PRODUCTION, expect_exit, names, sync_json};
use crate::util::TestRepo;

/// A value that must never appear in anything sprout prints or stores outside the Secret.
fn secret_value(tag: &str) -> String {
    format!("do-not-print-{tag}-{}", unique("v"))
}

fn spec(env: &str, from: &str, names: &str) -> String {
    environment_on_control_plane(
        env,
        "production",
        &format!("  overlay:\n    secrets:\n      copy: {{from: {from}, names: [{names}]}}\n"),
    )
}

fn secret_data(cp: &ControlPlane, namespace: &str, name: &str, key: &str) -> String {
    let encoded = cp.kubectl_ok(&[
        "get",
        "secret",
        name,
        "-n",
        namespace,
        "-o",
        &format!("jsonpath={{.data.{key}}}"),
    ]);
    use base64::Engine;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .unwrap(),
    )
    .unwrap()
}

fn create_secret(cp: &ControlPlane, namespace: &str, name: &str, key: &str, value: &str) {
    cp.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        name,
        "-n",
        namespace,
        &format!("--from-literal={key}={value}"),
    ]);
}

#[test]
fn copied_secrets_follow_their_source_are_pruned_and_never_shown() {
    let cp = control_plane();
    let env = &unique("copy");
    let source = &unique("dev-secrets");
    let private = &unique("private");
    for namespace in [source, private] {
        cp.kubectl_ok(&["create", "namespace", namespace]);
    }
    let password = secret_value("password");
    let api_key = secret_value("key");
    create_secret(&cp, source, "db", "password", &password);
    create_secret(&cp, source, "api-key", "key", &api_key);
    create_secret(&cp, private, "db", "password", "not-for-environments");

    let mut repo = TestRepo::new();
    repo.write(
        "deploy/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {mode: dev}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: inline-one}\nstringData: {token: from-git}\n",
    )
    .write("environments/production.yaml", PRODUCTION)
    .write(
        "sprout.yaml",
        &format!("secretSources:\n- namespace: {source}\n"),
    )
    .write(
        &format!("environments/{env}.yaml"),
        &spec(env, source, "db, api-key"),
    );
    repo.commit("production");

    // First sync: both copies land in the environment's namespace; the inline Secret does not.
    let first = sync_json(&repo, &cp, env);
    let created = names(&first, "created");
    for name in ["db", "api-key"] {
        assert!(
            created.contains(&format!("Secret/{env}/{name}")),
            "{created:?}"
        );
    }
    assert!(!cp.exists("secret", env, "inline-one"));
    assert_eq!(secret_data(&cp, env, "db", "password"), password);
    assert_eq!(secret_data(&cp, env, "api-key", "key"), api_key);
    let labels = cp.kubectl_ok(&[
        "get",
        "secret",
        "db",
        "-n",
        env,
        "-o",
        "jsonpath={.metadata.labels}{.metadata.annotations}",
    ]);
    assert!(
        labels.contains(&format!("\"sprout.dev/environment\":\"{env}\"")),
        "{labels}"
    );
    assert!(
        labels.contains(&format!("\"sprout.dev/copied-from\":\"{source}/db\"")),
        "{labels}"
    );

    // A second sync changes nothing.
    let again = sync_json(&repo, &cp, env);
    assert_eq!(again["changes"]["writes"], 0, "{again}");

    // The source changes: diff shows drift with values masked, sync takes the new value.
    let rotated = secret_value("rotated");
    cp.kubectl_ok(&["delete", "secret", "db", "-n", source]);
    create_secret(&cp, source, "db", "password", &rotated);
    let (diff, _) = expect_exit(&repo, &cp, &["diff", env], 1);
    assert!(diff.contains(&format!("Secret/{env}/db")), "{diff}");
    let after = sync_json(&repo, &cp, env);
    assert_eq!(
        names(&after, "configured"),
        vec![format!("Secret/{env}/db")]
    );
    assert_eq!(secret_data(&cp, env, "db", "password"), rotated);

    // Dropped from the list: pruned like any object of the environment.
    repo.write(
        &format!("environments/{env}.yaml"),
        &spec(env, source, "db"),
    );
    let pruned = sync_json(&repo, &cp, env);
    assert_eq!(
        names(&pruned, "pruned"),
        vec![format!("Secret/{env}/api-key")]
    );
    assert!(!cp.exists("secret", env, "api-key"));

    // Everything sprout printed or stored: no value, old or new.
    let (status, _) = expect_exit(&repo, &cp, &["-o", "json", "status", env], 0);
    let (rendered, render_note) = expect_exit(&repo, &cp, &["render", env], 0);
    assert!(
        render_note.contains(&format!("Secret(s) db are copied from {source}")),
        "{render_note}"
    );
    let inventory = cp.inventory(env, "yaml");
    let state =
        std::fs::read_to_string(repo.path().join(format!(".sprout/envs/{env}.json"))).unwrap();
    let shown = [
        first.to_string(),
        after.to_string(),
        diff,
        status,
        rendered,
        inventory,
        state,
    ];
    for value in [&password, &api_key, &rotated] {
        for text in &shown {
            assert!(
                !text.contains(value.as_str()),
                "a secret value was shown: {text}"
            );
        }
    }

    // A Secret missing from the source fails the sync before anything is written.
    repo.write(
        &format!("environments/{env}.yaml"),
        &spec(env, source, "db, missing"),
    );
    let mark = cp.audit_mark();
    let (_, error) = expect_exit(&repo, &cp, &["sync", env], 1);
    assert!(
        error.contains(&format!("Secret/{source}/missing")) && error.contains("not found"),
        "{error}"
    );
    assert_eq!(cp.writes_since(mark, env), Vec::<String>::new());

    // A namespace the project did not allow-list is refused before any cluster is asked.
    repo.write(
        &format!("environments/{env}.yaml"),
        &spec(env, private, "db"),
    );
    for args in [&["sync", env][..], &["render", env][..]] {
        let (_, error) = expect_exit(&repo, &cp, args, 2);
        assert!(
            error.contains(&format!("environments/{env}.yaml:"))
                && error.contains(&format!("`{private}` is not an allow-listed secret source")),
            "{error}"
        );
    }
    assert_eq!(
        secret_data(&cp, env, "db", "password"),
        rotated,
        "nothing changed"
    );
}

#[test]
fn a_secret_source_with_a_context_is_read_through_that_context() {
    let cp = control_plane();
    let env = &unique("copy-ctx");
    let source = &unique("vault");
    cp.kubectl_ok(&["create", "namespace", source]);
    let token = secret_value("token");
    create_secret(&cp, source, "registry", "token", &token);

    // The user's kubeconfig: the test cluster as `envtest`, plus `vault-down`, a context whose
    // server does not answer.
    let mut repo = TestRepo::new();
    let kubeconfig = std::fs::read_to_string(&cp.kubeconfig).unwrap();
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut config: serde_json::Value = serde_yaml::from_str(&kubeconfig).unwrap();
    let mut down_cluster = config["clusters"][0].clone();
    down_cluster["name"] = "vault-down".into();
    down_cluster["cluster"]["server"] = format!("https://127.0.0.1:{dead}").into();
    config["clusters"]
        .as_array_mut()
        .unwrap()
        .push(down_cluster);
    let mut down_context = config["contexts"][0].clone();
    down_context["name"] = "vault-down".into();
    down_context["context"]["cluster"] = "vault-down".into();
    config["contexts"]
        .as_array_mut()
        .unwrap()
        .push(down_context);
    let user_kubeconfig = repo.path().join("kubeconfig");
    std::fs::write(&user_kubeconfig, serde_json::to_string(&config).unwrap()).unwrap();

    repo.write(
        "deploy/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {mode: dev}\n",
    )
    .write("environments/production.yaml", PRODUCTION)
    .write(
        &format!("environments/{env}.yaml"),
        &spec(env, source, "registry"),
    )
    .write(
        "sprout.yaml",
        &format!("secretSources:\n- {{namespace: {source}, context: vault-down}}\n"),
    );
    repo.commit("production");
    let sprout = |args: &[&str]| {
        repo.sprout()
            .env("KUBECONFIG", &user_kubeconfig)
            .args(args)
            .output()
            .unwrap()
    };

    let refused = sprout(&["sync", env]);
    let error = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{error}");
    assert!(
        error.contains(&format!("127.0.0.1:{dead}")) && error.contains("unreachable"),
        "{error}"
    );
    assert!(!cp.exists("namespace", "", env), "nothing was written");

    repo.write(
        "sprout.yaml",
        &format!("secretSources:\n- {{namespace: {source}, context: envtest}}\n"),
    );
    let synced = sprout(&["sync", env]);
    assert!(
        synced.status.success(),
        "{}",
        String::from_utf8_lossy(&synced.stderr)
    );
    assert_eq!(secret_data(&cp, env, "registry", "token"), token);
}
