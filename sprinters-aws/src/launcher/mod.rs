//! [`Ec2Launcher`]: the [`CloudLauncher`] on EC2.
//!
//! The launch path makes one EC2 call, `RunInstances`, once the image,
//! network and security group of an account and region are cached; the
//! first launch in a region also looks those up (a handful of describe
//! calls, shared by concurrent launches).

mod cache;
mod images;
mod network;
mod run;
mod spot;
mod tags;
mod types;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, InstanceStateName};
use aws_smithy_types::error::metadata::ProvideErrorMetadata as _;
use futures::FutureExt as _;
use sprinters_core::domain::{AccountId, AvailabilityZone, InstanceType, Region, SecurityGroupId};
use sprinters_core::labels::{Image, TempKind};
use sprinters_core::ports::{
    CloudLauncher, Credentials, DescribeInstance, InstanceInfo, LaunchRequest, Launched, ListOwned,
    Market, OwnedInstances, TerminateRequest, Terminated,
};
use sprinters_core::time::{Clock, SystemClock, Timestamp};
use sprinters_core::{Error, ErrorKind, Result};

pub use images::{ImageCatalog, ImageLookup};
pub use network::SECURITY_GROUP_NAME;
pub use tags::{
    ATTEMPT_TAG, CONTROLLER_TAG, JOB_TAG, REPOSITORY_TAG, RUN_TAG, RUNNER_TAG, SPOT_TAG,
};

use self::cache::TtlCache;
use self::images::{ResolvedImage, filter};
use self::network::{DefaultNetwork, SubnetInfo};
use self::run::Placement;
use self::spot::SpotPrices;
use crate::error::{is_zone_shortage, map_sdk_error};
use crate::policy::{OWNED_TAG_KEY, OWNED_TAG_VALUE};
use crate::sdk::AwsClientConfig;
use crate::user_data::{RunnerLayout, boot_script};

/// One account and region, with a client acting in it.
pub(crate) struct Target<'a> {
    pub(crate) client: &'a aws_sdk_ec2::Client,
    pub(crate) account: &'a AccountId,
    pub(crate) region: &'a Region,
}

type RegionKey = (AccountId, Region);

/// How long look-ups are kept. Images and networks change rarely; spot
/// prices move, but a few minutes old is what "cheapest now" can mean.
const IMAGE_TTL: Duration = Duration::from_secs(3600);
const NETWORK_TTL: Duration = Duration::from_secs(600);
const SPOT_PRICE_TTL: Duration = Duration::from_secs(300);
/// How long a label-named security group's check holds: briefly, since a
/// group may gain an ingress rule at any time.
const NAMED_GROUP_TTL: Duration = Duration::from_secs(60);
/// Launches remembered by idempotency token, so that a retried call in
/// this process answers without another `RunInstances`.
const RECENT_LAUNCHES: usize = 4096;

/// Launches, lists and ends runner instances with `aws-sdk-ec2`.
#[derive(Debug)]
pub struct Ec2Launcher {
    config: AwsClientConfig,
    images: ImageCatalog,
    layout: RunnerLayout,
    clock: Arc<dyn Clock>,
    clients: Mutex<HashMap<(AccountId, Region, String), aws_sdk_ec2::Client>>,
    resolved_images: TtlCache<(AccountId, Region, Image), ResolvedImage>,
    networks: TtlCache<RegionKey, DefaultNetwork>,
    subnets: TtlCache<(AccountId, Region, String), SubnetInfo>,
    security_groups: TtlCache<(AccountId, Region, String), SecurityGroupId>,
    // Label-named groups found tagged as ours and without ingress.
    /// A label-named group found fit, with its VPC.
    named_groups: TtlCache<(AccountId, Region, SecurityGroupId), Option<String>>,
    spot_prices: TtlCache<(AccountId, Region, InstanceType), SpotPrices>,
    /// Whether a type has an instance store, for `temp=ephemeral`.
    instance_stores: TtlCache<(AccountId, Region, InstanceType), bool>,
    recent: Mutex<RecentLaunches>,
    // One TerminateInstances at a time per instance from this process: the
    // webhook path and the reconciler may end the same instance at once,
    // and the second call is then a cheap "already terminated".
    terminating: Mutex<HashMap<sprinters_core::domain::InstanceId, Arc<tokio::sync::Mutex<()>>>>,
}

impl Ec2Launcher {
    /// A launcher with `config`'s endpoint, retries and timeouts, finding
    /// images with the default [`ImageLookup`].
    pub fn new(config: AwsClientConfig) -> Self {
        Self::builder(config).build()
    }

    /// A builder, for pinned images, the runner layout and the clock.
    pub fn builder(config: AwsClientConfig) -> Ec2LauncherBuilder {
        Ec2LauncherBuilder {
            config,
            images: ImageCatalog::new(),
            layout: RunnerLayout::default(),
            clock: Arc::new(SystemClock),
        }
    }

    fn client(
        &self,
        account: &AccountId,
        region: &Region,
        credentials: &Credentials,
    ) -> aws_sdk_ec2::Client {
        let key = (
            account.clone(),
            region.clone(),
            credentials.access_key_id.clone(),
        );
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&key) {
            return client.clone();
        }
        // Assumed-role keys change every few minutes: drop the old clients
        // rather than let the map grow.
        if clients.len() >= 256 {
            clients.clear();
        }
        let client = self.config.ec2(region, credentials);
        clients.insert(key, client.clone());
        client
    }

    /// Resolves the image, subnet and security group of a launch, and the
    /// zone's spot price when it chose the zone by price.
    async fn place(
        &self,
        target: &Target<'_>,
        request: &LaunchRequest,
    ) -> Result<(Placement, Option<u64>)> {
        let spec = &request.spec;
        let clock = self.clock.as_ref();
        let region_key = (target.account.clone(), target.region.clone());
        let image_key = (target.account.clone(), target.region.clone(), spec.image);
        let image = self.resolved_images.get(clock, &image_key, || {
            self.images.resolve(target, spec.image)
        });
        let subnet = async {
            if let Some(subnet) = &spec.subnet {
                if spec.security_group.is_some() {
                    // Both pinned: nothing to look up.
                    return Ok((None, subnet.clone(), None));
                }
                let key = (
                    target.account.clone(),
                    target.region.clone(),
                    subnet.to_string(),
                );
                let info = self
                    .subnets
                    .get(clock, &key, || network::describe_subnet(target, subnet))
                    .await?;
                return Ok((Some(info.vpc), info.id, None));
            }
            let network = self
                .networks
                .get(clock, &region_key, || DefaultNetwork::load(target))
                .await?;
            if spec.availability_zone.is_none() && request.market == Market::Spot {
                let prices = self
                    .spot_prices
                    .get(
                        clock,
                        &(
                            target.account.clone(),
                            target.region.clone(),
                            spec.instance_type.clone(),
                        ),
                        || SpotPrices::load(target, &spec.instance_type),
                    )
                    .await?;
                let zones: Vec<AvailabilityZone> = network.zones();
                if let Some((zone, price)) = prices.cheapest(&zones) {
                    let picked = network.pick(Some(&zone), target)?;
                    return Ok((Some(picked.vpc), picked.id, Some(price)));
                }
            }
            let picked = network.pick(spec.availability_zone.as_ref(), target)?;
            Ok::<_, Error>((Some(picked.vpc), picked.id, None))
        };
        let instance_store = async {
            if spec.temp.kind != TempKind::Ephemeral {
                return Ok(());
            }
            let key = (
                target.account.clone(),
                target.region.clone(),
                spec.instance_type.clone(),
            );
            let has = match self
                .instance_stores
                .get(clock, &key, || {
                    types::has_instance_store(target, &spec.instance_type)
                })
                .await
            {
                Ok(has) => has,
                // A role deployed before the look-up was granted: launch
                // as before, and the boot script reports a missing disk.
                Err(e) if *e.kind() == ErrorKind::PermissionDenied => {
                    tracing::warn!(error = %e, "cannot check the instance store; launching unchecked");
                    true
                }
                Err(e) => return Err(e),
            };
            if has {
                Ok(())
            } else {
                Err(types::no_instance_store(&spec.instance_type))
            }
        };
        let (image, subnet, instance_store) = tokio::join!(image, subnet, instance_store);
        instance_store?;
        let (image, (vpc, subnet, spot_price)) = (image?, subnet?);
        let security_group = match (&spec.security_group, &vpc) {
            (Some(group), _) => {
                let key = (target.account.clone(), target.region.clone(), group.clone());
                let group_vpc = self
                    .named_groups
                    .get(clock, &key, || network::check_named_group(target, group))
                    .await?;
                // EC2 refuses it too, but only after the JIT runner is
                // registered, and with a less helpful message.
                if let (Some(group_vpc), Some(vpc)) = (&group_vpc, &vpc)
                    && group_vpc != vpc
                {
                    return Err(Error::config(format!(
                        "security group {group} is in {group_vpc}, but subnet {subnet} is in {vpc}: a label may name only a group of the subnet's VPC"
                    )));
                }
                group.clone()
            }
            (None, Some(vpc)) => {
                let key = (target.account.clone(), target.region.clone(), vpc.clone());
                self.security_groups
                    .get(clock, &key, || network::security_group(target, vpc))
                    .await?
            }
            (None, None) => {
                return Err(Error::config(format!(
                    "no VPC known for subnet {subnet} in {}",
                    target.region
                )));
            }
        };
        Ok((
            Placement {
                ami: image.ami,
                root_device: image.root_device,
                root_size_gib: image.root_size_gib,
                subnet,
                vpc,
                security_group,
            },
            spot_price,
        ))
    }

    /// The default subnets of the zones other than `placement`'s, to try
    /// when it had no capacity: cheapest first for spot (zones without a
    /// price last), with each zone's price.
    async fn other_zones(
        &self,
        target: &Target<'_>,
        request: &LaunchRequest,
        placement: &Placement,
    ) -> Result<Vec<(sprinters_core::domain::SubnetId, Option<u64>)>> {
        let clock = self.clock.as_ref();
        let region_key = (target.account.clone(), target.region.clone());
        let network = self
            .networks
            .get(clock, &region_key, || DefaultNetwork::load(target))
            .await?;
        let tried = network
            .subnets
            .iter()
            .find(|s| s.id == placement.subnet)
            .map(|s| s.zone.clone());
        let mut others: Vec<(sprinters_core::domain::SubnetId, Option<u64>)> = network
            .subnets
            .iter()
            .filter(|s| Some(&s.zone) != tried.as_ref() && s.id != placement.subnet)
            .map(|s| (s.id.clone(), None))
            .collect();
        if request.market == Market::Spot {
            let key = (
                target.account.clone(),
                target.region.clone(),
                request.spec.instance_type.clone(),
            );
            let prices = self
                .spot_prices
                .get(clock, &key, || {
                    SpotPrices::load(target, &request.spec.instance_type)
                })
                .await?;
            let zone_of = |id: &sprinters_core::domain::SubnetId| {
                network
                    .subnets
                    .iter()
                    .find(|s| &s.id == id)
                    .map(|s| s.zone.clone())
            };
            for (id, price) in &mut others {
                *price = zone_of(id).and_then(|z| prices.by_zone.get(&z).copied());
            }
            others.sort_by_key(|(_, price)| price.unwrap_or(u64::MAX));
        }
        Ok(others)
    }

    /// Forgets the look-ups a launch used.
    fn forget(&self, request: &LaunchRequest, placement: &Placement) {
        let (account, region) = (request.account.clone(), request.spec.region.clone());
        self.resolved_images
            .invalidate(&(account.clone(), region.clone(), request.spec.image));
        if let Some(subnet) = &request.spec.subnet {
            self.subnets
                .invalidate(&(account.clone(), region.clone(), subnet.to_string()));
        }
        if let Some(group) = &request.spec.security_group {
            self.named_groups
                .invalidate(&(account.clone(), region.clone(), group.clone()));
        }
        if let Some(vpc) = &placement.vpc {
            self.security_groups
                .invalidate(&(account.clone(), region.clone(), vpc.clone()));
        }
        self.networks.invalidate(&(account, region));
    }
}

/// Builds an [`Ec2Launcher`].
#[derive(Debug)]
pub struct Ec2LauncherBuilder {
    config: AwsClientConfig,
    images: ImageCatalog,
    layout: RunnerLayout,
    clock: Arc<dyn Clock>,
}

impl Ec2LauncherBuilder {
    /// Where AMIs come from.
    pub fn images(mut self, images: ImageCatalog) -> Self {
        self.images = images;
        self
    }

    /// Where the runner lives on the image.
    pub fn runner_layout(mut self, layout: RunnerLayout) -> Self {
        self.layout = layout;
        self
    }

    /// The clock cache lifetimes are measured with.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The launcher.
    pub fn build(self) -> Ec2Launcher {
        Ec2Launcher {
            config: self.config,
            images: self.images,
            layout: self.layout,
            clock: self.clock,
            clients: Mutex::new(HashMap::new()),
            resolved_images: TtlCache::new(IMAGE_TTL),
            networks: TtlCache::new(NETWORK_TTL),
            subnets: TtlCache::new(NETWORK_TTL),
            security_groups: TtlCache::new(NETWORK_TTL),
            named_groups: TtlCache::new(NAMED_GROUP_TTL),
            spot_prices: TtlCache::new(SPOT_PRICE_TTL),
            instance_stores: TtlCache::new(IMAGE_TTL),
            recent: Mutex::new(RecentLaunches::default()),
            terminating: Mutex::new(HashMap::new()),
        }
    }
}

impl Ec2Launcher {
    /// `TerminateInstances`; an instance EC2 no longer knows is gone.
    async fn terminate_now(&self, request: &TerminateRequest) -> Result<Terminated> {
        let client = self.client(&request.account, &request.region, &request.credentials);
        let context = format!(
            "terminating {} in account {}, {}",
            request.instance_id, request.account, request.region
        );
        let output = match client
            .terminate_instances()
            .instance_ids(request.instance_id.as_str())
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) => {
                let err = map_sdk_error(e, "ec2:TerminateInstances", &context);
                // Gone long enough that EC2 forgot it: still gone.
                return if *err.kind() == ErrorKind::NotFound {
                    Ok(Terminated::new(false))
                } else {
                    Err(err)
                };
            }
        };
        let was_running = output.terminating_instances().iter().any(|change| {
            !matches!(
                change.previous_state().and_then(|s| s.name()),
                Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
            )
        });
        Ok(Terminated::new(was_running))
    }
}

impl Ec2Launcher {
    /// The client of the request's account and region, and its boot script.
    fn prepare(
        &self,
        request: &LaunchRequest,
    ) -> Result<(aws_sdk_ec2::Client, secrecy::SecretString)> {
        let spec = &request.spec;
        let client = self.client(&request.account, &spec.region, &request.credentials);
        let script = boot_script(
            spec,
            &request.jit_config,
            request.max_lifetime,
            &self.layout,
        )?;
        Ok((client, script))
    }

    /// Asks EC2 whether `request` would launch, with `DryRun`: `Ok` when
    /// EC2 answers `DryRunOperation` ("Request would have succeeded"),
    /// `PermissionDenied` naming `ec2:RunInstances` when it answers
    /// `UnauthorizedOperation`. No instance is started; the image, subnet
    /// and security-group look-ups run as for a launch (and our group is
    /// made if missing). How a connection is verified before jobs use it.
    pub async fn dry_run(&self, request: LaunchRequest) -> Result<()> {
        use aws_smithy_types::error::metadata::ProvideErrorMetadata;
        let spec = &request.spec;
        let (client, script) = self.prepare(&request)?;
        let target = Target {
            client: &client,
            account: &request.account,
            region: &spec.region,
        };
        let (placement, _) = self.place(&target, &request).await?;
        let context = format!(
            "a dry-run launch of {} in account {}, {}",
            spec.instance_type, request.account, spec.region
        );
        // https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html:
        // "DryRun: Checks whether you have the required permissions for the
        // operation, without actually making the request ... If you have the
        // required permissions, the error response is DryRunOperation.
        // Otherwise, it is UnauthorizedOperation."
        match run::run_instances(&client, &request, &placement, &script)
            .dry_run(true)
            .send()
            .await
        {
            Err(e) if e.code() == Some("DryRunOperation") => Ok(()),
            Err(e) => Err(map_sdk_error(e, "ec2:RunInstances", &context)),
            Ok(_) => Err(Error::integrity(format!(
                "{context}: EC2 answered a dry run with a launch"
            ))),
        }
    }
}

#[async_trait]
impl CloudLauncher for Ec2Launcher {
    async fn launch(&self, request: LaunchRequest) -> Result<Launched> {
        if let Some(launched) = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&request.idempotency_token)
        {
            return Ok(launched);
        }
        let spec = &request.spec;
        let (client, script) = self.prepare(&request)?;
        let target = Target {
            client: &client,
            account: &request.account,
            region: &spec.region,
        };
        let (placement, mut spot_price) = self.place(&target, &request).await?;
        let context = format!(
            "launching {} for job {} (attempt {}) in account {}, {}",
            spec.instance_type,
            request.job.job_id,
            request.job.run_attempt,
            request.account,
            spec.region
        );
        // Each failure says whether it was one zone's shortage.
        let call = |placement: &Placement| {
            run::run_instances(&client, &request, placement, &script)
                .send()
                .map(|r| {
                    r.map_err(|e| {
                        let shortage = e.code().is_some_and(is_zone_shortage);
                        let shortage = shortage || e.code().is_some_and(|c| c == "Unsupported");
                        (map_sdk_error(e, "ec2:RunInstances", &context), shortage)
                    })
                })
        };
        let output = match call(&placement).await {
            // A subnet or group deleted since it was cached: look again,
            // and launch again only if the look-up finds something else.
            Err((err, false)) if *err.kind() == ErrorKind::Config => {
                self.forget(&request, &placement);
                let (fresh, _) = self.place(&target, &request).await?;
                if fresh == placement {
                    return Err(err);
                }
                call(&fresh).await.map_err(|(e, _)| e)?
            }
            // No capacity in that zone: the other zones the label allows
            // (any, when it pins neither zone nor subnet), cheapest first
            // for spot. The same client token: a failed request binds none
            // ("Ensuring idempotency in Amazon EC2 API requests"), so a
            // retry after a crash that finds it bound to another zone's
            // instance gets IdempotentParameterMismatch, which the engine
            // resolves by finding that instance.
            Err((mut err, true)) if spec.availability_zone.is_none() && spec.subnet.is_none() => {
                let mut found = None;
                for (subnet, price) in self.other_zones(&target, &request, &placement).await? {
                    tracing::info!(error = %err, next = %subnet, "no capacity in that zone; trying another");
                    let next = Placement {
                        subnet,
                        ..placement.clone()
                    };
                    match call(&next).await {
                        Ok(output) => {
                            spot_price = price;
                            found = Some(output);
                            break;
                        }
                        // Another shortage, or a zone that does not
                        // offer the type: the next zone; the first
                        // shortage is what is reported if none has room.
                        Err((e, true)) if *e.kind() == ErrorKind::CapacityUnavailable => err = e,
                        Err((_, true)) => {}
                        Err((e, false)) => return Err(e),
                    }
                }
                found.ok_or(err)?
            }
            other => other.map_err(|(e, _)| e)?,
        };
        let instance = output.instances().first().ok_or_else(|| {
            Error::unavailable(format!("{context}: RunInstances returned no instance"))
        })?;
        let instance_id = instance
            .instance_id()
            .and_then(|id| sprinters_core::domain::InstanceId::parse(id).ok())
            .ok_or_else(|| {
                Error::unavailable(format!("{context}: RunInstances returned no instance id"))
            })?;
        let mut launched = Launched::new(
            instance_id,
            spec.instance_type.clone(),
            spec.region.clone(),
            instance
                .placement()
                .and_then(|p| p.availability_zone())
                .and_then(|z| AvailabilityZone::parse(z).ok()),
            request.market == Market::Spot,
            instance
                .launch_time()
                .and_then(|t| SystemTime::try_from(*t).ok())
                .map_or_else(|| self.clock.now(), Timestamp::from_system_time),
        );
        launched.hourly_price_micros = spot_price;
        tracing::info!(
            instance = %launched.instance_id,
            job = %request.job.job_id,
            zone = ?launched.availability_zone,
            spot = launched.spot,
            "launched"
        );
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(request.idempotency_token.clone(), launched.clone());
        Ok(launched)
    }

    async fn terminate(&self, request: TerminateRequest) -> Result<Terminated> {
        let turn = {
            let mut terminating = self.terminating.lock().unwrap_or_else(|e| e.into_inner());
            terminating
                .entry(request.instance_id.clone())
                .or_default()
                .clone()
        };
        let outcome = {
            let _turn = turn.lock().await;
            self.terminate_now(&request).await
        };
        let mut terminating = self.terminating.lock().unwrap_or_else(|e| e.into_inner());
        // Last one out removes the entry (the map holds one reference).
        if Arc::strong_count(&turn) == 2 {
            terminating.remove(&request.instance_id);
        }
        outcome
    }

    async fn list_owned(&self, request: ListOwned) -> Result<OwnedInstances> {
        let client = self.client(&request.account, &request.region, &request.credentials);
        let context = format!(
            "listing the instances of {} in account {}, {}",
            request.controller_id, request.account, request.region
        );
        let mut call = client
            .describe_instances()
            .filters(filter(&format!("tag:{OWNED_TAG_KEY}"), OWNED_TAG_VALUE))
            .filters(filter(
                &format!("tag:{CONTROLLER_TAG}"),
                &request.controller_id,
            ))
            // Terminated instances stay listed for about an hour: leaving
            // them out keeps every reconciler pass's answer small.
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .set_values(Some(
                        ["pending", "running", "shutting-down", "stopping", "stopped"]
                            .map(str::to_owned)
                            .to_vec(),
                    ))
                    .build(),
            )
            .max_results(1000);
        if let Some(job) = request.job {
            call = call
                .filters(filter(&format!("tag:{JOB_TAG}"), &job.job_id.to_string()))
                .filters(filter(
                    &format!("tag:{ATTEMPT_TAG}"),
                    &job.run_attempt.to_string(),
                ));
        }
        let mut pages = call.into_paginator().send();
        let mut instances = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| map_sdk_error(e, "ec2:DescribeInstances", &context))?;
            instances.extend(
                page.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .filter_map(tags::instance_info),
            );
        }
        Ok(OwnedInstances::new(instances))
    }

    async fn describe(&self, request: DescribeInstance) -> Result<InstanceInfo> {
        let client = self.client(&request.account, &request.region, &request.credentials);
        let context = format!(
            "describing {} in account {}, {}",
            request.instance_id, request.account, request.region
        );
        let output = client
            .describe_instances()
            .instance_ids(request.instance_id.as_str())
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "ec2:DescribeInstances", &context))?;
        output
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(tags::instance_info)
            .ok_or_else(|| Error::not_found(format!("{context}: EC2 does not know it")))
    }
}

/// The last few thousand launches by idempotency token, oldest dropped
/// first.
#[derive(Debug, Default)]
struct RecentLaunches {
    by_token: HashMap<String, Launched>,
    order: VecDeque<String>,
}

impl RecentLaunches {
    fn get(&self, token: &str) -> Option<Launched> {
        self.by_token.get(token).cloned()
    }

    fn insert(&mut self, token: String, launched: Launched) {
        if self.by_token.insert(token.clone(), launched).is_none() {
            self.order.push_back(token);
        }
        while self.order.len() > RECENT_LAUNCHES {
            if let Some(old) = self.order.pop_front() {
                self.by_token.remove(&old);
            }
        }
    }
}
