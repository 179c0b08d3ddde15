//! The real control plane the cluster tests run against, started once for the suite by
//! `scripts/test` (scripts/control-plane). Without it these tests fail: never a silent skip.

use std::path::PathBuf;
use std::process::Output;

pub struct ControlPlane {
    pub kubeconfig: PathBuf,
    audit_log: PathBuf,
}

pub fn control_plane() -> ControlPlane {
    let kubeconfig = std::env::var_os("SPROUT_TEST_KUBECONFIG")
        .map(PathBuf::from)
        .expect(
            "the cluster tests need a real control plane: run scripts/test, which starts one with \
         scripts/control-plane and sets SPROUT_TEST_KUBECONFIG",
        );
    assert!(
        kubeconfig.is_file(),
        "SPROUT_TEST_KUBECONFIG={} does not exist",
        kubeconfig.display()
    );
    let audit_log = kubeconfig.parent().unwrap().join("audit.log");
    ControlPlane {
        kubeconfig,
        audit_log,
    }
}

/// A control plane of one test's own, for a test that would disturb the others on the suite's
/// (an aggregated API whose backend is down fails every discovery of all groups there); the
/// same code as the envtest provider's, ready in seconds, stopped when dropped.
pub struct OwnControlPlane {
    dir: tempfile::TempDir,
    pub plane: ControlPlane,
}

impl OwnControlPlane {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let output = crate::util::sprout_in(dir.path())
            .args(["control-plane", "start"])
            .arg(dir.path())
            .arg("--audit")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "control-plane start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let plane = ControlPlane {
            kubeconfig: dir.path().join("kubeconfig"),
            audit_log: dir.path().join("audit.log"),
        };
        OwnControlPlane { dir, plane }
    }
}

impl Drop for OwnControlPlane {
    fn drop(&mut self) {
        let _ = crate::util::sprout_in(self.dir.path())
            .args(["control-plane", "stop"])
            .arg(self.dir.path())
            .output();
    }
}

impl ControlPlane {
    pub fn kubectl(&self, args: &[&str]) -> Output {
        std::process::Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    /// `kubectl` that must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The environment's inventory ConfigMap, printed by `kubectl -o <output>`.
    pub fn inventory(&self, env: &str, output: &str) -> String {
        self.kubectl_ok(&[
            "get",
            "configmap",
            "sprout-inventory",
            "-n",
            env,
            "-o",
            output,
        ])
    }

    pub fn exists(&self, kind: &str, namespace: &str, name: &str) -> bool {
        self.kubectl(&["get", kind, name, "-n", namespace])
            .status
            .success()
    }

    /// The API server's audit events since `mark`, in the order it wrote them.
    fn audit_events_since(&self, mark: usize) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.audit_log).unwrap_or_default();
        text.lines()
            .skip(mark)
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// A mark in the API server's audit log; see [`ControlPlane::writes_since`].
    pub fn audit_mark(&self) -> usize {
        std::fs::read_to_string(&self.audit_log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// Write requests (create, update, patch, delete) sprout sent since `mark` that touched
    /// `namespace` (objects in it, its lock, or the Namespace itself), as the server recorded
    /// them. Dry runs change nothing and are not counted. Writes to the environment's lock (its
    /// Lease) count: a sync with nothing to change takes no lock.
    pub fn writes_since(&self, mark: usize, namespace: &str) -> Vec<String> {
        self.audit_events_since(mark)
            .into_iter()
            .filter(|event| {
                event["userAgent"]
                    .as_str()
                    .is_some_and(|ua| ua.starts_with("sprout/"))
            })
            .filter(|event| {
                matches!(
                    event["verb"].as_str(),
                    Some("create" | "update" | "patch" | "delete" | "deletecollection")
                )
            })
            .filter(|event| {
                !event["requestURI"]
                    .as_str()
                    .is_some_and(|uri| uri.contains("dryRun=All"))
            })
            .filter(|event| {
                let object = &event["objectRef"];
                object["namespace"] == namespace
                    || (object["resource"] == "namespaces" && object["name"] == namespace)
            })
            .map(|event| format!("{} {}", event["verb"], event["requestURI"]))
            .collect()
    }

    /// sprout's server-side applies in `namespace` since `mark` (dry runs left out), as the
    /// server recorded them: (resource, name, received, completed), the times as the audit log
    /// writes them (RFC 3339, microseconds: they sort as text).
    pub fn applies_since(
        &self,
        mark: usize,
        namespace: &str,
    ) -> Vec<(String, String, String, String)> {
        self.audit_events_since(mark)
            .into_iter()
            .filter(|event| {
                event["stage"] == "ResponseComplete"
                    && event["verb"] == "patch"
                    && event["userAgent"]
                        .as_str()
                        .is_some_and(|ua| ua.starts_with("sprout/"))
                    && event["objectRef"]["namespace"] == namespace
                    && !event["requestURI"]
                        .as_str()
                        .is_some_and(|uri| uri.contains("dryRun=All"))
            })
            .map(|event| {
                let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
                (
                    text(&event["objectRef"]["resource"]),
                    text(&event["objectRef"]["name"]),
                    text(&event["requestReceivedTimestamp"]),
                    text(&event["stageTimestamp"]),
                )
            })
            .collect()
    }

    /// [`ControlPlane::writes_since`], split: the writes to the environment's lock (Leases in
    /// `namespace`: sprout keeps only `sprout-lock` there), and all the others.
    pub fn lock_and_other_writes_since(
        &self,
        mark: usize,
        namespace: &str,
    ) -> (Vec<String>, Vec<String>) {
        // Taken by a create (a POST to the collection) or an update of `sprout-lock`.
        let leases = format!("/namespaces/{namespace}/leases");
        self.writes_since(mark, namespace)
            .into_iter()
            .partition(|w| w.contains(&leases))
    }
}

impl ControlPlane {
    /// `data.version` of ConfigMap `app` in `env`'s namespace, if it exists (the tests'
    /// production is that one ConfigMap).
    pub fn app_version(&self, env: &str) -> Option<String> {
        let out = self.kubectl(&[
            "get",
            "configmap",
            "app",
            "-n",
            env,
            "-o",
            "jsonpath={.data.version}",
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Names of the ConfigMaps in `env`'s namespace labelled for it (its inventory aside).
    pub fn labelled_config_maps(&self, env: &str) -> Vec<String> {
        self.kubectl_ok(&[
            "get",
            "configmaps",
            "-n",
            env,
            "-l",
            &format!("sprout.dev/environment={env}"),
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .split_whitespace()
        .filter(|name| !name.starts_with("sprout-inventory"))
        .map(str::to_string)
        .collect()
    }

    /// Every ConfigMap labelled for `env` is listed in its inventory; returns how many there are.
    pub fn assert_labelled_in_inventory(&self, env: &str) -> usize {
        let inventory = self.inventory(env, "jsonpath={.data.entries}");
        let labelled = self.labelled_config_maps(env);
        for name in &labelled {
            assert!(
                inventory.contains(&format!("\"{name}\"")),
                "{name} is labelled for {env} but not in its inventory"
            );
        }
        labelled.len()
    }

    /// Every request sprout sent since `mark` that touched `namespace` (objects in it, or the
    /// Namespace itself), in the order the server answered them: (verb, request URI, user it
    /// acted as).
    pub fn requests_since(&self, mark: usize, namespace: &str) -> Vec<(String, String, String)> {
        self.audit_events_since(mark)
            .into_iter()
            .filter(|event| {
                let object = &event["objectRef"];
                event["stage"] == "ResponseComplete"
                    && event["userAgent"]
                        .as_str()
                        .is_some_and(|ua| ua.starts_with("sprout/"))
                    && (object["namespace"] == namespace
                        || (object["resource"] == "namespaces" && object["name"] == namespace))
            })
            .map(|event| {
                let text =
                    |value: &serde_json::Value| value.as_str().unwrap_or_default().to_string();
                (
                    text(&event["verb"]),
                    text(&event["requestURI"]),
                    match &event["impersonatedUser"]["username"] {
                        serde_json::Value::Null => text(&event["user"]["username"]),
                        impersonated => text(impersonated),
                    },
                )
            })
            .collect()
    }

    /// How many times Namespace `name` was created since `mark` (answers 201, by anyone).
    pub fn namespaces_created_since(&self, mark: usize, name: &str) -> usize {
        self.audit_events_since(mark)
            .into_iter()
            .filter(|event| {
                event["stage"] == "ResponseComplete"
                    && event["objectRef"]["resource"] == "namespaces"
                    && event["objectRef"]["name"] == name
                    && event["responseStatus"]["code"] == 201
            })
            .count()
    }

    /// Every write request sprout sent since `mark`, anywhere in the cluster. Dry runs change
    /// nothing and are not counted.
    pub fn all_writes_since(&self, mark: usize) -> Vec<String> {
        self.audit_events_since(mark)
            .into_iter()
            .filter(|event| {
                event["userAgent"]
                    .as_str()
                    .is_some_and(|ua| ua.starts_with("sprout/"))
                    && !matches!(event["verb"].as_str(), Some("get" | "list" | "watch"))
                    && !event["requestURI"]
                        .as_str()
                        .is_some_and(|uri| uri.contains("dryRun=All"))
            })
            .map(|event| format!("{} {}", event["verb"], event["requestURI"]))
            .collect()
    }
}

/// An environment spec on the test control plane (the `namespace` provider, context `envtest`).
pub fn environment_on_control_plane(name: &str, from: &str, extra: &str) -> String {
    format!(
        "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {name}}}\nspec:\n  from: {from}\n  \
         cluster: {{provider: namespace, namespace: {{context: envtest}}}}\n{extra}"
    )
}

pub fn with_kubeconfig<'a>(
    cmd: &'a mut assert_cmd::Command,
    cp: &ControlPlane,
) -> &'a mut assert_cmd::Command {
    cmd.env("KUBECONFIG", &cp.kubeconfig)
}

/// `prefix` plus a suffix of this run, so tests can run again on the same control plane.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{:06x}", (nanos ^ std::process::id()) & 0xff_ffff)
}

/// `count` ConfigMaps `c0`, `c1`... with data `v: <version>`, as one multi-document file.
pub fn config_maps(count: usize, version: &str) -> String {
    config_maps_from(0, count, version)
}

/// ConfigMaps `c<from>` to `c<to - 1>`.
pub fn config_maps_from(from: usize, to: usize, version: &str) -> String {
    (from..to)
        .map(|i| {
            format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\ndata: {{v: \"{version}\"}}\n")
        })
        .collect()
}
