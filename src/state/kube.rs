//! The cluster state backend: each environment's record as a `sprout.dev/v1alpha1`
//! `Environment` in the management namespace (default `sprout-system`) of a management cluster,
//! and each environment's lock as a Lease `sprout-env-<env>` next to it.
//!
//! The record is the file backend's record, whole, in `status.record` (written through the
//! status subresource); `status.phase`, `commit`, `expiresAt` and `nextTeardown` are copies for
//! `kubectl get environments`. Every write carries the `resourceVersion` its record was read at
//! ([`super::Revision`]): two writers can never both win, the loser gets
//! [`StateError::Conflict`] and retries from the new version.
//!
//! The API server is the store and the coordination service: a team's `sprout serve` replicas,
//! a laptop and CI all see the same records and the same locks.

use super::bridge;
use super::lease::{self, LeaseLock, Taken};
use super::lock::{Holder, Wait};
use super::{EnvironmentLock, EnvironmentState, RECORD_VERSION, StateError};
use crate::cluster::{self, Target};
use crate::error::{Error, Result};
use crate::fork::ownership::{MANAGED_BY, MANAGED_BY_VALUE, PROJECT_LABEL};
use crate::project::StateSettings;
use crate::sync::live::Live;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectList, Patch,
    PatchParams, PostParams,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const GROUP: &str = "sprout.dev";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "Environment";
pub const PLURAL: &str = "environments";
/// The CustomResourceDefinition, as `sprout install` prints it.
pub const CRD: &str = include_str!("../../templates/install/crd.yaml");
const LOCK_PREFIX: &str = "sprout-env-";

/// The Lease that is `env`'s lock in the management namespace.
pub fn lock_name(env: &str) -> String {
    format!("{LOCK_PREFIX}{env}")
}

pub fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

#[derive(Clone)]
pub struct KubeStore {
    connection: Arc<Connection>,
    project: String,
    root: PathBuf,
}

/// One management cluster and namespace, shared by every store of the process that uses them
/// (a store is made per operation; the connection, the CRD check and the namespace are not).
struct Connection {
    /// None: the cluster the process runs in (a pod's service account).
    target: Option<Target>,
    namespace: String,
    ready: tokio::sync::Mutex<Option<Ready>>,
    /// The specs kept with records, as last read or written by this process: for the
    /// `kubectl get` columns, which need the spec's lifecycle.
    specs: Mutex<HashMap<String, String>>,
}

#[derive(Clone)]
struct Ready {
    client: kube::Client,
    server: String,
}

/// Where the management cluster is: `context` of `kubeconfig` (`--kubeconfig`, `KUBECONFIG`,
/// else ~/.kube/config); without a kubeconfig file and without a context, the cluster this
/// process runs in.
fn target_of(settings: &StateSettings, user_kubeconfig: Option<&Path>) -> Option<Target> {
    let kubeconfig = user_kubeconfig.map(Path::to_path_buf).or_else(|| {
        let home = std::env::var_os("HOME")?;
        Some(PathBuf::from(home).join(".kube").join("config"))
    });
    match kubeconfig {
        Some(kubeconfig) if kubeconfig.is_file() || settings.context.is_some() => Some(Target {
            kubeconfig,
            context: settings.context.clone(),
        }),
        _ => None,
    }
}

fn connection(target: Option<Target>, namespace: &str) -> Arc<Connection> {
    type Key = (Option<(PathBuf, Option<String>)>, String);
    static CONNECTIONS: Mutex<Option<HashMap<Key, Arc<Connection>>>> = Mutex::new(None);
    let key = (
        target
            .as_ref()
            .map(|t| (t.kubeconfig.clone(), t.context.clone())),
        namespace.to_string(),
    );
    let mut connections = CONNECTIONS.lock().expect("connections lock");
    connections
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_insert_with(|| {
            Arc::new(Connection {
                target,
                namespace: namespace.to_string(),
                ready: tokio::sync::Mutex::new(None),
                specs: Mutex::new(HashMap::new()),
            })
        })
        .clone()
}

/// A client of the management cluster `settings` name, on the caller's runtime, once the
/// management namespace and the CRD exist (made when missing, as the store makes them): for the
/// leader election of `serve`, which keeps its Lease next to the records.
pub async fn management_client(
    settings: &StateSettings,
    user_kubeconfig: Option<&Path>,
) -> std::result::Result<kube::Client, StateError> {
    let target = target_of(settings, user_kubeconfig);
    let shared = connection(target.clone(), &settings.namespace);
    tokio::task::spawn_blocking(move || {
        bridge::run(async move { shared.ready().await.map(|_| ()) })
    })
    .await
    .expect("the state backend's check does not panic")?;
    connect(target.as_ref(), &settings.namespace)
        .await
        .map(|ready| ready.client)
}

async fn connect(
    target: Option<&Target>,
    namespace: &str,
) -> std::result::Result<Ready, StateError> {
    let failed = |message: String| StateError::Cluster {
        namespace: namespace.to_string(),
        message,
    };
    match target {
        Some(target) => Ok(Ready {
            client: cluster::client(target)
                .await
                .map_err(|e| failed(e.to_string()))?,
            server: cluster::server_of(target),
        }),
        None => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = kube::Config::incluster().map_err(|e| {
                failed(format!(
                    "no kubeconfig file and not running in a pod ({e}); set KUBECONFIG or state.context"
                ))
            })?;
            let server = config.cluster_url.to_string();
            let client = kube::Client::try_from(config).map_err(|e| failed(e.to_string()))?;
            Ok(Ready { client, server })
        }
    }
}

impl Connection {
    /// The client, once the CRD and the namespace are known to exist (made when missing).
    async fn ready(&self) -> std::result::Result<Ready, StateError> {
        let mut ready = self.ready.lock().await;
        if let Some(ready) = &*ready {
            return Ok(ready.clone());
        }
        let made = connect(self.target.as_ref(), &self.namespace).await?;
        self.ensure_crd(&made).await?;
        self.ensure_namespace(&made).await?;
        *ready = Some(made.clone());
        Ok(made)
    }

    fn error(&self, ready: &Ready, what: &str, error: kube::Error) -> StateError {
        StateError::Cluster {
            namespace: self.namespace.clone(),
            message: Live::new(ready.client.clone(), ready.server.clone())
                .call_error(what, error)
                .to_string(),
        }
    }

    /// Discovery tells whether the API serves Environments (any authenticated user may ask;
    /// a service account cannot read CRDs). Missing: created, which needs a cluster admin —
    /// otherwise the error says to install.
    async fn ensure_crd(&self, ready: &Ready) -> std::result::Result<(), StateError> {
        let served =
            |resources: &k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList| {
                resources.resources.iter().any(|r| r.name == PLURAL)
            };
        let group_version = format!("{GROUP}/{VERSION}");
        match ready.client.list_api_group_resources(&group_version).await {
            Ok(resources) if served(&resources) => return Ok(()),
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(self.error(ready, "discover the Environment resource", e)),
        }
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(CRD).expect("the built-in CRD parses");
        let api: Api<CustomResourceDefinition> = Api::all(ready.client.clone());
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(kube::Error::Api(status)) if status.code == 403 => {
                return Err(StateError::Cluster {
                    namespace: self.namespace.clone(),
                    message: format!(
                        "the Environment resource is not installed on {} and this user may not install it; a cluster admin runs `sprout install | kubectl apply -f -`",
                        ready.server
                    ),
                });
            }
            Err(e) => return Err(self.error(ready, "install the Environment resource", e)),
        }
        // The API serves a new resource a moment after the CRD is accepted.
        for _ in 0..100 {
            if let Ok(resources) = ready.client.list_api_group_resources(&group_version).await
                && served(&resources)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(StateError::Cluster {
            namespace: self.namespace.clone(),
            message: "the Environment resource was installed but is not served after 20s".into(),
        })
    }

    /// The management namespace, created when missing. A service account that may not read
    /// namespaces (the installed daemon) works in the namespace it was installed into.
    async fn ensure_namespace(&self, ready: &Ready) -> std::result::Result<(), StateError> {
        let api: Api<Namespace> = Api::all(ready.client.clone());
        match api.get_opt(&self.namespace).await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(kube::Error::Api(status)) if status.code == 403 => return Ok(()),
            Err(e) => return Err(self.error(ready, "read the management namespace", e)),
        }
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    MANAGED_BY.to_string(),
                    MANAGED_BY_VALUE.to_string(),
                )])),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &namespace).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(e) => Err(self.error(ready, "create the management namespace", e)),
        }
    }
}

impl KubeStore {
    pub fn new(
        settings: &StateSettings,
        user_kubeconfig: Option<&Path>,
        project: &str,
        root: &Path,
    ) -> Self {
        KubeStore {
            connection: connection(target_of(settings, user_kubeconfig), &settings.namespace),
            project: project.to_string(),
            root: root.to_path_buf(),
        }
    }

    pub fn describe(&self) -> String {
        let cluster = match &self.connection.target {
            Some(Target {
                context: Some(context),
                ..
            }) => format!("context {context}"),
            Some(target) => format!("the current context of {}", target.kubeconfig.display()),
            None => "this pod's cluster".to_string(),
        };
        format!(
            "Environments in namespace {} of {cluster}",
            self.connection.namespace
        )
    }

    fn environments(&self, ready: &Ready) -> Api<DynamicObject> {
        Api::namespaced_with(
            ready.client.clone(),
            &self.connection.namespace,
            &resource(),
        )
    }

    fn leases(&self, ready: &Ready) -> Api<Lease> {
        Api::namespaced(ready.client.clone(), &self.connection.namespace)
    }

    /// The label selector of this project's records (a project without an identity yet has
    /// records without the label).
    /// Every Environment record of this project, in one LIST.
    async fn list_records(
        &self,
        ready: &Ready,
    ) -> std::result::Result<ObjectList<DynamicObject>, StateError> {
        self.environments(ready)
            .list(&ListParams::default().labels(&self.selector()))
            .await
            .map_err(|e| self.connection.error(ready, "list environment records", e))
    }

    fn selector(&self) -> String {
        if self.project.is_empty() {
            format!("!{PROJECT_LABEL}")
        } else {
            format!("{PROJECT_LABEL}={}", self.project)
        }
    }

    fn record_of(
        &self,
        object: DynamicObject,
    ) -> std::result::Result<EnvironmentState, StateError> {
        let name = object.metadata.name.clone().unwrap_or_default();
        let owner = object
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(PROJECT_LABEL))
            .cloned()
            .unwrap_or_default();
        if owner != self.project {
            return Err(StateError::NotOurs {
                namespace: self.connection.namespace.clone(),
                name,
                owner,
                project: self.project.clone(),
            });
        }
        let unreadable = |message: String| StateError::Unreadable {
            name: name.clone(),
            message,
        };
        let mut state = match object.data.get("status").and_then(|s| s.get("record")) {
            // Created, but its first record never written (the writer died in between).
            None => EnvironmentState::new(&name),
            Some(record) => {
                let state: EnvironmentState = serde_json::from_value(record.clone())
                    .map_err(|e| unreadable(e.to_string()))?;
                if state.version > RECORD_VERSION {
                    return Err(unreadable(format!(
                        "record version {} is newer than this sprout's ({RECORD_VERSION}); upgrade sprout",
                        state.version
                    )));
                }
                state
            }
        };
        state.version = RECORD_VERSION;
        state.revision.set(object.metadata.resource_version);
        Ok(state)
    }

    pub fn load(&self, env: &str) -> std::result::Result<EnvironmentState, StateError> {
        let this = self.clone();
        let env = env.to_string();
        bridge::run(async move {
            let ready = this.connection.ready().await?;
            match this.environments(&ready).get_opt(&env).await {
                Ok(Some(object)) => this.record_of(object),
                Ok(None) => Ok(EnvironmentState::new(&env)),
                Err(e) => Err(this.connection.error(
                    &ready,
                    &format!("read the record of environment {env}"),
                    e,
                )),
            }
        })
    }

    pub fn records(&self) -> std::result::Result<BTreeMap<String, EnvironmentState>, StateError> {
        let this = self.clone();
        bridge::run(async move {
            let ready = this.connection.ready().await?;
            let listed = this.list_records(&ready).await?;
            listed
                .items
                .into_iter()
                .map(|object| {
                    let record = this.record_of(object)?;
                    Ok((record.environment.clone(), record))
                })
                .collect()
        })
    }

    pub fn names(&self) -> std::result::Result<Vec<String>, StateError> {
        let this = self.clone();
        bridge::run(async move {
            let ready = this.connection.ready().await?;
            let listed = this.list_records(&ready).await?;
            let mut names: Vec<String> = listed
                .items
                .into_iter()
                .filter_map(|o| o.metadata.name)
                .collect();
            names.sort();
            Ok(names)
        })
    }

    /// The columns `kubectl get environments` shows next to the record: its expiry and next
    /// teardown as of this write (from the environment's spec, when it can be read here).
    fn summary(&self, state: &EnvironmentState) -> serde_json::Value {
        let stored = self
            .connection
            .specs
            .lock()
            .expect("specs lock")
            .get(&state.environment)
            .cloned();
        let outlook = crate::project::Project::open(&self.root)
            .ok()
            .and_then(|mut project| {
                if let Some(text) = stored {
                    let place = self.spec_place(&state.environment);
                    project.adopt_stored_spec(&state.environment, text, place);
                }
                project.environment(&state.environment).ok()
            })
            .and_then(|env| crate::lifecycle::Policy::of(&env).ok())
            .map(|policy| crate::lifecycle::outlook(&policy, state, chrono::Utc::now()))
            .unwrap_or_default();
        let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        };
        serde_json::json!({
            "phase": state.phase.name(),
            "commit": state.commit.as_deref().map(|c| &c[..c.len().min(12)]),
            "expiresAt": time(outlook.expires_at),
            "nextTeardown": time(outlook.next_teardown),
            "record": state,
        })
    }

    pub fn save(&self, state: &EnvironmentState) -> std::result::Result<(), StateError> {
        let mut record = state.clone();
        record.version = RECORD_VERSION;
        let mut status = self.summary(&record);
        // JSON null is not a string: leave the columns without a value out.
        if let Some(fields) = status.as_object_mut() {
            fields.retain(|_, v| !v.is_null());
        }
        let this = self.clone();
        let read_at = state.revision.get();
        let written = bridge::run(async move {
            let ready = this.connection.ready().await?;
            let api = this.environments(&ready);
            let env = record.environment.clone();
            let conflict = || StateError::Conflict { env: env.clone() };
            let mut object = this.new_object(&env);
            let version = match read_at {
                Some(version) => version,
                // A new record: whoever creates the object first wins.
                None => match api.create(&PostParams::default(), &object).await {
                    Ok(created) => created.metadata.resource_version.unwrap_or_default(),
                    Err(kube::Error::Api(status)) if status.code == 409 => return Err(conflict()),
                    Err(e) => {
                        return Err(this.connection.error(
                            &ready,
                            &format!("create the record of environment {env}"),
                            e,
                        ));
                    }
                },
            };
            object.metadata.resource_version = Some(version);
            object.data["status"] = status;
            match api
                .replace_status(&env, &PostParams::default(), &object)
                .await
            {
                Ok(written) => Ok(written.metadata.resource_version),
                // Changed (409) or removed (404) since it was read.
                Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
                    Err(conflict())
                }
                Err(e) => Err(this.connection.error(
                    &ready,
                    &format!("write the record of environment {env}"),
                    e,
                )),
            }
        })?;
        state.revision.set(written);
        Ok(())
    }

    /// Where a spec kept with its record is, for messages: `Environment sprout-system/pr-42`.
    pub fn spec_place(&self, env: &str) -> String {
        format!(
            "Environment {}/{env} (spec.definition)",
            self.connection.namespace
        )
    }

    /// Keeps `text` as `env`'s spec with its record (`spec.definition`), creating the record's
    /// object when there is none yet: every replica and checkout then reads the same spec.
    pub fn save_spec(&self, env: &str, text: &str) -> std::result::Result<(), StateError> {
        let this = self.clone();
        let env = env.to_string();
        let text = text.to_string();
        bridge::run(async move {
            let ready = this.connection.ready().await?;
            let api = this.environments(&ready);
            let failed = |e| {
                this.connection
                    .error(&ready, &format!("keep the spec of environment {env}"), e)
            };
            let patch = serde_json::json!({"spec": {"definition": text}});
            let written = match api
                .patch(&env, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(written) => written,
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    let mut object = this.new_object(&env);
                    object.data["spec"]["definition"] = serde_json::Value::String(text.clone());
                    match api.create(&PostParams::default(), &object).await {
                        Ok(created) => created,
                        // Created by another writer in between: patch that one.
                        Err(kube::Error::Api(status)) if status.code == 409 => api
                            .patch(&env, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                            .map_err(failed)?,
                        Err(e) => return Err(failed(e)),
                    }
                }
                Err(e) => return Err(failed(e)),
            };
            // A CRD installed by an older sprout prunes the field it does not declare.
            if written.data["spec"]["definition"].as_str() != Some(text.as_str()) {
                return Err(StateError::Cluster {
                    namespace: this.connection.namespace.clone(),
                    message: format!(
                        "the Environment resource on {} drops spec.definition (installed by an older sprout); update it with `sprout install | kubectl apply -f -`",
                        ready.server
                    ),
                });
            }
            this.connection
                .specs
                .lock()
                .expect("specs lock")
                .insert(env.clone(), text);
            Ok(())
        })
    }

    /// The specs kept with this project's records, by environment.
    pub fn stored_specs(&self) -> std::result::Result<BTreeMap<String, String>, StateError> {
        let this = self.clone();
        let specs = bridge::run(async move {
            let ready = this.connection.ready().await?;
            let listed = this.list_records(&ready).await?;
            Ok::<_, StateError>(
                listed
                    .items
                    .into_iter()
                    .filter_map(|o| {
                        let text = o.data["spec"]["definition"].as_str()?.to_string();
                        Some((o.metadata.name?, text))
                    })
                    .collect::<BTreeMap<_, _>>(),
            )
        })?;
        let mut cache = self.connection.specs.lock().expect("specs lock");
        cache.clear();
        cache.extend(specs.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(specs)
    }

    /// A record's object before its first write: labelled with the project, spec naming it.
    fn new_object(&self, env: &str) -> DynamicObject {
        let mut object = DynamicObject::new(env, &resource())
            .within(&self.connection.namespace)
            .data(serde_json::json!({
                "spec": {"environment": env, "project": self.project},
            }));
        let mut labels = BTreeMap::from([(MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string())]);
        if !self.project.is_empty() {
            labels.insert(PROJECT_LABEL.to_string(), self.project.clone());
        }
        object.metadata.labels = Some(labels);
        object
    }

    pub fn remove(&self, env: &str) -> std::result::Result<(), StateError> {
        self.connection
            .specs
            .lock()
            .expect("specs lock")
            .remove(env);
        let this = self.clone();
        let env = env.to_string();
        bridge::run(async move {
            let ready = this.connection.ready().await?;
            let gone = |result: kube::Result<_>| match result {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                Err(e) => Err(e),
            };
            gone(
                this.environments(&ready)
                    .delete(&env, &DeleteParams::default())
                    .await
                    .map(|_| ()),
            )
            .map_err(|e| {
                this.connection.error(
                    &ready,
                    &format!("remove the record of environment {env}"),
                    e,
                )
            })?;
            // The lock goes with the record (its holder, if any, is the remover).
            gone(
                this.leases(&ready)
                    .delete(&lock_name(&env), &DeleteParams::default())
                    .await
                    .map(|_| ()),
            )
            .map_err(|e| {
                this.connection
                    .error(&ready, &format!("remove the lock of environment {env}"), e)
            })
        })
    }

    pub fn lock(&self, env: &str, command: &str, wait: Wait) -> Result<EnvironmentLock> {
        let this = self.clone();
        let name = env.to_string();
        let holder = Holder::me(command);
        let taken = bridge::run(async move {
            let ready = this.connection.ready().await?;
            match lease::take(this.leases(&ready), &lock_name(&name), &name, &holder, wait).await {
                Ok(lock) => Ok(Ok(lock)),
                Err(Taken::Held(holder)) => Ok(Err(holder)),
                Err(Taken::Api(e)) => Err(this.connection.error(
                    &ready,
                    &format!("take the lock of environment {name}"),
                    e,
                )),
            }
        })?;
        match taken {
            Ok(lease) => Ok(EnvironmentLock::Cluster(Box::new(ClusterLock {
                lease: Some(lease),
            }))),
            Err(holder) => Err(Error::Busy {
                env: env.to_string(),
                holder: Some(holder),
            }),
        }
    }

    pub fn is_locked(&self, env: &str) -> std::result::Result<bool, StateError> {
        let this = self.clone();
        let env = env.to_string();
        bridge::run(async move {
            let ready = this.connection.ready().await?;
            lease::is_held(&this.leases(&ready), &lock_name(&env))
                .await
                .map_err(|e| {
                    this.connection
                        .error(&ready, &format!("read the lock of environment {env}"), e)
                })
        })
    }
}

/// An environment's Lease in the management namespace, renewed while held and given up when
/// dropped (a crashed holder's Lease expires instead).
#[derive(Debug)]
pub struct ClusterLock {
    lease: Option<LeaseLock>,
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            bridge::run_for(Duration::from_secs(5), lease.release());
        }
    }
}
