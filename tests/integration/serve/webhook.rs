//! The webhook router over real HTTP on loopback (raw HTTP/1.1, so a test controls exactly
//! which bytes are sent and can tell a body that was never read).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sprout::serve::config::Secret;
use sprout::serve::metrics::Metrics;
use sprout::serve::webhook::{Hint, Provider, WebhookSecrets, router};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

pub const SECRET: &str = "It's a Secret to Everybody";
const TOKEN: &str = "gitlab-t0ken";

struct Server {
    address: std::net::SocketAddr,
    hints: mpsc::Receiver<Hint>,
    ready: Arc<AtomicBool>,
    metrics: Metrics,
}

async fn start() -> Server {
    let (sender, hints) = mpsc::channel(16);
    let ready = Arc::new(AtomicBool::new(false));
    let metrics = Metrics::new();
    let app = router(
        WebhookSecrets::new(Some(Secret::new(SECRET)), Some(Secret::new(TOKEN))),
        sender,
        ready.clone(),
        metrics.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        address,
        hints,
        ready,
        metrics,
    }
}

pub fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Sends one request and returns the status code and body of the answer. The answer is read
/// while the body is still being written: a server that refuses a body answers (and closes)
/// before taking it all.
async fn send(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let stream = TcpStream::connect(server.address).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    let (reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let answer = read_answer(reader).await;
    writing.abort();
    answer
}

/// Reads one HTTP/1.1 answer: its headers, then as many body bytes as it announced.
async fn read_answer(mut stream: impl AsyncReadExt + Unpin) -> (u16, String) {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
            if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&answer[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if answer.len() >= end + 4 + length {
                    break;
                }
            }
        }
    })
    .await
    .expect("an answer within 5 s");
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn github_headers(body: &[u8], delivery: &str, event: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-hub-signature-256", sign(body)),
        ("x-github-delivery", delivery.to_string()),
        ("x-github-event", event.to_string()),
        ("content-type", "application/json".to_string()),
    ]
}

const PULL_REQUEST: &[u8] =
    br#"{"action":"synchronize","number":7,"repository":{"full_name":"acme/shop"}}"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_signed_delivery_queues_one_hint_even_when_delivered_twice() {
    runtime().block_on(async {
        let mut server = start().await;
        let headers = github_headers(PULL_REQUEST, "d-1", "pull_request");
        let started = std::time::Instant::now();
        let (status, _) = send(&server, "POST", "/hooks/github", &headers, PULL_REQUEST).await;
        assert_eq!(status, 202);
        assert!(started.elapsed() < Duration::from_secs(1));
        let (status, body) = send(&server, "POST", "/hooks/github", &headers, PULL_REQUEST).await;
        assert_eq!((status, body.trim()), (202, "already received"));
        assert_eq!(
            server.hints.try_recv().unwrap(),
            Hint {
                provider: Provider::GitHub,
                repository: "acme/shop".into(),
                number: Some(7)
            }
        );
        assert!(server.hints.try_recv().is_err(), "one hint for one delivery");

        let merge_request = br#"{"object_kind":"merge_request","project":{"path_with_namespace":"acme/shop"},"object_attributes":{"iid":3,"action":"close"}}"#;
        let headers = vec![
            ("x-gitlab-token", TOKEN.to_string()),
            ("idempotency-key", "k-1".to_string()),
            ("x-gitlab-event", "Merge Request Hook".to_string()),
        ];
        for _ in 0..2 {
            let (status, _) =
                send(&server, "POST", "/hooks/gitlab", &headers, merge_request).await;
            assert_eq!(status, 202);
        }
        let hint = server.hints.try_recv().unwrap();
        assert_eq!((hint.provider, hint.number), (Provider::GitLab, Some(3)));
        assert!(server.hints.try_recv().is_err());
        let text = server.metrics.encode();
        assert!(text.contains(
            "sprout_webhook_deliveries_total{provider=\"github\",result=\"duplicate\"} 1"
        ));
        assert!(text.contains(
            "sprout_webhook_deliveries_total{provider=\"gitlab\",result=\"accepted\"} 1"
        ));
    });
}

#[test]
fn an_unsigned_or_badly_signed_delivery_is_refused_before_parsing() {
    runtime().block_on(async {
        let mut server = start().await;
        // Not JSON at all: were it parsed, the answer would be 400.
        let garbage = b"{{{ not json";
        let mut headers = github_headers(garbage, "d-2", "pull_request");
        headers[0].1 = sign(b"another body");
        let (status, _) = send(&server, "POST", "/hooks/github", &headers, garbage).await;
        assert_eq!(status, 401);
        headers.remove(0);
        let (status, _) = send(&server, "POST", "/hooks/github", &headers, garbage).await;
        assert_eq!(status, 401);
        // A valid signature for a forged payload with another secret.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"guess").unwrap();
        mac.update(PULL_REQUEST);
        let forged = format!(
            "sha256={}",
            mac.finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let headers = vec![
            ("x-hub-signature-256", forged),
            ("x-github-event", "pull_request".into()),
        ];
        let (status, _) = send(&server, "POST", "/hooks/github", &headers, PULL_REQUEST).await;
        assert_eq!(status, 401);
        for token in [
            None,
            Some("wrong"),
            Some("gitlab-t0ke"),
            Some("gitlab-t0ken2"),
        ] {
            let headers: Vec<(&str, String)> = token
                .map(|t| vec![("x-gitlab-token", t.to_string())])
                .unwrap_or_default();
            let (status, _) = send(&server, "POST", "/hooks/gitlab", &headers, garbage).await;
            assert_eq!(status, 401, "{token:?}");
        }
        assert!(server.hints.try_recv().is_err());
        assert!(server.metrics.encode().contains(
            "sprout_webhook_deliveries_total{provider=\"github\",result=\"unauthorized\"} 3"
        ));
    });
}

#[test]
fn a_body_over_one_mebibyte_gets_413_unread() {
    runtime().block_on(async {
        let server = start().await;
        let big = vec![b' '; 2 << 20];
        let headers = github_headers(&big, "d-3", "push");
        let (status, _) = send(&server, "POST", "/hooks/github", &headers, &big).await;
        assert_eq!(status, 413);

        // Announced as 2 MiB, nothing sent: the answer comes without waiting for the body.
        let mut stream = TcpStream::connect(server.address).await.unwrap();
        stream
            .write_all(
                format!(
                    "POST /hooks/github HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
                    2 << 20
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let (status, _) = read_answer(stream).await;
        assert_eq!(status, 413);

        // Chunked, so no length is announced: cut off at the cap while reading.
        let stream = TcpStream::connect(server.address).await.unwrap();
        let (reader, mut writer) = stream.into_split();
        let writing = tokio::spawn(async move {
            let _ = writer
                .write_all(
                    b"POST /hooks/gitlab HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n",
                )
                .await;
            let chunk = vec![b'a'; 64 << 10];
            for _ in 0..32 {
                let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
                frame.extend_from_slice(&chunk);
                frame.extend_from_slice(b"\r\n");
                if writer.write_all(&frame).await.is_err() {
                    break;
                }
            }
            writer
        });
        let (status, _) = read_answer(reader).await;
        writing.abort();
        assert_eq!(status, 413);
    });
}

#[test]
fn a_signed_but_malformed_payload_is_400_and_never_a_panic() {
    runtime().block_on(async {
        let mut server = start().await;
        let cases: [(&str, &[u8]); 5] = [
            ("pull_request", b"not json"),
            ("pull_request", b"[1,2,3]"),
            (
                "pull_request",
                br#"{"repository":{"full_name":"acme/shop"}}"#,
            ),
            ("push", br#"{"repository":{"full_name":7}}"#),
            (
                "pull_request",
                br#"{"number":-1,"repository":{"full_name":"a/b"}}"#,
            ),
        ];
        for (i, (event, body)) in cases.iter().enumerate() {
            let headers = github_headers(body, &format!("m-{i}"), event);
            let (status, _) = send(&server, "POST", "/hooks/github", &headers, body).await;
            assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
        }
        let headers = vec![("x-gitlab-token", TOKEN.to_string())];
        for body in [&b"\xff\xfe"[..], br#"{"object_kind":"push"}"#] {
            let (status, _) = send(&server, "POST", "/hooks/gitlab", &headers, body).await;
            assert_eq!(status, 400);
        }
        // A ping is answered and queues nothing.
        let ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
        let headers = github_headers(ping, "p-1", "ping");
        let (status, _) = send(&server, "POST", "/hooks/github", &headers, ping).await;
        assert_eq!(status, 202);
        assert!(server.hints.try_recv().is_err());
        // The server is still up.
        assert_eq!(send(&server, "GET", "/healthz", &[], b"").await.0, 200);
    });
}

#[test]
fn health_readiness_and_metrics_are_served() {
    runtime().block_on(async {
        let server = start().await;
        assert_eq!(send(&server, "GET", "/healthz", &[], b"").await.0, 200);
        assert_eq!(send(&server, "GET", "/readyz", &[], b"").await.0, 503);
        server.ready.store(true, Ordering::Release);
        assert_eq!(send(&server, "GET", "/readyz", &[], b"").await.0, 200);
        server.metrics.set_leader(true);
        let (status, body) = send(&server, "GET", "/metrics", &[], b"").await;
        assert_eq!(status, 200);
        assert!(body.contains("sprout_leader 1"), "{body}");
    });
}

#[test]
fn a_full_queue_never_slows_the_answer() {
    runtime().block_on(async {
        let (sender, _hints) = mpsc::channel(1);
        let metrics = Metrics::new();
        let app = router(
            WebhookSecrets::new(Some(Secret::new(SECRET)), None),
            sender,
            Arc::new(AtomicBool::new(true)),
            metrics.clone(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let server = Server {
            address,
            hints: mpsc::channel(1).1,
            ready: Arc::new(AtomicBool::new(true)),
            metrics: metrics.clone(),
        };
        let started = std::time::Instant::now();
        for i in 0..3 {
            let headers = github_headers(PULL_REQUEST, &format!("q-{i}"), "pull_request");
            let (status, _) = send(&server, "POST", "/hooks/github", &headers, PULL_REQUEST).await;
            assert_eq!(status, 202);
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            metrics.encode().contains(
                "sprout_webhook_deliveries_total{provider=\"github\",result=\"dropped\"} 2"
            )
        );
    });
}

#[test]
fn a_provider_without_a_secret_has_no_route() {
    runtime().block_on(async {
        let (sender, _hints) = mpsc::channel(1);
        let app = router(
            WebhookSecrets::new(Some(Secret::new(SECRET)), None),
            sender,
            Arc::new(AtomicBool::new(true)),
            Metrics::new(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let server = Server {
            address,
            hints: mpsc::channel(1).1,
            ready: Arc::new(AtomicBool::new(true)),
            metrics: Metrics::new(),
        };
        let headers = vec![("x-gitlab-token", String::new())];
        assert_eq!(
            send(&server, "POST", "/hooks/gitlab", &headers, b"{}")
                .await
                .0,
            404
        );
    });
}
