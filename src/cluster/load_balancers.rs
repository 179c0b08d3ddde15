//! Deleting what makes cloud load balancers (LoadBalancer Services, Ingresses) before a cloud
//! cluster goes, so no load balancer outlives it.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams};
use std::time::Duration;

pub async fn delete_all(client: &kube::Client) -> Result<(), String> {
    let services: Api<Service> = Api::all(client.clone());
    let ingresses: Api<Ingress> = Api::all(client.clone());
    let balancers: Vec<(String, String)> = services
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items
        .into_iter()
        .filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"))
        .map(|s| {
            (
                s.metadata.namespace.unwrap_or_default(),
                s.metadata.name.unwrap_or_default(),
            )
        })
        .collect();
    for (namespace, name) in &balancers {
        let api: Api<Service> = Api::namespaced(client.clone(), namespace);
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
    let all_ingresses = ingresses
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    for ingress in &all_ingresses {
        let api: Api<Ingress> = Api::namespaced(
            client.clone(),
            ingress.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let _ = api
            .delete(
                ingress.metadata.name.as_deref().unwrap_or_default(),
                &DeleteParams::default(),
            )
            .await;
    }
    // The cloud controller removes the load balancers as the objects' finalizers run.
    for _ in 0..60 {
        let left = services
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .iter()
            .any(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"));
        if !left {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Err("LoadBalancer Services are still being deleted".into())
}
