//! Transient answers from the API server are retried: 429 and 503 by kube's client layer, which
//! waits as long as `Retry-After` says; 500 and 502 by sprout's own retry. Shown against a small
//! HTTP server on loopback that answers with those statuses before the real answer. A connection
//! closed without an answer is asked again once, not four times: twice in a row, it is the
//! request the server fails on.

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
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_for(dir.path(), &url);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let exists = runtime.block_on(async {
        let target = sprout::cluster::Target {
            kubeconfig,
            context: None,
        };
        let client = sprout::cluster::client(&target).await.unwrap();
        let live = sprout::sync::live::Live::new(client, url.clone());
        // One request at a time (the answers come in order).
        sprout::sync::inventory::exists(&live, "env").await
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
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_for(dir.path(), &url);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let exists = runtime.block_on(async {
        let target = sprout::cluster::Target {
            kubeconfig,
            context: None,
        };
        let client = sprout::cluster::client(&target).await.unwrap();
        let live = sprout::sync::live::Live::new(client, url.clone());
        sprout::sync::inventory::exists(&live, "env").await
    });
    let error = exists.expect_err("no answer ever came").to_string();
    assert!(!error.contains("unreachable"), "{error}");
    assert_eq!(
        *arrivals.lock().unwrap(),
        2,
        "asked once more, then given up: {error}"
    );
}
