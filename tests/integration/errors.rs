//! Errors people can act on, on the real control plane: every unserved kind at once with what
//! the server serves instead, objects too large refused before the first write, server
//! messages bounded, definite answers not retried, and a server that never answers given up on
//! in seconds.

use crate::cluster::{control_plane, unique};
use crate::sync::{expect_exit, project_on_control_plane};
use crate::util::stderr_of;
use std::time::{Duration, Instant};

#[test]
fn every_unserved_kind_is_named_at_once_with_the_versions_served() {
    let cp = control_plane();
    let env = &unique("errors-kinds");
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\n---\n\
                apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: old}\nspec: {}\n---\n\
                apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: older}\nspec: {}\n---\n\
                apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec: {}\n---\n\
                apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: pdb}\nspec: {}\n---\n\
                apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: claim}\nspec: {}\n---\n\
                apiVersion: widgets.example.com/v1\nkind: Widget\nmetadata: {name: w}\n";
    let repo = project_on_control_plane(env, "deploy/app.yaml", text);
    let mark = cp.audit_mark();
    let (_, stderr) = expect_exit(&repo, &cp, &["sync", env], 2);
    for line in [
        format!(
            "Deployment apps/v1beta1 (Deployment/{env}/old and 1 more): the server serves Deployment as apps/v1; change apiVersion"
        ),
        format!(
            "CronJob batch/v1 (CronJob/{env}/nightly): the server serves CronJob as batch/v1beta1"
        ),
        format!(
            "PodDisruptionBudget policy/v1 (PodDisruptionBudget/{env}/pdb): the server serves PodDisruptionBudget as policy/v1beta1"
        ),
        format!(
            "ResourceClaim resource.k8s.io/v1 (ResourceClaim/{env}/claim): group resource.k8s.io is built into Kubernetes but this server does not serve it"
        ),
        format!(
            "Widget widgets.example.com/v1 (Widget/{env}/w): apply its CustomResourceDefinition first"
        ),
    ] {
        assert!(stderr.contains(&line), "missing «{line}» in:\n{stderr}");
    }
    assert!(stderr.contains("5 kind(s) not served"), "{stderr}");
    assert_eq!(cp.writes_since(mark, env), Vec::<String>::new());
}

#[test]
fn an_object_too_large_for_the_server_fails_before_the_first_write() {
    let cp = control_plane();
    let env = &unique("errors-large");
    let big = "x".repeat(1_700_000);
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: small}}\ndata: {{a: b}}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: huge}}\ndata: {{blob: {big}}}\n"
    );
    let repo = project_on_control_plane(env, "deploy/app.yaml", &text);
    let mark = cp.audit_mark();
    let (_, stderr) = expect_exit(&repo, &cp, &["sync", env], 2);
    assert!(
        stderr.contains(&format!(
            "ConfigMap/{env}/huge: 1.6 MiB serialized, more than the 1.5 MiB the API server stores per object"
        )),
        "{stderr}"
    );
    assert!(stderr.len() < 1000, "{stderr}");
    assert_eq!(cp.writes_since(mark, env), Vec::<String>::new());
    assert!(!cp.exists("configmap", env, "small"));
}

/// A CRD whose schema breaks one rule in each of its many properties: the server lists them
/// all in one message, which sprout cuts short. The answer is definite, so it is asked once.
#[test]
fn long_server_messages_are_bounded_and_definite_answers_not_retried() {
    let cp = control_plane();
    let env = &unique("errors-long");
    let properties: String = (0..400)
        .map(|i| format!("          property{i}: {{description: \"the field number {i}\"}}\n"))
        .collect();
    let text = format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: things.{env}.sprout.test}}\n\
         spec:\n  group: {env}.sprout.test\n  scope: Namespaced\n  names: {{kind: Thing, plural: things}}\n  versions:\n  \
         - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        \
         properties:\n{properties}"
    );
    let repo = project_on_control_plane(env, "deploy/crd.yaml", &text);
    let mark = cp.audit_mark();
    let (_, stderr) = expect_exit(&repo, &cp, &["sync", env], 1);
    assert!(
        stderr.contains(&format!(
            "CustomResourceDefinition/things.{env}.sprout.test: apply:"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("more characters)"), "{stderr}");
    assert!(stderr.len() < 1500, "{} bytes: {stderr}", stderr.len());
    let text = std::fs::read_to_string(cp.kubeconfig.parent().unwrap().join("audit.log")).unwrap();
    let applies = text
        .lines()
        .skip(mark)
        .filter(|l| {
            l.contains("\"userAgent\":\"sprout/")
                && l.contains(&format!("customresourcedefinitions/things.{env}"))
                && l.contains("\"verb\":\"patch\"")
        })
        .count();
    assert_eq!(applies, 1, "a 422 is final: asked once");
}

/// A TLS server on loopback that completes the handshake, reads the request and never answers
/// (a hung API server behind a load balancer that terminates TLS); its URL.
fn silent_tls_server() -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    let config = std::sync::Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let connection = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(connection, stream);
                let mut buffer = [0u8; 4096];
                // Read requests for as long as the client sends them; answer none.
                while matches!(std::io::Read::read(&mut tls, &mut buffer), Ok(n) if n > 0) {}
            });
        }
    });
    url
}

/// A server that accepts connections and never says a word: one that swallows the TLS
/// handshake (a firewall, a hung process) and one that completes it and never answers. Every
/// command gives up within 30 s and names the server.
#[test]
fn a_server_that_never_answers_is_given_up_on_within_30_seconds() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let swallower = format!("https://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let env = "silent";
    let repo = project_on_control_plane(
        env,
        "deploy/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n",
    );
    for server in [swallower, silent_tls_server()] {
        let kubeconfig = repo.path().join("silent.kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!("apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{server}\", insecure-skip-tls-verify: true}}}}]\n\
                     users: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: envtest, context: {{cluster: c, user: u}}}}]\ncurrent-context: envtest\n"),
        )
        .unwrap();
        for command in [["sync", env], ["status", env]] {
            let started = Instant::now();
            let output = repo
                .sprout()
                .env("KUBECONFIG", &kubeconfig)
                .args(command)
                .timeout(Duration::from_secs(120))
                .output()
                .unwrap();
            let took = started.elapsed();
            // `status` shows the stored state and notes why the live state is missing.
            let text = stderr_of(&output) + &crate::util::stdout_of(&output);
            assert!(
                took < Duration::from_secs(30),
                "{command:?} on {server} took {took:?}: {text}"
            );
            assert!(
                text.contains(&format!(
                    "cluster {server} is unreachable: no answer in time"
                )),
                "{command:?}: {text}"
            );
            if command[0] == "sync" {
                assert_eq!(output.status.code(), Some(1), "{command:?}: {text}");
            }
        }
    }
}

/// Server-side apply of an APIService makes an API server before 1.21 panic and drop the
/// connection (kubernetes#89264), a dry run too. On a cluster of its own (envtest, 1.20.2) the
/// sync refuses it before the first write, and before any request about it: the message names
/// the object, the server's version, the bug and what to do; the Service beside it was not
/// written, and the server never panicked.
#[test]
fn an_api_service_on_a_server_before_1_21_is_refused_before_the_first_write() {
    let env = &crate::cluster::unique("errors-apisvc");
    let mut repo = crate::util::TestRepo::new();
    repo.write(
        "deploy/a.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: metrics}\nspec:\n  ports: [{port: 443, protocol: TCP}]\n---\n\
         apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {name: v1beta1.metrics.example.com}\n\
         spec: {group: metrics.example.com, version: v1beta1, groupPriorityMinimum: 100, versionPriority: 100, insecureSkipTLSVerify: true, service: {name: metrics, namespace: default}}\n",
    )
    .write("environments/production.yaml", crate::sync::PRODUCTION)
    .write(
        &format!("environments/{env}.yaml"),
        &format!("apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  from: production\n  cluster: {{provider: envtest}}\n"),
    );
    repo.commit("apiservice");
    let up = repo
        .sprout()
        .args(["up", env, "--no-wait"])
        .output()
        .unwrap();
    let stderr = crate::util::stderr_of(&up);
    let cluster = repo.path().join(".sprout/clusters").join(env);
    let services = std::process::Command::new("kubectl")
        .env("KUBECONFIG", cluster.join("kubeconfig"))
        .args(["get", "services", "-A", "-o", "name"])
        .output()
        .unwrap();
    // `status` and `diff` compare by a dry-run apply: with the APIService in the cluster (made
    // without server-side apply), they refuse it as sync does, before any request about it.
    let made = std::process::Command::new("kubectl")
        .env("KUBECONFIG", cluster.join("kubeconfig"))
        .args(["create", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut kubectl| {
            use std::io::Write;
            kubectl.stdin.take().unwrap().write_all(
                b"apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {name: v1beta1.metrics.example.com}\n\
                  spec: {group: metrics.example.com, version: v1beta1, groupPriorityMinimum: 100, versionPriority: 100, insecureSkipTLSVerify: true, service: {name: metrics, namespace: default}}\n",
            )?;
            kubectl.wait_with_output()
        })
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let compared: Vec<(String, std::process::Output)> = ["status", "diff"]
        .iter()
        .map(|command| {
            (
                command.to_string(),
                repo.sprout()
                    .args([*command, env.as_str()])
                    .output()
                    .unwrap(),
            )
        })
        .collect();
    let apiserver_log =
        std::fs::read_to_string(cluster.join("control-plane/apiserver.log")).unwrap_or_default();
    let down = repo.sprout().args(["down", env]).output().unwrap();
    // `diff` fails; `status` shows the record, and why it is not refreshed from the cluster.
    for (command, output) in &compared {
        let text = format!(
            "{}{}",
            crate::util::stdout_of(output),
            crate::util::stderr_of(output)
        );
        assert_eq!(
            output.status.success(),
            *command == "status",
            "{command}: {text}"
        );
        assert!(
            text.contains("kubernetes/kubernetes#89264"),
            "{command}: {text}"
        );
    }
    assert!(down.status.success(), "{}", crate::util::stderr_of(&down));
    assert_eq!(up.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("APIService/v1beta1.metrics.example.com: this API server (Kubernetes v1.20.2) fails on every server-side apply of an APIService: it panics and closes the connection (kubernetes/kubernetes#89264, fixed in Kubernetes 1.21), and sprout applies every object that way; leave APIServices out (`overlay.drop: [APIService]`) or use a cluster of Kubernetes 1.21 or later"),
        "{stderr}"
    );
    assert!(
        services.status.success(),
        "{}",
        String::from_utf8_lossy(&services.stderr)
    );
    let services = String::from_utf8_lossy(&services.stdout);
    assert!(
        !services.contains("service/metrics"),
        "nothing written: {services}"
    );
    assert!(
        apiserver_log.contains("Serving securely") && !apiserver_log.contains("panic"),
        "no request about the APIService was sent"
    );
}

/// Objects with fields the 1.20 server does not know (a StatefulSet's `minReadySeconds`, a gRPC
/// probe, a field a CRD of the same sync does not declare), among good objects: every one is
/// named with its fields before the first write, the sync exits 2 (invalid input) and the audit
/// log shows not one write. Unknown fields a CRD preserves pass; so do the good objects once the
/// bad ones are gone. A field added to an existing object is refused the same way, and a long
/// list is bounded.
#[test]
fn fields_newer_than_the_server_are_refused_before_the_first_write() {
    let cp = control_plane();
    let env = &unique("errors-fields");
    let group = format!("{env}.sprout.test");
    let good = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\ndata: {{a: b}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{selector: {{app: web}}, ports: [{{port: 80}}]}}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  \
         template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - name: web\n        image: nginx\n        \
         livenessProbe: {{httpGet: {{path: /, port: 80}}, periodSeconds: 5}}\n        resources: {{limits: {{cpu: 1}}}}\n---\n\
         apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: gizmos.{group}}}\n\
         spec:\n  group: {group}\n  scope: Namespaced\n  names: {{kind: Gizmo, plural: gizmos}}\n  versions:\n  - name: v1\n    \
         served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          \
         spec:\n            type: object\n            properties:\n              size: {{type: integer}}\n              \
         free: {{type: object, x-kubernetes-preserve-unknown-fields: true}}\n---\n\
         apiVersion: {group}/v1\nkind: Gizmo\nmetadata: {{name: good}}\nspec: {{size: 1, free: {{anything: {{goes: [1]}}}}}}\n"
    );
    let bad = format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db}}\nspec:\n  minReadySeconds: 5\n  serviceName: db\n  \
         selector: {{matchLabels: {{app: db}}}}\n  template:\n    metadata: {{labels: {{app: db}}}}\n    spec:\n      \
         containers: [{{name: db, image: postgres}}]\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: api}}\nspec:\n  selector: {{matchLabels: {{app: api}}}}\n  \
         template:\n    metadata: {{labels: {{app: api}}}}\n    spec:\n      containers:\n      - name: api\n        image: api\n        \
         livenessProbe: {{grpc: {{port: 9000}}, periodSeconds: 5}}\n---\n\
         apiVersion: {group}/v1\nkind: Gizmo\nmetadata: {{name: bad}}\nspec: {{size: 1, color: red}}\n"
    );
    let mut repo = project_on_control_plane(env, "deploy/good.yaml", &good);
    repo.write("deploy/bad.yaml", &bad);
    repo.commit("fields of a newer Kubernetes");

    let mark = cp.audit_mark();
    let (stdout, stderr) = expect_exit(&repo, &cp, &["-o", "json", "sync", env], 2);
    assert!(
        stderr.contains("3 object(s) have fields the server (Kubernetes v1.20.2) does not know"),
        "{stderr}"
    );
    for line in [
        format!("StatefulSet/{env}/db: spec.minReadySeconds"),
        format!("Deployment/{env}/api: spec.template.spec.containers[0].livenessProbe.grpc"),
        format!("Gizmo/{env}/bad: spec.color"),
    ] {
        assert!(stderr.contains(&line), "missing «{line}» in:\n{stderr}");
    }
    for fine in ["/web", "/settings", "/good"] {
        assert!(!stderr.contains(fine), "{fine} is fine: {stderr}");
    }
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["error"]["exitCode"], 2, "{report}");
    assert_eq!(
        cp.all_writes_since(mark),
        Vec::<String>::new(),
        "nothing written"
    );

    // Without them, the rest applies: preserved unknown fields pass.
    repo.write("deploy/bad.yaml", "");
    repo.commit("without the newer fields");
    expect_exit(&repo, &cp, &["sync", env, "--no-wait"], 0);
    assert!(cp.exists(&format!("gizmos.{group}"), env, "good"));

    // A field added to an object that exists is judged by the dry run: refused the same way.
    // Many at once are listed up to a bound.
    let many: String = (0..25)
        .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: extra-{i:02}}}\nbogus: {i}\n"))
        .collect();
    repo.write(
        "deploy/good.yaml",
        &good.replace("data: {a: b}", "data: {a: c}\nspec: {x: 1}"),
    )
    .write("deploy/bad.yaml", &many);
    repo.commit("unknown fields on an existing object and many new ones");
    let mark = cp.audit_mark();
    let (_, stderr) = expect_exit(&repo, &cp, &["sync", env], 2);
    assert!(stderr.contains("26 object(s) have fields"), "{stderr}");
    assert!(
        stderr.contains(&format!("ConfigMap/{env}/extra-00: bogus")),
        "{stderr}"
    );
    assert!(stderr.contains("+6 more"), "{stderr}");
    assert!(stderr.len() < 3000, "{} bytes: {stderr}", stderr.len());
    assert_eq!(cp.writes_since(mark, env), Vec::<String>::new());
    assert_eq!(
        cp.kubectl_ok(&[
            "get",
            "configmap",
            "settings",
            "-n",
            env,
            "-o",
            "jsonpath={.data.a}"
        ]),
        "b"
    );
    // diff and status say the same of the existing object, without failing.
    let (stdout, _) = expect_exit(&repo, &cp, &["diff", env], 1);
    assert!(
        stdout.contains(&format!(
            "! ConfigMap/{env}/settings: field(s) the server does not know: spec"
        )),
        "{stdout}"
    );
    let (stdout, _) = expect_exit(&repo, &cp, &["-o", "json", "status", env], 0);
    assert!(
        stdout.contains(&format!(
            "ConfigMap/{env}/settings (differs in fields the server does not know)"
        )),
        "{stdout}"
    );
}

/// The document the server publishes drops what a CRD's `nullable` property declares, but its
/// typed conversion reads the CRD's own schema and refuses an unknown field below it (a 500 when
/// the object's turn comes, seen on 1.20). A custom resource of a CRD that is on the server (not
/// in the sync) is checked against that CRD: refused before the first write. A null there, and
/// the declared fields, pass.
#[test]
fn fields_below_a_nullable_field_of_a_crd_on_the_server_are_refused_before_the_first_write() {
    let cp = control_plane();
    let env = &unique("errors-nullable");
    let group = format!("{env}.sprout.test");
    cp.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: sprockets.{group}}}\n\
             spec:\n  group: {group}\n  scope: Namespaced\n  names: {{kind: Sprocket, plural: sprockets}}\n  versions:\n  \
             - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        \
             properties:\n          spec:\n            type: object\n            properties:\n              \
             teeth: {{type: integer}}\n              \
             gear: {{type: object, nullable: true, properties: {{ratio: {{type: string}}}}}}\n"
        ),
    );
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        &format!("crd/sprockets.{group}"),
    ]);
    let sprocket = |name: &str, spec: &str| {
        format!(
            "---\napiVersion: {group}/v1\nkind: Sprocket\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        )
    };
    let good = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n"
        .to_string()
        + &sprocket("plain", "{teeth: 3, gear: null}")
        + &sprocket("geared", "{gear: {ratio: '1:2'}}");
    let mut repo = project_on_control_plane(
        env,
        "deploy/a.yaml",
        &(good.clone() + &sprocket("bad", "{gear: {ratio: '1:3', size: 2}}")),
    );
    let mark = cp.audit_mark();
    let (_, stderr) = expect_exit(&repo, &cp, &["sync", env, "--no-wait"], 2);
    assert!(
        stderr.contains(&format!("Sprocket/{env}/bad: spec.gear.size")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("/plain") && !stderr.contains("/geared"),
        "{stderr}"
    );
    assert_eq!(
        cp.writes_since(mark, env),
        Vec::<String>::new(),
        "nothing written"
    );

    repo.write("deploy/a.yaml", &good);
    repo.commit("without the undeclared field");
    expect_exit(&repo, &cp, &["sync", env, "--no-wait"], 0);
    assert!(cp.exists(&format!("sprockets.{group}"), env, "geared"));
    expect_exit(&repo, &cp, &["down", env], 0);
    cp.kubectl_ok(&["delete", "crd", &format!("sprockets.{group}")]);
}

/// A cached schema can describe a newer server than the one now at that address (downgraded,
/// or rebuilt): it is revalidated (`If-None-Match`) whenever there is something to check, so a
/// field it claims but the server lacks is still refused before the first write.
#[test]
fn a_schema_cache_of_a_newer_server_never_lets_a_field_this_server_lacks_through() {
    let cp = control_plane();
    let env = &unique("errors-newer-cache");
    let cache = tempfile::tempdir().unwrap();
    let sprout = |repo: &crate::util::TestRepo, args: &[&str]| {
        let output = crate::cluster::with_kubeconfig(&mut repo.sprout(), &cp)
            .env("SPROUT_CACHE", cache.path())
            .args(args)
            .output()
            .unwrap();
        (output.status.code(), stderr_of(&output))
    };
    let mut repo = project_on_control_plane(
        env,
        "deploy/a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n",
    );
    let (code, stderr) = sprout(&repo, &["sync", env, "--no-wait"]);
    assert_eq!(code, Some(0), "{stderr}");

    // The cache now says what a newer server would: a StatefulSet's minReadySeconds, and
    // another document (ETag).
    let folder = cache.path().join("openapi");
    let file = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("the schema is cached");
    let mut cached: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    cached["etag"] = "\"a-newer-server\"".into();
    cached["definitions"]["io.k8s.api.apps.v1.StatefulSetSpec"]["Fields"]["fields"]["minReadySeconds"] =
        serde_json::json!({"Scalar": "Integer"});
    std::fs::write(&file, serde_json::to_vec(&cached).unwrap()).unwrap();

    repo.write(
        "deploy/b.yaml",
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  minReadySeconds: 5\n  serviceName: db\n  \
         selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec:\n      \
         containers: [{name: db, image: postgres}]\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: more}\ndata: {a: b}\n",
    );
    repo.commit("a field of a newer Kubernetes");
    let mark = cp.audit_mark();
    let (code, stderr) = sprout(&repo, &["sync", env, "--no-wait"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("StatefulSet/{env}/db: spec.minReadySeconds")),
        "{stderr}"
    );
    assert_eq!(
        cp.writes_since(mark, env),
        Vec::<String>::new(),
        "nothing written"
    );
    let (code, stderr) = sprout(&repo, &["down", env]);
    assert_eq!(code, Some(0), "{stderr}");
}

/// A value of a type the schema does not take (a string for an integer, a number for a string,
/// a list for a map) fails the 1.20 server's typed conversion with a 500, and only when the
/// object's turn comes: each is named with its path and the types before the first write (a
/// Secret's too, by its field only: see `secret_values`). A numeric quantity (sent as text), an
/// int-or-string port given by name, and a null pass.
#[test]
fn values_of_the_wrong_type_are_refused_before_the_first_write() {
    let cp = control_plane();
    let env = &unique("errors-types");
    let group = format!("{env}.sprout.test");
    let deployment = |name: &str, spec: &str| {
        format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  \
             template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n      - name: {name}\n        image: nginx\n        \
             resources: {{limits: {{cpu: 1}}}}\n{spec}"
        )
    };
    let good = deployment("web", "  replicas: null\n")
        + "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}\n"
        + &format!(
            "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: gizmos.{group}}}\n\
             spec:\n  group: {group}\n  scope: Namespaced\n  names: {{kind: Gizmo, plural: gizmos}}\n  versions:\n  - name: v1\n    \
             served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          \
             spec:\n            type: object\n            properties:\n              size: {{type: integer}}\n"
        );
    let bad = deployment("api", "  replicas: '2'\n")
        + &deployment("rollout", "  strategy: []\n")
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: numbers}\ndata: {a: 1, b: x}\nbinaryData: {blob: 'hunter2!', fine: aHVudGVyMg==}\n"
        + &format!(
            "---\napiVersion: {group}/v1\nkind: Gizmo\nmetadata: {{name: bad}}\nspec: {{size: '1'}}\n"
        );
    let mut repo = project_on_control_plane(env, "deploy/good.yaml", &good);
    repo.write("deploy/bad.yaml", &bad);
    repo.commit("values of the wrong type");

    let mark = cp.audit_mark();
    let (_, stderr) = expect_exit(&repo, &cp, &["sync", env, "--no-wait"], 2);
    assert!(
        stderr.contains("4 object(s) have fields the server"),
        "{stderr}"
    );
    for line in [
        format!("Deployment/{env}/api: spec.replicas (expected integer, found string)"),
        format!("Deployment/{env}/rollout: spec.strategy (expected map, found list)"),
        format!(
            "ConfigMap/{env}/numbers: binaryData[blob] (expected base64, found other text), data[a] (expected string, found integer)"
        ),
        format!("Gizmo/{env}/bad: spec.size (expected integer, found string)"),
    ] {
        assert!(stderr.contains(&line), "missing «{line}» in:\n{stderr}");
    }
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(!stderr.contains("/web"), "{stderr}");
    // The environment's objects, and its CRD (named after it).
    let writes: Vec<String> = cp
        .all_writes_since(mark)
        .into_iter()
        .filter(|w| w.contains(env.as_str()))
        .collect();
    assert_eq!(writes, Vec::<String>::new(), "nothing written");

    repo.write("deploy/bad.yaml", "");
    repo.commit("without them");
    expect_exit(&repo, &cp, &["sync", env, "--no-wait"], 0);
    assert!(cp.exists("deployments", env, "web"));
    expect_exit(&repo, &cp, &["down", env], 0);
}

/// The server's schema is cached per server, and a cached copy can be stale: a field a CRD
/// gained after it was cached is never refused (sprout asks again, and the dry run decides).
#[test]
fn a_stale_schema_cache_never_refuses_a_field_the_server_knows() {
    let cp = control_plane();
    let env = &unique("errors-stale");
    let group = format!("{env}.sprout.test");
    let crd = |fields: &str| {
        format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: gadgets.{group}}}\n\
             spec:\n  group: {group}\n  scope: Namespaced\n  names: {{kind: Gadget, plural: gadgets}}\n  versions:\n  \
             - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        \
             properties:\n          spec: {{type: object, properties: {{{fields}}}}}\n"
        )
    };
    // The CRD is the cluster's, not the environment's (applied by hand).
    cp.kubectl_stdin(&["apply", "-f", "-"], &crd("size: {type: integer}"));
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        &format!("crd/gadgets.{group}"),
    ]);
    let gadget = |name: &str, spec: &str| {
        format!(
            "---\napiVersion: {group}/v1\nkind: Gadget\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        )
    };
    let mut repo = project_on_control_plane(env, "deploy/a.yaml", &gadget("one", "{size: 1}"));
    expect_exit(&repo, &cp, &["sync", env, "--no-wait"], 0);
    // Known to the server's schema now, and so to sprout's cached copy once it asked.
    let (_, stderr) = expect_exit(&repo, &cp, &["sync", env, "--no-wait"], 0);
    assert!(!stderr.contains("does not know"), "{stderr}");

    cp.kubectl_stdin(
        &["apply", "-f", "-"],
        &crd("size: {type: integer}, color: {type: string}"),
    );
    repo.write(
        "deploy/a.yaml",
        &(gadget("one", "{size: 1}") + &gadget("two", "{size: 2, color: red}")),
    );
    repo.commit("a field the CRD gained after the schema was cached");
    expect_exit(&repo, &cp, &["sync", env, "--no-wait"], 0);
    assert!(cp.exists(&format!("gadgets.{group}"), env, "two"));

    // On a shared cluster a CRD that exists is left as it is, so its custom resources answer
    // to the live schema, not to an older one in git.
    repo.write("deploy/crd.yaml", &crd("size: {type: integer}"))
        .write(
            "deploy/a.yaml",
            &(gadget("one", "{size: 1}")
                + &gadget("two", "{size: 2, color: red}")
                + &gadget("three", "{size: 3, color: blue}")),
        );
    repo.commit("production's CRD, older than the cluster's");
    let (stdout, stderr) = expect_exit(&repo, &cp, &["sync", env, "--no-wait"], 0);
    assert!(
        stdout.contains(&format!(
            "shared    CustomResourceDefinition/gadgets.{group}"
        )),
        "{stdout}{stderr}"
    );
    assert!(cp.exists(&format!("gadgets.{group}"), env, "three"));
    expect_exit(&repo, &cp, &["down", env], 0);
    cp.kubectl_ok(&["delete", "crd", &format!("gadgets.{group}")]);
}
