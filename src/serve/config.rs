//! The `generators:` list of sprout.yaml, typed: where previews come from (`github`, `gitlab`,
//! `branches`), which items qualify, and which template turns each into an environment spec.
//!
//! Parsing happens with the rest of sprout.yaml (unknown fields are an error with file and line
//! for every command); tokens are only looked up by [`Generator::token`] when `serve` starts, so
//! `sprout up` works without `GITHUB_TOKEN` in its environment.

use crate::project::SETTINGS_FILE;
use crate::spec::{SpecError, line_of};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// One entry of `generators:`, checked: exactly one source, and only the filters that source
/// understands. (Deserializable alone too; in sprout.yaml, `deserialize_generators` reads the
/// list so that errors point at the item's line.)
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawGenerator")]
pub struct Generator {
    pub source: GeneratorSource,
    /// Name of the spec template: `templates/<template>.yaml.tera`.
    pub template: String,
    pub filters: Filters,
    /// At most this many previews at once; new items beyond it wait (`queued`), running ones
    /// are never evicted for them.
    pub max: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GeneratorSource {
    GitHub(GitHubSource),
    GitLab(GitLabSource),
    Branches(BranchesSource),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitHubSource {
    /// `owner/name`.
    pub repository: String,
    #[serde(default = "default_github_api")]
    pub api: String,
    /// Name of an environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file holding the token (relative paths from the project root).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitLabSource {
    /// `group/name` (path with namespace) or the numeric project id.
    pub project: String,
    #[serde(default = "default_gitlab_api")]
    pub api: String,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BranchesSource {
    /// A git URL or path, listed like `git ls-remote` (nothing is fetched).
    pub repo: String,
    /// Glob patterns on branch names (`*` stays within one `/` segment, `**` crosses them);
    /// empty means every branch.
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// Which pull/merge requests get a preview (for `github` and `gitlab` generators).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filters {
    /// Every one of these labels is required.
    pub labels: Vec<String>,
    /// Any one of these labels excludes the item.
    pub exclude_labels: Vec<String>,
    /// Authors whose items never get a preview (bots).
    pub exclude_authors: Vec<String>,
    /// Drafts are skipped unless this is true.
    pub drafts: bool,
    /// Only items targeting this branch.
    pub target_branch: Option<String>,
}

/// A secret value (API token, webhook secret) that never reaches a log: `Debug` redacts it and
/// there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for an `Authorization` header or an HMAC key; never for a message.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawGenerator {
    github: Option<GitHubSource>,
    gitlab: Option<GitLabSource>,
    branches: Option<BranchesSource>,
    template: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    exclude_labels: Vec<String>,
    #[serde(default)]
    exclude_authors: Vec<String>,
    #[serde(default)]
    drafts: bool,
    #[serde(default)]
    target_branch: Option<String>,
    #[serde(default)]
    max: Option<u32>,
}

/// `generators:` of sprout.yaml. Shape errors (unknown fields) carry their line from the YAML
/// parser; a checked rule (exactly one source, …) is reported as `generators[i]: …`, which
/// [`locate_generator_error`] turns into the line of item `i`.
pub(crate) fn deserialize_generators<'de, D>(deserializer: D) -> Result<Vec<Generator>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw = Vec::<RawGenerator>::deserialize(deserializer)?;
    raw.into_iter()
        .enumerate()
        .map(|(index, raw)| {
            Generator::try_from(raw).map_err(|message| {
                serde::de::Error::custom(format!("generators[{index}]: {message}"))
            })
        })
        .collect()
}

/// Points an error about `generators[i]` at the line where item `i` starts (the parser only
/// knows where the list starts).
pub(crate) fn locate_generator_error(text: &str, error: SpecError) -> SpecError {
    let SpecError::Invalid {
        file,
        line,
        message,
    } = error
    else {
        return error;
    };
    let Some(start) = message.find("generators[") else {
        return SpecError::Invalid {
            file,
            line,
            message,
        };
    };
    let rest = &message[start + "generators[".len()..];
    let Some(index) = rest
        .split_once(']')
        .and_then(|(index, _)| index.parse::<usize>().ok())
    else {
        return SpecError::Invalid {
            file,
            line,
            message,
        };
    };
    let line = generator_item_line(text, index).unwrap_or(line);
    let message = format!(
        "generators: {}",
        rest.split_once("]: ").map_or(rest, |(_, m)| m)
    );
    SpecError::Invalid {
        file,
        line,
        message,
    }
}

/// The 1-based line where item `index` of the block list under the top-level `generators:`
/// starts.
fn generator_item_line(text: &str, index: usize) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let key = lines.iter().position(|l| l.starts_with("generators:"))?;
    let mut item_indent = None;
    let mut seen = 0;
    for (offset, line) in lines.iter().enumerate().skip(key + 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent == 0 && !trimmed.starts_with('-') {
            return None;
        }
        if trimmed.starts_with("- ") || trimmed == "-" {
            let item = *item_indent.get_or_insert(indent);
            if indent == item {
                if seen == index {
                    return Some(offset + 1);
                }
                seen += 1;
            }
        }
    }
    None
}

impl TryFrom<RawGenerator> for Generator {
    type Error = String;

    fn try_from(raw: RawGenerator) -> Result<Self, String> {
        let source = match (raw.github, raw.gitlab, raw.branches) {
            (Some(github), None, None) => GeneratorSource::GitHub(github),
            (None, Some(gitlab), None) => GeneratorSource::GitLab(gitlab),
            (None, None, Some(branches)) => GeneratorSource::Branches(branches),
            _ => {
                return Err(
                    "a generator needs exactly one of `github`, `gitlab` or `branches`".into(),
                );
            }
        };
        match &source {
            GeneratorSource::GitHub(GitHubSource {
                repository,
                token_env,
                token_file,
                ..
            }) => {
                if repository
                    .split('/')
                    .filter(|part| !part.is_empty())
                    .count()
                    != 2
                {
                    return Err(format!(
                        "github.repository `{repository}` must be `owner/name`"
                    ));
                }
                check_token("github", token_env, token_file)?;
            }
            GeneratorSource::GitLab(GitLabSource {
                project,
                token_env,
                token_file,
                ..
            }) => {
                if project.trim().is_empty() {
                    return Err("gitlab.project must not be empty".into());
                }
                check_token("gitlab", token_env, token_file)?;
            }
            GeneratorSource::Branches(branches) => {
                let pr_only = [
                    ("labels", !raw.labels.is_empty()),
                    ("excludeLabels", !raw.exclude_labels.is_empty()),
                    ("excludeAuthors", !raw.exclude_authors.is_empty()),
                    ("drafts", raw.drafts),
                    ("targetBranch", raw.target_branch.is_some()),
                ];
                if let Some((field, _)) = pr_only.iter().find(|(_, set)| *set) {
                    return Err(format!(
                        "`{field}` filters pull/merge requests; a `branches` generator has none (use include/exclude)"
                    ));
                }
                for pattern in branches.include.iter().chain(&branches.exclude) {
                    crate::serve::branches::glob(pattern)?;
                }
            }
        }
        if raw.template.trim().is_empty() || raw.template.contains(['/', '\\']) {
            return Err(format!(
                "template `{}` must be the name of a template in templates/ (without folders)",
                raw.template
            ));
        }
        if raw.max == Some(0) {
            return Err("max must be at least 1 (leave it out for no cap)".into());
        }
        Ok(Generator {
            source,
            template: raw.template,
            filters: Filters {
                labels: raw.labels,
                exclude_labels: raw.exclude_labels,
                exclude_authors: raw.exclude_authors,
                drafts: raw.drafts,
                target_branch: raw.target_branch,
            },
            max: raw.max,
        })
    }
}

fn check_token(
    provider: &str,
    token_env: &Option<String>,
    token_file: &Option<PathBuf>,
) -> Result<(), String> {
    match (token_env, token_file) {
        (Some(_), Some(_)) => Err(format!(
            "{provider}: give either tokenEnv or tokenFile, not both"
        )),
        (Some(name), None) if name.is_empty() => {
            Err(format!("{provider}.tokenEnv must not be empty"))
        }
        _ => Ok(()),
    }
}

impl Generator {
    /// The API token, looked up now: a missing variable or an unreadable file is a
    /// configuration error located in sprout.yaml (`settings_text` is its text, `root` the
    /// project root). No token configured gives `None` (anonymous API access).
    pub fn token(&self, root: &Path, settings_text: &str) -> Result<Option<Secret>, SpecError> {
        let (token_env, token_file) = match &self.source {
            GeneratorSource::GitHub(source) => (&source.token_env, &source.token_file),
            GeneratorSource::GitLab(source) => (&source.token_env, &source.token_file),
            GeneratorSource::Branches(_) => return Ok(None),
        };
        let invalid = |key: &str, value: &str, message: String| SpecError::Invalid {
            file: SETTINGS_FILE.into(),
            line: line_of_value(settings_text, key, value),
            message,
        };
        let value = match (token_env, token_file) {
            (Some(name), _) => std::env::var(name).map_err(|_| {
                invalid(
                    "tokenEnv:",
                    name,
                    format!("tokenEnv: environment variable `{name}` is not set (or not UTF-8)"),
                )
            })?,
            (None, Some(file)) => {
                let shown = file.display().to_string();
                std::fs::read_to_string(root.join(file)).map_err(|e| {
                    invalid(
                        "tokenFile:",
                        &shown,
                        format!("tokenFile: cannot read `{shown}`: {e}"),
                    )
                })?
            }
            (None, None) => return Ok(None),
        };
        let value = value.trim();
        if value.is_empty() {
            let (key, name) = match (token_env, token_file) {
                (Some(name), _) => ("tokenEnv:", name.clone()),
                (None, Some(file)) => ("tokenFile:", file.display().to_string()),
                (None, None) => unreachable!("returned above"),
            };
            return Err(invalid(
                key,
                &name,
                format!("{key} `{name}` holds an empty token"),
            ));
        }
        Ok(Some(Secret::new(value)))
    }

    /// The provider's name for metrics and messages.
    pub fn provider(&self) -> &'static str {
        match self.source {
            GeneratorSource::GitHub(_) => "github",
            GeneratorSource::GitLab(_) => "gitlab",
            GeneratorSource::Branches(_) => "branches",
        }
    }
}

/// The line holding `key` with `value` on it (which generator's token is at fault), else the
/// first line holding `key`.
fn line_of_value(text: &str, key: &str, value: &str) -> usize {
    text.lines()
        .position(|line| line.contains(key) && line.contains(value))
        .map_or_else(|| line_of(text, key), |i| i + 1)
}

fn default_github_api() -> String {
    "https://api.github.com".into()
}

fn default_gitlab_api() -> String {
    "https://gitlab.com/api/v4".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Generator>, SpecError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            #[serde(deserialize_with = "deserialize_generators")]
            generators: Vec<Generator>,
        }
        serde_yaml::from_str::<Doc>(text)
            .map(|d| d.generators)
            .map_err(|e| locate_generator_error(text, crate::spec::yaml_error(SETTINGS_FILE, &e)))
    }

    #[test]
    fn the_contract_example_parses() {
        let text = r#"generators:
- github: {repository: acme/shop, api: "https://api.github.com", tokenEnv: GITHUB_TOKEN}
  template: preview
  labels: [preview]
  excludeAuthors: ["dependabot[bot]"]
  max: 20
- gitlab: {project: acme/shop, api: "https://gitlab.example.com", tokenFile: secrets/gitlab}
  template: preview
  drafts: true
  targetBranch: main
- branches: {repo: "git@example.com:acme/shop.git", include: ["feature/*"], exclude: ["feature/wip-*"]}
  template: branch
"#;
        let generators = parse(text).unwrap();
        assert_eq!(generators.len(), 3);
        let GeneratorSource::GitHub(github) = &generators[0].source else {
            panic!("{:?}", generators[0])
        };
        assert_eq!(github.repository, "acme/shop");
        assert_eq!(github.token_env.as_deref(), Some("GITHUB_TOKEN"));
        assert_eq!(generators[0].filters.labels, ["preview"]);
        assert_eq!(generators[0].max, Some(20));
        assert!(generators[1].filters.drafts);
        assert_eq!(generators[1].filters.target_branch.as_deref(), Some("main"));
        assert_eq!(generators[2].template, "branch");
    }

    #[test]
    fn unknown_and_misplaced_fields_are_located() {
        let cases = [
            (
                "generators:\n- github: {repository: a/b, tokn: X}\n  template: p\n",
                2,
                "tokn",
            ),
            (
                "generators:\n- github: {repository: a/b}\n  template: p\n  colour: red\n",
                2,
                "colour",
            ),
            (
                "generators:\n- github: {repository: a/b}\n  gitlab: {project: a/b}\n  template: p\n",
                2,
                "exactly one",
            ),
            (
                "generators:\n- template: p\n- branches: {repo: x}\n  template: b\n  labels: [a]\n",
                2,
                "exactly one",
            ),
            (
                "generators:\n- branches: {repo: x}\n  template: b\n  labels: [a]\n",
                2,
                "labels",
            ),
            (
                "generators:\n- github: {repository: a/b, tokenEnv: A, tokenFile: f}\n  template: p\n",
                2,
                "not both",
            ),
            (
                "generators:\n- github: {repository: shop}\n  template: p\n",
                2,
                "owner/name",
            ),
            (
                "generators:\n- branches: {repo: x, include: [\"feature/[\"]}\n  template: b\n",
                2,
                "feature/[",
            ),
            ("generators:\n- github: {repository: a/b}\n", 2, "template"),
        ];
        for (text, line, needle) in cases {
            let err = parse(text).unwrap_err();
            let SpecError::Invalid {
                line: got, message, ..
            } = &err
            else {
                panic!("{err}")
            };
            assert!(message.contains(needle), "{text}: {message}");
            assert_eq!(*got, line, "{text}: {err}");
        }
    }

    #[test]
    fn tokens_come_from_a_variable_or_a_file_and_are_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cr3t-file\n").unwrap();
        let text = "generators:\n- gitlab: {project: a/b, tokenFile: token}\n  template: p\n- github: {repository: a/b, tokenFile: missing}\n  template: p\n- github: {repository: a/b, tokenEnv: SPROUT_TEST_UNSET_TOKEN_VARIABLE}\n  template: p\n";
        let generators = parse(text).unwrap();
        let token = generators[0].token(dir.path(), text).unwrap().unwrap();
        assert_eq!(token.expose(), "s3cr3t-file");
        assert!(!format!("{token:?} {:?}", Some(&token)).contains("s3cr3t"));

        let err = generators[1].token(dir.path(), text).unwrap_err();
        assert!(err.to_string().starts_with("sprout.yaml:4: "), "{err}");
        assert!(err.to_string().contains("missing"), "{err}");

        let err = generators[2].token(dir.path(), text).unwrap_err();
        assert!(err.to_string().starts_with("sprout.yaml:6: "), "{err}");
        assert!(err.to_string().contains("SPROUT_TEST_UNSET_TOKEN_VARIABLE"));
    }
}
