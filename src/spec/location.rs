//! Turning parse errors and semantic checks into `file:line` messages.

use super::SpecError;

/// The 1-based line of the first line holding `key` (e.g. `"from:"`) as a mapping key, in block
/// style (`from: x`, `- from: x`) or flow style (`{name: x}`, `{a: 1, name: x}`), or 1.
/// Semantic checks run after parsing, when positions are gone; the key is enough to send the
/// reader to the right line of a hand-written spec.
pub fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| is_key_of(line, key))
        .map_or(1, |i| i + 1)
}

pub(crate) fn is_key_of(line: &str, key: &str) -> bool {
    let trimmed = line.trim_start().trim_start_matches("- ");
    trimmed.starts_with(key)
        || [
            format!("{{{key}"),
            format!("{{ {key}"),
            format!(", {key}"),
            format!(",{key}"),
        ]
        .iter()
        .any(|flow| line.contains(flow.as_str()))
}

/// A YAML parse or shape error as `file:line: message`, without the library's own
/// "at line X column Y" tail (the location leads instead).
pub fn yaml_error(file: &str, error: &serde_yaml::Error) -> SpecError {
    let message = error.to_string();
    let message = match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    SpecError::Invalid {
        file: file.to_string(),
        line: error.location().map_or(1, |l| l.line()),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_list_items() {
        let text = "a: 1\nspec:\n  from: x\n  patches:\n    - target: {kind: A}\n";
        assert_eq!(line_of(text, "from:"), 3);
        assert_eq!(line_of(text, "target:"), 5);
        assert_eq!(line_of(text, "missing:"), 1);
        assert_eq!(
            line_of("a: 1\nmetadata: {labels: {}, name: x}\n", "name:"),
            2
        );
    }

    #[test]
    fn yaml_errors_carry_the_line() {
        let err = serde_yaml::from_str::<serde_json::Value>("a: 1\nb: [\n").unwrap_err();
        let SpecError::Invalid { line, file, .. } = yaml_error("x.yaml", &err) else {
            panic!()
        };
        assert_eq!(file, "x.yaml");
        assert!(line >= 2, "{line}");
    }
}
