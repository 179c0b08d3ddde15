//! Strict YAML reading for manifests and spec files: UTF-8 only, no duplicate keys, and a
//! bound on nesting checked before the YAML parser sees the text.
//!
//! Why each rule: a replacement character or a second `metadata:` silently changes what is
//! applied (the last key wins, renaming the object); and libyaml's scanner does work
//! proportional to the flow depth for every token, so `[[[[…` of 500 KB took minutes (and
//! `- - - …` a second) before the deserializer's own depth limit refused it.

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Deepest nesting accepted; the deserializer refuses more than 128 levels anyway, so nothing
/// it would accept is refused here (the block estimate below counts no level twice).
pub const MAX_DEPTH: usize = 128;

/// A located problem in a YAML text (lines and documents count from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub document: usize,
    pub message: String,
}

/// The text of `bytes`, or the line of the first byte that is not UTF-8.
pub fn decode(bytes: &[u8]) -> Result<&str, YamlError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = &bytes[..e.valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        YamlError {
            line,
            document: document_at(valid),
            message: format!(
                "invalid UTF-8 (byte {:#04x}); save the file as UTF-8",
                bytes[e.valid_up_to()]
            ),
        }
    })
}

/// Every document of `text` as JSON values (empty documents are `Null`), refusing invalid
/// nesting depth and duplicate keys with their line, with merge keys applied (see
/// [`apply_merge_keys`]).
pub fn documents(text: &str) -> Result<Vec<Value>, YamlError> {
    let mut values = documents_as_written(text)?;
    for (index, value) in values.iter_mut().enumerate() {
        apply_merge_keys(value).map_err(|message| YamlError {
            line: text
                .lines()
                .position(|line| line.trim_start().starts_with("<<:") || line.contains(" <<:"))
                .map_or(1, |i| i + 1),
            document: index + 1,
            message,
        })?;
    }
    Ok(values)
}

/// [`documents`] with merge keys left as written (a `<<` key holding what it merges), for a
/// check that must see every value a reader could take.
pub fn documents_as_written(text: &str) -> Result<Vec<Value>, YamlError> {
    check_depth(text)?;
    let mut values = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = StrictValue.deserialize(document).map_err(|e| {
            let mut message = e.to_string();
            if let Some(i) = message.find(" at line ") {
                message.truncate(i);
            }
            let line = e.location().map_or(1, |l| l.line());
            let line = duplicate_key(&message)
                .and_then(|key| second_occurrence(text, line, key))
                .unwrap_or(line);
            YamlError {
                line,
                document: index + 1,
                message,
            }
        })?;
        values.push(value);
    }
    Ok(values)
}

/// YAML 1.1's merge key (`<<: *defaults`, or a list of such mappings), applied as the YAML
/// spec and kustomize read it: the keys of the merged mappings that the mapping lacks are
/// added (of a list, an earlier mapping wins), and `<<` itself goes; a `<<` holding anything
/// but mappings is refused, as every reader refuses it. (`kubectl apply -f` differs in one
/// case: its reader lets a merged key override one written *before* the `<<`.)
fn apply_merge_keys(value: &mut Value) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            if let Some(merged) = map.remove("<<") {
                let sources = match merged {
                    Value::Array(items) => items,
                    other => vec![other],
                };
                for mut source in sources {
                    apply_merge_keys(&mut source)?;
                    let Value::Object(source) = source else {
                        return Err(
                            "a merge key `<<` must hold a mapping or a list of mappings".into()
                        );
                    };
                    for (key, v) in source {
                        map.entry(key).or_insert(v);
                    }
                }
            }
            map.values_mut().try_for_each(apply_merge_keys)
        }
        Value::Array(items) => items.iter_mut().try_for_each(apply_merge_keys),
        _ => Ok(()),
    }
}

/// One JSON document, refusing duplicate keys like [`documents`] (serde_json keeps the last).
pub fn json_document(text: &str) -> Result<Value, YamlError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = StrictValue
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|e| YamlError {
            line: e.line(),
            document: 1,
            message: e.to_string(),
        })?;
    Ok(value)
}

/// Refuses documents nested deeper than [`MAX_DEPTH`], in one linear pass: flow collections
/// are counted exactly (skipping comments, quoted and block scalars, where brackets are text);
/// block nesting is estimated from the indentation levels open and the `- `/`? ` indicators
/// that open nodes on one line.
pub fn check_depth(text: &str) -> Result<(), YamlError> {
    let mut scanner = DepthScanner::default();
    for (index, line) in text.lines().enumerate() {
        if scanner.scan_line(line) > MAX_DEPTH {
            let before: usize = text.lines().take(index).map(|l| l.len() + 1).sum();
            return Err(YamlError {
                line: index + 1,
                document: document_at(&text.as_bytes()[..before.min(text.len())]),
                message: format!(
                    "nested deeper than {MAX_DEPTH} levels; no Kubernetes object needs that"
                ),
            });
        }
    }
    Ok(())
}

#[derive(Default)]
struct DepthScanner {
    /// Flow collections open.
    depth: usize,
    /// Indentation of the block lines that enclose the current one.
    indents: Vec<usize>,
    /// Inside a quoted scalar that continues on the next line: its closing quote.
    quote: Option<u8>,
    /// Inside a block scalar (`|`, `>`): lines indented more than this belong to it.
    block_scalar_parent: Option<usize>,
}

impl DepthScanner {
    /// Scans one line; returns the deepest nesting reached on it (stopping early past
    /// [`MAX_DEPTH`]).
    fn scan_line(&mut self, line: &str) -> usize {
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|b| **b == b' ').count();
        if let Some(parent) = self.block_scalar_parent {
            if indent > parent || line.trim().is_empty() {
                return 0;
            }
            self.block_scalar_parent = None;
        }
        // Where a node may start: quotes and brackets mean structure only there; elsewhere
        // (inside a plain scalar such as `echo it's [x]`) they are text.
        let mut at_node_start = true;
        let mut i = indent;
        let in_block = self.depth == 0 && self.quote.is_none();
        let marker = |m: &str| line.starts_with(m) && bytes.get(3).is_none_or(|b| *b == b' ');
        if in_block && (marker("---") || marker("...")) {
            self.indents.clear();
            i = 3;
        } else if in_block && !line.trim().is_empty() && !line[indent..].starts_with('#') {
            while self.indents.last().is_some_and(|open| *open > indent) {
                self.indents.pop();
            }
            if self.indents.last() != Some(&indent) {
                self.indents.push(indent);
            }
        }
        let mut block = if in_block { self.indents.len() } else { 0 };
        let mut deepest = block + self.depth;
        while i < bytes.len() {
            if deepest > MAX_DEPTH {
                return deepest;
            }
            let b = bytes[i];
            if let Some(close) = self.quote {
                if b == b'\\' && close == b'"' {
                    i += 2;
                    continue;
                }
                if b == close {
                    if close == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    self.quote = None;
                    at_node_start = false;
                }
                i += 1;
                continue;
            }
            let space_before = i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t';
            match b {
                b' ' | b'\t' => {}
                b'#' if space_before => break,
                b'"' | b'\'' if at_node_start => self.quote = Some(b),
                // A tag or an anchor comes before the node it names: `!t [` and `&a {` still
                // open a collection.
                b'!' | b'&' if at_node_start => {
                    while i + 1 < bytes.len() && !matches!(bytes[i + 1], b' ' | b'\t') {
                        i += 1;
                    }
                }
                b'[' | b'{' if at_node_start || self.depth > 0 => {
                    self.depth += 1;
                    deepest = deepest.max(block + self.depth);
                    at_node_start = true;
                }
                b']' | b'}' if self.depth > 0 => {
                    self.depth -= 1;
                    at_node_start = false;
                }
                b',' if self.depth > 0 => at_node_start = true,
                b'-' | b'?' | b':'
                    if bytes.get(i + 1).is_none_or(|n| *n == b' ' || *n == b'\t')
                        || (b == b':' && self.depth > 0) =>
                {
                    // `- - - x`: every block indicator on the line opens one more node.
                    if b != b':' && at_node_start && self.depth == 0 {
                        block += 1;
                        deepest = deepest.max(block);
                    }
                    at_node_start = true
                }
                b'|' | b'>' if at_node_start && self.depth == 0 => {
                    self.block_scalar_parent = Some(indent);
                    break;
                }
                _ => at_node_start = false,
            }
            i += 1;
        }
        deepest
    }
}

/// Document number (1-based) at the end of `before`: one more per `---` line.
fn document_at(before: &[u8]) -> usize {
    let text = String::from_utf8_lossy(before);
    let separators = text
        .lines()
        .skip_while(|l| l.trim().is_empty() || l.starts_with('#'))
        .skip(1)
        .filter(|l| l.starts_with("---"))
        .count();
    separators + 1
}

fn duplicate_key(message: &str) -> Option<&str> {
    let marker = "duplicate key `";
    let rest = &message[message.find(marker)? + marker.len()..];
    Some(&rest[..rest.rfind('`')?])
}

/// The line of the second `key:` at one indentation from line `from` on: the parser reports
/// a duplicate at the start of its mapping, the reader wants the line to delete.
fn second_occurrence(text: &str, from: usize, key: &str) -> Option<usize> {
    let mut first_indent = None;
    for (index, line) in text.lines().enumerate().skip(from.saturating_sub(1)) {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let unquoted = [
            format!("{key}:"),
            format!("\"{key}\":"),
            format!("'{key}':"),
        ];
        if !unquoted.iter().any(|k| trimmed.starts_with(k.as_str())) {
            continue;
        }
        let indent = line.len() - trimmed.len();
        match first_indent {
            None => first_indent = Some(indent),
            Some(first) if first == indent => return Some(index + 1),
            Some(_) => {}
        }
    }
    None
}

/// A JSON value read from YAML, refusing a key that appears twice in one mapping.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<MapKey>()? {
            let value = map.next_value_seed(StrictValue)?;
            if out.contains_key(&key.0) {
                return Err(de::Error::custom(format!(
                    "duplicate key `{}`; the second would silently replace the first",
                    key.0
                )));
            }
            out.insert(key.0, value);
        }
        Ok(Value::Object(out))
    }
}

/// A mapping key as text (`1:` and `true:` are keys "1" and "true", as serde_json reads them).
struct MapKey(String);

impl<'de> Deserialize<'de> for MapKey {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match StrictValue.deserialize(d)? {
            Value::String(s) => Ok(MapKey(s)),
            Value::Null => Ok(MapKey("null".into())),
            Value::Bool(b) => Ok(MapKey(b.to_string())),
            Value::Number(n) => Ok(MapKey(n.to_string())),
            _ => Err(de::Error::custom(
                "a mapping key must be a scalar, not a list or a mapping",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn merge_keys_are_applied_as_kubectl_reads_them() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: &meta {name: a, labels: {app: a}}\ndata:\n  <<: *meta\n  name: mine\n  nested: {<<: [{x: '1', y: '1'}, {y: '2', z: '2'}]}\n";
        let documents = documents(text).unwrap();
        assert_eq!(
            documents[0]["data"],
            serde_json::json!({"name": "mine", "labels": {"app": "a"},
                "nested": {"x": "1", "y": "1", "z": "2"}})
        );
        let odd = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n  <<: scalar\n";
        let error = super::documents(odd).unwrap_err();
        assert_eq!(error.line, 5, "{error:?}");
        assert!(error.message.contains("merge key"), "{error:?}");
    }

    #[test]
    fn duplicate_keys_are_refused_with_the_line_of_the_second() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: \"1\"\nmetadata:\n  name: b\n";
        let err = documents(text).unwrap_err();
        assert_eq!((err.line, err.document), (7, 1), "{err:?}");
        assert!(err.message.contains("duplicate key `metadata`"), "{err:?}");

        let text = "a: 1\n---\nb:\n  c: 1\n  d: {e: 1}\n  c: 2\n";
        let err = documents(text).unwrap_err();
        assert_eq!((err.line, err.document), (6, 2), "{err:?}");
        // The same key in different mappings is fine.
        assert!(documents("a: {x: 1}\nb: {x: 1}\nc:\n- x: 1\n- x: 2\n").is_ok());
    }

    #[test]
    fn invalid_utf8_is_refused_with_its_line() {
        let err = decode(b"a: 1\n---\nb: \xff\n").unwrap_err();
        assert_eq!((err.line, err.document), (3, 2), "{err:?}");
        assert!(err.message.contains("UTF-8"), "{err:?}");
        assert_eq!(decode("ü: 1\n".as_bytes()).unwrap(), "ü: 1\n");
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        for (name, text) in [
            ("lists", format!("a: 1\nb: {}", "[".repeat(250_000))),
            ("maps", format!("a: 1\nb: {}", "{a: ".repeat(125_000))),
            ("mixed", format!("a: 1\nb: {}", "[{a: ".repeat(100_000))),
            ("tagged", format!("a: 1\nb: !t &x {}", "[".repeat(250_000))),
            (
                "document start",
                format!("a: 1\n--- {}", "[".repeat(250_000)),
            ),
        ] {
            let started = Instant::now();
            let err = documents(&text).unwrap_err();
            let took = started.elapsed();
            assert!(err.line == 2 || name == "block maps", "{name}: {err:?}");
            assert!(err.message.contains("nested deeper"), "{name}: {err:?}");
            assert!(
                took < Duration::from_millis(200),
                "{name}: {} KB took {took:?}",
                text.len() / 1000
            );
        }
    }

    #[test]
    fn brackets_that_are_text_do_not_count() {
        let deep = "[".repeat(MAX_DEPTH + 1);
        for text in [
            format!("a: \"{deep}\"\n"),
            format!("a: '{deep}'\n"),
            format!("a: x{deep}\n"),
            format!("a: |\n  {deep}\n  more\nb: 1\n"),
            format!("a: 1 # {deep}\n"),
            format!("- >-\n    {deep}\n- '{deep}'''\n"),
            format!("a: [\"{deep}\", '{deep}']\n"),
        ] {
            assert!(check_depth(&text).is_ok(), "{text}");
        }
        let nested = format!("a: {}{}\n", "[".repeat(100), "]".repeat(100));
        assert!(documents(&nested).is_ok());
        // 100 levels of block maps and lists, as deep as a large CRD schema and more.
        let mut block = String::new();
        for level in 0..50 {
            block.push_str(&format!(
                "{}k{level}:\n{}- ",
                "  ".repeat(level),
                "  ".repeat(level)
            ));
            block.push_str("x: 1\n");
        }
        assert!(documents(&block).is_ok(), "{block}");
    }
}
