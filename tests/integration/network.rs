//! The test control plane never sends a packet off the machine: Services get loopback
//! ClusterIPs, and the API server's calls to a webhook behind a Service arrive at a listener on
//! that loopback address. The same webhook, failing, shows that a server error about one object
//! is that object's error, asked once, and the rest of the sync goes on.

use crate::cluster::{control_plane, unique};
use crate::sync::{expect_exit, project_on_control_plane};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A listener on a free loopback address of the control plane's service range
/// (127.96.0.0/16, see `cluster::envtest`), counting the connections it is offered and
/// dropping each (no TLS: the caller fails its handshake).
pub(crate) fn listener_in_service_range() -> (Ipv4Addr, u16, Arc<AtomicUsize>) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id();
    let ip = Ipv4Addr::new(
        127,
        96,
        128 + (seed % 120) as u8,
        2 + (seed / 120 % 250) as u8,
    );
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (ip, port, calls)
}

#[test]
fn calls_to_services_stay_on_loopback_and_a_failing_object_is_its_own_error() {
    let cp = control_plane();
    let cluster_ip = cp.kubectl_ok(&[
        "get",
        "service",
        "kubernetes",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let cluster_ip: Ipv4Addr = cluster_ip.parse().unwrap();
    assert!(
        cluster_ip.is_loopback(),
        "ClusterIPs are loopback: {cluster_ip}"
    );

    let env = &unique("network-hook");
    let (ip, port, calls) = listener_in_service_range();
    let service = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: hook}}\nspec:\n  clusterIP: {ip}\n  ports: [{{port: {port}}}]\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: plain}}\ndata: {{v: \"1\"}}\n"
    );
    let mut repo = project_on_control_plane(env, "deploy/app.yaml", &service);
    crate::sync::sync_json(&repo, &cp, env);

    cp.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: {env}}}\n\
             webhooks:\n- name: check.{env}.sprout.test\n  admissionReviewVersions: [v1]\n  sideEffects: None\n  \
             failurePolicy: Fail\n  timeoutSeconds: 5\n  objectSelector: {{matchLabels: {{hooked-by: {env}}}}}\n  \
             clientConfig:\n    service: {{name: hook, namespace: {env}, port: {port}}}\n  \
             rules: [{{operations: [CREATE, UPDATE], apiGroups: [\"\"], apiVersions: [v1], resources: [configmaps]}}]\n"
        ),
    );
    repo.write(
        "deploy/app.yaml",
        &format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: hooked, labels: {{hooked-by: {env}}}}}\n",
            service.replace("v: \"1\"", "v: \"2\"")
        ),
    );
    repo.commit("a ConfigMap the webhook checks");
    let mark = cp.audit_mark();
    let (_, stderr) = expect_exit(&repo, &cp, &["sync", env], 1);
    cp.kubectl_ok(&["delete", "validatingwebhookconfiguration", env]);

    assert!(
        stderr.contains(&format!(
            "ConfigMap/{env}/hooked: apply: Internal error occurred: failed calling webhook"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("unreachable"), "{stderr}");
    assert!(
        calls.load(Ordering::SeqCst) >= 1,
        "the API server called the webhook at {ip}:{port}"
    );
    let applies: Vec<String> = cp
        .writes_since(mark, env)
        .into_iter()
        .filter(|w| w.contains("configmaps/hooked"))
        .collect();
    assert_eq!(
        applies.len(),
        1,
        "an answer with a reason is final: {applies:?}"
    );
    let plain = cp.kubectl_ok(&[
        "get",
        "configmap",
        "plain",
        "-n",
        env,
        "-o",
        "jsonpath={.data.v}",
    ]);
    assert_eq!(plain, "2", "the other objects were applied");
}
