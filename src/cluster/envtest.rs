//! The `envtest` provider: a real Kubernetes control plane for one environment, run as local
//! processes (etcd, kube-apiserver, kube-controller-manager) on free loopback ports, with its data
//! under the state dir. No container runtime is needed, and none is used: there are no nodes,
//! so objects are stored, validated and garbage-collected but no pod runs.
//!
//! The processes outlive `sprout up` (their own process group, logs in the folder) and are
//! stopped by `down`, which signals a pid only after checking it still runs the binary sprout
//! started, so a recycled pid is never hit.

use super::ClusterError;
use super::provider::{ClusterRecord, OwnedCluster, Progress, Provider, Removal};
use crate::spec::{Environment, Provider as ProviderKind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KUBERNETES_VERSION: &str = "1.20.2";
/// Marks a folder as a control plane sprout made, for `list_owned`.
const OWNER_FILE: &str = "sprout-owner";
/// ClusterIPs on loopback (1.20 accepts a range inside 127.0.0.0/8).
pub const SERVICE_CLUSTER_IP_RANGE: &str = "127.96.0.0/16";

pub struct Binaries {
    etcd: PathBuf,
    apiserver: PathBuf,
    controller_manager: PathBuf,
}

impl Binaries {
    /// `SPROUT_ENVTEST_BIN`, then the cache `scripts/control-plane build` fills, then PATH.
    pub fn find() -> Result<Self, ClusterError> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(dir) = std::env::var_os("SPROUT_ENVTEST_BIN") {
            dirs.push(dir.into());
        }
        let cache = std::env::var_os("SPROUT_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sprout")));
        if let Some(cache) = cache {
            dirs.push(cache.join(format!("kubernetes-{KUBERNETES_VERSION}/bin")));
        }
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        let find = |name: &str| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file());
        let missing = |name: &str| ClusterError::ToolMissing {
            tool: format!(
                "{name} (envtest builds it with scripts/control-plane build, or set SPROUT_ENVTEST_BIN)"
            ),
        };
        Ok(Binaries {
            etcd: find("etcd").ok_or_else(|| missing("etcd"))?,
            apiserver: find("kube-apiserver").ok_or_else(|| missing("kube-apiserver"))?,
            controller_manager: find("kube-controller-manager")
                .ok_or_else(|| missing("kube-controller-manager"))?,
        })
    }
}

/// One control plane in one folder.
pub struct LocalControlPlane {
    dir: PathBuf,
}

const PROCESSES: [&str; 3] = ["controller-manager", "apiserver", "etcd"];

impl LocalControlPlane {
    pub fn new(dir: &Path) -> Self {
        LocalControlPlane {
            dir: dir.to_path_buf(),
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    fn io(&self, error: std::io::Error) -> ClusterError {
        ClusterError::io(&self.dir, error)
    }

    /// Whether all three processes sprout started here still run.
    pub fn running(&self) -> bool {
        PROCESSES.iter().all(|name| self.live_pid(name).is_some())
    }

    /// The pid in `<name>.pid`, if that process still runs the binary it was started as.
    /// `/proc/<pid>/exe`, not `cmdline`: for a moment after exec the command line reads empty
    /// (seen 164 times in 200 spawns of kube-apiserver), which made a starting apiserver look dead.
    /// A zombie has no `exe`, so it counts as gone.
    fn live_pid(&self, name: &str) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.dir.join(format!("{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        let file = exe.file_name()?.to_string_lossy();
        // A binary rebuilt while it runs shows as "kube-apiserver (deleted)": still ours.
        let file = file.strip_suffix(" (deleted)").unwrap_or(&file);
        let expected = if name == "etcd" {
            "etcd".to_string()
        } else {
            format!("kube-{name}")
        };
        (file == expected).then_some(pid)
    }

    /// Starts the control plane unless it runs; `audit` also logs every request to audit.log.
    /// Data survives a stop, so a restarted control plane holds the same objects.
    pub async fn start(&self, audit: bool) -> Result<(), ClusterError> {
        if self.running() {
            return Ok(());
        }
        self.stop()?;
        let binaries = Binaries::find()?;
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io(e))?;
        std::fs::write(
            self.dir.join(OWNER_FILE),
            "app.kubernetes.io/managed-by=sprout\n",
        )
        .map_err(|e| self.io(e))?;
        let ca_pem = certificates::ensure(&self.dir)?;
        let token = random_hex(16).map_err(|e| self.io(e))?;
        std::fs::write(
            self.dir.join("tokens.csv"),
            format!("{token},admin,admin,system:masters\n"),
        )
        .map_err(|e| self.io(e))?;
        let [etcd_port, peer_port, api_port] = free_ports()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let data = self.dir.join("etcd");
        let etcd = self.spawn(
            "etcd",
            &binaries.etcd,
            &[
                "--name",
                "sprout",
                "--data-dir",
                &data.to_string_lossy(),
                "--listen-client-urls",
                &etcd_url,
                "--advertise-client-urls",
                &etcd_url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &format!("sprout={peer_url}"),
            ],
        )?;
        let path = |name: &str| self.dir.join(name).to_string_lossy().into_owned();
        let mut args = vec![
            "--etcd-servers".to_string(),
            etcd_url,
            "--bind-address".into(),
            "127.0.0.1".into(),
            "--advertise-address".into(),
            "127.0.0.1".into(),
            "--secure-port".into(),
            api_port.to_string(),
            "--insecure-port".into(),
            "0".into(),
            "--tls-cert-file".into(),
            path("apiserver.crt"),
            "--tls-private-key-file".into(),
            path("apiserver.key"),
            "--client-ca-file".into(),
            path("ca.crt"),
            "--token-auth-file".into(),
            path("tokens.csv"),
            "--authorization-mode".into(),
            "RBAC".into(),
            "--service-account-key-file".into(),
            path("sa.pub"),
            "--service-account-signing-key-file".into(),
            path("sa.key"),
            "--service-account-issuer".into(),
            "https://kubernetes.default.svc".into(),
            "--api-audiences".into(),
            "https://kubernetes.default.svc".into(),
            // Nothing it dials may leave the machine. It calls webhooks and aggregated APIs at
            // their Service's ClusterIP, and with no kube-proxy such a dial follows the default
            // route: ClusterIPs come from a loopback range, so every such call stays here.
            // Not `--enable-aggregator-routing`: it makes 1.20 call a Service's Endpoints
            // instead, and Endpoints can never be loopback addresses (validation refuses them),
            // so whenever some existed the call would leave loopback.
            "--service-cluster-ip-range".into(),
            SERVICE_CLUSTER_IP_RANGE.into(),
            "--allow-privileged".into(),
            "--disable-admission-plugins".into(),
            "ServiceAccount".into(),
        ];
        if audit {
            std::fs::write(
                self.dir.join("audit-policy.yaml"),
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
            )
            .map_err(|e| self.io(e))?;
            args.extend([
                "--audit-policy-file".into(),
                path("audit-policy.yaml"),
                "--audit-log-path".into(),
                path("audit.log"),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let apiserver = self.spawn("apiserver", &binaries.apiserver, &args)?;
        self.write_kubeconfig(&format!("https://127.0.0.1:{api_port}"), &ca_pem, &token)?;
        self.wait_ready(&mut [("etcd", etcd), ("apiserver", apiserver)])
            .await?;
        self.spawn(
            "controller-manager",
            &binaries.controller_manager,
            &[
                "--kubeconfig",
                &path("kubeconfig"),
                "--leader-elect=false",
                "--port",
                "0",
                "--secure-port",
                "0",
                "--controllers",
                "*,-serviceaccount-token",
                "--service-account-private-key-file",
                &path("sa.key"),
                "--root-ca-file",
                &path("ca.crt"),
                "--use-service-account-credentials=false",
            ],
        )
        .map(drop)
    }

    fn spawn(&self, name: &str, program: &Path, args: &[&str]) -> Result<Child, ClusterError> {
        use std::os::unix::process::CommandExt;
        let log =
            std::fs::File::create(self.dir.join(format!("{name}.log"))).map_err(|e| self.io(e))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| self.io(e))?)
            .stderr(log)
            // Its own process group: a Ctrl-C meant for `sprout up` must not stop the cluster.
            .process_group(0)
            .spawn()
            .map_err(|e| ClusterError::Provider {
                provider: "envtest",
                message: format!("cannot start {}: {e}", program.display()),
            })?;
        std::fs::write(self.dir.join(format!("{name}.pid")), child.id().to_string())
            .map_err(|e| self.io(e))?;
        Ok(child)
    }

    fn write_kubeconfig(
        &self,
        server: &str,
        ca_pem: &str,
        token: &str,
    ) -> Result<(), ClusterError> {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
             users:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: envtest\n  context: {{cluster: envtest, user: admin}}\n\
             current-context: envtest\n"
        );
        write_private(&self.kubeconfig(), &text).map_err(|e| self.io(e))
    }

    /// Waits for /readyz; `started` are the processes it needs, watched as this process's own
    /// children so that an exit is known for certain and its status can be told.
    async fn wait_ready(&self, started: &mut [(&str, Child)]) -> Result<(), ClusterError> {
        let target = super::Target {
            kubeconfig: self.kubeconfig(),
            context: None,
        };
        let client = super::client(&target).await?;
        let since = Instant::now();
        loop {
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("a static request");
            if client.request_text(request).await.is_ok() {
                return Ok(());
            }
            let dead = started.iter_mut().find_map(|(name, child)| {
                let status = child.try_wait().ok().flatten()?;
                Some((*name, status))
            });
            if dead.is_some() || since.elapsed() > Duration::from_secs(60) {
                let culprit = dead.map_or("apiserver", |(name, _)| name);
                let log =
                    std::fs::read(self.dir.join(format!("{culprit}.log"))).unwrap_or_default();
                let log = String::from_utf8_lossy(&log);
                let lines: Vec<&str> = log.lines().collect();
                let tail = match lines.len() {
                    0 => "(empty)".to_string(),
                    n => lines[n.saturating_sub(15)..].join("\n"),
                };
                let _ = self.stop();
                let what = match dead {
                    Some((_, status)) => format!("exited ({status})"),
                    None => "did not become ready in 60 s".to_string(),
                };
                return Err(ClusterError::Provider {
                    provider: "envtest",
                    message: format!("{culprit} {what}; last lines of {culprit}.log:\n{tail}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the processes (TERM, then KILL after 5 s); absent processes are fine.
    pub fn stop(&self) -> Result<(), ClusterError> {
        use rustix::process::{Pid, Signal, kill_process};
        for name in PROCESSES {
            if let Some(pid) = self.live_pid(name).and_then(Pid::from_raw) {
                let _ = kill_process(pid, Signal::TERM);
                let deadline = Instant::now() + Duration::from_secs(5);
                while self.live_pid(name).is_some() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if self.live_pid(name).is_some() {
                    let _ = kill_process(pid, Signal::KILL);
                }
            }
            let _ = std::fs::remove_file(self.dir.join(format!("{name}.pid")));
        }
        Ok(())
    }
}

/// Three distinct free loopback ports: all three sockets stay bound until every port is known,
/// or the kernel could hand out one port twice.
fn free_ports() -> Result<[u16; 3], ClusterError> {
    let bind = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| ClusterError::io(Path::new("127.0.0.1"), e))
    };
    let listeners = [bind()?, bind()?, bind()?];
    let mut ports = [0u16; 3];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .map_err(|e| ClusterError::io(Path::new("127.0.0.1"), e))?
            .port();
    }
    Ok(ports)
}

fn random_hex(bytes: usize) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes a file only its owner can read (it holds a token or a key).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut file, text.as_bytes())
}

mod certificates {
    //! A self-signed CA, the apiserver's serving certificate for loopback, and the key that
    //! signs service-account tokens; made once per control plane and kept with its data.
    use super::{ClusterError, write_private};
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use std::path::Path;

    /// The CA certificate (PEM), creating all files when missing.
    pub fn ensure(dir: &Path) -> Result<String, ClusterError> {
        let ca_path = dir.join("ca.crt");
        if let Ok(ca) = std::fs::read_to_string(&ca_path)
            && dir.join("apiserver.key").is_file()
            && dir.join("sa.key").is_file()
            && dir.join("sa.pub").is_file()
        {
            return Ok(ca);
        }
        let fail = |e: rcgen::Error| ClusterError::Provider {
            provider: "envtest",
            message: format!("cannot make certificates: {e}"),
        };
        let io = |e| ClusterError::io(dir, e);
        let ca_key = KeyPair::generate().map_err(fail)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sprout envtest CA");
        let ca = ca_params.self_signed(&ca_key).map_err(fail)?;
        let issuer = Issuer::new(ca_params, &ca_key);
        let server_key = KeyPair::generate().map_err(fail)?;
        let mut server_params = CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "kubernetes.default.svc".to_string(),
        ])
        .map_err(fail)?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        let server = server_params
            .signed_by(&server_key, &issuer)
            .map_err(fail)?;
        let sa_key = KeyPair::generate().map_err(fail)?;
        write_private(&dir.join("apiserver.key"), &server_key.serialize_pem()).map_err(io)?;
        std::fs::write(dir.join("apiserver.crt"), server.pem()).map_err(io)?;
        write_private(&dir.join("sa.key"), &sa_key.serialize_pem()).map_err(io)?;
        std::fs::write(dir.join("sa.pub"), sa_key.public_key_pem()).map_err(io)?;
        std::fs::write(&ca_path, ca.pem()).map_err(io)?;
        Ok(ca.pem())
    }
}

/// The provider: one [`LocalControlPlane`] per environment, in its cluster folder.
pub struct Envtest {
    plane: LocalControlPlane,
    clusters_root: PathBuf,
    env: String,
}

impl Envtest {
    pub fn new(env: &Environment, dir: &Path) -> Self {
        Envtest {
            plane: LocalControlPlane::new(&dir.join("control-plane")),
            clusters_root: dir.parent().map(Path::to_path_buf).unwrap_or_default(),
            env: env.name.clone(),
        }
    }
}

#[async_trait::async_trait]
impl Provider for Envtest {
    async fn create(&self, kubeconfig: &Path, progress: &dyn Progress) -> Result<(), ClusterError> {
        if !self.plane.running() {
            progress.phase(
                "starting a local control plane (etcd, kube-apiserver, kube-controller-manager)",
            );
            self.plane.start(false).await?;
        }
        let text = std::fs::read_to_string(self.plane.kubeconfig())
            .map_err(|e| ClusterError::io(&self.plane.kubeconfig(), e))?;
        write_private(kubeconfig, &text).map_err(|e| ClusterError::io(kubeconfig, e))
    }

    async fn delete(
        &self,
        _kubeconfig: &Path,
        progress: &dyn Progress,
    ) -> Result<Removal, ClusterError> {
        if !self.plane.dir.exists() {
            return Ok(Removal::AlreadyGone);
        }
        progress.phase("stopping the local control plane");
        self.plane.stop()?;
        match std::fs::remove_dir_all(&self.plane.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ClusterError::io(&self.plane.dir, e))
            }
            _ => Ok(Removal::Deleted),
        }
    }

    async fn list_owned(&self) -> Result<Vec<OwnedCluster>, ClusterError> {
        let Ok(entries) = std::fs::read_dir(&self.clusters_root) else {
            return Ok(Vec::new());
        };
        Ok(entries
            .flatten()
            .filter(|e| e.path().join("control-plane").join(OWNER_FILE).is_file())
            .map(|e| {
                let env = e.file_name().to_string_lossy().into_owned();
                OwnedCluster {
                    name: e.path().join("control-plane").display().to_string(),
                    environment: Some(env),
                    // In this project's state folder: its own.
                    project: None,
                }
            })
            .collect())
    }

    fn record(&self) -> ClusterRecord {
        ClusterRecord {
            provider: ProviderKind::Envtest,
            name: format!("{} (local control plane)", self.env),
            region: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CI failure this guards against: an apiserver checked just after spawn looked dead,
    /// because a big static binary's command line reads empty for a moment after exec.
    #[test]
    fn a_process_is_alive_from_the_moment_it_is_spawned() {
        let dir = tempfile::tempdir().unwrap();
        let etcd = Binaries::find()
            .expect("etcd is installed by scripts/control-plane build")
            .etcd;
        let data = dir.path().join("data");
        let data = data.to_string_lossy();
        let plane = LocalControlPlane::new(dir.path());
        let any_port = "http://127.0.0.1:0";
        let args = [
            "--data-dir",
            &data,
            "--listen-client-urls",
            any_port,
            "--advertise-client-urls",
            "http://127.0.0.1:2379",
            "--listen-peer-urls",
            any_port,
        ];
        for _ in 0..1000 {
            let mut child = plane.spawn("etcd", &etcd, &args).unwrap();
            let seen = plane.live_pid("etcd");
            child.kill().unwrap();
            child.wait().unwrap();
            assert_eq!(seen, Some(child.id() as i32));
            assert_eq!(plane.live_pid("etcd"), None, "a reaped process is gone");
        }
    }
}
