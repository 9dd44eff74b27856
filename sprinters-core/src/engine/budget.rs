//! [`CallBudget`]: how many GitHub calls one reconciliation pass may make
//! per installation; [`in_turns`]: the order that serves installations in
//! turn.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::github_limits::Pauses;
use crate::domain::InstallationId;

/// GitHub calls left in this pass, per installation. Each installation has
/// its own rate limit at GitHub (5,000 requests an hour at least), and the
/// checks of one owner with a large backlog must neither spend it nor
/// delay the pass for every other owner: past its budget, or while GitHub
/// has it rate-limited, an owner's checks wait for a later pass.
#[derive(Debug)]
pub(super) struct CallBudget {
    per_installation: usize,
    spent: HashMap<InstallationId, usize>,
    deferred: usize,
    pauses: Option<(Arc<Pauses>, Duration)>,
}

impl CallBudget {
    pub(super) fn new(per_installation: usize) -> Self {
        Self {
            per_installation,
            spent: HashMap::new(),
            deferred: 0,
            pauses: None,
        }
    }

    /// The same budget, with no call for an installation GitHub paused
    /// until `after` past the pause's end (launches go first).
    pub(super) fn pausing(mut self, pauses: Arc<Pauses>, after: Duration) -> Self {
        self.pauses = Some((pauses, after));
        self
    }

    /// Takes one call for `installation`; false (and counted as deferred)
    /// once its budget is spent or while GitHub has it rate-limited.
    pub(super) fn take(&mut self, installation: InstallationId) -> bool {
        let paused = self
            .pauses
            .as_ref()
            .is_some_and(|(p, after)| p.remaining_after(installation, *after).is_some());
        let spent = self.spent.entry(installation).or_default();
        if paused || *spent >= self.per_installation {
            self.deferred += 1;
            return false;
        }
        *spent += 1;
        true
    }

    /// Calls refused for want of budget.
    pub(super) fn deferred(&self) -> usize {
        self.deferred
    }
}

/// `items`, in their order of priority, with installations taking turns:
/// the first of each, then the second of each, and so on, each
/// installation's own order kept.
pub(super) fn in_turns<T>(items: Vec<T>, of: impl Fn(&T) -> InstallationId) -> Vec<T> {
    let mut seen: HashMap<InstallationId, usize> = HashMap::new();
    let mut ranked: Vec<(usize, usize, T)> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let n = seen.entry(of(&item)).or_default();
            *n += 1;
            (*n, i, item)
        })
        .collect();
    ranked.sort_by_key(|(rank, i, _)| (*rank, *i));
    ranked.into_iter().map(|(_, _, item)| item).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_installation_has_its_own_budget() {
        let mut budget = CallBudget::new(2);
        let (a, b) = (InstallationId::new(1), InstallationId::new(2));
        assert!(budget.take(a) && budget.take(a));
        assert!(!budget.take(a), "a's budget is spent");
        assert!(budget.take(b), "b's is its own");
        assert_eq!(budget.deferred(), 1);
    }

    #[test]
    fn a_rate_limited_installation_takes_no_call_until_its_pause_ends() {
        use crate::time::{Clock, ManualClock};
        let clock = Arc::new(ManualClock::default());
        let pauses = Arc::new(Pauses::new(clock.clone() as Arc<dyn Clock>));
        let (a, b) = (InstallationId::new(1), InstallationId::new(2));
        pauses.note(
            a,
            &crate::Error::rate_limited(Some(Duration::from_secs(90)), "secondary rate limit"),
        );
        let after = Duration::from_secs(60);
        let mut budget = CallBudget::new(10).pausing(pauses.clone(), after);
        assert!(!budget.take(a), "a is paused");
        assert!(budget.take(b), "b is not");
        clock.advance(Duration::from_secs(90));
        assert_eq!(pauses.remaining(a), None, "launches may call again");
        let budget = || CallBudget::new(10).pausing(pauses.clone(), after);
        assert!(!budget().take(a), "the reconciler waits a minute more");
        clock.advance(Duration::from_secs(60));
        assert!(budget().take(a), "the pause ended");
    }

    #[test]
    fn installations_take_turns_in_their_own_order() {
        let (a, b, c) = (1, 2, 3);
        let items = vec![(a, 1), (a, 2), (a, 3), (b, 1), (a, 4), (c, 1), (b, 2)];
        let turns = in_turns(items, |(i, _)| InstallationId::new(*i));
        assert_eq!(
            turns,
            [(a, 1), (b, 1), (c, 1), (a, 2), (b, 2), (a, 3), (a, 4)]
        );
    }
}
