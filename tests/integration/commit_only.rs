//! Rendering is a function of the commit: symlinks that leave the commit's tree and kustomize
//! resources fetched from the network are refused, with real git repositories.

use crate::util::{TestRepo, stderr_of};
use std::os::unix::fs::symlink;

const PRODUCTION: &str = "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {name: production}\nspec:\n  protected: true\n  source: {ref: main, path: deploy}\n";
const DEV: &str = "apiVersion: sprout.dev/v1alpha1\nkind: Environment\nmetadata: {name: dev}\nspec:\n  from: production\n";

fn project() -> TestRepo {
    let repo = TestRepo::new();
    repo.write("environments/production.yaml", PRODUCTION)
        .write("environments/dev.yaml", DEV)
        .write(
            "deploy/app.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n",
        );
    repo
}

fn render(repo: &TestRepo) -> std::process::Output {
    repo.sprout().args(["render", "dev"]).output().unwrap()
}

/// A chain of relative links, each harmless on its own text: `up -> ..` is the root,
/// `above -> up/..` is the folder holding the checkout.
fn add_escaping_chain(repo: &TestRepo, folder: &str, leak: &str) {
    let dir = repo.path().join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    symlink("..", dir.join("up")).unwrap();
    symlink("up/..", dir.join("above")).unwrap();
    symlink("above/etc/hostname", dir.join(leak)).unwrap();
}

#[test]
fn a_chain_of_relative_links_out_of_the_commit_is_refused_for_manifests() {
    let mut repo = project();
    add_escaping_chain(&repo, "deploy", "leak.yaml");
    repo.commit("links");
    let output = render(&repo);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("symlink deploy/above leaves the commit"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn links_inside_the_commit_are_read_through() {
    let mut repo = project();
    repo.write(
        "shared/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\n",
    );
    symlink("../shared", repo.path().join("deploy/common")).unwrap();
    symlink("common/config.yaml", repo.path().join("deploy/linked.yaml")).unwrap();
    repo.commit("links inside");
    let output = render(&repo);
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("name: shared"), "{stdout}");
}

#[test]
fn kustomize_and_helm_sources_refuse_links_out_of_the_commit() {
    let mut repo = project();
    repo.write(
        "deploy/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [app.yaml]\n",
    );
    // Anywhere in the commit: kustomize overlays read `../base`, so the whole tree is written.
    add_escaping_chain(&repo, "elsewhere", "values.yaml");
    repo.commit("kustomize with links");
    let stderr = stderr_of(&render(&repo));
    assert!(
        stderr.contains("symlink elsewhere/above leaves the commit"),
        "{stderr}"
    );

    std::fs::remove_file(repo.path().join("deploy/kustomization.yaml")).unwrap();
    repo.write(
        "deploy/Chart.yaml",
        "apiVersion: v2\nname: app\nversion: 0.1.0\n",
    );
    repo.commit("a chart with links");
    let output = render(&repo);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("symlink elsewhere/above leaves the commit"),
        "{stderr}"
    );
}

#[test]
fn kustomize_remote_resources_are_refused_unless_allow_listed() {
    let mut repo = project();
    repo.write(
        "base/kustomization.yaml",
        "resources:\n- app.yaml\n- github.com/acme/platform//deploy?ref=v1\n",
    )
    .write(
        "base/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: base}\n",
    )
    .write(
        "deploy/kustomization.yaml",
        "namespace: shop\nresources:\n- ../base\n",
    );
    std::fs::remove_file(repo.path().join("deploy/app.yaml")).unwrap();
    repo.commit("a remote base");
    let output = render(&repo);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("base/kustomization.yaml: `github.com/acme/platform//deploy?ref=v1` is not a file or folder of the commit"),
        "{stderr}"
    );

    // Allow-listed, kustomize may fetch it: here from a loopback port nobody listens on, so
    // the render fails in kustomize, not in sprout's check.
    repo.write(
        "base/kustomization.yaml",
        "resources:\n- app.yaml\n- http://127.0.0.1:9/remote.yaml\n",
    );
    repo.commit("a remote on loopback");
    let stderr = stderr_of(&render(&repo));
    assert!(stderr.contains("remoteResources"), "{stderr}");
    // An allowed prefix before `=` does not carry a generator's `key=URL` past it.
    repo.write(
        "sprout.yaml",
        "remoteResources: [\"http://127.0.0.1:9/\"]\n",
    );
    repo.write(
        "base/kustomization.yaml",
        "resources:\n- app.yaml\nconfigMapGenerator:\n- name: g\n  files: [\"http://127.0.0.1:9/k=http://127.0.0.1:10/evil.yaml\"]\n",
    );
    repo.commit("a key before a second URL");
    let stderr = stderr_of(&render(&repo));
    assert!(
        stderr.contains("`http://127.0.0.1:10/evil.yaml` is not a file or folder"),
        "{stderr}"
    );
    repo.write(
        "base/kustomization.yaml",
        "resources:\n- app.yaml\n- http://127.0.0.1:9/remote.yaml\n",
    );
    repo.commit("a remote on loopback again");
    // A prefix allows what continues it past a `/`, never a longer name.
    repo.write(
        "sprout.yaml",
        "remoteResources: [\"http://127.0.0.1:9/rem\"]\n",
    );
    let stderr = stderr_of(&render(&repo));
    assert!(stderr.contains("remoteResources"), "{stderr}");
    repo.write(
        "sprout.yaml",
        "remoteResources: [\"http://127.0.0.1:9/\"]\n",
    );
    let stderr = stderr_of(&render(&repo));
    assert!(!stderr.contains("remoteResources"), "{stderr}");
    assert!(stderr.contains("render: kustomize"), "{stderr}");

    // Without the remote: the kustomization's namespace is the implied one and lands in dev.
    repo.write("base/kustomization.yaml", "resources:\n- app.yaml\n");
    repo.commit("no remote");
    let output = render(&repo);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(stdout.contains("namespace: dev"), "{stdout}");
    assert!(!stdout.contains("namespace: shop"), "{stdout}");
}

/// Not only resources: every field whose entries kustomize would load from a URL is checked,
/// and nothing is requested (a listener on the URL's port sees no connection).
#[test]
fn every_kustomization_field_kustomize_would_fetch_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!(
        "http://127.0.0.1:{}/remote.yaml",
        listener.local_addr().unwrap().port()
    );
    let mut repo = project();
    repo.write(
        "deploy/patch.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {a: b}\n",
    );
    let fields = [
        format!("patches:\n- path: {url}\n"),
        format!("patchesStrategicMerge:\n- patch.yaml\n- {url}\n"),
        format!("patchesJson6902:\n- target: {{kind: ConfigMap, name: app}}\n  path: {url}\n"),
        format!("replacements:\n- path: {url}\n"),
        format!("configurations:\n- {url}\n"),
        format!("crds:\n- {url}\n"),
        format!("openapi:\n  path: {url}\n"),
        format!("configMapGenerator:\n- name: settings\n  files:\n  - settings.yaml={url}\n"),
        format!("secretGenerator:\n- name: keys\n  envs:\n  - {url}\n"),
        // Field names are matched without case, as kustomize's decoder matches them.
        format!("Patches:\n- path: {url}\n"),
        format!("reſources:\n- {url}\n"),
        // What a merge key brings, whichever way a reader orders it with the written keys.
        format!("<<: {{resources: [{url}]}}\n"),
        // A builtin plugin's configuration, inline or in a file of its own.
        format!(
            "transformers:\n- |-\n  apiVersion: builtin\n  kind: PatchTransformer\n  metadata: {{name: p}}\n  path: {url}\n"
        ),
        "transformers:\n- transformer.yaml\n".to_string(),
        // A URL or git remote is tried before the disk, even where a path of its name exists.
        format!("bases:\n- {url}\n"),
        "bases:\n- github.com/acme/platform\n".to_string(),
        // A merge key inside a list item; a generator's `key=URL` in a plugin's configuration;
        // a plugin's configuration two folders down; a target with a line break (kustomize
        // still clones what precedes `//`).
        format!("patches:\n- <<: {{path: \"{url}\"}}\n"),
        "generators:\n- generator.yaml\n".to_string(),
        "transformers:\n- plugins\n".to_string(),
        format!("bases:\n- \"{url}.git//a\\nb\"\n"),
    ];
    repo.write(
        "deploy/generator.yaml",
        &format!(
            "apiVersion: builtin\nkind: ConfigMapGenerator\nmetadata: {{name: g}}\nfiles: [\"k={url}\"]\n"
        ),
    );
    repo.write("deploy/plugins/kustomization.yaml", "resources: [more]\n");
    repo.write(
        "deploy/plugins/more/kustomization.yaml",
        "resources: [transformer.yaml]\n",
    );
    repo.write(
        "deploy/plugins/more/transformer.yaml",
        &format!(
            "apiVersion: builtin\nkind: PatchTransformer\nmetadata: {{name: p}}\npath: {url}\n"
        ),
    );
    repo.write(
        "deploy/transformer.yaml",
        &format!(
            "apiVersion: builtin\nkind: PatchTransformer\nmetadata: {{name: p}}\npath: {url}\n"
        ),
    );
    let lookalike = url.replace("//", "/");
    repo.write(
        &format!("deploy/{lookalike}"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lookalike}\n",
    );
    repo.write(
        "deploy/github.com/acme/platform/kustomization.yaml",
        "resources: []\n",
    );
    for field in fields {
        repo.write(
            "deploy/kustomization.yaml",
            &format!("resources:\n- app.yaml\n{field}"),
        );
        repo.commit("a remote file");
        let output = render(&repo);
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{field}: {stderr}");
        let named = if field.contains("github.com") {
            "github.com/acme/platform".to_string()
        } else {
            url.clone()
        };
        assert!(
            stderr.contains(&format!("kustomization.yaml: `{named}"))
                && stderr.contains("is not a file or folder of the commit"),
            "{field}: {stderr}"
        );
    }
    assert!(
        listener.accept().is_err(),
        "something was requested from the listener"
    );
    // A URL inside an inline patch or a literal is content, not a path: it renders.
    repo.write(
        "deploy/kustomization.yaml",
        &format!(
            "resources:\n- app.yaml\ncommonAnnotations: {{docs: \"{url}\"}}\nconfigMapGenerator:\n- name: settings\n  literals: [\"upstream={url}\"]\npatches:\n- patch: |-\n    apiVersion: v1\n    kind: ConfigMap\n    metadata: {{name: app, annotations: {{link: \"{url}\"}}}}\n"
        ),
    );
    repo.commit("URLs as content");
    let output = render(&repo);
    assert!(output.status.success(), "{}", stderr_of(&output));

    // A URL a plugin holds as content (an annotation's value), and a folder whose name holds
    // `_git/`, are no remote targets either.
    repo.write(
        "deploy/annotations.yaml",
        &format!(
            "apiVersion: builtin\nkind: AnnotationsTransformer\nmetadata: {{name: a}}\nannotations: {{docs: \"{url}\"}}\nfieldSpecs: [{{path: metadata/annotations, create: true}}]\n"
        ),
    );
    repo.write(
        "infra_git/base/kustomization.yaml",
        "resources: [cm.yaml]\n",
    );
    repo.write(
        "infra_git/base/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: infra}\n",
    );
    repo.write(
        "deploy/kustomization.yaml",
        "resources:\n- app.yaml\n- ../infra_git/base\ntransformers:\n- annotations.yaml\n",
    );
    repo.commit("content, not targets");
    let output = render(&repo);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(
        listener.accept().is_err(),
        "something was requested from the listener"
    );
}

#[test]
fn render_warns_about_namespaces_the_source_does_not_contain() {
    let mut repo = project();
    repo.write(
        "deploy/binding.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: scrape}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\nsubjects:\n- {kind: ServiceAccount, name: prometheus, namespace: monitoring}\n- {kind: ServiceAccount, name: app, namespace: default}\n",
    );
    repo.commit("a binding");
    let output = repo
        .sprout()
        .args(["-q", "render", "dev"])
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: dev: ClusterRoleBinding/scrape refers to namespace `monitoring`"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The implied namespace (`default`, where the ConfigMap without one lives) follows.
    assert!(!stdout.contains("namespace: default"), "{stdout}");
    assert!(stdout.contains("namespace: monitoring"), "{stdout}");
}
