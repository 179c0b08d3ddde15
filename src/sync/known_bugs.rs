//! Objects the server cannot take because of a bug of its version, refused before the first
//! write (bad input for that server changes nothing) rather than found by failing applies after
//! other objects were written.
//!
//! The one known: a Kubernetes API server before 1.21 panics on every server-side apply of an
//! APIService, a dry run included (kubernetes/kubernetes#89264: the aggregator serving
//! `apiregistration.k8s.io` has no field manager), and closes the connection without an answer.
//!
//! Why a refusal, not a create/update of APIServices without server-side apply on such servers:
//! sprout's comparison (a dry-run apply), its drift and `diff`, conflicts with other managers and
//! forced drift repair all rest on server-side apply and its field ownership, which that server
//! does not keep for APIServices at all. A second write path for one kind would be one that none
//! of those guarantees covers, on servers past their support; dropping the kind, or a newer
//! server, is honest about that.

use super::SyncError;
use super::live::{Live, retrying};
use super::messages::capped_inline;
use crate::object::Object;

/// The most objects one refusal names.
const OBJECTS_SHOWN: usize = 3;

/// The objects of `objects` the server cannot apply, refused; asks the server's version only
/// when there are APIServices (a sync without any asks nothing more).
pub(super) async fn refusals(live: &Live, objects: &[Object]) -> Result<Vec<SyncError>, SyncError> {
    let api_services: Vec<String> = objects
        .iter()
        .filter(|o| is_api_service(o))
        .map(|o| o.object_ref().to_string())
        .collect();
    if api_services.is_empty() {
        return Ok(Vec::new());
    }
    let info = retrying(|| live.client.apiserver_version())
        .await
        .map_err(|e| live.call_error("read the server's version", e))?;
    Ok(
        refusal(&api_services, &info.major, &info.minor, &info.git_version)
            .into_iter()
            .collect(),
    )
}

fn is_api_service(object: &Object) -> bool {
    (object.group(), object.kind()) == ("apiregistration.k8s.io", "APIService")
}

/// The refusal of `api_services` by a server of this version, if it cannot apply them. A version
/// sprout cannot read is given the benefit of the doubt: the apply will say what it says.
fn refusal(
    api_services: &[String],
    major: &str,
    minor: &str,
    git_version: &str,
) -> Option<SyncError> {
    let (major, minor) = (leading_number(major)?, leading_number(minor)?);
    if (major, minor) >= (1, 21) {
        return None;
    }
    Some(SyncError::ServerBug {
        objects: capped_inline(api_services, OBJECTS_SHOWN),
        reason: format!(
            "this API server (Kubernetes {git_version}) fails on every server-side apply of an APIService: it panics and closes the connection (kubernetes/kubernetes#89264, fixed in Kubernetes 1.21), and sprout applies every object that way; leave APIServices out (`overlay.drop: [APIService]`) or use a cluster of Kubernetes 1.21 or later"
        ),
    })
}

/// `20` of `20`, and of `20+` (as EKS and GKE report their minor versions).
fn leading_number(text: &str) -> Option<u32> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_services_are_refused_by_servers_before_1_21() {
        let objects = ["APIService/v1beta1.metrics.k8s.io".to_string()];
        let refused = refusal(&objects, "1", "20", "v1.20.2").unwrap();
        assert_eq!(
            refused.to_string(),
            "APIService/v1beta1.metrics.k8s.io: this API server (Kubernetes v1.20.2) fails on every server-side apply of an APIService: it panics and closes the connection (kubernetes/kubernetes#89264, fixed in Kubernetes 1.21), and sprout applies every object that way; leave APIServices out (`overlay.drop: [APIService]`) or use a cluster of Kubernetes 1.21 or later"
        );
        assert!(
            refused.is_refusal(),
            "nothing written: invalid input, exit 2"
        );
        assert!(refusal(&objects, "1", "20+", "v1.20.15-eks-1").is_some());
        assert!(refusal(&objects, "1", "21", "v1.21.0").is_none());
        assert!(refusal(&objects, "1", "33+", "v1.33.1-gke.1").is_none());
        assert!(
            refusal(&objects, "", "", "").is_none(),
            "unknown: not refused"
        );
    }

    #[test]
    fn many_api_services_are_named_in_a_bounded_line() {
        let objects: Vec<String> = (0..10)
            .map(|i| format!("APIService/v1beta{i}.example.com"))
            .collect();
        let refused = refusal(&objects, "1", "19", "v1.19.4").unwrap().to_string();
        assert!(
            refused.starts_with(
                "APIService/v1beta0.example.com, APIService/v1beta1.example.com, APIService/v1beta2.example.com, +7 more: this API server (Kubernetes v1.19.4)"
            ),
            "{refused}"
        );
    }
}
