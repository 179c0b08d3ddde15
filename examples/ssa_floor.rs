//! The raw parallel server-side-apply floor that `scripts/bench sync` measures sprout's first
//! apply against: the same objects applied by the least a client can do — Namespaces first (the
//! rest cannot be created before them), then every other object at once, `CONCURRENCY`
//! PATCHes in flight, over kube's own HTTP/1.1 client or sprout's (HTTP/2 when offered). No
//! discovery (resources named by kube's plural rule), no reads, no inventory, no lock, and no
//! order between kinds — or, with `ordered`, sprout's tiers one after another (what pods refer
//! to, then workloads, then webhooks; see `sprout::object::tier_of`): the least a client that
//! keeps that order can do.
//!
//! ```text
//! cargo run --release --example ssa_floor -- OBJECTS.json [CONCURRENCY] [http1|http2] [ordered]
//! ```
//!
//! `OBJECTS.json` is `sprout -o json render ENV` (`{"items": [...]}`); the cluster is
//! `$KUBECONFIG`'s current context. Prints the objects applied, the seconds taken, and when the
//! Namespaces were in (what follows is the objects' own time).

use futures::StreamExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: ssa_floor OBJECTS.json [CONCURRENCY] [http1|http2] [ordered]")?;
    let concurrency: usize = args.next().map_or(Ok(64), |c| c.parse())?;
    let transport = args.next().unwrap_or_else(|| "http1".into());
    let ordered = match args.next().as_deref() {
        None => false,
        Some("ordered") => true,
        Some(other) => return Err(format!("unknown order {other}: ordered or nothing").into()),
    };
    let rendered: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    let objects: Vec<Value> = rendered["items"]
        .as_array()
        .ok_or("no items in the file")?
        .clone();
    // kube brings ring, the AWS SDK aws-lc-rs: rustls needs to be told which one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = kube::Config::infer().await?;
    // `http1`: kube's own client, one connection per request in flight; `http2`: sprout's
    // (HTTP/2 when the server offers it, TCP_NODELAY), all requests on one connection.
    let client = match transport.as_str() {
        "http1" => kube::Client::try_from(config)?,
        "http2" => sprout::cluster::client_of(config)?,
        other => return Err(format!("unknown transport {other}: http1 or http2").into()),
    };
    let started = Instant::now();
    let (namespaces, rest): (Vec<&Value>, Vec<&Value>) =
        objects.iter().partition(|o| o["kind"] == "Namespace");
    let mut waves = vec![namespaces];
    if ordered {
        let mut tiers: [Vec<&Value>; 3] = Default::default();
        for object in rest {
            tiers[sprout::object::tier_of(object["kind"].as_str().unwrap_or_default())]
                .push(object);
        }
        waves.extend(tiers);
    } else {
        waves.push(rest);
    }
    // When the Namespaces are in: what comes after is the objects' own time.
    let mut namespaces_in = None;
    for wave in waves {
        let results: Vec<kube::Result<DynamicObject>> = futures::stream::iter(wave)
            .map(|object| apply(&client, object))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for result in results {
            result?;
        }
        namespaces_in.get_or_insert(started.elapsed());
    }
    println!(
        "{} objects in {:.3} s (Namespaces in {:.3} s) at {concurrency} in flight over {transport}{}",
        objects.len(),
        started.elapsed().as_secs_f64(),
        namespaces_in.unwrap_or_default().as_secs_f64(),
        if ordered { ", in tiers" } else { "" }
    );
    Ok(())
}

async fn apply(client: &kube::Client, object: &Value) -> kube::Result<DynamicObject> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().unwrap_or_default();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        name,
        &PatchParams::apply("ssa-floor"),
        &Patch::Apply(object),
    )
    .await
}
