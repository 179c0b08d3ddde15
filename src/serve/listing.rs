//! What a generator's listing can say: the complete truth, or "unknown".
//!
//! DESIGN.md Safety: a failed or empty answer is never "nothing is desired". Every generator
//! answers [`Listing::Known`] only for a listing it fully received and believes; anything else
//! is [`Listing::Unknown`], and the loop keeps the previous items and freezes the deletions
//! that depend on them.

/// One generator's listing.
#[derive(Debug, Clone, PartialEq)]
pub enum Listing<T> {
    /// Every item there is, as of this pass.
    Known(Vec<T>),
    /// Nothing may be concluded from this pass; `reason` is for status, logs and metrics.
    Unknown { reason: String },
}

impl<T> Listing<T> {
    pub fn unknown(reason: impl Into<String>) -> Self {
        Listing::Unknown {
            reason: reason.into(),
        }
    }

    pub fn is_known(&self) -> bool {
        matches!(self, Listing::Known(_))
    }
}

/// Holds back a listing that shrank suspiciously: empty where the last believed listing had
/// items, or less than half as long. Such an answer is what a broken API, a token that lost
/// its scope or a half-served page looks like. It is believed only when the next listing says
/// exactly the same (two answers agreeing), so a real mass close still goes through, one pass
/// later.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShrinkGuard {
    /// Length of the last believed listing (`None` before the first).
    previous: Option<usize>,
    /// The ids of a held-back listing, waiting for a second answer.
    held: Option<Vec<String>>,
}

impl ShrinkGuard {
    /// Starts from a known length (e.g. the items the loop's state remembers after a restart),
    /// so that the first listing after a restart is checked too.
    pub(crate) fn seed(&mut self, previous: usize) {
        if self.previous.is_some() {
            return;
        }
        self.previous = Some(previous);
    }

    pub(crate) fn check<T>(&mut self, items: Vec<T>, id: impl Fn(&T) -> String) -> Listing<T> {
        // An item on two pages means the list moved while it was paged through, so another
        // item may have slipped between two pages unseen.
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = items.iter().map(&id).find(|key| !seen.insert(key.clone())) {
            return Listing::unknown(format!(
                "item {twice} came twice: the list changed while it was read page by page"
            ));
        }
        let previous = self.previous.unwrap_or(0);
        let shrank = items.len() * 2 < previous || (items.is_empty() && previous > 0);
        if shrank {
            let mut ids: Vec<String> = items.iter().map(&id).collect();
            ids.sort();
            if self.held.as_ref() != Some(&ids) {
                self.held = Some(ids);
                return Listing::unknown(format!(
                    "the listing shrank from {previous} to {} item(s); held back until a second listing agrees",
                    items.len()
                ));
            }
        }
        self.held = None;
        self.previous = Some(items.len());
        Listing::Known(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(guard: &mut ShrinkGuard, items: &[u32]) -> Listing<u32> {
        guard.check(items.to_vec(), |n| n.to_string())
    }

    #[test]
    fn the_first_listing_is_believed_even_empty() {
        assert_eq!(
            check(&mut ShrinkGuard::default(), &[]),
            Listing::Known(vec![])
        );
    }

    #[test]
    fn an_empty_or_halved_listing_needs_a_second_agreeing_answer() {
        let mut guard = ShrinkGuard::default();
        assert!(check(&mut guard, &[1, 2, 3, 4]).is_known());
        assert!(!check(&mut guard, &[]).is_known());
        // A different short answer is not agreement.
        assert!(!check(&mut guard, &[1]).is_known());
        assert_eq!(check(&mut guard, &[1]), Listing::Known(vec![1]));
        // Shrinking to half or more is ordinary.
        let mut guard = ShrinkGuard::default();
        assert!(check(&mut guard, &[1, 2, 3, 4]).is_known());
        assert!(check(&mut guard, &[1, 2]).is_known());
    }

    #[test]
    fn an_item_on_two_pages_makes_the_listing_unknown() {
        let mut guard = ShrinkGuard::default();
        assert!(!check(&mut guard, &[1, 2, 2, 3]).is_known());
        assert!(check(&mut guard, &[1, 2, 3]).is_known());
    }

    #[test]
    fn a_seed_guards_the_first_listing_after_a_restart() {
        let mut guard = ShrinkGuard::default();
        guard.seed(3);
        assert!(!check(&mut guard, &[]).is_known());
        assert!(check(&mut guard, &[]).is_known());
    }
}
