//! The bearer token EKS accepts (what `aws eks get-token` prints): `k8s-aws-v1.` followed by the
//! unpadded base64url of a presigned STS `GetCallerIdentity` URL whose signature covers the
//! `x-k8s-aws-id: <cluster>` header. The API server replays the URL to STS to learn who is
//! calling. Presigned URLs live 15 minutes; sprout signs them for 60 seconds and kube's exec
//! credential support asks again (`sprout eks-token`) before the token expires.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use std::time::{Duration, SystemTime};

pub const PREFIX: &str = "k8s-aws-v1.";
const CLUSTER_HEADER: &str = "x-k8s-aws-id";
/// How long a token is valid; kube refreshes it before `expires`.
pub const LIFETIME: Duration = Duration::from_secs(60);

pub struct Token {
    pub token: String,
    pub expires: SystemTime,
}

pub fn presign(
    credentials: &Credentials,
    region: &str,
    cluster: &str,
    now: SystemTime,
) -> Result<Token, String> {
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(LIFETIME);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let url =
        format!("https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15");
    let headers = [(CLUSTER_HEADER, cluster)];
    let signable = SignableRequest::new("GET", &url, headers.into_iter(), SignableBody::Bytes(&[]))
        .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let mut request = http::Request::builder()
        .uri(&url)
        .body(())
        .map_err(|e| e.to_string())?;
    instructions.apply_to_request_http1x(&mut request);
    let presigned = request.uri().to_string();
    Ok(Token {
        token: format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(presigned)
        ),
        expires: now + LIFETIME,
    })
}

/// The token as a client-go `ExecCredential`, for the kubeconfig's exec plugin.
pub fn exec_credential(token: &Token) -> serde_json::Value {
    let expires = chrono::DateTime::<chrono::Utc>::from(token.expires)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    serde_json::json!({
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {"token": token.token, "expirationTimestamp": expires},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_presigned_sts_urls_that_sign_the_cluster_header() {
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            Some("session".into()),
            None,
            "test",
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = presign(&credentials, "eu-west-1", "sprout-pr-42", now).unwrap();
        let encoded = token
            .token
            .strip_prefix(PREFIX)
            .expect("the k8s-aws-v1. prefix");
        assert!(
            !encoded.contains(['=', '+', '/']),
            "unpadded base64url: {encoded}"
        );
        let url = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded)
                .unwrap(),
        )
        .unwrap();
        assert!(
            url.starts_with(
                "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Feu-west-1%2Fsts%2Faws4_request",
            "X-Amz-Date=20231114T221320Z",
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
            "X-Amz-Security-Token=session",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} missing from {url}");
        }
        assert_eq!(token.expires, now + LIFETIME);
        let credential = exec_credential(&token);
        assert_eq!(
            credential["status"]["expirationTimestamp"],
            "2023-11-14T22:14:20Z"
        );
    }

    #[test]
    fn the_signature_depends_on_the_cluster() {
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = presign(&credentials, "eu-west-1", "a", now).unwrap().token;
        let b = presign(&credentials, "eu-west-1", "b", now).unwrap().token;
        assert_ne!(a, b);
    }
}
