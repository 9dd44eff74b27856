//! [`CallBudget`]: how many GitHub calls one reconciliation pass may make
//! per installation.

use std::collections::HashMap;

use crate::domain::InstallationId;

/// GitHub calls left in this pass, per installation. Each installation has
/// its own rate limit at GitHub (5,000 requests an hour at least), and the
/// checks of one owner with a large backlog must neither spend it nor
/// delay the pass for every other owner: past its budget, an owner's
/// checks wait for the next pass.
#[derive(Debug)]
pub(super) struct CallBudget {
    per_installation: usize,
    spent: HashMap<InstallationId, usize>,
    deferred: usize,
}

impl CallBudget {
    pub(super) fn new(per_installation: usize) -> Self {
        Self {
            per_installation,
            spent: HashMap::new(),
            deferred: 0,
        }
    }

    /// Takes one call for `installation`; false (and counted as deferred)
    /// once its budget is spent.
    pub(super) fn take(&mut self, installation: InstallationId) -> bool {
        let spent = self.spent.entry(installation).or_default();
        if *spent >= self.per_installation {
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
}
