//! What never reaches an environment: dropped kinds, and inline Secret data unless the spec
//! explicitly allows it (`secrets: inline`). References (ExternalSecret, SealedSecret) stay: they hold no values.

use crate::object::Object;
use crate::spec::SecretsPolicy;

/// What was left out, for the render summary.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Excluded {
    pub dropped: usize,
    pub inline_secrets: usize,
}

pub fn exclude(objects: &mut Vec<Object>, drop: &[String], secrets: &SecretsPolicy) -> Excluded {
    let mut excluded = Excluded::default();
    objects.retain(|object| {
        if drop.iter().any(|kind| kind == object.kind()) {
            excluded.dropped += 1;
            return false;
        }
        let inline_secret = object.kind() == "Secret" && object.group().is_empty();
        if inline_secret && *secrets != SecretsPolicy::Inline {
            excluded.inline_secrets += 1;
            return false;
        }
        true
    });
    excluded
}
