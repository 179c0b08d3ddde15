//! The harness: git repositories in temp dirs (commits with fixed times, so commit ids and
//! golden files are stable) and the real `sprout` binary run against them.

use git2::{IndexAddOption, Oid, Repository, Signature, Time};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

pub struct TestRepo {
    dir: TempDir,
    pub repo: Repository,
    clock: i64,
}

impl TestRepo {
    /// An empty repository whose first branch is `main`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = git2::RepositoryInitOptions::new();
        options.initial_head("main");
        let repo = Repository::init_opts(dir.path(), &options).expect("git init");
        TestRepo {
            dir,
            repo,
            clock: 1_700_000_000,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, relative: &str, text: &str) -> &Self {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    pub fn copy_dir(&self, from: &Path, relative: &str) -> &Self {
        let to = self.path().join(relative);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(from).unwrap().flatten() {
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                self.copy_dir(
                    &entry.path(),
                    &format!("{relative}/{}", entry.file_name().to_string_lossy()),
                );
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
        self
    }

    /// Commits the whole work tree on the branch HEAD points to.
    pub fn commit(&mut self, message: &str) -> Oid {
        let mut index = self.repo.index().unwrap();
        index.add_all(["*"], IndexAddOption::DEFAULT, None).unwrap();
        index.update_all(["*"], None).unwrap();
        index.write().unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        self.clock += 60;
        let signature =
            Signature::new("Test", "test@example.com", &Time::new(self.clock, 0)).unwrap();
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repo
            .commit(
                Some("HEAD"),
                &signature,
                &signature,
                message,
                &tree,
                &parents,
            )
            .unwrap()
    }

    /// Creates `name` at the current HEAD and switches to it.
    pub fn branch(&self, name: &str) {
        let head = self.repo.head().unwrap().peel_to_commit().unwrap();
        self.repo.branch(name, &head, false).unwrap();
        self.checkout(name);
    }

    /// Switches HEAD and the work tree to branch `name`.
    pub fn checkout(&self, name: &str) {
        let refname = format!("refs/heads/{name}");
        let commit = self
            .repo
            .find_reference(&refname)
            .unwrap()
            .peel_to_commit()
            .unwrap();
        self.repo
            .checkout_tree(
                commit.as_object(),
                Some(
                    git2::build::CheckoutBuilder::new()
                        .force()
                        .remove_untracked(true),
                ),
            )
            .unwrap();
        self.repo.set_head(&refname).unwrap();
    }

    pub fn tag(&self, name: &str) {
        let head = self.repo.head().unwrap().peel_to_commit().unwrap();
        self.repo
            .tag_lightweight(name, head.as_object(), false)
            .unwrap();
    }

    /// `sprout` run in this repository.
    pub fn sprout(&self) -> assert_cmd::Command {
        sprout_in(self.path())
    }
}

pub fn sprout_in(dir: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_sprout"));
    cmd.current_dir(dir)
        .env_remove("SPROUT_LOG")
        .env_remove("KUBECONFIG");
    cmd
}

pub fn fixture(relative: &str) -> PathBuf {
    Path::new(FIXTURES).join(relative)
}

/// The Online Boutique project: a multi-namespace kustomize production (`production`) and the
/// plain release file (`production-release`) on `main`, and a `feature/login` branch that adds
/// a ConfigMap to each.
pub fn boutique_project() -> TestRepo {
    let mut repo = TestRepo::new();
    repo.copy_dir(&fixture("project"), ".")
        .copy_dir(&fixture("online-boutique"), "deploy/base");
    repo.write(
        "deploy/release/kubernetes-manifests.yaml",
        &std::fs::read_to_string(fixture("online-boutique-release.yaml")).unwrap(),
    );
    repo.commit("production");
    repo.branch("feature/login");
    let flags = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: login-flags}\ndata: {NEW_LOGIN: \"true\"}\n";
    repo.write("deploy/production/shop/login-flags.yaml", flags)
        .write("deploy/release/login-flags.yaml", flags);
    let kustomization = std::fs::read_to_string(
        repo.path()
            .join("deploy/production/shop/kustomization.yaml"),
    )
    .unwrap();
    repo.write(
        "deploy/production/shop/kustomization.yaml",
        &kustomization.replace("- secrets.yaml", "- secrets.yaml\n- login-flags.yaml"),
    );
    repo.commit("new login behind a flag");
    repo.checkout("main");
    repo
}

pub fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}
