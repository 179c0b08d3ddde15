//! The GitHub and GitLab clients against the fake SCM server: listings that never lose an item
//! to a bad answer, ETags, pagination, rate limits, direct reads, and feedback that edits the
//! one comment it made.

use super::fake_scm::{FakeRequest, FakeScm, Misbehaviour};
use sprout::serve::Listing;
use sprout::serve::config::{Generator, Secret};
use sprout::serve::metrics::Metrics;
use sprout::serve::scm::{ChangeRequest, Closure, DeploymentState, Feedback, HttpOptions, Scm};
use std::time::Duration;

fn options() -> HttpOptions {
    HttpOptions {
        timeout: Duration::from_secs(2),
        write_interval: Duration::from_millis(5),
    }
}

fn client(fake: &FakeScm, provider: &str, extra: &str, metrics: &Metrics) -> Scm {
    let source = match provider {
        "github" => format!(
            "github: {{repository: acme/shop, api: \"{}\"}}",
            fake.github_api()
        ),
        _ => format!(
            "gitlab: {{project: acme/shop, api: \"{}\"}}",
            fake.gitlab_api()
        ),
    };
    let generator: Generator =
        serde_yaml::from_str(&format!("{source}\ntemplate: preview\n{extra}")).unwrap();
    Scm::for_generator(
        &generator,
        Some(Secret::new("test-token")),
        options(),
        Some(metrics.clone()),
    )
    .unwrap()
    .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn numbers(listing: &Listing<ChangeRequest>) -> Vec<u64> {
    match listing {
        Listing::Known(items) => items.iter().map(|i| i.number).collect(),
        Listing::Unknown { reason } => panic!("unknown: {reason}"),
    }
}

fn unknown_reason(listing: &Listing<ChangeRequest>) -> &str {
    match listing {
        Listing::Unknown { reason } => reason,
        Listing::Known(items) => panic!("expected unknown, got {} item(s)", items.len()),
    }
}

/// Five open items over three pages of two.
fn seed(fake: &FakeScm) {
    let mut data = fake.data();
    data.page_size = 2;
    for n in 1..=5 {
        data.github
            .push(FakeRequest::new(n, &format!("feature/{n}")));
        data.gitlab
            .push(FakeRequest::new(n, &format!("feature/{n}")));
    }
}

#[test]
fn every_misbehaviour_is_unknown_and_loses_no_item() {
    runtime().block_on(async {
        let cases = [
            (Misbehaviour::ServerError, "500"),
            (Misbehaviour::Html, "HTML"),
            (Misbehaviour::EmptyList, "shrank from 5 to 0"),
            (Misbehaviour::TruncatedJson, "truncated JSON"),
            (Misbehaviour::SecondPageFails, "page 2"),
            (Misbehaviour::SecondPageHangs, "no answer within"),
            (Misbehaviour::SecondPageCutShort, "promised 3 pages"),
            (Misbehaviour::OpenedWhilePaging, "came twice"),
            (Misbehaviour::ForeignNextLink, "off the API's origin"),
        ];
        for provider in ["github", "gitlab"] {
            let fake = FakeScm::start().await;
            seed(&fake);
            let metrics = Metrics::new();
            let scm = client(&fake, provider, "", &metrics);
            assert_eq!(numbers(&scm.list().await), [1, 2, 3, 4, 5], "{provider}");
            for (misbehaviour, expected) in cases {
                fake.misbehave(misbehaviour);
                let listing = scm.list().await;
                let reason = unknown_reason(&listing);
                assert!(
                    reason.contains(expected),
                    "{provider} {misbehaviour:?}: {reason}"
                );
                fake.behave();
                assert_eq!(
                    numbers(&scm.list().await),
                    [1, 2, 3, 4, 5],
                    "{provider} after {misbehaviour:?}"
                );
            }
            let text = metrics.encode();
            assert!(
                text.contains(&format!(
                    "sprout_scm_requests_total{{provider=\"{provider}\",status=\"500\"}}"
                )),
                "{text}"
            );
            assert!(text.contains(&format!(
                "sprout_scm_requests_total{{provider=\"{provider}\",status=\"timeout\"}} 1"
            )));
        }
    });
}

#[test]
fn a_real_mass_close_is_believed_when_a_second_listing_agrees() {
    runtime().block_on(async {
        let fake = FakeScm::start().await;
        seed(&fake);
        let scm = client(&fake, "github", "", &Metrics::new());
        assert_eq!(numbers(&scm.list().await).len(), 5);
        for pull in fake.data().github.iter_mut() {
            if pull.number != 3 {
                pull.state = "closed".into();
            }
        }
        assert!(unknown_reason(&scm.list().await).contains("shrank from 5 to 1"));
        assert_eq!(numbers(&scm.list().await), [3]);
    });
}

#[test]
fn unchanged_pages_come_back_as_304s_that_cost_no_rate_limit() {
    runtime().block_on(async {
        for provider in ["github", "gitlab"] {
            let fake = FakeScm::start().await;
            seed(&fake);
            let scm = client(&fake, provider, "", &Metrics::new());
            let first = scm.list().await;
            let remaining = scm.rate_limit_remaining().unwrap();
            assert_eq!(remaining, fake.data().rate_remaining);
            let before = fake.request_count();
            assert_eq!(scm.list().await, first, "{provider}");
            let requests = fake.data().requests[before..].to_vec();
            assert_eq!(requests.len(), 3, "{provider}: {requests:?}");
            assert!(requests.iter().all(|r| r.status == 304), "{requests:?}");
            assert_eq!(scm.rate_limit_remaining(), Some(remaining));
            // A push changes page 1: that page is fetched again and the new commit seen.
            fake.data().github[0].sha = "b".repeat(40);
            fake.data().gitlab[0].sha = "b".repeat(40);
            let Listing::Known(items) = scm.list().await else {
                panic!()
            };
            assert_eq!(items[0].head_sha, "b".repeat(40));
            assert_eq!(scm.rate_limit_remaining(), Some(remaining - 1));
        }
    });
}

#[test]
fn items_carry_what_the_loop_needs_and_filters_apply() {
    runtime().block_on(async {
        let fake = FakeScm::start().await;
        {
            let mut data = fake.data();
            let mut fork = FakeRequest::new(7, "patch-1");
            fork.from_fork = true;
            fork.labels = vec!["preview".into()];
            fork.author = "bob".into();
            let mut draft = FakeRequest::new(8, "wip");
            draft.draft = true;
            draft.labels = vec!["preview".into()];
            let mut bot = FakeRequest::new(9, "deps");
            bot.author = "dependabot[bot]".into();
            bot.labels = vec!["preview".into()];
            let mut other_target = FakeRequest::new(10, "hotfix");
            other_target.target = "release".into();
            other_target.labels = vec!["preview".into()];
            let unlabelled = FakeRequest::new(11, "x");
            for item in [fork, draft, bot, other_target, unlabelled] {
                data.github.push(item.clone());
                data.gitlab.push(item);
            }
        }
        let filters =
            "labels: [preview]\nexcludeAuthors: [\"dependabot[bot]\"]\ntargetBranch: main\n";
        for provider in ["github", "gitlab"] {
            let scm = client(&fake, provider, filters, &Metrics::new());
            let Listing::Known(items) = scm.list().await else {
                panic!()
            };
            assert_eq!(items.len(), 1, "{provider}: {items:?}");
            let item = &items[0];
            assert_eq!(item.number, 7);
            assert_eq!(item.head_branch, "patch-1");
            assert_eq!(item.head_sha, format!("{:0>40}", 7));
            assert!(item.from_fork);
            assert_eq!(item.author, "bob");
            assert_eq!(item.target_branch, "main");
            let expected_ref = if provider == "github" {
                "refs/pull/7/head"
            } else {
                "refs/merge-requests/7/head"
            };
            assert_eq!(item.head_ref, expected_ref);
            let drafts = client(
                &fake,
                provider,
                "drafts: true\nlabels: [preview]\nexcludeAuthors: [\"dependabot[bot]\"]\n",
                &Metrics::new(),
            );
            assert_eq!(numbers(&drafts.list().await), [7, 8, 10]);
        }
    });
}

#[test]
fn the_token_goes_in_the_providers_header_and_nowhere_else() {
    runtime().block_on(async {
        let fake = FakeScm::start().await;
        seed(&fake);
        for (provider, expected) in [("github", "Bearer test-token"), ("gitlab", "test-token")] {
            let scm = client(&fake, provider, "", &Metrics::new());
            assert!(scm.list().await.is_known());
            fake.misbehave(Misbehaviour::ServerError);
            let listing = scm.list().await;
            assert!(!unknown_reason(&listing).contains("test-token"));
            assert!(!format!("{scm:?}").contains("test-token"));
            fake.behave();
            let requests = fake.data().requests.clone();
            assert!(
                requests
                    .iter()
                    .filter(|r| r.target.starts_with("/api/v4") == (provider == "gitlab"))
                    .all(|r| r.credential.as_deref() == Some(expected)),
                "{provider}: {requests:?}"
            );
        }
    });
}

#[test]
fn a_429_backs_off_for_retry_after_without_asking_again() {
    runtime().block_on(async {
        for provider in ["github", "gitlab"] {
            let fake = FakeScm::start().await;
            seed(&fake);
            let metrics = Metrics::new();
            let scm = client(&fake, provider, "", &metrics);
            assert!(scm.list().await.is_known());
            fake.misbehave(Misbehaviour::RateLimited(2));
            assert!(unknown_reason(&scm.list().await).contains("retry-after"));
            fake.behave();
            let before = fake.request_count();
            let reason = unknown_reason(&scm.list().await).to_string();
            assert!(reason.contains("rate limited"), "{reason}");
            assert!(matches!(scm.confirm(1).await, Closure::Unknown { .. }));
            assert_eq!(
                fake.request_count(),
                before,
                "nothing sent while backing off"
            );
            assert!(metrics.encode().contains("status=\"blocked\""));
            tokio::time::sleep(Duration::from_millis(2100)).await;
            assert_eq!(numbers(&scm.list().await), [1, 2, 3, 4, 5]);
        }
    });
}

#[test]
fn an_exhausted_window_waits_for_its_reset() {
    runtime().block_on(async {
        let fake = FakeScm::start().await;
        seed(&fake);
        fake.data().rate_remaining = 2;
        let scm = client(&fake, "github", "", &Metrics::new());
        // Three pages: the second answer says 0 remaining, so the third is not asked for.
        let reason = unknown_reason(&scm.list().await).to_string();
        assert!(reason.contains("window exhausted"), "{reason}");
        assert_eq!(fake.request_count(), 2);
        assert_eq!(scm.rate_limit_remaining(), Some(0));
    });
}

#[test]
fn a_direct_read_confirms_closed_or_merged_and_nothing_else() {
    runtime().block_on(async {
        let fake = FakeScm::start().await;
        {
            let mut data = fake.data();
            let mut closed = FakeRequest::new(2, "b");
            closed.state = "closed".into();
            let mut merged = FakeRequest::new(3, "c");
            merged.state = "merged".into();
            for item in [FakeRequest::new(1, "a"), closed, merged] {
                data.github.push(item.clone());
                data.gitlab.push(item);
            }
        }
        for provider in ["github", "gitlab"] {
            let scm = client(&fake, provider, "", &Metrics::new());
            assert_eq!(scm.confirm(1).await, Closure::Open);
            assert_eq!(scm.confirm(2).await, Closure::Closed);
            assert_eq!(scm.confirm(3).await, Closure::Merged);
            assert!(scm.confirm(3).await.is_gone());
            // Not found (a token that lost access looks the same) is not "closed".
            assert!(matches!(scm.confirm(99).await, Closure::Unknown { .. }));
            fake.misbehave(Misbehaviour::ServerError);
            assert!(matches!(scm.confirm(2).await, Closure::Unknown { .. }));
            fake.behave();
        }
        let scm = client(&fake, "github", "", &Metrics::new());
        fake.misbehave(Misbehaviour::Html);
        let Closure::Unknown { reason } = scm.confirm(2).await else {
            panic!()
        };
        assert!(reason.contains("HTML"), "{reason}");
    });
}

fn feedback(environment: &str, commit: &str, phase: &str) -> Feedback {
    Feedback {
        environment: environment.into(),
        url: Some(format!("https://shop.{environment}.preview.example.com")),
        commit: commit.into(),
        phase: phase.into(),
        health: "healthy".into(),
        expiry: Some("2026-11-26 08:00 UTC".into()),
        state: DeploymentState::Success,
    }
}

#[test]
fn github_feedback_edits_one_comment_and_deploys_per_commit() {
    runtime().block_on(async {
        let fake = FakeScm::start().await;
        fake.data().github.push(FakeRequest::new(7, "feature/x"));
        // Someone else's comment is left alone.
        fake.data().comments.push(super::fake_scm::Comment {
            id: 1,
            issue: 7,
            body: "LGTM".into(),
        });
        let scm = client(&fake, "github", "", &Metrics::new());
        let first = "a".repeat(40);
        scm.publish_feedback(7, &feedback("pr-7", &first, "syncing"))
            .await
            .unwrap();
        scm.publish_feedback(7, &feedback("pr-7", &first, "ready"))
            .await
            .unwrap();
        let writes = fake.writes().len();
        // Nothing changed: nothing written.
        scm.publish_feedback(7, &feedback("pr-7", &first, "ready"))
            .await
            .unwrap();
        assert_eq!(fake.writes().len(), writes);
        {
            let data = fake.data();
            let ours: Vec<_> = data.comments.iter().filter(|c| c.id != 1).collect();
            assert_eq!(ours.len(), 1, "{:?}", data.comments);
            assert!(ours[0].body.starts_with("<!-- sprout:preview pr-7 -->"));
            assert!(ours[0].body.contains("ready"));
            assert_eq!(data.comments[0].body, "LGTM");
            assert_eq!(data.deployments.len(), 1);
            let deployment = &data.deployments[0];
            assert_eq!(deployment.payload["environment"], "preview/pr-7");
            assert_eq!(deployment.payload["ref"], first.as_str());
            assert_eq!(deployment.payload["transient_environment"], true);
            assert_eq!(deployment.payload["auto_merge"], false);
            assert_eq!(
                deployment.payload["required_contexts"],
                serde_json::json!([])
            );
            assert_eq!(
                deployment.statuses,
                [(
                    "success".to_string(),
                    Some("https://shop.pr-7.preview.example.com".to_string())
                )]
            );
        }

        // A restarted sprout (new client, empty memory) finds its comment by the marker.
        let restarted = client(&fake, "github", "", &Metrics::new());
        let second = "b".repeat(40);
        restarted
            .publish_feedback(7, &feedback("pr-7", &second, "ready"))
            .await
            .unwrap();
        {
            let data = fake.data();
            assert_eq!(data.comments.len(), 2, "one comment of ours, edited");
            assert!(data.comments[1].body.contains("`bbbbbbbbbbbb`"));
            assert_eq!(data.deployments.len(), 2, "one deployment per commit");
        }
        assert!(
            fake.writes()
                .iter()
                .any(|w| w.method == "PATCH" && w.target.contains("/issues/comments/"))
        );

        // Someone deleted it: the edit finds it gone, and a new one is posted.
        fake.data().comments.retain(|c| c.id == 1);
        restarted
            .publish_feedback(7, &feedback("pr-7", &second, "degraded"))
            .await
            .unwrap();
        {
            let data = fake.data();
            assert_eq!(data.comments.len(), 2, "{:?}", data.comments);
            assert!(data.comments[1].body.contains("degraded"));
        }

        restarted
            .retire_feedback(7, "pr-7", "the pull request was closed")
            .await
            .unwrap();
        let data = fake.data();
        for deployment in &data.deployments {
            assert_eq!(
                deployment.statuses.last().unwrap().0,
                "inactive",
                "{deployment:?}"
            );
        }
        assert_eq!(data.comments.len(), 2);
        assert!(
            data.comments[1]
                .body
                .contains("Torn down: the pull request was closed")
        );
    });
}

#[test]
fn gitlab_feedback_edits_one_note_and_stops_the_environment() {
    runtime().block_on(async {
        let fake = FakeScm::start().await;
        fake.data().gitlab.push(FakeRequest::new(3, "feature/y"));
        let scm = client(&fake, "gitlab", "", &Metrics::new());
        let commit = "c".repeat(40);
        scm.publish_feedback(3, &feedback("mr-3", &commit, "syncing"))
            .await
            .unwrap();
        let restarted = client(&fake, "gitlab", "", &Metrics::new());
        let mut moved = feedback("mr-3", &commit, "ready");
        moved.url = Some("https://shop.mr-3.preview.example.org".into());
        restarted.publish_feedback(3, &moved).await.unwrap();
        {
            let data = fake.data();
            assert_eq!(data.notes.len(), 1);
            assert!(data.notes[0].body.contains("ready"));
            assert_eq!(data.environments.len(), 1);
            assert_eq!(data.environments[0].name, "preview/mr-3");
            assert_eq!(
                data.environments[0].external_url.as_deref(),
                Some("https://shop.mr-3.preview.example.org")
            );
        }
        assert!(
            fake.writes()
                .iter()
                .any(|w| w.method == "PUT" && w.target.contains("/notes/"))
        );

        // Someone deleted the note: the edit finds it gone, and a new one is posted.
        fake.data().notes.clear();
        restarted
            .publish_feedback(3, &feedback("mr-3", &commit, "degraded"))
            .await
            .unwrap();
        {
            let data = fake.data();
            assert_eq!(data.notes.len(), 1, "{:?}", data.notes);
            assert!(data.notes[0].body.contains("degraded"));
        }

        restarted
            .retire_feedback(3, "mr-3", "the merge request was merged")
            .await
            .unwrap();
        let data = fake.data();
        assert_eq!(data.environments[0].state, "stopped");
        assert_eq!(data.notes.len(), 1);
        assert!(data.notes[0].body.contains("merged"));
    });
}

#[test]
fn writes_are_spaced_out() {
    runtime().block_on(async {
        let fake = FakeScm::start().await;
        fake.data().github.push(FakeRequest::new(1, "a"));
        let generator: Generator = serde_yaml::from_str(&format!(
            "github: {{repository: acme/shop, api: \"{}\"}}\ntemplate: preview\n",
            fake.github_api()
        ))
        .unwrap();
        let interval = Duration::from_millis(150);
        let scm = Scm::for_generator(
            &generator,
            None,
            HttpOptions {
                timeout: Duration::from_secs(2),
                write_interval: interval,
            },
            None,
        )
        .unwrap()
        .unwrap();
        let started = std::time::Instant::now();
        // Comment + deployment + status: three writes, two gaps.
        scm.publish_feedback(1, &feedback("pr-1", &"d".repeat(40), "ready"))
            .await
            .unwrap();
        assert_eq!(fake.writes().len(), 3);
        assert!(started.elapsed() >= interval * 2, "{:?}", started.elapsed());
    });
}

#[test]
fn a_token_is_never_sent_in_clear_text_off_this_machine() {
    let generator: Generator = serde_yaml::from_str(
        "github: {repository: acme/shop, api: \"http://github.example.com\"}\ntemplate: p\n",
    )
    .unwrap();
    let err = Scm::for_generator(&generator, None, options(), None).unwrap_err();
    assert!(err.to_string().contains("https"), "{err}");
}
