//! Names for environments, namespaces and clusters, derived from hostile input.
//!
//! Branch names can hold `;`, `$(...)`, `..`, unicode and 250 characters. Every name sprout
//! derives is a DNS-1123 label (lowercase `[a-z0-9-]`, no leading or trailing `-`) within the
//! limit of the backend it is for. When the input had to change or be shortened, the name ends
//! in `-` plus the first 6 hex characters of the SHA-256 of the full original input, so distinct
//! inputs give distinct names and the same input gives the same name on every run.

use sha2::{Digest, Sha256};

/// Where a name is used; each backend has its own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An environment's own name (spec file, labels, default namespace).
    Environment,
    /// A Kubernetes namespace.
    Namespace,
    /// A kind cluster: kind prefixes node containers, so it keeps names to 50 characters.
    KindCluster,
    /// A minikube profile: must start with a letter, no `_`.
    MinikubeProfile,
    /// An EKS cluster: `^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$`.
    EksCluster,
}

impl Backend {
    pub fn max_len(self) -> usize {
        match self {
            // Leaves room for "-<namespace>" when a multi-namespace source is mapped.
            Backend::Environment => 40,
            Backend::Namespace => 63,
            Backend::KindCluster => 50,
            Backend::MinikubeProfile => 63,
            Backend::EksCluster => 100,
        }
    }

    fn must_start_with_letter(self) -> bool {
        self == Backend::MinikubeProfile
    }
}

const SUFFIX_LEN: usize = 6;

/// A valid name for `backend` derived from any input string.
pub fn derive(input: &str, backend: Backend) -> String {
    let max = backend.max_len();
    let mut candidate = sanitize(input);
    if backend.must_start_with_letter() && !candidate.starts_with(|c: char| c.is_ascii_lowercase())
    {
        candidate = format!("x-{candidate}").trim_end_matches('-').to_string();
    }
    if candidate == input && !candidate.is_empty() && candidate.len() <= max {
        return candidate;
    }
    let suffix = short_hash(input);
    let room = max - SUFFIX_LEN - 1;
    let mut base: String = candidate.chars().take(room).collect();
    while base.ends_with('-') {
        base.pop();
    }
    if base.is_empty() {
        base = "x".to_string();
    }
    format!("{base}-{suffix}")
}

/// The first 6 hex characters of the SHA-256 of `input`.
pub fn short_hash(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    digest
        .iter()
        .take(SUFFIX_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Lowercase, map everything outside `[a-z0-9]` to `-`, collapse and trim dashes.
fn sanitize(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Why an explicit name is not acceptable for `backend`, if it is not.
pub fn check(name: &str, backend: Backend) -> Result<(), String> {
    let max = backend.max_len();
    if name.is_empty() {
        return Err("a name cannot be empty".into());
    }
    if name.len() > max {
        return Err(format!(
            "`{name}` is {} characters long; the limit is {max}",
            name.len()
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!(
            "`{name}` may only hold lowercase letters, digits and `-` (a DNS-1123 label)"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "`{name}` must start and end with a letter or digit"
        ));
    }
    if backend.must_start_with_letter() && !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("`{name}` must start with a letter"));
    }
    Ok(())
}

/// Why `name` is not a valid object name (a DNS-1123 subdomain, as Secrets and ConfigMaps
/// need), if it is not.
pub fn check_object_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err(format!("`{name}` must be 1 to 253 characters long"));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return Err(format!(
            "`{name}` must be lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit (a DNS-1123 subdomain)"
        ));
    }
    Ok(())
}

/// The environment for a pull request.
pub fn pull_request_environment(number: u64) -> String {
    format!("pr-{number}")
}

/// The environment for a developer (from a git user name or `$USER`).
pub fn developer_environment(developer: &str) -> String {
    derive(&format!("dev-{developer}"), Backend::Environment)
}

/// The environment for a branch.
pub fn branch_environment(branch: &str) -> String {
    derive(branch, Backend::Environment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Backend; 5] = [
        Backend::Environment,
        Backend::Namespace,
        Backend::KindCluster,
        Backend::MinikubeProfile,
        Backend::EksCluster,
    ];

    fn eks_valid(name: &str) -> bool {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && name.len() <= 100
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    #[test]
    fn clean_names_pass_through() {
        assert_eq!(derive("pr-42", Backend::Namespace), "pr-42");
        assert_eq!(derive("main", Backend::KindCluster), "main");
    }

    #[test]
    fn changed_names_get_a_hash_of_the_original() {
        let name = derive("feature/login", Backend::Environment);
        assert_eq!(
            name,
            format!("feature-login-{}", short_hash("feature/login"))
        );
        assert_ne!(
            derive("Feature/Login", Backend::Environment),
            derive("feature/login", Backend::Environment)
        );
    }

    #[test]
    fn hostile_refs_become_valid_names() {
        for input in [
            "$(rm -rf /)",
            "..",
            "a;b",
            "ünïcödé/ブランチ",
            "-x-",
            "",
            "___",
        ] {
            for backend in ALL {
                let name = derive(input, backend);
                assert_eq!(check(&name, backend), Ok(()), "{input:?} -> {name:?}");
            }
        }
    }

    #[test]
    fn minikube_profiles_start_with_a_letter() {
        let name = derive("42-fix", Backend::MinikubeProfile);
        assert!(name.starts_with("x-42-fix-"), "{name}");
    }

    proptest! {
        #[test]
        fn always_valid_for_each_backend(input in ".{0,250}") {
            for backend in ALL {
                let name = derive(&input, backend);
                prop_assert_eq!(check(&name, backend), Ok(()), "{:?} -> {:?}", input, name);
                if backend == Backend::EksCluster {
                    prop_assert!(eks_valid(&name));
                }
            }
        }

        #[test]
        fn stable_across_runs(input in ".{0,250}") {
            for backend in ALL {
                prop_assert_eq!(derive(&input, backend), derive(&input, backend));
            }
        }

        #[test]
        fn distinct_refs_give_distinct_names(
            a in "[a-zA-Z0-9/._;$() -]{1,250}",
            b in "[a-zA-Z0-9/._;$() -]{1,250}",
        ) {
            prop_assume!(a != b);
            for backend in ALL {
                prop_assert_ne!(derive(&a, backend), derive(&b, backend), "{:?} vs {:?}", a, b);
            }
        }

        #[test]
        fn case_variants_stay_distinct(input in "[a-z]{1,30}(/[a-z]{1,30})?") {
            let upper = input.to_uppercase();
            for backend in ALL {
                prop_assert_ne!(derive(&input, backend), derive(&upper, backend));
            }
        }

        #[test]
        fn long_refs_are_shortened_with_a_suffix(input in "[a-z]{251,300}") {
            for backend in ALL {
                let name = derive(&input, backend);
                prop_assert!(name.len() <= backend.max_len());
                let suffix = format!("-{}", short_hash(&input));
                prop_assert!(name.ends_with(&suffix));
            }
        }
    }
}
