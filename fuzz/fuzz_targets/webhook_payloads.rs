//! Arbitrary bytes through the webhook payload parsers and signature checks: `Ok` or `Err`,
//! never a panic. The first byte picks the GitHub event name; the rest is the body (and, read
//! as text, the signature header).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../src/serve/webhook/payload.rs"]
#[allow(dead_code)]
mod payload;
#[path = "../../src/serve/webhook/signature.rs"]
#[allow(dead_code)]
mod signature;

const EVENTS: [&str; 4] = ["pull_request", "push", "ping", "issues"];

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else {
        return;
    };
    let event = EVENTS[usize::from(*first) % EVENTS.len()];
    let _ = payload::parse_github(event, body);
    let _ = payload::parse_gitlab(body);
    let header = String::from_utf8_lossy(body);
    let _ = signature::verify_github(b"secret", Some(&header), body);
    let _ = signature::verify_gitlab(b"secret", Some(&header));
});
