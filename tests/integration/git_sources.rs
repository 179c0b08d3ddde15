//! Sources resolved from real git repositories: branches, tags, commits, other repositories by
//! path and by URL, and refs that do not exist.

use crate::util::{TestRepo, stderr_of, stdout_of};

fn config_map(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{version: \"{value}\"}}\n"
    )
}

fn spec(name: &str, source: &str) -> String {
    format!(
        "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {name}}}\nspec:\n  source: {source}\n"
    )
}

/// The rendered `version` of ConfigMap `app`.
fn rendered_version(repo: &TestRepo, env: &str) -> String {
    let output = repo
        .sprout()
        .args(["-o", "json", "render", env])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let app = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["metadata"]["name"] == "app")
        .unwrap()
        .clone();
    app["data"]["version"].as_str().unwrap().to_string()
}

/// A repository whose `deploy/app.yaml` says v1 on main (tagged v1.0), v2 on main's next commit
/// and v3 on branch `feature/x`.
fn versioned_repo() -> (TestRepo, git2::Oid) {
    let mut repo = TestRepo::new();
    repo.write("deploy/app.yaml", &config_map("app", "v1"));
    let first = repo.commit("v1");
    repo.tag("v1.0");
    repo.write("deploy/app.yaml", &config_map("app", "v2"));
    repo.commit("v2");
    repo.branch("feature/x");
    repo.write("deploy/app.yaml", &config_map("app", "v3"));
    repo.commit("v3");
    repo.checkout("main");
    (repo, first)
}

#[test]
fn renders_from_a_branch_a_tag_and_a_commit() {
    let (repo, first) = versioned_repo();
    let short = first.to_string()[..8].to_string();
    repo.write(
        "environments/on-main.yaml",
        &spec("on-main", "{ref: main, path: deploy}"),
    )
    .write(
        "environments/on-branch.yaml",
        &spec("on-branch", "{ref: feature/x, path: deploy}"),
    )
    .write(
        "environments/on-tag.yaml",
        &spec("on-tag", "{ref: v1.0, path: deploy}"),
    )
    .write(
        "environments/on-commit.yaml",
        &spec("on-commit", &format!("{{ref: \"{first}\", path: deploy}}")),
    )
    .write(
        "environments/on-short.yaml",
        &spec("on-short", &format!("{{ref: \"{short}\", path: deploy}}")),
    );
    assert_eq!(rendered_version(&repo, "on-main"), "v2");
    assert_eq!(rendered_version(&repo, "on-branch"), "v3");
    assert_eq!(rendered_version(&repo, "on-tag"), "v1");
    assert_eq!(rendered_version(&repo, "on-commit"), "v1");
    assert_eq!(rendered_version(&repo, "on-short"), "v1");
}

#[test]
fn reads_git_not_the_work_tree() {
    let (repo, _) = versioned_repo();
    repo.write(
        "environments/on-main.yaml",
        &spec("on-main", "{ref: main, path: deploy}"),
    );
    repo.write("deploy/app.yaml", &config_map("app", "uncommitted"));
    assert_eq!(rendered_version(&repo, "on-main"), "v2");
}

#[test]
fn renders_from_a_second_repository_by_path_and_by_url() {
    let (mut other, _) = versioned_repo();
    let project = TestRepo::new();
    let path = other.path().display().to_string();
    project
        .write(
            "environments/by-path.yaml",
            &spec(
                "by-path",
                &format!("{{repo: \"{path}\", ref: feature/x, path: deploy}}"),
            ),
        )
        .write(
            "environments/by-url.yaml",
            &spec(
                "by-url",
                &format!("{{repo: \"file://{path}\", ref: main, path: deploy}}"),
            ),
        );
    assert_eq!(rendered_version(&project, "by-path"), "v3");
    assert_eq!(rendered_version(&project, "by-url"), "v2");
    assert!(
        project.path().join(".sprout/cache/repos").is_dir(),
        "URL sources are cached under the state dir"
    );

    // The cache is fetched again on every render: a push is seen at once.
    other.write("deploy/app.yaml", &config_map("app", "v4"));
    other.commit("v4");
    assert_eq!(rendered_version(&project, "by-url"), "v4");
}

#[test]
fn a_ref_that_does_not_exist_is_named_and_exits_2() {
    let (repo, _) = versioned_repo();
    repo.write(
        "environments/lost.yaml",
        &spec("lost", "{ref: no-such-branch, path: deploy}"),
    );
    let output = repo.sprout().args(["render", "lost"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("environment lost: source: ref `no-such-branch` not found"),
        "{stderr}"
    );
    assert!(
        stderr.contains("feature/x"),
        "known branches are listed: {stderr}"
    );
    assert!(stdout_of(&output).is_empty());
}

#[test]
fn an_unreachable_repository_is_a_failure_that_names_it() {
    let project = TestRepo::new();
    project.write(
        "environments/far.yaml",
        &spec(
            "far",
            "{repo: \"file:///nonexistent/sprout-repo\", ref: main}",
        ),
    );
    let output = project.sprout().args(["render", "far"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("repository file:///nonexistent/sprout-repo is unreachable"),
        "{stderr}"
    );
}

#[test]
fn credentials_in_urls_never_reach_messages() {
    let project = TestRepo::new();
    project.write(
        "environments/far.yaml",
        &spec(
            "far",
            "{repo: \"https://alice:hunter2@127.0.0.1:1/x.git\", ref: main}",
        ),
    );
    let output = project.sprout().args(["render", "far"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(stderr.contains("https://127.0.0.1:1/x.git"), "{stderr}");
}

/// A plain folder is read with every folder below it (DESIGN: "every *.yaml/*.yml/*.json below
/// path", like `kubectl apply -R -f`). What that reads by surprise is said: a folder below that
/// a render tool would read (a kustomization, a chart) is warned about, and an object defined
/// in two folders side by side (providers, overlays) is refused with the reason.
#[test]
fn a_plain_folder_is_read_recursively_and_says_what_that_reads() {
    let mut repo = TestRepo::new();
    repo.write("deploy/app.yaml", &config_map("app", "v1"))
        .write("deploy/more/extra.yaml", &config_map("extra", "v1"))
        .write(
            "deploy/overlays/prod/kustomization.yaml",
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../../app.yaml]\n",
        )
        .write(
            "environments/plain.yaml",
            &spec("plain", "{ref: main, path: deploy}"),
        );
    repo.commit("nested");
    let output = repo
        .sprout()
        .args(["-o", "json", "render", "plain"])
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str())
        .collect();
    assert!(names.contains(&"extra"), "{names:?}");
    assert!(
        stderr.contains("warning: plain: deploy/overlays/prod holds a kustomization.yaml, but deploy is a plain folder, read with every folder below it"),
        "{stderr}"
    );
    assert!(!stderr.contains("deploy/more"), "{stderr}");

    repo.write(
        "deploy/providers/aws/deploy.yaml",
        &config_map("controller", "aws"),
    )
    .write(
        "deploy/providers/gcp/deploy.yaml",
        &config_map("controller", "gcp"),
    );
    repo.commit("providers");
    let output = repo.sprout().args(["render", "plain"]).output().unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ConfigMap/controller is defined twice: in deploy/providers/aws/deploy.yaml (document 1) and in deploy/providers/gcp/deploy.yaml (document 1); a plain folder is read with every folder below it"),
        "{stderr}"
    );
    assert!(stdout_of(&output).is_empty());
}
