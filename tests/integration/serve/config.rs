//! Generator configuration in sprout.yaml, through the real binary: a bad generator is invalid
//! input (exit 2, sprout.yaml and its line); tokens are read only by `serve`, through the
//! library.

use crate::util::{TestRepo, stderr_of};

fn project(settings: &str) -> TestRepo {
    let mut repo = TestRepo::new();
    repo.write("sprout.yaml", settings);
    repo.write("environments/.keep", "");
    repo.commit("project");
    repo
}

#[test]
fn a_bad_generator_is_invalid_input_with_its_line() {
    let cases = [
        (
            "stateDir: .sprout\ngenerators:\n- github: {repository: acme/shop, tokenEnvv: X}\n  template: preview\n",
            "sprout.yaml:3",
            "tokenEnvv",
        ),
        (
            "generators:\n- branches: {repo: ., include: [\"feature/*\"]}\n  template: branch\n- gitlab: {project: acme/shop}\n  github: {repository: acme/shop}\n  template: preview\n",
            "sprout.yaml:4",
            "exactly one",
        ),
    ];
    for (settings, location, detail) in cases {
        let repo = project(settings);
        let output = repo.sprout().arg("list").output().unwrap();
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(location), "{location} in {stderr}");
        assert!(stderr.contains(detail), "{detail} in {stderr}");
    }
}

#[test]
fn a_good_generator_leaves_other_commands_alone_and_tokens_are_read_when_asked() {
    let repo = project(
        "generators:\n- github: {repository: acme/shop, api: \"https://github.example.com/api/v3\", tokenFile: .tokens/github}\n  template: preview\n  labels: [preview]\n- branches: {repo: ., include: [\"feature/*\"]}\n  template: branch\n",
    );
    let output = repo.sprout().arg("list").output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));

    let project = sprout::project::Project::open(repo.path()).unwrap();
    let err = project.generator_tokens().unwrap_err().to_string();
    assert!(err.starts_with("sprout.yaml:2: "), "{err}");
    assert!(err.contains(".tokens/github"), "{err}");

    repo.write(".tokens/github", "ghp_s3cret\n");
    let tokens = project.generator_tokens().unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0].as_ref().unwrap().expose(), "ghp_s3cret");
    assert!(tokens[1].is_none(), "branches need no token");
    assert!(!format!("{tokens:?}").contains("s3cret"));
}
