//! What never reaches an environment: dropped kinds, and inline Secret data unless the spec
//! explicitly allows it (`secrets: inline`). References (ExternalSecret, SealedSecret) stay: they hold no values.

use crate::object::Object;
use crate::spec::SecretsPolicy;

/// What was left out, for the render summary.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Excluded {
    pub dropped: usize,
    pub inline_secrets: usize,
}

pub fn exclude(objects: &mut Vec<Object>, drop: &[String], secrets: &SecretsPolicy) -> Excluded {
    let mut excluded = Excluded::default();
    objects.retain(|object| {
        if drop.iter().any(|entry| drops(entry, object)) {
            excluded.dropped += 1;
            return false;
        }
        let inline_secret = object.kind() == "Secret" && object.group().is_empty();
        if inline_secret && *secrets != SecretsPolicy::Inline {
            excluded.inline_secrets += 1;
            return false;
        }
        true
    });
    excluded
}

/// Whether a `drop` entry names `object`: a kind (`PodDisruptionBudget`: every object of it),
/// or a kind and a name as the source writes it (`ClusterRoleBinding/ingress-nginx-admission`:
/// that object, in whichever namespace), for the one object of a kind an environment cannot
/// take (a binding to rights it may not hold on a shared cluster).
fn drops(entry: &str, object: &Object) -> bool {
    match entry.split_once('/') {
        Some((kind, name)) => kind == object.kind() && name == object.name(),
        None => entry == object.kind(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: &str, name: &str) -> Object {
        let metadata = match kind {
            "ClusterRoleBinding" => serde_json::json!({"name": name}),
            _ => serde_json::json!({"name": name, "namespace": "shop"}),
        };
        crate::object::test_object(
            serde_json::json!({"apiVersion": "v1", "kind": kind, "metadata": metadata}),
        )
    }

    #[test]
    fn drop_takes_kinds_and_single_objects_by_kind_and_name() {
        let mut objects = vec![
            object("PodDisruptionBudget", "a"),
            object("PodDisruptionBudget", "b"),
            object("ClusterRoleBinding", "ingress-nginx"),
            object("ClusterRoleBinding", "ingress-nginx-admission"),
            object("ConfigMap", "ingress-nginx-admission"),
        ];
        let drop = [
            "PodDisruptionBudget".to_string(),
            "ClusterRoleBinding/ingress-nginx-admission".to_string(),
        ];
        let excluded = exclude(&mut objects, &drop, &SecretsPolicy::Reference);
        assert_eq!(excluded.dropped, 3);
        let left: Vec<String> = objects.iter().map(|o| o.object_ref().to_string()).collect();
        assert_eq!(
            left,
            [
                "ClusterRoleBinding/ingress-nginx",
                "ConfigMap/shop/ingress-nginx-admission"
            ]
        );
    }
}
