//! Templates shipped inside the binary; `sprout init` copies them into a project's templates/,
//! where the project's copy wins.

pub const PRODUCTION: &str = include_str!("../templates/production.yaml.tera");
pub const DEVELOPER: &str = include_str!("../templates/developer.yaml.tera");
pub const PREVIEW: &str = include_str!("../templates/preview.yaml.tera");
pub const BRANCH: &str = include_str!("../templates/branch.yaml.tera");

/// File name → text, for `init` to copy.
pub const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    (
        "developer.yaml.tera",
        include_str!("../templates/developer.yaml.tera"),
    ),
    (
        "preview.yaml.tera",
        include_str!("../templates/preview.yaml.tera"),
    ),
    (
        "branch.yaml.tera",
        include_str!("../templates/branch.yaml.tera"),
    ),
];
