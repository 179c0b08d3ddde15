//! The cluster state backend behind the store's synchronous API: its requests run on a runtime
//! of their own (one worker thread), and the calling thread waits for the answer.
//!
//! Why not async all the way: every front end and operation reads and writes records through one
//! small synchronous API (`load`, `save`, `lock`, ...), also from code that runs outside any
//! runtime (`list`, `gc`'s planning); the file backend already blocks the same way. A runtime of
//! its own also makes the Kubernetes client independent of the caller's runtime (kube's client
//! spawns its connection tasks on the runtime that creates it), so a store can be shared by
//! runtimes that come and go, and a Lease lock can be given up from `Drop`.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sprout-state")
            .enable_all()
            .build()
            .expect("the state backend's runtime starts")
    })
}

/// Runs `future` on the backend's runtime and waits for its result (from any thread, inside a
/// runtime or not).
pub(super) fn run<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
    let (send, receive) = std::sync::mpsc::channel();
    runtime().spawn(async move {
        let _ = send.send(future.await);
    });
    receive
        .recv()
        .expect("the state backend's runtime runs until the process ends")
}

/// Like [`run`], but gives up waiting after `limit` (the future still completes in the
/// background): for best-effort work such as giving a lock up.
pub(super) fn run_for(limit: Duration, future: impl Future<Output = ()> + Send + 'static) {
    let (send, receive) = std::sync::mpsc::channel();
    runtime().spawn(async move {
        future.await;
        let _ = send.send(());
    });
    let _ = receive.recv_timeout(limit);
}
