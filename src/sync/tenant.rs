//! The environment's identity on a shared cluster: a ServiceAccount `sprout-env` in its
//! namespace, bound by a RoleBinding in each of its namespaces (and nowhere else) to the
//! ClusterRole `sprout-tenant` — every verb on every namespaced resource, which a RoleBinding
//! confines to that one namespace. sprout applies and deletes the environment's namespaced
//! objects impersonating this account (after Flux's tenant impersonation), so the API server
//! refuses a write outside the environment's namespaces even if sprout's own checks
//! (`fork::tenancy`) had a bug. Cluster-scoped objects, which such an account can never write,
//! go with sprout's identity, after those checks.
//!
//! These objects are sprout's bookkeeping like the inventory and the lock: never in the
//! inventory, made when missing (a sync that changes nothing writes nothing), removed with the
//! inventory.

use super::SyncError;
use super::live::Live;
use crate::fork::ownership::{ENVIRONMENT_LABEL, MANAGED_BY, MANAGED_BY_VALUE, PROJECT_LABEL};
use crate::fork::tenancy::{TENANT_IDENTITY, TENANT_ROLE};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The user name the API server knows the environment's account by.
pub fn tenant_user(home: &str) -> String {
    format!("system:serviceaccount:{home}:{TENANT_IDENTITY}")
}

/// Makes the environment's identity (what is missing of it) in `home` and every namespace of
/// `namespaces` that exists, then switches `live`'s namespaced writes to it. Returns the
/// writes sent.
pub async fn ensure(
    live: &mut Live,
    home: &str,
    namespaces: &BTreeSet<String>,
    env: &str,
    project: &str,
) -> Result<usize, SyncError> {
    let writes = make(live, home, namespaces, &BTreeSet::new(), env, project).await?;
    live.act_as_tenant(&tenant_user(home))?;
    Ok(writes)
}

/// [`ensure`] without the switch: for a caller that makes the identity beside other writes
/// made as sprout itself, and switches once all are done. In the namespaces the environment's
/// Lease `made_now`, nothing of the identity can exist yet: it is made there without being
/// looked for, a round trip sooner. Returns the writes sent.
pub async fn make(
    live: &Live,
    home: &str,
    namespaces: &BTreeSet<String>,
    made_now: &BTreeSet<String>,
    env: &str,
    project: &str,
) -> Result<usize, SyncError> {
    let labels = labels(env, project);
    let roles: Api<ClusterRole> = Api::all(live.client.clone());
    let accounts: Api<ServiceAccount> = Api::namespaced(live.client.clone(), home);
    let namespace_api: Api<Namespace> = Api::all(live.client.clone());
    // Each object looked for, then made when missing, all side by side: a cluster far away
    // makes every sequential request count. A RoleBinding may come before its account and role;
    // the API server authorizes by them once all exist (see `wait_until_authorized`). A create
    // never overwrites (a 409 says the object exists), but the shared ClusterRole is always
    // looked for first: an identity allowed to bind it and not to create it would get a 403.
    let make_role = async {
        if get(live, &roles, TENANT_ROLE).await?.is_some() {
            return Ok(0);
        }
        let role: ClusterRole = serde_json::from_value(json!({
            "metadata": {"name": TENANT_ROLE, "labels": {MANAGED_BY: MANAGED_BY_VALUE}},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        }))
        .expect("a ClusterRole");
        let made = create(live, &roles, &role, "ClusterRole", TENANT_ROLE).await?;
        Ok::<_, SyncError>(usize::from(made))
    };
    let make_account = async {
        if !made_now.contains(home) && get(live, &accounts, TENANT_IDENTITY).await?.is_some() {
            return Ok(0);
        }
        let account: ServiceAccount = serde_json::from_value(json!({
            "metadata": {"name": TENANT_IDENTITY, "namespace": home, "labels": labels},
        }))
        .expect("a ServiceAccount");
        let made = create(live, &accounts, &account, "ServiceAccount", TENANT_IDENTITY).await?;
        Ok::<_, SyncError>(usize::from(made))
    };
    // Each namespace the binding was made in (or found made meanwhile), with whether this call
    // made it; none where it was there already, or where the namespace is not.
    let make_bindings = futures::future::join_all(namespaces.iter().map(|namespace| {
        let (labels, namespace_api) = (&labels, &namespace_api);
        async move {
            let bindings: Api<RoleBinding> = Api::namespaced(live.client.clone(), namespace);
            if !made_now.contains(namespace) {
                let (exists, binding) = futures::future::join(
                    async {
                        if namespace == home {
                            return Ok(true);
                        }
                        get(live, namespace_api, namespace)
                            .await
                            .map(|n| n.is_some())
                    },
                    get(live, &bindings, TENANT_IDENTITY),
                )
                .await;
                if !exists? || binding?.is_some() {
                    return Ok(None);
                }
            }
            let binding: RoleBinding = serde_json::from_value(json!({
                "metadata": {"name": TENANT_IDENTITY, "namespace": namespace, "labels": labels},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": TENANT_ROLE},
                "subjects": [{"kind": "ServiceAccount", "name": TENANT_IDENTITY, "namespace": home}],
            }))
            .expect("a RoleBinding");
            let made = create(live, &bindings, &binding, "RoleBinding", TENANT_IDENTITY).await?;
            Ok::<_, SyncError>(Some((namespace.clone(), made)))
        }
    }));
    let (role, account, bindings) =
        futures::future::join3(make_role, make_account, make_bindings).await;
    let mut writes = role? + account?;
    let mut bound = Vec::new();
    for binding in bindings {
        if let Some((namespace, made)) = binding? {
            writes += usize::from(made);
            bound.push(namespace);
        }
    }
    let reviews = futures::future::join_all(
        bound
            .iter()
            .map(|namespace| wait_until_authorized(live, home, namespace)),
    )
    .await;
    for asked in reviews {
        writes += asked?;
    }
    Ok(writes)
}

/// Removes the environment's identity from `home` and `namespaces` (absent is fine): when its
/// inventory is gone, nothing is applied as it any more.
pub async fn remove(
    live: &Live,
    home: &str,
    namespaces: &BTreeSet<String>,
) -> Result<(), SyncError> {
    for namespace in namespaces {
        let bindings: Api<RoleBinding> = Api::namespaced(live.client.clone(), namespace);
        delete(live, &bindings, TENANT_IDENTITY).await?;
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(live.client.clone(), home);
    delete(live, &accounts, TENANT_IDENTITY).await
}

fn labels(env: &str, project: &str) -> serde_json::Value {
    let mut labels = json!({MANAGED_BY: MANAGED_BY_VALUE, ENVIRONMENT_LABEL: env});
    if !project.is_empty() {
        labels[PROJECT_LABEL] = json!(project);
    }
    labels
}

/// A new RoleBinding reaches the API server's authorizer through a watch: wait (at most 10 s)
/// until it answers for the account, so the first apply is not refused for a moment's lag.
async fn wait_until_authorized(
    live: &Live,
    home: &str,
    namespace: &str,
) -> Result<usize, SyncError> {
    let reviews: Api<SubjectAccessReview> = Api::all(live.client.clone());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(tenant_user(home)),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_string()),
                verb: Some("create".into()),
                resource: Some("configmaps".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let started = Instant::now();
    let mut asked = 0;
    loop {
        asked += 1;
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| live.call_error("check the environment's identity", e))?;
        if answer.status.is_some_and(|s| s.allowed) {
            return Ok(asked);
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err(SyncError::Api {
                what: format!("the environment's identity in namespace {namespace}"),
                message: "the API server does not authorize it 10 s after its RoleBinding was made"
                    .into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get<K>(live: &Live, api: &Api<K>, name: &str) -> Result<Option<K>, SyncError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    super::live::retrying(|| api.get_opt(name))
        .await
        .map_err(|e| live.call_error(&format!("read {name}"), e))
}

/// Whether it was made by this call (false: it exists already).
async fn create<K>(
    live: &Live,
    api: &Api<K>,
    object: &K,
    kind: &str,
    name: &str,
) -> Result<bool, SyncError>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(true),
        // Made meanwhile by another environment's sync (the shared ClusterRole): fine.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(live.call_error(&format!("create the environment's {kind} {name}"), e)),
    }
}

async fn delete<K>(live: &Live, api: &Api<K>, name: &str) -> Result<(), SyncError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(live.call_error(&format!("delete {name}"), e)),
    }
}
