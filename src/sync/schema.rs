//! The fields and value types the server takes, checked before the first write.
//!
//! Server-side apply first turns the request into an object typed by the server's schema. A
//! field the schema lacks — one of a newer Kubernetes (a StatefulSet's `minReadySeconds`, a gRPC
//! probe, on 1.20) or one a CRD does not declare — fails that object with a 500 ("failed to
//! create typed patch object: .spec.minReadySeconds: field not declared in schema"), and only
//! when its turn comes, after other objects were written; so does a value of another type
//! (".spec.replicas: expected numeric (int or float), got ..."; the server quotes the value,
//! which may be a Secret's). So sync checks every object it will create, as it is sent, against
//! the schema the server publishes (`/openapi/v2`), read the way that typed conversion reads it
//! (kube-openapi's `proto` and `schemaconv`), and names every such object, field and type at
//! once before any write (never a value). Objects that exist already are judged by the dry run
//! of the comparison (see `compare.rs`), which answers the same way.
//!
//! How the conversion reads a schema: a `$ref` is its definition (a `RawExtension` takes
//! anything); `properties` make a struct whose other fields are refused, unless it carries
//! `x-kubernetes-preserve-unknown-fields`; `type: object` without properties is a map of its
//! `additionalProperties` (of anything, without them); `type: array` is a list of its `items`;
//! `integer` and `number` take any number, `boolean` a boolean, `string` a string (in the
//! published document only without a format or with `byte`: `int-or-string` and `date-time` take
//! anything); anything else (`{}`, int-or-string, an embedded resource) takes any value. Null is
//! taken anywhere; a list is not a map, nor a map a list.
//!
//! Cost, with the first apply's speed in mind: the document (3.8 MB on 1.20) is fetched once
//! per server, reduced to those shapes and cached on disk beside the discovery catalog, and in
//! the process. A kept copy may describe another server than the one now at that address
//! (downgraded, rebuilt, a CRD changed), so whenever there is an object to create sprout asks
//! whether it is still current (`If-None-Match`: one round trip, a 304 when nothing changed;
//! see [`current_schemas`]); a no-op sync asks nothing. The server's dry run of each object
//! found wanting has the last word (the typed conversion comes before every other check, so a
//! dry run answers even in a namespace not made yet). A kind the document lacks (an aggregated
//! API that publishes none) is dry-run object by object.
//!
//! Custom resources: the published document drops what a `nullable` property declares, but the
//! conversion of a CRD's custom resources reads the CRD's own `openAPIV3Schema` (formats
//! dropped: every string is a string). So custom resources of a CRD in the same sync are checked
//! against that CRD, which the server may not have yet (no request, no dry run), and those of a
//! CRD on the server against the CRD read from it (one GET per CRD, beside the revalidation;
//! found wanting, dry-run). On 1.20 a CRD version whose schema has an int-or-string gets no
//! conversion at all ("invalid property: anyOf" in the server's log): unknown fields pass there
//! (pruned), and only types are checked (the CRD's validation refuses those).

use super::SyncError;
use super::live::{Live, retrying};
use crate::object::Object;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

/// A schema as the typed conversion reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    /// Any value (the conversion's "untyped").
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
    Scalar(Scalar),
}

/// A scalar type as declared; the conversion takes any number for either numeric one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Scalar {
    Integer,
    Number,
    String,
    /// A string of format `byte`: base64, which the server decodes (a Secret's `data`).
    Bytes,
    Boolean,
}

/// Where a schema comes from, which decides how its string formats read.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    /// `/openapi/v2`: a string of any format but `byte` (`int-or-string`, `date-time`) is
    /// untyped.
    Published,
    /// A CRD's `openAPIV3Schema`: the server drops formats (with the other value validations)
    /// before it builds the conversion, so every string is a string.
    Crd,
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
                definitions.insert(name.clone(), shape_of(schema, Source::Published));
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

    /// What this server's schema refuses in `body` (an object of `key`, as it is sent),
    /// sorted; None when it has no schema for the kind.
    fn refused(&self, key: &str, body: &Value) -> Option<Vec<String>> {
        let definition = self.kinds.get(key)?;
        Some(refused_in(
            &self.definitions,
            &Shape::Ref(definition.clone()),
            body,
        ))
    }
}

/// A schema (OpenAPI v2 as published, or a CRD's v3) as the typed conversion reads it
/// (kube-openapi's `proto.ParseSchema` and `schemaconv`, as Kubernetes 1.20 vendors them).
fn shape_of(schema: &Value, source: Source) -> Shape {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.trim_start_matches("#/definitions/");
        // The conversion makes any reference to it untyped.
        if name == "io.k8s.apimachinery.pkg.runtime.RawExtension" {
            return Shape::Any;
        }
        return Shape::Ref(name.to_string());
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
                .map_or(Shape::Any, |items| shape_of(items, source)),
        )),
        (None | Some("object"), Some(Value::Object(properties))) => Shape::Fields {
            fields: properties
                .iter()
                .map(|(name, schema)| (name.clone(), shape_of(schema, source)))
                .collect(),
            open: preserve || additional.is_some_and(|a| a != &Value::Bool(false)),
        },
        // A map, whatever else it says: a list or a scalar there is refused.
        (Some("object"), _) => match additional {
            Some(values @ Value::Object(_)) if !preserve => {
                Shape::Map(Box::new(shape_of(values, source)))
            }
            _ => Shape::Map(Box::new(Shape::Any)),
        },
        (Some("integer"), _) => Shape::Scalar(Scalar::Integer),
        (Some("number"), _) => Shape::Scalar(Scalar::Number),
        (Some("boolean"), _) => Shape::Scalar(Scalar::Boolean),
        (Some("string"), _) => match (source, schema.get("format").and_then(Value::as_str)) {
            (Source::Crd, _) | (Source::Published, None | Some("")) => {
                Shape::Scalar(Scalar::String)
            }
            (Source::Published, Some("byte")) => Shape::Scalar(Scalar::Bytes),
            (Source::Published, Some(_)) => Shape::Any,
        },
        _ => Shape::Any,
    }
}

/// What the typed conversion refuses in `value` of `shape`: the paths of fields it does not
/// declare, and of values of a type it does not take (`spec.replicas (expected integer, found
/// string)`: the value itself is never named, it may be a Secret's), sorted.
fn refused_in(definitions: &HashMap<String, Shape>, shape: &Shape, value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    gather_refused(definitions, shape, value, &mut String::new(), &mut found);
    found.sort();
    found
}

fn gather_refused(
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
            gather_refused(definitions, shape, value, path, found);
            path.truncate(length);
        };
    match (shape, value) {
        (Shape::Ref(name), _) => {
            if let Some(definition) = definitions.get(name) {
                gather_refused(definitions, definition, value, path, found);
            }
        }
        // Null is taken anywhere.
        (Shape::Any, _) | (_, Value::Null) => {}
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
        (Shape::Scalar(Scalar::Bytes), Value::String(text)) => {
            if !is_base64(text) {
                found.push(format!("{path} (expected base64, found other text)"));
            }
        }
        (Shape::Scalar(Scalar::Integer | Scalar::Number), Value::Number(_))
        | (Shape::Scalar(Scalar::String), Value::String(_))
        | (Shape::Scalar(Scalar::Boolean), Value::Bool(_)) => {}
        (expected, found_value) => found.push(format!(
            "{path} (expected {}, found {})",
            expected_name(expected),
            value_type(found_value)
        )),
    }
}

fn expected_name(shape: &Shape) -> &'static str {
    match shape {
        Shape::List(_) => "list",
        Shape::Map(_) | Shape::Fields { .. } => "map",
        Shape::Scalar(Scalar::Integer) => "integer",
        Shape::Scalar(Scalar::Number) => "number",
        Shape::Scalar(Scalar::String) => "string",
        Shape::Scalar(Scalar::Bytes) => "base64 string",
        Shape::Scalar(Scalar::Boolean) => "boolean",
        Shape::Any | Shape::Ref(_) => "any",
    }
}

/// Whether the server's decoding of a `byte` field takes `text`: standard base64 with its
/// padding, line breaks ignored, any trailing bits (Go's `base64.StdEncoding`).
fn is_base64(text: &str) -> bool {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const GO_STD: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    let joined: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    GO_STD.decode(joined).is_ok()
}

/// The type of a value, never the value.
fn value_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// The shapes of the custom resources of `crds`, by kind key, as those CRDs declare them
/// (their `apiVersion`, `kind` and `metadata` are implied).
fn declared_kinds<'a>(crds: impl IntoIterator<Item = &'a Object>) -> HashMap<String, Shape> {
    let mut kinds = HashMap::new();
    for crd in crds
        .into_iter()
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
                Some(schema) if !keeps_unknown => {
                    let shape = with_implied_fields(shape_of(schema, Source::Crd));
                    // The 1.20 server cannot build the conversion of a schema with an
                    // int-or-string ("invalid property: anyOf") and takes any field then,
                    // pruning the unknown ones; the CRD's validation still refuses a wrong type.
                    if mentions_int_or_string(schema) {
                        opened(shape)
                    } else {
                        shape
                    }
                }
                _ => Shape::Any,
            };
            kinds.insert(kind_key(group, version, kind), shape);
        }
    }
    kinds
}

fn mentions_int_or_string(schema: &Value) -> bool {
    match schema {
        Value::Object(fields) => fields.iter().any(|(name, value)| {
            (name == "x-kubernetes-int-or-string" && value == &Value::Bool(true))
                || mentions_int_or_string(value)
        }),
        Value::Array(values) => values.iter().any(mentions_int_or_string),
        _ => false,
    }
}

/// `shape` with every field list open: values keep their types.
fn opened(shape: Shape) -> Shape {
    match shape {
        Shape::Fields { fields, .. } => Shape::Fields {
            fields: fields.into_iter().map(|(k, v)| (k, opened(v))).collect(),
            open: true,
        },
        Shape::List(item) => Shape::List(Box::new(opened(*item))),
        Shape::Map(item) => Shape::Map(Box::new(opened(*item))),
        other => other,
    }
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
/// fields the server does not know or values of a type it does not take; `crds` are the CRDs
/// the sync applies, which declare the shapes of their custom resources.
pub async fn unknown_fields(
    live: &Live,
    to_create: &[&Object],
    crds: &[Object],
    concurrency: usize,
) -> Result<Findings, SyncError> {
    let started = std::time::Instant::now();
    let declared = declared_kinds(crds);
    let mut refusals = Vec::new();
    let mut published: Vec<(&Object, Value)> = Vec::new();
    for object in to_create {
        // Checked as it is sent: numeric quantities go as text.
        let body = Value::Object(super::server_defaults::completed(
            object.group(),
            object.kind(),
            &object.body,
        ));
        match declared.get(&object_key(object)) {
            Some(shape) => {
                let found = refused_in(&HashMap::new(), shape, &body);
                if !found.is_empty() {
                    refusals.push(refusal(object, found));
                }
            }
            None => published.push((*object, body)),
        }
    }
    let mut server_version = None;
    let mut fetched = false;
    let mut dry_runs = 0;
    if !published.is_empty() {
        let objects: Vec<&Object> = published.iter().map(|(o, _)| *o).collect();
        let (current, on_server) = futures::future::join(
            current_schemas(live),
            crds_on_server(live, &objects, concurrency),
        )
        .await;
        let schemas;
        (schemas, fetched) = current?;
        let on_server = declared_kinds(&on_server?);
        server_version = Some(schemas.version.clone()).filter(|v| !v.is_empty());
        let to_ask: Vec<(&Object, Option<Vec<String>>)> = published
            .iter()
            .map(|(object, body)| {
                let key = object_key(object);
                let verdict = match on_server.get(&key) {
                    Some(shape) => Some(refused_in(&HashMap::new(), shape, body)),
                    None => schemas.refused(&key, body),
                };
                (*object, verdict)
            })
            .filter(|(_, verdict)| verdict.as_ref().is_none_or(|f| !f.is_empty()))
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

/// The server's schemas as they are now, and whether they were fetched (not a kept copy).
///
/// A kept copy (this process's, or the disk cache's) may describe another server than the one
/// now at that address (downgraded, rebuilt, a CRD or an aggregated API changed since), so it is
/// revalidated with `If-None-Match` every time there is an object to check. Asking the version
/// (`/version`) instead, to key or validate the cache, would cost the same round trip (20 ms at
/// a 20 ms round trip, once per sync, beside the CRD reads and the comparison) and see less: a
/// CRD or an aggregated API changes the document, not the version. The 304 is as small as
/// `/version`'s answer; only a changed document is read again. A no-op sync has nothing to
/// create, so it asks nothing.
///
/// Once confirmed through a connection, the kept copy is taken as current for the rest of it
/// (one command, or one environment of a `serve` pass: seconds).
async fn current_schemas(live: &Live) -> Result<(Arc<Schemas>, bool), SyncError> {
    use std::sync::atomic::Ordering;
    let kept = remembered(&live.server);
    if let Some(kept) = &kept
        && live.schema_confirmed.load(Ordering::Relaxed)
    {
        return Ok((kept.clone(), false));
    }
    match fetch(live, kept.as_ref().and_then(|k| k.etag.as_deref())).await {
        Ok(Some(schemas)) => {
            live.schema_confirmed.store(true, Ordering::Relaxed);
            Ok((schemas, true))
        }
        Ok(None) => {
            live.schema_confirmed
                .store(kept.is_some(), Ordering::Relaxed);
            Ok((kept.unwrap_or_else(|| Arc::new(Schemas::unknown())), false))
        }
        Err(e @ SyncError::Unreachable { .. }) => Err(e),
        // A server that keeps its schema to itself: its dry runs answer instead.
        Err(e) => {
            tracing::debug!(error = %e, "no schema from the server");
            Ok((Arc::new(Schemas::unknown()), false))
        }
    }
}

/// Confirms the kept copy of the schema (a 304, as small as `/version`'s answer) ahead of the
/// check that needs it, for a caller that expects objects to create and has a round trip to
/// spare. Without a kept copy nothing is asked: the whole document would be fetched and read,
/// which a sync with nothing to create never needs. A failure is left for the check to meet.
pub(crate) async fn confirm_kept(live: &Live) {
    if remembered(&live.server).is_none() {
        return;
    }
    if let Err(e) = current_schemas(live).await {
        tracing::debug!(error = %e, "the server's schema not confirmed ahead");
    }
}

/// The CRDs on the server that define the kinds of `objects` (custom resources whose CRD is
/// not in this sync), one GET each, side by side. The document the server publishes drops
/// what a `nullable` property declares, but the conversion of its custom resources reads the
/// CRD's own schema. A kind no CRD defines (an aggregated API) or a CRD this identity may not
/// read is left to the published document.
async fn crds_on_server(
    live: &Live,
    objects: &[&Object],
    concurrency: usize,
) -> Result<Vec<Object>, SyncError> {
    let names: BTreeSet<String> = objects
        .iter()
        .filter(|o| !super::live::is_built_in_group(o.group()))
        .filter_map(|o| {
            let resolved = live.resolve_kind(o.api_version(), o.kind())?;
            Some(format!("{}.{}", resolved.resource.plural, o.group()))
        })
        .collect();
    let reads: Vec<Result<Option<Object>, SyncError>> = futures::stream::iter(names)
        .map(|name| async move {
            let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
            let read = retrying(|| {
                let request = http::Request::get(path.as_str())
                    .body(Vec::new())
                    .expect("a valid request");
                live.client.request::<Value>(request)
            })
            .await;
            match read {
                Ok(Value::Object(body)) => Ok(Some(Object::new(
                    body,
                    crate::object::Origin {
                        file: "the server".into(),
                        document: 1,
                    },
                ))),
                Ok(_) => Ok(None),
                Err(e) => match live.call_error(&format!("read CRD {name}"), e) {
                    e @ SyncError::Unreachable { .. } => Err(e),
                    e => {
                        tracing::debug!(error = %e, "no CRD read; the published schema answers");
                        Ok(None)
                    }
                },
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    reads.into_iter().filter_map(Result::transpose).collect()
}

fn refusal(object: &Object, fields: Vec<String>) -> SyncError {
    SyncError::UnknownFields {
        object: object.object_ref().to_string(),
        fields,
    }
}

/// The server's word on one object by a dry run: `local` is what the schema refused (None: no
/// schema for the kind). A refusal by the typed conversion is the object's; any other answer
/// (applied, or refused for another reason, such as a namespace not made yet) means its fields
/// and values passed the typed conversion.
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
                tracing::debug!(object = %object.object_ref(), "the server's dry run accepts what its schema refuses");
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

/// The form of the cached [`Schemas`]; a cache of another form is not read (2: scalar types,
/// and objects without properties as maps; 3: base64 strings).
const CACHE_FORMAT: u32 = 3;

/// `$SPROUT_CACHE` (else `~/.cache/sprout`)`/openapi/<hash of the server URL>.v<format>.json`,
/// beside the discovery catalog.
fn cache_file(server: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("SPROUT_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sprout")))?;
    let digest = Sha256::digest(server.as_bytes());
    let name: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    Some(
        cache
            .join("openapi")
            .join(format!("{name}.v{CACHE_FORMAT}.json")),
    )
}

/// What a server names in a refusal by its typed conversion, without the values it quotes (a
/// Secret's, maybe): `spec.a` for `.spec.a: field not declared in schema`, `spec.b (expected
/// number)` for `.spec.b: expected numeric (int or float), got ...`.
pub fn fields_refused(message: &str) -> Vec<String> {
    const PREFIX: &str = "failed to create typed patch object: ";
    const EXPECTED: [(&str, &str); 5] = [
        ("numeric (int or float), got", "number"),
        ("string, got", "string"),
        ("boolean, got", "boolean"),
        ("map, got", "map"),
        ("list, got", "list"),
    ];
    let Some(start) = message.find(PREFIX) else {
        return Vec::new();
    };
    let rest = &message[start + PREFIX.len()..];
    let errors: Vec<&str> = match rest.strip_prefix("errors:\n") {
        Some(list) => list.lines().collect(),
        None => vec![rest],
    };
    errors
        .into_iter()
        .filter_map(|error| {
            let (path, what) = error.trim_start().strip_prefix('.')?.split_once(": ")?;
            if what.starts_with("field not declared in schema") {
                return Some(path.to_string());
            }
            let what = what.strip_prefix("expected ")?;
            let (_, expected) = EXPECTED.iter().find(|(said, _)| what.starts_with(said))?;
            Some(format!("{path} (expected {expected})"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What `schemas` refuse in `object`; None for a kind they lack.
    fn refused(schemas: &Schemas, object: &Object) -> Option<Vec<String>> {
        schemas.refused(&object_key(object), &Value::Object(object.body.clone()))
    }

    use crate::object::test_object as object;

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
                "io.k8s.api.core.v1.Secret": {
                    "type": "object",
                    "properties": {
                        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                        "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
                        "data": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
                        "stringData": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                    "x-kubernetes-group-version-kind": [{"group": "", "kind": "Secret", "version": "v1"}],
                },
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
    fn bytes_that_are_not_base64_are_found_without_their_value() {
        let schemas = Schemas::from_document(&document(), None);
        let secret = |data: Value| {
            object(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                "data": data, "stringData": {"plain": "not base64 at all"}}),
            )
        };
        // Go's decoder: padding required, line breaks skipped, trailing bits taken.
        let fine =
            secret(json!({"a": "aHVudGVyMg==", "b": "aHVu\ndGVy\r\nMg==", "c": "", "d": "aB=="}));
        assert_eq!(refused(&schemas, &fine), Some(vec![]));
        let bad = secret(json!({"pin": "hunter2!", "short": "aHVudGVyMg", "ok": "aHVudGVyMg=="}));
        let found = refused(&schemas, &bad).unwrap();
        assert_eq!(
            found,
            [
                "data[pin] (expected base64, found other text)",
                "data[short] (expected base64, found other text)"
            ]
        );
        assert!(!found.concat().contains("hunter2"));
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
            refused(&schemas, &db).unwrap(),
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
        assert_eq!(refused(&schemas, &widget).unwrap(), ["spec.color"]);
        let unknown_kind = object(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}),
        );
        assert_eq!(refused(&schemas, &unknown_kind), None);
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
                            "port": {"type": "string"},
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
            refused_in(
                &HashMap::new(),
                &kinds["example.test/v1/Gizmo"],
                &Value::Object(gizmo.body.clone()),
            )
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
    fn what_a_server_refusal_names_is_read_without_its_values() {
        assert_eq!(
            fields_refused(
                "failed to create typed patch object: .spec.minReadySeconds: field not declared in schema"
            ),
            ["spec.minReadySeconds"]
        );
        assert_eq!(
            fields_refused(
                "failed to create typed patch object: errors:\n  .spec.a: field not declared in schema\n  .spec.items[0].b: field not declared in schema"
            ),
            ["spec.a", "spec.items[0].b"]
        );
        // As the 1.20 server words them: the values follow "got", a Secret's among them.
        let refused = fields_refused(
            "failed to create typed patch object: errors:\n  .stringData.password: expected string, got &value.valueUnstructured{Value:12345}\n  .spec.replicas: expected numeric (int or float), got *value.valueUnstructured\n  .spec.paused: expected boolean, got &{hunter2}\n  .spec.tags: expected list, got &{map[a:b]}\n  .spec: expected map, got &{[a]}",
        );
        assert_eq!(
            refused,
            [
                "stringData.password (expected string)",
                "spec.replicas (expected number)",
                "spec.paused (expected boolean)",
                "spec.tags (expected list)",
                "spec (expected map)",
            ]
        );
        assert!(
            !format!("{refused:?}").contains("12345")
                && !format!("{refused:?}").contains("hunter2")
        );
        assert!(fields_refused("something else").is_empty());
        assert!(fields_refused("field not declared in schema").is_empty());
    }

    /// Types as structured-merge-diff checks them (each case refused by the 1.20 server, or
    /// taken, as noted): numbers for either numeric type, null anywhere, int-or-string and
    /// strings of a format (`date-time`) untyped in the published document, maps and lists
    /// not confused; the value itself is never named.
    #[test]
    fn values_of_the_wrong_type_are_found_with_their_paths() {
        let mut document = document();
        let definitions = document["definitions"].as_object_mut().unwrap();
        definitions.insert(
            "io.k8s.api.core.v1.ConfigMap".into(),
            json!({
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                    "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
                    "data": {"type": "object", "additionalProperties": {"type": "string"}},
                    "binaryData": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
                    "immutable": {"type": "boolean"},
                    "when": {"type": "string", "format": "date-time"},
                    "port": {"type": "string", "format": "int-or-string"},
                    "raw": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.runtime.RawExtension"},
                    "ratio": {"type": "number"},
                    "loose": {"type": "object"},
                },
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "ConfigMap", "version": "v1"}],
            }),
        );
        definitions.insert(
            "io.k8s.apimachinery.pkg.runtime.RawExtension".into(),
            json!({"type": "object", "properties": {"Raw": {"type": "string", "format": "byte"}}}),
        );
        let schemas = Schemas::from_document(&document, None);
        let good = object(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": null},
            "data": {"a": "1", "b": null}, "immutable": false, "when": 5, "port": 8080,
            "raw": {"anything": [1]}, "ratio": 1, "loose": {"x": [1, {"y": true}]},
        }));
        assert_eq!(refused(&schemas, &good).unwrap(), Vec::<String>::new());
        let bad = object(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": ["a"]},
            "data": {"a": 1, "b": true, "c": {"d": "e"}}, "binaryData": {"x": 1},
            "immutable": "yes", "ratio": "1.5", "loose": ["x"],
        }));
        assert_eq!(
            refused(&schemas, &bad).unwrap(),
            [
                "binaryData[x] (expected base64 string, found integer)",
                "data[a] (expected string, found integer)",
                "data[b] (expected string, found boolean)",
                "data[c] (expected string, found map)",
                "immutable (expected boolean, found string)",
                "loose (expected map, found list)",
                "metadata.labels (expected map, found list)",
                "ratio (expected number, found string)",
            ]
        );
        let set = object(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"replicas": "2", "template": {"spec": {"containers": {"name": "a"}}}},
        }));
        assert_eq!(
            refused(&schemas, &set).unwrap(),
            [
                "spec.replicas (expected integer, found string)",
                "spec.template.spec.containers (expected list, found map)",
            ]
        );
    }

    /// A CRD as the server keeps it (v1, read back): a `nullable` property keeps what it
    /// declares (the published document drops it), and every string is a string (the server
    /// drops formats before it builds the conversion). A schema with an int-or-string gets no
    /// conversion on 1.20: unknown fields pass, types are still the CRD validation's to refuse.
    #[test]
    fn custom_resources_are_checked_below_nullable_fields_and_for_types() {
        let crd = |extra: Value| {
            let mut properties = json!({
                "size": {"type": "integer"},
                "when": {"type": "string", "format": "date-time"},
                "opt": {"type": "object", "nullable": true, "properties": {"a": {"type": "string"}}},
            });
            properties
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            object(json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": "probes.example.test"},
                "spec": {"group": "example.test", "names": {"kind": "Probe", "plural": "probes"},
                    "preserveUnknownFields": false,
                    "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {"type": "object", "properties": properties}}}}}]},
            }))
        };
        let probe = |spec: Value| json!({"apiVersion": "example.test/v1", "kind": "Probe", "metadata": {"name": "p"}, "spec": spec});
        let check = |crd: Object, probe: Value| {
            refused_in(
                &HashMap::new(),
                &declared_kinds(&[crd])["example.test/v1/Probe"],
                &probe,
            )
        };
        assert_eq!(
            check(crd(json!({})), probe(json!({"opt": {"a": "x", "b": 1}}))),
            ["spec.opt.b"]
        );
        assert!(check(crd(json!({})), probe(json!({"opt": null, "size": 1.5}))).is_empty());
        assert_eq!(
            check(crd(json!({})), probe(json!({"when": 5, "size": "1"}))),
            [
                "spec.size (expected integer, found string)",
                "spec.when (expected string, found integer)"
            ]
        );
        let with_int_or_string = crd(json!({"port": {"x-kubernetes-int-or-string": true}}));
        assert_eq!(
            check(
                with_int_or_string,
                probe(json!({"opt": {"b": 1}, "zzz": 1, "port": "x", "size": "1"}))
            ),
            ["spec.size (expected integer, found string)"]
        );
    }
}
