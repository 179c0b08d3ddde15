//! Webhook authentication: GitHub's HMAC-SHA256 signature over the raw body, GitLab's shared
//! token, both compared in constant time. Self-contained (hmac, sha2, subtle), so the fuzz
//! target builds it alone.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// `X-Hub-Signature-256: sha256=<hex>` against HMAC-SHA256 of the raw body, compared in
/// constant time.
pub fn verify_github(secret: &[u8], header: Option<&str>, body: &[u8]) -> bool {
    let Some(hex) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// `X-Gitlab-Token` against the configured token, compared in constant time (over digests, so
/// not even the length leaks).
pub fn verify_gitlab(secret: &[u8], header: Option<&str>) -> bool {
    let Some(given) = header else {
        return false;
    };
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(secret);
    given.ct_eq(&expected).into()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        let bytes = mac.finalize().into_bytes();
        format!(
            "sha256={}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }

    #[test]
    fn github_signatures_are_checked_over_the_raw_body() {
        let secret = b"It's a Secret to Everybody";
        // GitHub's documented example.
        let body = b"Hello, World!";
        let documented = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(verify_github(secret, Some(documented), body));
        assert_eq!(sign("It's a Secret to Everybody", body), documented);
        assert!(!verify_github(secret, Some(documented), b"Hello, World?"));
        assert!(!verify_github(secret, None, body));
        assert!(!verify_github(secret, Some("sha1=abc"), body));
        assert!(!verify_github(secret, Some("sha256=zz"), body));
        assert!(!verify_github(secret, Some("sha256=ü7"), body));
    }

    #[test]
    fn gitlab_tokens_must_match_exactly() {
        let secret = b"t0ken";
        assert!(verify_gitlab(secret, Some("t0ken")));
        assert!(!verify_gitlab(secret, Some("t0ken ")));
        assert!(!verify_gitlab(secret, None));
    }
}
