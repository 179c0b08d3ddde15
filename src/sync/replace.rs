//! Replacing an object whose change touches a field that cannot change after creation (a Job's
//! pod template, a StatefulSet's volumeClaimTemplates, a selector): no apply can converge it, so
//! it is deleted and created again.
//!
//! In an ephemeral environment that is what a user wants for Jobs (a per-commit image bumps the
//! template of every migration Job), so Jobs are replaced by default; any other kind only when it
//! opts in, with sprout's annotation or the ones Argo CD and Flux users already write. An object
//! marked to survive prune is never replaced: a delete would lose what the mark keeps.
//!
//! The delete is pinned to the uid sprout read, so a namesake made meanwhile survives; the
//! create waits until the old object is gone (a finalizer can hold it).

use super::SyncError;
use super::live::{Live, Resolved};
use crate::object::Object;
use serde_json::Value;
use std::time::{Duration, Instant};

pub const SYNC_OPTIONS: &str = "sprout.dev/sync-options";
const ARGO_SYNC_OPTIONS: &str = "argocd.argoproj.io/sync-options";
const FLUX_FORCE: &str = "kustomize.toolkit.fluxcd.io/force";

/// What a user can do about an immutable change sprout will not replace by itself.
pub const REMEDY: &str = "sprout deletes and recreates such an object when it allows it: annotate it `sprout.dev/sync-options: Replace=true` (Jobs allow it by default)";

/// How long the old object may take to go (finalizers) before the sync gives up on it.
const GONE_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether sprout may delete and recreate `object` to change an immutable field.
pub fn allows_replace(object: &Object) -> bool {
    let annotation = |key: &str| object.str_at(&["metadata", "annotations", key]);
    let lists_replace = |key: &str| {
        annotation(key)
            .is_some_and(|options| options.split(',').any(|o| o.trim() == "Replace=true"))
    };
    (object.group(), object.kind()) == ("batch", "Job")
        || lists_replace(SYNC_OPTIONS)
        || lists_replace(ARGO_SYNC_OPTIONS)
        || annotation(FLUX_FORCE) == Some("enabled")
}

/// Why `object` (live as `current`) must not be replaced, if it must not: it is marked to
/// survive prune, in git or live.
pub fn refusal(object: &Object, current: &Value) -> Option<String> {
    let desired = Value::Object(object.body.clone());
    let reason =
        super::prune::keep_reason(current).or_else(|| super::prune::keep_reason(&desired))?;
    Some(format!(
        "it is marked to survive prune ({reason}), so sprout will not delete it to recreate it; delete it yourself or remove the mark"
    ))
}

/// What a user should know after `object` (live as `old` before) was recreated, if anything: a
/// StatefulSet recreated for new volumeClaimTemplates keeps its existing claims as they were
/// (the new StatefulSet's pods use them by name, and Kubernetes never changes a claim's spec
/// for its template), so a bigger `storage` does not reach them.
pub fn note(object: &Object, old: &Value) -> Option<String> {
    if (object.group(), object.kind()) != ("apps", "StatefulSet") {
        return None;
    }
    let fields = super::immutable::named_fields(object, old, "spec");
    if !fields.contains("spec.volumeClaimTemplates") {
        return None;
    }
    Some(format!(
        "{}: recreated with new volumeClaimTemplates, but its existing PersistentVolumeClaims keep their old size and spec (Kubernetes does not change them); delete them (and their data) to have them made anew, or resize them if their StorageClass allows expansion",
        object.object_ref()
    ))
}

/// Deletes the object with `uid`, waits until it is gone, and applies `object` afresh.
pub async fn recreate(
    live: &Live,
    resolved: &Resolved,
    object: &Object,
    uid: &str,
) -> Result<Value, SyncError> {
    let reference = object.object_ref();
    live.delete(resolved, &reference, uid).await?;
    let started = Instant::now();
    loop {
        let current = live.get(resolved, &reference).await?;
        let same = current
            .as_ref()
            .and_then(|v| v.pointer("/metadata/uid"))
            .and_then(Value::as_str)
            == Some(uid);
        if !same {
            break;
        }
        if started.elapsed() >= GONE_TIMEOUT {
            return Err(SyncError::Object {
                object: reference.to_string(),
                message: format!(
                    "deleted to be recreated, but still there after {}s (a finalizer?); the next sync continues",
                    GONE_TIMEOUT.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    live.apply(resolved, object, false, false).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::object::test_object as object;

    #[test]
    fn jobs_by_default_others_when_they_opt_in() {
        let job =
            object(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}}));
        assert!(allows_replace(&job));
        let plain = |annotations: Value| {
            object(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                          "metadata": {"name": "db", "annotations": annotations}}))
        };
        assert!(!allows_replace(&plain(json!({}))));
        assert!(allows_replace(&plain(
            json!({SYNC_OPTIONS: "Replace=true"})
        )));
        assert!(allows_replace(&plain(
            json!({ARGO_SYNC_OPTIONS: "Validate=false, Replace=true"})
        )));
        assert!(allows_replace(&plain(json!({FLUX_FORCE: "enabled"}))));
        assert!(!allows_replace(&plain(
            json!({SYNC_OPTIONS: "Replace=false"})
        )));
    }

    #[test]
    fn a_stateful_set_recreated_for_its_claim_templates_says_its_claims_stay() {
        let sts = |storage: &str| {
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "pr-1"},
                "spec": {"serviceName": "db", "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"resources": {"requests": {"storage": storage}}}}]}})
        };
        let said = note(&object(sts("2Gi")), &sts("1Gi")).unwrap();
        assert!(
            said.starts_with("StatefulSet/pr-1/db: recreated with new volumeClaimTemplates, but its existing PersistentVolumeClaims keep their old size"),
            "{said}"
        );
        let mut renamed = sts("1Gi");
        renamed["spec"]["serviceName"] = json!("other");
        assert_eq!(note(&object(renamed), &sts("1Gi")), None);
    }

    #[test]
    fn objects_kept_through_prune_are_never_replaced() {
        let job =
            object(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}}));
        let kept = json!({"metadata": {"annotations": {"helm.sh/resource-policy": "keep"}}});
        let reason = refusal(&job, &kept).unwrap();
        assert!(reason.contains("helm.sh/resource-policy: keep"), "{reason}");
        assert_eq!(refusal(&job, &json!({"metadata": {}})), None);
    }
}
