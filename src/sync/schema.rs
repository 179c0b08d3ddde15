//! The fields the server knows, checked before the first write.
//!
//! Server-side apply first turns the request into an object typed by the server's schema. A
//! field the schema lacks — one of a newer Kubernetes (a StatefulSet's `minReadySeconds`, a gRPC
//! probe, on 1.20) or one a CRD does not declare — fails that object with a 500 ("failed to
//! create typed patch object: .spec.minReadySeconds: field not declared in schema"), and only
//! when its turn comes, after other objects were written. So sync checks every object it will
//! create against the schema the server publishes (`/openapi/v2`), read the way that typed
//! conversion reads it (kube-openapi's `proto` and `schemaconv`), and names every such object
//! and field at once before any write. Objects that exist already are judged by the dry run of
//! the comparison (see `compare.rs`), which answers the same way.
//!
//! How the conversion reads a schema: a `$ref` is its definition; `properties` make a struct
//! whose other fields are refused, unless it carries `x-kubernetes-preserve-unknown-fields`;
//! `type: object` without properties is a map of its `additionalProperties` (of anything,
//! without them); `type: array` is a list of its `items`; anything else (a scalar, `{}`) takes
//! any value. Only unknown fields are looked for: a value of the wrong type is the server's to
//! name, and its message is short.
//!
//! Cost, with the first apply's speed in mind: the document (3.8 MB on 1.20) is fetched once
//! per server, reduced to those shapes and cached on disk beside the discovery catalog, and in
//! the process; a check against it sends no request. A cached copy can be stale (a CRD added or
//! changed since), so it is never the reason for a refusal: a kind it lacks, or a field it
//! refuses, makes sprout ask again (`If-None-Match`: a 304 when nothing changed), and the
//! server's dry run of each object found wanting has the last word (the typed conversion comes
//! before every other check, so a dry run answers even in a namespace not made yet). A kind the
//! document lacks (an aggregated API that publishes none) is dry-run object by object. Custom
//! resources of a CRD in the same sync are checked against that CRD's own schema, which the
//! server may not have yet: no request.

use super::SyncError;
use super::live::{Live, retrying};
use crate::object::Object;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

/// A schema as the typed conversion reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    /// Any value: a scalar, or an object whose fields are not declared.
    Any,
    /// The definition of this name.
    Ref(String),
    List(Box<Shape>),
    /// Any keys, each value of this shape.
    Map(Box<Shape>),
    /// These fields; others refused unless `open` (preserve-unknown-fields).
    Fields {
        fields: BTreeMap<String, Shape>,
        open: bool,
    },
}

/// The server's schemas, reduced: what a kind's objects may hold.
#[derive(Debug, Serialize, Deserialize)]
struct Schemas {
    /// The server's version, as its document says (`v1.20.2`).
    version: String,
    /// The document's ETag, to ask whether it changed.
    etag: Option<String>,
    /// `group/version/Kind` → the definition of its objects.
    kinds: HashMap<String, String>,
    definitions: HashMap<String, Shape>,
}

/// The most unknown fields gathered for one object.
const FIELDS_GATHERED: usize = 100;

fn kind_key(group: &str, version: &str, kind: &str) -> String {
    format!("{group}/{version}/{kind}")
}

fn object_key(object: &Object) -> String {
    let version = object
        .api_version()
        .rsplit_once('/')
        .map_or(object.api_version(), |(_, v)| v);
    kind_key(object.group(), version, object.kind())
}

impl Schemas {
    fn from_document(document: &Value, etag: Option<String>) -> Self {
        let version = document
            .pointer("/info/version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut kinds = HashMap::new();
        let mut definitions = HashMap::new();
        if let Some(Value::Object(all)) = document.get("definitions") {
            for (name, schema) in all {
                if let Some(Value::Array(gvks)) = schema.get("x-kubernetes-group-version-kind") {
                    for gvk in gvks {
                        let part = |field: &str| gvk.get(field).and_then(Value::as_str);
                        if let (Some(version), Some(kind)) = (part("version"), part("kind")) {
                            kinds
                                .entry(kind_key(part("group").unwrap_or(""), version, kind))
                                .or_insert_with(|| name.clone());
                        }
                    }
                }
                definitions.insert(name.clone(), shape_of(schema));
            }
        }
        Schemas {
            version,
            etag,
            kinds,
            definitions,
        }
    }

    /// No schema at all: every kind unknown.
    fn unknown() -> Self {
        Schemas {
            version: String::new(),
            etag: None,
            kinds: HashMap::new(),
            definitions: HashMap::new(),
        }
    }

    /// The fields of `object` this server does not know, sorted; None when it has no schema
    /// for the object's kind.
    fn unknown_fields(&self, object: &Object) -> Option<Vec<String>> {
        let definition = self.kinds.get(&object_key(object))?;
        let mut found = Vec::new();
        unknown_in(
            &self.definitions,
            &Shape::Ref(definition.clone()),
            &Value::Object(object.body.clone()),
            &mut String::new(),
            &mut found,
        );
        found.sort();
        Some(found)
    }
}

/// A schema (OpenAPI v2 as published, or a CRD's v3) as the typed conversion reads it.
fn shape_of(schema: &Value) -> Shape {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return Shape::Ref(reference.trim_start_matches("#/definitions/").to_string());
    }
    let flag = |name: &str| schema.get(name) == Some(&Value::Bool(true));
    // An embedded object's apiVersion, kind and metadata go undeclared; int-or-string is a scalar.
    if flag("x-kubernetes-int-or-string") || flag("x-kubernetes-embedded-resource") {
        return Shape::Any;
    }
    let preserve = flag("x-kubernetes-preserve-unknown-fields");
    let additional = schema.get("additionalProperties");
    match (
        schema.get("type").and_then(Value::as_str),
        schema.get("properties"),
    ) {
        (Some("array"), _) => Shape::List(Box::new(
            schema
                .get("items")
                .filter(|items| items.is_object())
                .map_or(Shape::Any, shape_of),
        )),
        (None | Some("object"), Some(Value::Object(properties))) => Shape::Fields {
            fields: properties
                .iter()
                .map(|(name, schema)| (name.clone(), shape_of(schema)))
                .collect(),
            open: preserve || additional.is_some_and(|a| a != &Value::Bool(false)),
        },
        (Some("object"), _) if !preserve => match additional {
            Some(values @ Value::Object(_)) => Shape::Map(Box::new(shape_of(values))),
            _ => Shape::Any,
        },
        _ => Shape::Any,
    }
}

/// Gathers into `found` the paths of the fields of `value` that `shape` does not declare.
fn unknown_in(
    definitions: &HashMap<String, Shape>,
    shape: &Shape,
    value: &Value,
    path: &mut String,
    found: &mut Vec<String>,
) {
    if found.len() >= FIELDS_GATHERED {
        return;
    }
    let descend =
        |shape: &Shape, value: &Value, step: &str, path: &mut String, found: &mut Vec<String>| {
            let length = path.len();
            path.push_str(step);
            unknown_in(definitions, shape, value, path, found);
            path.truncate(length);
        };
    match (shape, value) {
        (Shape::Ref(name), _) => {
            if let Some(definition) = definitions.get(name) {
                unknown_in(definitions, definition, value, path, found);
            }
        }
        (Shape::List(item), Value::Array(values)) => {
            for (index, value) in values.iter().enumerate() {
                descend(item, value, &format!("[{index}]"), path, found);
            }
        }
        (Shape::Map(item), Value::Object(values)) => {
            for (key, value) in values {
                descend(item, value, &format!("[{key}]"), path, found);
            }
        }
        (Shape::Fields { fields, open }, Value::Object(values)) => {
            for (key, value) in values {
                let step = if path.is_empty() {
                    key.clone()
                } else {
                    format!(".{key}")
                };
                match fields.get(key) {
                    Some(field) => descend(field, value, &step, path, found),
                    None if !open && found.len() < FIELDS_GATHERED => {
                        found.push(format!("{path}{step}"));
                    }
                    None => {}
                }
            }
        }
        _ => {}
    }
}

/// The shapes of the custom resources whose CRDs are among `objects`, by kind key, as those
/// CRDs declare them (their `apiVersion`, `kind` and `metadata` are implied).
fn declared_kinds(objects: &[Object]) -> HashMap<String, Shape> {
    let mut kinds = HashMap::new();
    for crd in objects
        .iter()
        .filter(|o| o.kind() == "CustomResourceDefinition" && o.group() == "apiextensions.k8s.io")
    {
        let (Some(group), Some(kind)) = (
            crd.str_at(&["spec", "group"]),
            crd.str_at(&["spec", "names", "kind"]),
        ) else {
            continue;
        };
        // v1beta1 keeps unknown fields unless told not to; so does any CRD that says so.
        let keeps_unknown = match crd.get(&["spec", "preserveUnknownFields"]) {
            Some(Value::Bool(keep)) => *keep,
            _ => crd.api_version() == "apiextensions.k8s.io/v1beta1",
        };
        let common = crd.get(&["spec", "validation", "openAPIV3Schema"]);
        let mut versions: Vec<(&str, Option<&Value>)> = Vec::new();
        if let Some(Value::Array(listed)) = crd.get(&["spec", "versions"]) {
            for version in listed {
                if let Some(name) = version.get("name").and_then(Value::as_str) {
                    let own = version.pointer("/schema/openAPIV3Schema");
                    versions.push((name, own.or(common)));
                }
            }
        }
        if let Some(name) = crd.str_at(&["spec", "version"]) {
            versions.push((name, common));
        }
        for (version, schema) in versions {
            let shape = match schema {
                Some(schema) if !keeps_unknown => with_implied_fields(shape_of(schema)),
                _ => Shape::Any,
            };
            kinds.insert(kind_key(group, version, kind), shape);
        }
    }
    kinds
}

fn with_implied_fields(shape: Shape) -> Shape {
    match shape {
        Shape::Fields { mut fields, open } => {
            for implied in ["apiVersion", "kind", "metadata"] {
                fields.insert(implied.to_string(), Shape::Any);
            }
            Shape::Fields { fields, open }
        }
        other => other,
    }
}

/// What the check found: objects with fields the server does not know (one
/// [`SyncError::UnknownFields`] each, sorted), and the server's version when it was learnt.
pub struct Findings {
    pub refusals: Vec<SyncError>,
    pub server_version: Option<String>,
}

/// Every object of `to_create` (objects sync will create, or change without a dry run) with
/// fields the server does not know; `crds` are the CRDs the sync applies, which declare the
/// shapes of their custom resources.
pub async fn unknown_fields(
    live: &Live,
    to_create: &[&Object],
    crds: &[Object],
    concurrency: usize,
) -> Result<Findings, SyncError> {
    let started = std::time::Instant::now();
    let declared = declared_kinds(crds);
    let mut refusals = Vec::new();
    let mut published = Vec::new();
    for object in to_create {
        match declared.get(&object_key(object)) {
            Some(shape) => {
                let mut found = Vec::new();
                unknown_in(
                    &HashMap::new(),
                    shape,
                    &Value::Object(object.body.clone()),
                    &mut String::new(),
                    &mut found,
                );
                if !found.is_empty() {
                    found.sort();
                    refusals.push(refusal(object, found));
                }
            }
            None => published.push(*object),
        }
    }
    let mut server_version = None;
    let mut fetched = false;
    let mut dry_runs = 0;
    if !published.is_empty() {
        let (schemas, fresh) = match remembered(&live.server) {
            Some(cached) => (cached, false),
            None => match fetch(live, None).await {
                Ok(Some(schemas)) => {
                    fetched = true;
                    (schemas, true)
                }
                Err(e @ SyncError::Unreachable { .. }) => return Err(e),
                // A server that keeps its schema to itself: its dry runs answer instead.
                Ok(None) | Err(_) => (Arc::new(Schemas::unknown()), true),
            },
        };
        let mut verdicts: Vec<(&Object, Option<Vec<String>>)> = published
            .iter()
            .map(|o| (*o, schemas.unknown_fields(o)))
            .collect();
        let doubtful = |verdicts: &[(&Object, Option<Vec<String>>)]| {
            verdicts
                .iter()
                .any(|(_, v)| v.as_ref().is_none_or(|f| !f.is_empty()))
        };
        let mut schemas = schemas;
        if !fresh
            && doubtful(&verdicts)
            && let Some(newer) = fetch(live, schemas.etag.as_deref()).await?
        {
            schemas = newer;
            fetched = true;
            for (object, verdict) in verdicts.iter_mut() {
                *verdict = schemas.unknown_fields(object);
            }
        }
        server_version = Some(schemas.version.clone()).filter(|v| !v.is_empty());
        let to_ask: Vec<(&Object, Option<Vec<String>>)> = verdicts
            .into_iter()
            .filter(|(_, v)| v.as_ref().is_none_or(|f| !f.is_empty()))
            .collect();
        dry_runs = to_ask.len();
        let answers: Vec<Result<Option<SyncError>, SyncError>> = futures::stream::iter(to_ask)
            .map(|(object, local)| async move { ask_server(live, object, local).await })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for answer in answers {
            refusals.extend(answer?);
        }
    }
    refusals.sort_by_key(|e| e.to_string());
    tracing::debug!(
        objects = to_create.len(),
        fetched,
        dry_runs,
        ms = started.elapsed().as_millis() as u64,
        "fields checked against the server's schema"
    );
    Ok(Findings {
        refusals,
        server_version,
    })
}

fn refusal(object: &Object, fields: Vec<String>) -> SyncError {
    SyncError::UnknownFields {
        object: object.object_ref().to_string(),
        fields,
    }
}

/// The server's word on one object by a dry run: `local` are the unknown fields the schema
/// showed (None: no schema for the kind). A refusal of a field is the object's; any other
/// answer (applied, or refused for another reason, such as a namespace not made yet) means
/// its fields passed the typed conversion.
async fn ask_server(
    live: &Live,
    object: &Object,
    local: Option<Vec<String>>,
) -> Result<Option<SyncError>, SyncError> {
    let Some(resolved) = live.resolve_kind(object.api_version(), object.kind()) else {
        // An unserved kind is preflight's to report; the schema's word is all there is.
        return Ok(local.map(|fields| refusal(object, fields)));
    };
    match live.apply(&resolved, object, false, true).await {
        Err(SyncError::UnknownFields { fields, .. }) => {
            Ok(Some(refusal(object, local.unwrap_or(fields))))
        }
        Err(e @ SyncError::Unreachable { .. }) => Err(e),
        _ => {
            if local.is_some() {
                tracing::debug!(object = %object.object_ref(), "the server's dry run accepts fields its schema lacks");
            }
            Ok(None)
        }
    }
}

/// Schemas known for each server in this process (`serve` syncs many environments).
static REMEMBERED: LazyLock<Mutex<HashMap<String, Arc<Schemas>>>> = LazyLock::new(Default::default);

/// The schemas known for `server`: from this process, else from the disk cache.
fn remembered(server: &str) -> Option<Arc<Schemas>> {
    if let Some(known) = REMEMBERED.lock().ok()?.get(server) {
        return Some(known.clone());
    }
    let text = std::fs::read(cache_file(server)?).ok()?;
    let schemas: Arc<Schemas> = Arc::new(serde_json::from_slice(&text).ok()?);
    remember(server, &schemas);
    Some(schemas)
}

fn remember(server: &str, schemas: &Arc<Schemas>) {
    if let Ok(mut known) = REMEMBERED.lock() {
        known.insert(server.to_string(), schemas.clone());
    }
}

/// Asks the server for its document (`etag`: unless it is still that one; None then) and
/// keeps it, reduced, in the process and on disk.
async fn fetch(live: &Live, etag: Option<&str>) -> Result<Option<Arc<Schemas>>, SyncError> {
    use http_body_util::BodyExt;
    let what = "read the server's OpenAPI schema (/openapi/v2)";
    let request = || {
        let mut request = http::Request::get("/openapi/v2").header("Accept", "application/json");
        if let Some(etag) = etag {
            request = request.header("If-None-Match", etag);
        }
        let request = request
            .body(kube::client::Body::from(Vec::new()))
            .expect("a valid request");
        live.client.send(request)
    };
    let response = retrying(request)
        .await
        .map_err(|e| live.call_error(what, e))?;
    let status = response.status();
    tracing::debug!(%status, revalidated = etag.is_some(), "asked for the server's schema");
    if status == http::StatusCode::NOT_MODIFIED {
        return Ok(None);
    }
    let etag = response
        .headers()
        .get("ETag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| SyncError::Api {
            what: what.into(),
            message: e.to_string(),
        })?
        .to_bytes();
    if !status.is_success() {
        return Err(SyncError::Api {
            what: what.into(),
            message: super::messages::bounded(
                &format!("{status}: {}", String::from_utf8_lossy(&body)),
                super::messages::MESSAGE_LIMIT,
            ),
        });
    }
    let document: Value = serde_json::from_slice(&body).map_err(|e| SyncError::Api {
        what: what.into(),
        message: format!("not JSON: {e}"),
    })?;
    let schemas = Arc::new(Schemas::from_document(&document, etag));
    remember(&live.server, &schemas);
    save(&live.server, &schemas);
    Ok(Some(schemas))
}

/// Caches the schemas for `server`; a cache that cannot be written only costs time.
fn save(server: &str, schemas: &Schemas) {
    let Some(path) = cache_file(server) else {
        return;
    };
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(path.parent().expect("a file in a folder"))?;
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(
            &temporary,
            serde_json::to_vec(schemas).expect("schemas serialize"),
        )?;
        std::fs::rename(&temporary, &path)
    };
    if let Err(e) = write() {
        tracing::debug!(error = %e, "schema cache not written");
    }
    forget_old(path.parent().expect("a file in a folder"));
}

/// A cached schema fetched longer ago than this is dropped (at worst, it is fetched again):
/// every envtest control plane is a server of its own (a new port), and each copy takes some
/// 170 KB.
const CACHE_KEPT: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

fn forget_old(folder: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > CACHE_KEPT);
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `$SPROUT_CACHE` (else `~/.cache/sprout`)`/openapi/<hash of the server URL>.json`, beside
/// the discovery catalog.
fn cache_file(server: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("SPROUT_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sprout")))?;
    let digest = Sha256::digest(server.as_bytes());
    let name: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    Some(cache.join("openapi").join(format!("{name}.json")))
}

/// The paths of the fields a server names in a refusal of its typed conversion
/// (`.spec.minReadySeconds: field not declared in schema`), without the leading dot.
pub fn fields_not_declared(message: &str) -> Vec<String> {
    const SUFFIX: &str = ": field not declared in schema";
    let mut fields = Vec::new();
    let mut rest = message;
    while let Some(end) = rest.find(SUFFIX) {
        let before = &rest[..end];
        let start = before
            .rfind(|c: char| c.is_whitespace())
            .map_or(0, |i| i + 1);
        let field = before[start..].trim_start_matches('.');
        if !field.is_empty() {
            fields.push(field.to_string());
        }
        rest = &rest[end + SUFFIX.len()..];
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Object {
        let Value::Object(body) = value else {
            unreachable!()
        };
        Object::new(
            body,
            crate::object::Origin {
                file: "t".into(),
                document: 1,
            },
        )
    }

    /// A document of the shape 1.20 publishes: StatefulSet without `minReadySeconds`, Probe
    /// without `grpc`, ObjectMeta with maps, a custom resource with open and closed parts.
    fn document() -> Value {
        json!({
            "info": {"title": "Kubernetes", "version": "v1.20.2"},
            "definitions": {
                "io.k8s.api.apps.v1.StatefulSet": {
                    "type": "object",
                    "properties": {
                        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                        "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
                        "spec": {"$ref": "#/definitions/io.k8s.api.apps.v1.StatefulSetSpec"},
                    },
                    "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "StatefulSet", "version": "v1"}],
                },
                "io.k8s.api.apps.v1.StatefulSetSpec": {
                    "properties": {
                        "replicas": {"type": "integer"},
                        "template": {"$ref": "#/definitions/io.k8s.api.core.v1.PodTemplateSpec"},
                    },
                },
                "io.k8s.api.core.v1.PodTemplateSpec": {
                    "properties": {
                        "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
                        "spec": {"properties": {"containers": {"type": "array", "items": {
                            "$ref": "#/definitions/io.k8s.api.core.v1.Container"}}}},
                    },
                },
                "io.k8s.api.core.v1.Container": {
                    "properties": {
                        "name": {"type": "string"},
                        "livenessProbe": {"$ref": "#/definitions/io.k8s.api.core.v1.Probe"},
                        "resources": {"properties": {"limits": {"type": "object", "additionalProperties": {
                            "$ref": "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"}}}},
                    },
                },
                "io.k8s.api.core.v1.Probe": {"properties": {"periodSeconds": {"type": "integer"}}},
                "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
                "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"properties": {
                    "name": {"type": "string"}, "namespace": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                }},
                "test.example.v1.Widget": {
                    "type": "object",
                    "properties": {
                        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                        "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
                        "spec": {"type": "object", "properties": {
                            "size": {"type": "integer"},
                            "free": {"x-kubernetes-preserve-unknown-fields": true},
                            "anything": {"type": "object"},
                            "maybe": {},
                        }},
                    },
                    "x-kubernetes-group-version-kind": [{"group": "example.test", "kind": "Widget", "version": "v1"}],
                },
            },
        })
    }

    #[test]
    fn fields_newer_than_the_server_are_found_with_their_paths() {
        let schemas = Schemas::from_document(&document(), Some("\"e\"".into()));
        assert_eq!(schemas.version, "v1.20.2");
        let db = object(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "labels": {"app": "db"}},
            "spec": {"replicas": 1, "minReadySeconds": 5, "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [
                    {"name": "a", "resources": {"limits": {"cpu": "1"}}},
                    {"name": "b", "livenessProbe": {"grpc": {"port": 5}, "periodSeconds": 3}},
                ]}}},
        }));
        assert_eq!(
            schemas.unknown_fields(&db).unwrap(),
            [
                "spec.minReadySeconds",
                "spec.template.spec.containers[1].livenessProbe.grpc"
            ]
        );
        let widget = object(json!({
            "apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"size": 1, "free": {"x": {"y": 1}}, "anything": {"a": [1]}, "maybe": {"z": 1},
                     "color": "red"},
        }));
        assert_eq!(schemas.unknown_fields(&widget).unwrap(), ["spec.color"]);
        let unknown_kind = object(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}),
        );
        assert_eq!(schemas.unknown_fields(&unknown_kind), None);
    }

    #[test]
    fn custom_resources_of_a_crd_in_the_sync_are_checked_against_that_crd() {
        let crd = |api_version: &str, extra: Value| {
            let mut value = json!({
                "apiVersion": api_version, "kind": "CustomResourceDefinition",
                "metadata": {"name": "gizmos.example.test"},
                "spec": {"group": "example.test", "names": {"kind": "Gizmo", "plural": "gizmos"},
                    "versions": [{"name": "v1", "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {
                            "size": {"type": "integer"},
                            "port": {"x-kubernetes-int-or-string": true},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                            "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                                     "properties": {"known": {"type": "object", "properties": {}}}},
                        }}}}}}]},
            });
            if let (Value::Object(spec), Value::Object(extra)) = (&mut value["spec"], extra) {
                spec.extend(extra);
            }
            object(value)
        };
        let gizmo = object(json!({
            "apiVersion": "example.test/v1", "kind": "Gizmo", "metadata": {"name": "g", "labels": {"a": "b"}},
            "spec": {"size": 1, "port": "http", "labels": {"x": "y"}, "color": "red",
                     "items": [{"name": "a", "extra": 1}], "free": {"anything": 1, "known": {"x": 1}}},
        }));
        let check = |crd: Object| {
            let kinds = declared_kinds(&[crd]);
            let mut found = Vec::new();
            unknown_in(
                &HashMap::new(),
                &kinds["example.test/v1/Gizmo"],
                &Value::Object(gizmo.body.clone()),
                &mut String::new(),
                &mut found,
            );
            found.sort();
            found
        };
        assert_eq!(
            check(crd("apiextensions.k8s.io/v1", json!({}))),
            ["spec.color", "spec.free.known.x", "spec.items[0].extra"]
        );
        assert!(
            check(crd(
                "apiextensions.k8s.io/v1",
                json!({"preserveUnknownFields": true})
            ))
            .is_empty()
        );
        assert!(
            check(crd("apiextensions.k8s.io/v1beta1", json!({}))).is_empty(),
            "v1beta1 keeps unknown fields unless told not to"
        );
        assert_eq!(
            check(crd(
                "apiextensions.k8s.io/v1beta1",
                json!({"preserveUnknownFields": false})
            ))
            .len(),
            3
        );
    }

    #[test]
    fn the_fields_a_server_refusal_names_are_read() {
        assert_eq!(
            fields_not_declared(
                "failed to create typed patch object: .spec.minReadySeconds: field not declared in schema"
            ),
            ["spec.minReadySeconds"]
        );
        assert_eq!(
            fields_not_declared(
                "failed to create typed patch object: errors:\n  .spec.a: field not declared in schema\n  .spec.items[0].b: field not declared in schema"
            ),
            ["spec.a", "spec.items[0].b"]
        );
        assert!(fields_not_declared("something else").is_empty());
    }
}
