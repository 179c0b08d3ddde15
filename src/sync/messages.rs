//! Keeping what the server says fit to print: bounded in size, and free of Secret values.
//!
//! A server message can hold a whole object (an invalid CRD came back as 72 KB on one line, an
//! immutable Job template as 3 KB) and, for a Secret, the very value that was rejected. Every
//! message sprout shows or stores (status, `.sprout/`) passes through here first.

use serde_json::{Map, Value};

/// The most characters of one server message sprout repeats.
pub const MESSAGE_LIMIT: usize = 400;
/// The most items one error lists before it says `+N more`.
pub const LIST_LIMIT: usize = 20;

/// `text` cut to `limit` characters (at a character boundary), saying how much was left out.
pub fn bounded(text: &str, limit: usize) -> String {
    let total = text.chars().count();
    if total <= limit {
        return text.to_string();
    }
    let kept: String = text.chars().take(limit).collect();
    format!("{kept}… ({} more characters)", total - limit)
}

/// The first [`LIST_LIMIT`] items, then `+N more`.
pub fn capped(items: &[String]) -> Vec<String> {
    let mut shown: Vec<String> = items.iter().take(LIST_LIMIT).cloned().collect();
    if items.len() > LIST_LIMIT {
        shown.push(format!("+{} more", items.len() - LIST_LIMIT));
    }
    shown
}

/// The first `shown` items joined with `, `, then `+N more`.
pub fn capped_inline(items: &[String], shown: usize) -> String {
    let mut text = items
        .iter()
        .take(shown)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > shown {
        text.push_str(&format!(", +{} more", items.len() - shown));
    }
    text
}

/// A server message about a Secret, with every value of `body`'s `data` and `stringData` (as
/// written, and `data` decoded) replaced by `***`: the message names fields, never values.
/// A value too short to find safely (a digit would match everywhere) hides the whole message
/// behind the fields it names.
pub fn without_secret_values(message: &str, body: &Map<String, Value>) -> String {
    let values = secret_texts(body);
    if values.iter().any(|v| v.chars().count() < 3) {
        return fields_only(message);
    }
    let mut redacted = message.to_string();
    // Longest first, so a value that contains another is replaced whole.
    let mut values = values;
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for value in values {
        redacted = redacted.replace(&value, "***");
    }
    redacted
}

/// Every textual form a Secret value can take in a server message.
fn secret_texts(body: &Map<String, Value>) -> Vec<String> {
    let mut texts = Vec::new();
    for field in ["data", "stringData"] {
        let Some(Value::Object(values)) = body.get(field) else {
            continue;
        };
        for value in values.values() {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            if field == "data"
                && let Some(decoded) = decode_base64(&text)
                && !decoded.is_empty()
            {
                texts.push(decoded);
            }
            if !text.is_empty() {
                texts.push(text);
            }
        }
    }
    texts
}

fn decode_base64(text: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The field paths a message names (`.stringData.password`, `data[token]`), without the rest.
fn fields_only(message: &str) -> String {
    let mut fields: Vec<&str> = Vec::new();
    for (start, _) in message.match_indices("ata") {
        // `data` or `stringData`, then `.key` or `[key]`.
        let begin = message[..start]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '.'))
            .map_or(0, |i| i + 1);
        let rest = &message[begin..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || "._-[]".contains(c)))
            .unwrap_or(rest.len());
        let field = rest[..end].trim_end_matches(['.', ':']);
        if (field.contains("data.") || field.contains("Data.") || field.contains("ata["))
            && !fields.contains(&field)
        {
            fields.push(field);
        }
    }
    if fields.is_empty() {
        "the server refused a value of this Secret (the message is withheld: it may hold the value)"
            .into()
    } else {
        format!(
            "the server refused {} (the message is withheld: it may hold the value)",
            fields.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn long_messages_and_lists_are_bounded() {
        assert_eq!(bounded("short", 10), "short");
        let long = "é".repeat(1000);
        let cut = bounded(&long, 400);
        assert!(cut.starts_with(&"é".repeat(400)));
        assert!(cut.ends_with("… (600 more characters)"));
        let items: Vec<String> = (0..25).map(|i| i.to_string()).collect();
        let shown = capped(&items);
        assert_eq!(shown.len(), 21);
        assert_eq!(shown[20], "+5 more");
    }

    #[test]
    fn secret_values_never_survive_in_a_message() {
        let body = json!({"data": {"token": "aHVudGVyMg=="}, "stringData": {"pin": 123456}});
        let message = "failed: .stringData.pin: expected string, got &value.valueUnstructured{Value:123456}; token hunter2 aHVudGVyMg==";
        let clean = without_secret_values(message, body.as_object().unwrap());
        assert!(!clean.contains("123456"), "{clean}");
        assert!(!clean.contains("hunter2"), "{clean}");
        assert!(!clean.contains("aHVudGVyMg=="), "{clean}");
        assert!(clean.contains(".stringData.pin"), "{clean}");
    }

    #[test]
    fn short_values_hide_the_message_but_not_the_field() {
        let body = json!({"stringData": {"n": 7}});
        let message =
            ".stringData.n: expected string, got &value.valueUnstructured{Value:7}, at line 7";
        let clean = without_secret_values(message, body.as_object().unwrap());
        assert!(!clean.contains('7'), "{clean}");
        assert!(clean.contains(".stringData.n"), "{clean}");
    }
}
