//! The policy check of a queued job, and owners' policies set at run time.

use super::limits::Caps;
use super::{Engine, Inner};
use crate::Error;
use crate::Result;
use crate::domain::{AccountId, InstallationId, Owner, OwnerId, Repository, RunId};
use crate::events::WorkflowJobEvent;
use crate::job::JobRecord;
use crate::labels::JobLabels;
use crate::policy::{EffectivePolicy, OwnerPolicy, PlatformPolicy, PublicRepositories, Visibility};
use crate::ports::{CancelRun, CountQueued, GetRunOrigin, RunOrigin};

/// Runs whose origin is remembered; past it the memory starts again (a
/// run's jobs arrive within minutes of each other).
const ORIGINS_KEPT: usize = 10_000;

impl Inner {
    /// The rules in force for `owner_id`.
    pub(super) fn policy_of(&self, owner_id: OwnerId) -> EffectivePolicy {
        let tenant = self.config.tenants.get(owner_id);
        self.config
            .policy
            .for_owner(tenant.as_ref().and_then(|t| t.policy.as_ref()))
    }

    /// The owner's login as last seen (the repository's, for one not bound).
    fn login_of(&self, owner_id: OwnerId, repository: &Repository) -> Owner {
        self.config
            .tenants
            .get(owner_id)
            .map_or_else(|| repository.owner().clone(), |t| t.login)
    }

    /// The caps a launch of `owner_id` in `repository` is held to: the
    /// configuration's limits, narrowed by the owner's policy.
    pub(super) fn caps_of(&self, owner_id: OwnerId, repository: &Repository) -> Caps {
        let p = self.policy_of(owner_id);
        let cap = |n: u32| (n > 0).then_some(n as usize);
        let repo_cap = p
            .repository(repository)
            .and_then(|r| r.max_instances)
            .and_then(cap);
        let per_repository = match (cap(p.base.max_instances_per_repository), repo_cap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.limiter.caps(Caps {
            per_account: cap(p.base.max_instances_per_account),
            per_repository,
            per_owner: cap(p.base.max_instances),
        })
    }

    /// Whether any policy sets a cap on instances.
    pub(super) fn any_caps(&self) -> bool {
        let caps = |p: &PlatformPolicy| {
            p.max_instances > 0
                || p.max_instances_per_account > 0
                || p.max_instances_per_repository > 0
        };
        caps(&self.config.policy)
            || self.config.tenants.all().iter().any(|t| {
                t.policy.as_ref().is_some_and(|o| {
                    caps(&self.config.policy.for_owner(Some(o)).base)
                        || o.repositories.values().any(|r| r.max_instances.is_some())
                })
            })
    }

    /// Why the policy refuses the queued job `event`, if it does. Asks
    /// GitHub where the run came from only for a public repository under
    /// `no-forks`, once per run.
    pub(super) async fn policy_refuses(
        &self,
        event: &WorkflowJobEvent,
        labels: &JobLabels,
        account: &AccountId,
    ) -> Result<Option<String>> {
        let policy = self.policy_of(event.owner_id);
        let login = self.login_of(event.owner_id, &event.repository);
        let visibility = match event.repository_private {
            Some(true) => Visibility::Private,
            // Not reported counts as public: the safe side.
            _ if policy.base.public_repositories != PublicRepositories::NoForks => {
                Visibility::Public
            }
            _ => {
                let origin = self.run_origin(event).await?;
                if origin.repository_private {
                    Visibility::Private
                } else if origin.from_fork(&event.repository) {
                    Visibility::PublicFork
                } else if origin.by_pull_request_target() {
                    Visibility::PublicPullRequestTarget
                } else {
                    Visibility::Public
                }
            }
        };
        if let Some(refused) =
            policy.refuses(&login, &event.repository, &labels.spec, account, visibility)
        {
            return Ok(Some(refused));
        }
        let max_queued = u64::from(policy.base.max_queued);
        if max_queued > 0 {
            // Counted in the store, so that the limit holds across replicas
            // (two arrivals at once may both pass at the limit).
            let queued = self
                .store
                .count_queued(CountQueued::new(event.owner_id, max_queued))
                .await?;
            // A job stored already (a repeated `queued` event) was let in
            // before, and is one of those counted: refusing it now would
            // cancel the run of a job that waits its turn.
            if queued >= max_queued && self.store.get_job(event.job).await?.is_none() {
                return Ok(Some(format!(
                    "{login} has {queued} jobs queued, waiting for an instance: the most its policy allows (max_queued = {max_queued})"
                )));
            }
        }
        Ok(None)
    }

    /// Cancels the run of a queued job that can never run (its label is
    /// malformed, or names an account its owner has not connected), so
    /// that the user sees it end at once rather than after GitHub's 24
    /// hours; only for an owner that is a tenant here, through its own
    /// installation (the signed event's).
    pub(super) fn cancel_run_of_tenant(&self, event: &WorkflowJobEvent) {
        let tenant = self
            .config
            .tenants
            .get(event.owner_id)
            .is_some_and(|t| t.installation_id == event.installation_id);
        if event.action == crate::events::WorkflowJobAction::Queued && tenant {
            self.cancel_refused_run(CancelRun::new(
                event.installation_id,
                event.repository.clone(),
                event.run_id,
            ));
        }
    }

    /// Cancels the run of a job that can never run (refused by the policy,
    /// or by the tenant directory, or failed for good by a permission or
    /// configuration error), in the background (once per run; a failure is
    /// logged, and the job stays as it was recorded).
    pub(super) fn cancel_refused_run(&self, job: CancelRun) {
        let first = {
            let mut runs = self
                .cancelled_runs
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if runs.len() >= ORIGINS_KEPT {
                runs.clear();
            }
            runs.insert(job.run_id)
        };
        let Some(me) = self.me() else {
            return;
        };
        if !first {
            return;
        }
        let run = job.run_id;
        let cancel = job;
        self.tasks.spawn(async move {
            match me.registry.cancel_run(cancel).await {
                Ok(()) => tracing::info!(%run, "run cancelled: its job can never run"),
                Err(e) => {
                    tracing::warn!(%run, error = %e, "cancelling the run of a job that can never run failed");
                    me.cancelled_runs
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&run);
                }
            }
        });
    }

    /// Why the policy refuses `record`'s launch now, judged by what the
    /// job asks for (its repository's visibility was judged on arrival).
    pub(super) fn policy_refuses_record(&self, record: &JobRecord) -> Option<String> {
        let (spec, account) = (record.spec.as_ref()?, record.account.as_ref()?);
        let login = self.login_of(record.owner_id, &record.repository);
        self.policy_of(record.owner_id).refuses(
            &login,
            &record.repository,
            spec,
            account,
            Visibility::Private,
        )
    }

    async fn run_origin(&self, event: &WorkflowJobEvent) -> Result<RunOrigin> {
        if let Some(known) = self
            .run_origins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&event.run_id)
        {
            return Ok(known.clone());
        }
        let origin = self
            .registry
            .run_origin(GetRunOrigin::new(
                event.installation_id,
                event.repository.clone(),
                event.run_id,
            ))
            .await?;
        self.remember_origin(event.run_id, origin.clone());
        Ok(origin)
    }

    /// Keeps where `run` came from (a listing said it).
    pub(super) fn remember_origin(&self, run: RunId, origin: RunOrigin) {
        let mut origins = self.run_origins.lock().unwrap_or_else(|e| e.into_inner());
        if origins.len() >= ORIGINS_KEPT {
            origins.clear();
        }
        origins.insert(run, origin);
    }
}

impl Engine {
    /// The policy `owner_id` set, if any (keys it left out take the
    /// platform's).
    pub fn owner_policy(&self, owner_id: OwnerId) -> Option<OwnerPolicy> {
        self.inner
            .config
            .tenants
            .get(owner_id)
            .and_then(|t| t.policy)
    }

    /// The rules in force for `owner_id`: its policy over the platform's.
    pub fn effective_policy(&self, owner_id: OwnerId) -> EffectivePolicy {
        self.inner.policy_of(owner_id)
    }

    /// Sets the policy of the owner `owner_id` (bound to `installation_id`,
    /// whose login is `login`), or removes it with `None`. Kept in the
    /// owner's record in the store: every replica applies it within a
    /// tick. A `Config` error names what is wrong with it, and nothing
    /// changes.
    pub async fn set_owner_policy(
        &self,
        owner_id: OwnerId,
        installation_id: InstallationId,
        login: Owner,
        policy: Option<OwnerPolicy>,
    ) -> Result<()> {
        if let Some(p) = &policy {
            p.validate().map_err(Error::config)?;
        }
        let inner = &self.inner;
        let created = inner
            .create_tenant(owner_id, installation_id, &login, |r| {
                r.policy = policy.clone()
            })
            .await?;
        if created {
            inner.limiter.wake();
            return Ok(());
        }
        let written = inner
            .save_tenant(owner_id, |r| {
                if r.installation_id != installation_id || r.policy == policy {
                    return false;
                }
                r.policy = policy.clone();
                true
            })
            .await?;
        match written {
            Some(r) if r.installation_id != installation_id => Err(Error::conflict(format!(
                "installation {installation_id} is not the installation of GitHub account {owner_id}"
            ))),
            Some(_) => {
                // Waiting launches look again at the caps.
                inner.limiter.wake();
                Ok(())
            }
            None => Err(Error::not_found(format!("no owner {owner_id}"))),
        }
    }
}
