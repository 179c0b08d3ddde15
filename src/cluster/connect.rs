//! A kube client from a kubeconfig file and context.

use super::{ClusterError, Target};
use kube::client::Body;
use kube::client::retry::RetryPolicy;
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::Path;
use std::time::Duration;
use tower::retry::Policy;

fn read(path: &Path) -> Result<Kubeconfig, ClusterError> {
    Kubeconfig::read_from(path).map_err(|e| ClusterError::Kubeconfig {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

pub fn current_context(path: &Path) -> Result<String, ClusterError> {
    read(path)?
        .current_context
        .ok_or_else(|| ClusterError::Kubeconfig {
            path: path.display().to_string(),
            message: "no current-context; name one in the spec (cluster.namespace.context)".into(),
        })
}

/// The API server URL of the target, for messages.
pub fn server_of(target: &Target) -> String {
    let Ok(config) = read(&target.kubeconfig) else {
        return target.kubeconfig.display().to_string();
    };
    let context_name = target.context.clone().or(config.current_context.clone());
    let cluster_name = config
        .contexts
        .iter()
        .find(|c| Some(&c.name) == context_name.as_ref())
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone());
    config
        .clusters
        .iter()
        .find(|c| Some(&c.name) == cluster_name.as_ref())
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .unwrap_or_else(|| target.kubeconfig.display().to_string())
}

pub async fn client(target: &Target) -> Result<kube::Client, ClusterError> {
    let config = config(target).await?;
    client_of(config).map_err(|e| ClusterError::Kubeconfig {
        path: target.kubeconfig.display().to_string(),
        message: e.to_string(),
    })
}

/// A client for `config`: kube's own stack (TLS, timeouts, the retries of 429/503/504 that
/// honour `Retry-After`, authentication, headers), with three differences; a cluster far away
/// shows the first two, both as Go's clients (kubectl) have them:
/// - HTTP/2 when the server offers it (ALPN; HTTP/1.1 otherwise): every request in flight
///   shares one connection, where HTTP/1.1 opens one per request in flight — a TCP and TLS
///   handshake each, one round trip more whenever more requests run at once than before, and
///   the server's CPU for each handshake;
/// - TCP_NODELAY on every connection. Without it the first request on a new connection waits
///   for the acknowledgement of the TLS handshake's last message (Nagle's algorithm): one
///   round trip more on every connection opened.
/// - requests marked [`BriefRetries`] are retried briefly.
pub fn client_of(config: kube::Config) -> Result<kube::Client, kube::Error> {
    Connection::new(config)?.client()
}

type Pool = hyper_util::client::legacy::Client<
    hyper_timeout::TimeoutConnector<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    >,
    kube::client::Body,
>;

/// The connections to one cluster (see [`client_of`]), shared by the clients made from it,
/// whichever identity they act as: a client impersonating the environment's account starts on
/// the connection already open instead of a TCP and TLS handshake of its own.
#[derive(Clone)]
pub struct Connection {
    config: kube::Config,
    /// None behind a proxy: kube's own client then (sprout is built without proxy support).
    pool: Option<Pool>,
}

impl Connection {
    pub fn new(config: kube::Config) -> Result<Self, kube::Error> {
        if config.proxy_url.is_some() {
            return Ok(Connection { config, pool: None });
        }
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = https_connector(&config, http)?;
        let mut connector = hyper_timeout::TimeoutConnector::new(https);
        connector.set_connect_timeout(config.connect_timeout);
        connector.set_read_timeout(config.read_timeout);
        connector.set_write_timeout(config.write_timeout);
        connector.set_reset_reader_on_write(config.reset_reader_on_write);
        let pool =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        Ok(Connection {
            config,
            pool: Some(pool),
        })
    }

    /// A client acting as the configuration's own identity.
    pub fn client(&self) -> Result<kube::Client, kube::Error> {
        client_over(&self.config, self.pool.clone())
    }

    /// A client that sends every request as `user` (Kubernetes impersonation: the API server
    /// authorizes each request as that user, after checking that sprout's own identity may
    /// impersonate it). Used to apply an environment's objects as the environment itself.
    pub fn impersonating(&self, user: &str) -> Result<kube::Client, ClusterError> {
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(user.to_string());
        config.auth_info.impersonate_groups = None;
        client_over(&config, self.pool.clone()).map_err(|e| ClusterError::Kubeconfig {
            path: user.to_string(),
            message: e.to_string(),
        })
    }
}

/// kube's stack for `config` over `pool`.
fn client_over(config: &kube::Config, pool: Option<Pool>) -> Result<kube::Client, kube::Error> {
    use kube::client::ConfigExt;
    use tower::ServiceBuilder;
    let Some(pool) = pool else {
        return kube::Client::try_from(config.clone());
    };
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| tower::retry::RetryLayer::new(Retries::new())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(pool);
    Ok(kube::client::ClientBuilder::new(service, config.default_namespace.clone()).build())
}

/// kube's TLS connector (its rustls configuration: CA, client certificate, server name), but
/// offering HTTP/2 as well as HTTP/1.1.
fn https_connector<H>(
    config: &kube::Config,
    http: H,
) -> Result<hyper_rustls::HttpsConnector<H>, kube::Error> {
    use kube::client::ConfigExt;
    let mut builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls::pki_types::ServerName::try_from(name.clone())
            .map_err(|e| kube::Error::Service(Box::new(e)))?;
        builder =
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    Ok(builder.enable_all_versions().wrap_connector(http))
}

/// Marks a request whose 503 is most likely an answer that stays: an aggregated API whose
/// backend is down (an APIService whose Service is missing, say) answers every request for it
/// with 503 until someone repairs it. kube's policy asks again 15 times over about five
/// minutes; a request so marked is asked again twice, within a second, which still rides out
/// a passing blip.
#[derive(Debug, Clone, Copy)]
pub struct BriefRetries;

/// kube's retries of 429/503/504 (honouring `Retry-After`), brief for requests marked
/// [`BriefRetries`]. Each request gets its own copy (tower clones the policy per call).
#[derive(Clone)]
struct Retries {
    patient: RetryPolicy,
    brief: RetryPolicy,
}

impl Retries {
    fn new() -> Self {
        Retries {
            patient: RetryPolicy::server_retry(),
            brief: RetryPolicy::new(
                Duration::from_millis(100),
                Duration::from_millis(400),
                2,
                false,
            )
            .expect("valid backoff"),
        }
    }
}

impl<Res> Policy<http::Request<Body>, http::Response<Res>, tower::BoxError> for Retries {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        request: &mut http::Request<Body>,
        result: &mut Result<http::Response<Res>, tower::BoxError>,
    ) -> Option<Self::Future> {
        if request.extensions().get::<BriefRetries>().is_some() {
            self.brief.retry(request, result)
        } else {
            self.patient.retry(request, result)
        }
    }

    fn clone_request(&mut self, request: &http::Request<Body>) -> Option<http::Request<Body>> {
        Policy::<_, http::Response<Res>, _>::clone_request(&mut self.patient, request)
    }
}

/// The client configuration for a target: what [`client`] connects with, kept by callers that
/// also need a client acting as another identity (see [`impersonating`]).
pub async fn config(target: &Target) -> Result<kube::Config, ClusterError> {
    // kube uses ring, the AWS SDK brings aws-lc-rs: with two crypto providers compiled in,
    // rustls cannot pick one by itself.
    static CRYPTO: std::sync::Once = std::sync::Once::new();
    CRYPTO.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let kubeconfig = read(&target.kubeconfig)?;
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..Default::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| ClusterError::Kubeconfig {
            path: target.kubeconfig.display().to_string(),
            message: e.to_string(),
        })?;
    // Identifies sprout's requests in audit logs and server metrics.
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("sprout/", env!("CARGO_PKG_VERSION"))),
    ));
    // An unreachable server must fail fast rather than hang a CLI run: the connect timeout
    // covers the TLS handshake too (kube wraps the TLS connector), and a server that accepts a
    // request but never answers is given up on after the read timeout, without retries (see
    // sync::live). The read timeout is the time between bytes, not for a whole answer, so a
    // long list still arrives; 25 s leaves room for the slowest admission webhook the server
    // allows to answer (timeoutSeconds at most 30, default 10) in most cases.
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(25));
    Ok(config)
}
