//! Transient answers from the API server are retried: 429 and 503 by kube's client layer, which
//! waits as long as `Retry-After` says; 500 and 502 by sprout's own retry. Shown against a small
//! HTTP server on loopback that answers with those statuses before the real answer. A connection
//! closed without an answer is asked again once, not four times: twice in a row, it is the
//! request the server fails on. A group version's discovery is the exception: its 503 is most
//! often an aggregated API that is down, and is asked again only briefly.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A kubeconfig for `url` (plain http, a token), in `dir`.
fn kubeconfig_for(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{url}\"}}}}]\nusers: [{{name: u, user: {{token: t}}}}]\n\
                 contexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n"),
    )
    .unwrap();
    kubeconfig
}

/// `ask` answered by a `Live` connected to `url` as sprout connects (its own client stack), on
/// a runtime of its own.
fn with_live<T>(url: &str, ask: impl AsyncFnOnce(&mut sprout::sync::live::Live) -> T) -> T {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_for(dir.path(), url);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let target = sprout::cluster::Target {
            kubeconfig,
            context: None,
        };
        let client = sprout::cluster::client(&target).await.unwrap();
        let mut live = sprout::sync::live::Live::new(client, url.to_string());
        ask(&mut live).await
    })
}

/// Serves `answers` in order (status line, extra headers, body), one per request, recording
/// when each request arrived.
fn serve(
    answers: Vec<(&'static str, &'static str, &'static str)>,
) -> (String, Arc<Mutex<Vec<Instant>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    std::thread::spawn(move || {
        let mut answers = answers.into_iter();
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                line.clear();
            }
            seen.lock().unwrap().push(Instant::now());
            let Some((status, headers, body)) = answers.next() else {
                return;
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).unwrap();
        }
    });
    (url, arrivals)
}

#[test]
fn transient_errors_are_retried_and_retry_after_is_honoured() {
    let status = |code: u16, reason: &str| -> &'static str {
        Box::leak(format!(r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"{reason}","code":{code}}}"#).into_boxed_str())
    };
    let (url, arrivals) = serve(vec![
        (
            "429 Too Many Requests",
            "retry-after: 1\r\n",
            status(429, "TooManyRequests"),
        ),
        (
            "503 Service Unavailable",
            "",
            status(503, "ServiceUnavailable"),
        ),
        (
            "500 Internal Server Error",
            "",
            status(500, "InternalError"),
        ),
        ("404 Not Found", "", status(404, "NotFound")),
    ]);
    // One request at a time (the answers come in order).
    let exists = with_live(&url, async |live| {
        sprout::sync::inventory::exists(live, "env").await
    });
    let exists = exists.expect("the fourth answer (404: no inventory yet) is reached");
    assert!(!exists);
    let arrivals = arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), 4, "429, 503 and 500 were each retried");
    assert!(
        arrivals[1] - arrivals[0] >= Duration::from_millis(950),
        "Retry-After: 1 was honoured: {:?}",
        arrivals[1] - arrivals[0]
    );
}

/// A server that reads each request and closes the connection without answering, as a 1.20 API
/// server does when it panics on a request: asked twice, then the error is the caller's.
#[test]
fn a_connection_closed_without_an_answer_twice_is_not_asked_again() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let arrivals = Arc::new(Mutex::new(0));
    let seen = arrivals.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            *seen.lock().unwrap() += 1;
            drop(stream);
        }
    });
    let exists = with_live(&url, async |live| {
        sprout::sync::inventory::exists(live, "env").await
    });
    let error = exists.expect_err("no answer ever came").to_string();
    assert!(!error.contains("unreachable"), "{error}");
    assert_eq!(
        *arrivals.lock().unwrap(),
        2,
        "asked once more, then given up: {error}"
    );
}

/// Serves discovery by path: the core group, one named group `metrics.k8s.io` (its resources
/// answered with the aggregator's 503 for an APIService whose Service is missing); counts the
/// requests for that group version.
fn serve_broken_group() -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let asked = Arc::new(Mutex::new(0));
    let counter = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                line.clear();
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or_default();
            let (status, kind, body) = match path {
                "/api" => (
                    "200 OK",
                    "application/json",
                    r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[]}"#,
                ),
                "/apis" => (
                    "200 OK",
                    "application/json",
                    r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[{"name":"metrics.k8s.io","versions":[{"groupVersion":"metrics.k8s.io/v1beta1","version":"v1beta1"}],"preferredVersion":{"groupVersion":"metrics.k8s.io/v1beta1","version":"v1beta1"}}]}"#,
                ),
                "/apis/metrics.k8s.io/v1beta1" => {
                    *counter.lock().unwrap() += 1;
                    (
                        "503 Service Unavailable",
                        "text/plain; charset=utf-8",
                        "service unavailable\n",
                    )
                }
                _ => ("404 Not Found", "text/plain", "404 page not found\n"),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).unwrap();
        }
    });
    (url, asked)
}

#[test]
fn a_group_version_that_answers_503_is_asked_again_only_briefly() {
    let (url, asked) = serve_broken_group();
    let started = Instant::now();
    let discovered = with_live(&url, async |live| {
        let groups = ["metrics.k8s.io".to_string()].into_iter().collect();
        live.rediscover(&groups).await
    });
    let took = started.elapsed();
    let error = discovered.expect_err("the group cannot be discovered");
    assert!(
        error.to_string().contains("service unavailable (503)"),
        "{error}"
    );
    assert_eq!(*asked.lock().unwrap(), 3, "asked once and again twice");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}
