//! A simulated EC2: instances, client tokens, spot capacity and reclaims.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{Faults, lock};
use crate::domain::{AccountId, AvailabilityZone, InstanceId, InstanceType, Region};
use crate::ports::{
    CloudLauncher, DescribeInstance, InstanceInfo, InstanceState, LaunchRequest, Launched,
    ListOwned, Market, OwnedInstances, StateReason, TerminateRequest, Terminated,
};
use crate::time::Clock;
use crate::{Error, Result};

/// One simulated instance and what it was launched with.
#[derive(Debug, Clone)]
pub struct SimInstance {
    /// What `describe` returns.
    pub info: InstanceInfo,
    /// Its account.
    pub account: AccountId,
    /// Its region.
    pub region: Region,
    /// Its zone.
    pub availability_zone: AvailabilityZone,
    /// Its type.
    pub instance_type: InstanceType,
    /// The controller tag.
    pub controller_id: String,
    /// The client token it was launched with.
    pub idempotency_token: String,
}

/// EC2 in memory. Honours client tokens as EC2 does (a repeated token with
/// the same parameters returns the same instance; with others, such as a
/// new JIT config, it is refused as a `Conflict`), can run out of spot capacity, and can reclaim spot instances.
#[derive(Debug)]
pub struct MemoryLauncher {
    clock: Arc<dyn Clock>,
    state: Mutex<Ec2State>,
    launches: AtomicU64,
    faults: Faults,
}

#[derive(Debug, Default)]
struct Ec2State {
    next_id: u64,
    instances: HashMap<InstanceId, SimInstance>,
    /// Client token → its instance and what the token binds.
    tokens: HashMap<(AccountId, String), (InstanceId, Bound)>,
    no_spot_capacity: bool,
    /// Listings still to answer as if nothing were launched yet.
    lagging_listings: usize,
    last_request: Option<LaunchRequest>,
}

impl MemoryLauncher {
    /// An empty EC2 whose launch times come from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            state: Mutex::new(Ec2State::default()),
            launches: AtomicU64::new(0),
            faults: Faults::default(),
        }
    }

    /// Queued failures (`launch`, `terminate`, `list_owned`, `describe`).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Whether spot launches fail with `CapacityUnavailable`.
    pub fn set_spot_capacity(&self, available: bool) {
        lock(&self.state).no_spot_capacity = !available;
    }

    /// The next `n` listings miss every instance, as EC2's may miss one
    /// just started: its API is eventually consistent ("Eventual
    /// consistency in the Amazon EC2 API", EC2 API reference).
    pub fn lag_next_listings(&self, n: usize) {
        lock(&self.state).lagging_listings = n;
    }

    /// EC2 reclaims a spot instance.
    pub fn reclaim(&self, id: &InstanceId) {
        if let Some(i) = lock(&self.state).instances.get_mut(id) {
            i.info.state = InstanceState::Terminated;
            i.info.state_reason = Some(StateReason::SpotReclaimed);
        }
    }

    /// Every instance ever launched, by id.
    pub fn instances(&self) -> Vec<SimInstance> {
        let mut all: Vec<SimInstance> = lock(&self.state).instances.values().cloned().collect();
        all.sort_by(|a, b| a.info.instance_id.cmp(&b.info.instance_id));
        all
    }

    /// An instance changes state on its own: it boots (`Running`), or
    /// shuts itself down when its runner exits (`Terminated` with
    /// `InstanceInitiatedShutdown`).
    pub fn set_state(&self, id: &InstanceId, state: InstanceState, reason: Option<StateReason>) {
        if let Some(i) = lock(&self.state).instances.get_mut(id) {
            i.info.state = state;
            i.info.state_reason = reason;
        }
    }

    /// How many instances were ever launched (or inserted).
    pub fn instance_count(&self) -> usize {
        lock(&self.state).instances.len()
    }

    /// The instances not terminated.
    pub fn alive(&self) -> Vec<SimInstance> {
        lock(&self.state)
            .instances
            .values()
            .filter(|i| i.info.state.is_alive())
            .cloned()
            .collect()
    }

    /// One instance.
    pub fn instance(&self, id: &InstanceId) -> Option<SimInstance> {
        lock(&self.state).instances.get(id).cloned()
    }

    /// How many `launch` calls succeeded (repeated tokens included).
    pub fn launch_calls(&self) -> u64 {
        self.launches.load(Ordering::Relaxed)
    }

    /// The `Debug` rendering of the last launch request, to check that
    /// nothing secret shows in it.
    pub fn last_request_debug(&self) -> Option<String> {
        lock(&self.state)
            .last_request
            .as_ref()
            .map(|r| format!("{r:?}"))
    }

    /// An instance started outside the engine (to test orphan clean-up).
    pub fn insert(&self, instance: SimInstance) {
        lock(&self.state)
            .instances
            .insert(instance.info.instance_id.clone(), instance);
    }
}

/// The parameters of a launch that its client token binds. The JIT config
/// is kept as a digest: this is compared, never read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bound {
    spec: String,
    market: Market,
    runner_name: String,
    jit_config: u64,
}

impl Bound {
    fn of(request: &LaunchRequest) -> Self {
        use std::hash::{Hash as _, Hasher as _};
        let mut jit = std::collections::hash_map::DefaultHasher::new();
        secrecy::ExposeSecret::expose_secret(&request.jit_config).hash(&mut jit);
        Self {
            spec: format!("{:?}", request.spec),
            market: request.market,
            runner_name: request.runner_name.to_string(),
            jit_config: jit.finish(),
        }
    }
}

#[async_trait]
impl CloudLauncher for MemoryLauncher {
    async fn launch(&self, request: LaunchRequest) -> Result<Launched> {
        self.faults.check("launch")?;
        let mut s = lock(&self.state);
        s.last_request = Some(request.clone());
        let token = (request.account.clone(), request.idempotency_token.clone());
        let bound = Bound::of(&request);
        let existing = match s.tokens.get(&token) {
            // EC2 ("Ensuring idempotency in Amazon EC2 API requests"): the
            // same token with other parameters is IdempotentParameterMismatch.
            Some((_, first)) if *first != bound => {
                return Err(Error::conflict(format!(
                    "IdempotentParameterMismatch: client token {} was used with other parameters",
                    request.idempotency_token
                )));
            }
            Some((id, _)) => s.instances.get(id),
            None => None,
        };
        let instance = match existing {
            Some(i) => i.clone(),
            None => {
                if request.market == Market::Spot && s.no_spot_capacity {
                    return Err(Error::capacity_unavailable(format!(
                        "no spot capacity for {} in {}",
                        request.spec.instance_type, request.spec.region
                    )));
                }
                s.next_id += 1;
                let id = InstanceId::parse(&format!("i-{:017x}", s.next_id))?;
                let az = match &request.spec.availability_zone {
                    Some(az) => az.clone(),
                    None => AvailabilityZone::parse(&format!("{}a", request.spec.region))?,
                };
                let mut info = InstanceInfo::new(id.clone(), InstanceState::Pending);
                info.job = Some(request.job);
                info.runner_name = Some(request.runner_name.clone());
                info.launched_at = Some(self.clock.now());
                info.spot = request.market == Market::Spot;
                let instance = SimInstance {
                    info,
                    account: request.account.clone(),
                    region: request.spec.region.clone(),
                    availability_zone: az,
                    instance_type: request.spec.instance_type.clone(),
                    controller_id: request.controller_id.clone(),
                    idempotency_token: request.idempotency_token.clone(),
                };
                s.instances.insert(id.clone(), instance.clone());
                s.tokens.insert(token, (id, bound));
                instance
            }
        };
        self.launches.fetch_add(1, Ordering::Relaxed);
        Ok(Launched::new(
            instance.info.instance_id.clone(),
            instance.instance_type.clone(),
            instance.region.clone(),
            Some(instance.availability_zone.clone()),
            instance.info.spot,
            instance
                .info
                .launched_at
                .unwrap_or_else(|| self.clock.now()),
        ))
    }

    async fn terminate(&self, request: TerminateRequest) -> Result<Terminated> {
        self.faults.check("terminate")?;
        let mut s = lock(&self.state);
        let Some(i) = s.instances.get_mut(&request.instance_id) else {
            return Ok(Terminated::new(false));
        };
        if i.account != request.account {
            // EC2 would not see another account's instance at all.
            return Ok(Terminated::new(false));
        }
        let was_running = i.info.state.is_alive();
        if was_running {
            i.info.state = InstanceState::Terminated;
            i.info.state_reason = Some(StateReason::UserInitiated);
        }
        Ok(Terminated::new(was_running))
    }

    async fn list_owned(&self, request: ListOwned) -> Result<OwnedInstances> {
        self.faults.check("list_owned")?;
        let mut s = lock(&self.state);
        if s.lagging_listings > 0 {
            s.lagging_listings -= 1;
            return Ok(OwnedInstances::new(Vec::new()));
        }
        let mut instances: Vec<InstanceInfo> = s
            .instances
            .values()
            .filter(|i| {
                i.account == request.account
                    && i.region == request.region
                    && i.controller_id == request.controller_id
                    && i.info.state != InstanceState::Terminated
                    && request.job.is_none_or(|j| i.info.job == Some(j))
            })
            .map(|i| i.info.clone())
            .collect();
        instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        Ok(OwnedInstances::new(instances))
    }

    async fn describe(&self, request: DescribeInstance) -> Result<InstanceInfo> {
        self.faults.check("describe")?;
        let s = lock(&self.state);
        s.instances
            .get(&request.instance_id)
            .filter(|i| i.account == request.account)
            .map(|i| i.info.clone())
            .ok_or_else(|| {
                Error::not_found(format!("instance {} does not exist", request.instance_id))
            })
    }
}
