//! The `branches` generator against real git repositories in temp dirs, listed like
//! `git ls-remote` through file:// URLs and paths.

use crate::util::TestRepo;
use sprout::serve::Listing;
use sprout::serve::branches::{Branch, BranchGenerator, ls_remote, ls_remotes};
use sprout::serve::config::BranchesSource;
use std::path::Path;
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn names(listing: &Listing<Branch>) -> Vec<&str> {
    match listing {
        Listing::Known(branches) => branches.iter().map(|b| b.name.as_str()).collect(),
        Listing::Unknown { reason } => panic!("unknown: {reason}"),
    }
}

fn remote() -> TestRepo {
    let mut repo = TestRepo::new();
    repo.write("README", "x\n");
    repo.commit("first");
    for branch in [
        "feature/login",
        "feature/cart",
        "feature/wip-search",
        "feature/a/b",
    ] {
        repo.branch(branch);
    }
    repo.checkout("main");
    repo.tag("v1");
    repo
}

fn generator(include: &[&str], exclude: &[&str]) -> BranchGenerator {
    BranchGenerator::new(&BranchesSource {
        repo: "unused".into(),
        include: include.iter().map(|s| s.to_string()).collect(),
        exclude: exclude.iter().map(|s| s.to_string()).collect(),
    })
    .unwrap()
}

#[test]
fn branches_of_a_remote_are_listed_and_filtered() {
    let repo = remote();
    let url = format!("file://{}", repo.path().display());
    runtime().block_on(async {
        let answer = ls_remote(&url, Path::new("/"), Duration::from_secs(10)).await;
        let branches = answer.as_ref().unwrap();
        let all: Vec<&str> = branches.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(
            all,
            [
                "feature/a/b",
                "feature/cart",
                "feature/login",
                "feature/wip-search",
                "main"
            ],
            "tags are not branches"
        );
        let head = repo.repo.head().unwrap().target().unwrap().to_string();
        assert!(branches.iter().all(|b| b.commit == head));

        let mut features = generator(&["feature/*"], &["feature/wip-*"]);
        assert_eq!(
            names(&features.listing(&answer)),
            ["feature/cart", "feature/login"]
        );
        // A path relative to the project root works as well as a URL.
        let parent = repo.path().parent().unwrap();
        let name = repo.path().file_name().unwrap().to_str().unwrap();
        let by_path = ls_remote(name, parent, Duration::from_secs(10)).await;
        assert_eq!(by_path, answer);
    });
}

#[test]
fn each_remote_is_listed_once_for_all_its_generators() {
    let first = remote();
    let second = remote();
    let urls = [first.path(), second.path()].map(|p| format!("file://{}", p.display()));
    runtime().block_on(async {
        let answers = ls_remotes(
            [urls[0].as_str(), urls[1].as_str(), urls[0].as_str()],
            Path::new("/"),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(answers.len(), 2);
        let mut login = generator(&["feature/login"], &[]);
        let mut cart = generator(&["feature/cart"], &[]);
        assert_eq!(names(&login.listing(&answers[&urls[0]])), ["feature/login"]);
        assert_eq!(names(&cart.listing(&answers[&urls[0]])), ["feature/cart"]);
        assert_eq!(names(&cart.listing(&answers[&urls[1]])), ["feature/cart"]);
    });
}

#[test]
fn a_deleted_branch_is_gone_only_from_a_listing_that_is_believed() {
    let repo = remote();
    let url = format!("file://{}", repo.path().display());
    runtime().block_on(async {
        let mut login = generator(&["feature/login"], &[]);
        let answer = ls_remote(&url, Path::new("/"), Duration::from_secs(10)).await;
        assert_eq!(names(&login.listing(&answer)), ["feature/login"]);
        repo.repo
            .find_branch("feature/login", git2::BranchType::Local)
            .unwrap()
            .delete()
            .unwrap();
        let answer = ls_remote(&url, Path::new("/"), Duration::from_secs(10)).await;
        // The only matching branch vanished: held back once, believed when a second listing
        // agrees.
        assert!(!login.listing(&answer).is_known());
        let answer = ls_remote(&url, Path::new("/"), Duration::from_secs(10)).await;
        assert!(names(&login.listing(&answer)).is_empty());
    });
}

#[test]
fn an_unreachable_or_silent_remote_is_unknown() {
    runtime().block_on(async {
        let mut any = generator(&[], &[]);
        let missing = ls_remote(
            "file:///nonexistent/sprout-test-repo",
            Path::new("/"),
            Duration::from_secs(10),
        )
        .await;
        let Listing::Unknown { reason } = any.listing(&missing) else {
            panic!("{missing:?}")
        };
        assert!(reason.contains("/nonexistent/sprout-test-repo"), "{reason}");

        // A server that accepts the connection and never speaks.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("git://{}/shop.git", listener.local_addr().unwrap());
        let started = std::time::Instant::now();
        let silent = ls_remote(&url, Path::new("/"), Duration::from_secs(1)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        let Listing::Unknown { reason } = any.listing(&silent) else {
            panic!("{silent:?}")
        };
        assert!(reason.contains("no answer within 1s"), "{reason}");
        drop(listener);
    });
}

#[test]
fn credentials_in_a_url_never_reach_a_reason() {
    runtime().block_on(async {
        let answer = ls_remote(
            "https://user:s3cret@127.0.0.1:1/shop.git",
            Path::new("/"),
            Duration::from_secs(5),
        )
        .await;
        let reason = answer.unwrap_err();
        assert!(!reason.contains("s3cret"), "{reason}");
    });
}
