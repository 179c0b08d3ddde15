//! Which pull/merge requests get a preview: a pure function of the item and the generator's
//! filters.

use super::ChangeRequest;
use crate::serve::config::Filters;

/// Whether `item` qualifies: not a draft (unless drafts are asked for), every required label,
/// no excluded label, not by an excluded author, aimed at the target branch when one is set.
/// Labels and authors compare case-insensitively, as both providers treat them.
pub fn wanted(item: &ChangeRequest, filters: &Filters) -> bool {
    let has = |label: &String| item.labels.iter().any(|l| l.eq_ignore_ascii_case(label));
    (filters.drafts || !item.draft)
        && filters.labels.iter().all(has)
        && !filters.exclude_labels.iter().any(has)
        && !filters
            .exclude_authors
            .iter()
            .any(|author| author.eq_ignore_ascii_case(&item.author))
        && filters
            .target_branch
            .as_ref()
            .is_none_or(|target| *target == item.target_branch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::scm::RequestState;

    fn item() -> ChangeRequest {
        ChangeRequest {
            number: 7,
            head_branch: "feature/x".into(),
            head_sha: "a".repeat(40),
            head_ref: "refs/pull/7/head".into(),
            from_fork: false,
            author: "alice".into(),
            labels: vec!["preview".into(), "backend".into()],
            draft: false,
            target_branch: "main".into(),
            state: RequestState::Open,
        }
    }

    #[test]
    fn each_filter_excludes_on_its_own() {
        let all = Filters::default();
        assert!(wanted(&item(), &all));
        let draft = ChangeRequest {
            draft: true,
            ..item()
        };
        assert!(!wanted(&draft, &all));
        assert!(wanted(
            &draft,
            &Filters {
                drafts: true,
                ..Filters::default()
            }
        ));
        let filters = |f: fn(&mut Filters)| {
            let mut filters = Filters::default();
            f(&mut filters);
            filters
        };
        assert!(wanted(
            &item(),
            &filters(|f| f.labels = vec!["Preview".into()])
        ));
        assert!(!wanted(
            &item(),
            &filters(|f| f.labels = vec!["preview".into(), "x".into()])
        ));
        assert!(!wanted(
            &item(),
            &filters(|f| f.exclude_labels = vec!["backend".into()])
        ));
        assert!(!wanted(
            &item(),
            &filters(|f| f.exclude_authors = vec!["Alice".into()])
        ));
        assert!(wanted(
            &item(),
            &filters(|f| f.target_branch = Some("main".into()))
        ));
        assert!(!wanted(
            &item(),
            &filters(|f| f.target_branch = Some("release".into()))
        ));
    }
}
