//! [`AwsStandIn`]: an in-process stand-in for the parts of EC2 and STS the
//! adapters call (feature `testing`), speaking their real wire protocol
//! (AWS Query, XML answers) so that the real SDK clients talk to it.
//!
//! moto (`scripts/test`) is the emulator the adapters are tested against;
//! this stand-in exists for what moto cannot do: answer thousands of
//! calls a second, in the process, with a chosen delay per call, for the
//! end-to-end benchmarks, and a platform's own load tests.
//!
//! What it models: one default VPC with a default subnet in zones `a`, `b`
//! and `c` of whatever region a call is signed for; images by id (any id
//! `ami-` + hex is an x86_64 image, unless [`AwsStandIn::arm64_image`]
//! says otherwise); `RunInstances` with client tokens, tags and spot;
//! `DescribeInstances` by id and by tag filters; `TerminateInstances`;
//! security groups created by name; spot prices (zone `b` cheapest);
//! `AssumeRole` issuing 15-minute credentials; gp3 volumes held to EC2's
//! limits (`volumes`). It checks no signatures.
//! Terminated instances stay describable by id but leave tag listings at
//! once (EC2 lists them for about an hour).

mod images;
pub use images::publish_runner_image;
mod volumes;
mod xml;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::oneshot;

use self::xml::{Xml, escape};
use crate::launcher::JOB_TAG;

/// An instance as the stand-in keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandInInstance {
    /// `i-...`.
    pub id: String,
    /// The region the launch was signed for.
    pub region: String,
    /// The AMI.
    pub image_id: String,
    /// The type.
    pub instance_type: String,
    /// The zone of its subnet.
    pub zone: String,
    /// The subnet.
    pub subnet_id: String,
    /// `pending`, `running`, `shutting-down` or `terminated`.
    pub state: String,
    /// Spot capacity.
    pub spot: bool,
    /// The client token it was launched with.
    pub client_token: Option<String>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// When `RunInstances` answered for it.
    pub launched: Instant,
}

#[derive(Debug, Default)]
struct StandInState {
    instances: HashMap<String, StandInInstance>,
    // Instances not yet terminated, for tag listings.
    live: HashSet<String>,
    /// Client token → (instance id, the request's other parameters).
    by_token: HashMap<String, (String, Vec<(String, String)>)>,
    /// (VPC, name) → (id, tags given at creation).
    security_groups: BTreeMap<(String, String), (String, BTreeMap<String, String>)>,
    arm64: HashSet<String>,
    /// (zone, spot) with no capacity: `RunInstances` there is refused.
    no_capacity: HashSet<(String, bool)>,
    /// Zones that do not offer any instance type.
    unsupported: HashSet<String>,
    next: u64,
    calls: BTreeMap<String, u64>,
    assumed: Vec<(String, String)>,
    launch_waiters: HashMap<String, oneshot::Sender<StandInInstance>>,
    termination_waiters: HashMap<String, oneshot::Sender<Instant>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<StandInState>,
    delay: Mutex<Duration>,
}

/// The EC2 and STS stand-in on a loopback port.
#[derive(Debug, Clone)]
pub struct AwsStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// The x86_64 image a look-up by name finds (any other id is x86_64 too).
pub const X64_AMI: &str = "ami-0a5a1d10000000086";
/// The arm64 image a look-up by name finds.
pub const ARM64_AMI: &str = "ami-0a5a1d10000000064";
/// The account every call acts in (the stand-in has one).
pub const STAND_IN_ACCOUNT: &str = "123456789012";
const VPC_ID: &str = "vpc-0a5a1d10000000001";

fn subnet_of(zone_letter: char) -> String {
    let n = match zone_letter {
        'a' => 1,
        'b' => 2,
        _ => 3,
    };
    format!("subnet-0a5a1d1000000000{n}")
}

fn zone_of_subnet(region: &str, subnet: &str) -> Option<String> {
    let letter = match subnet.strip_prefix("subnet-0a5a1d1000000000")? {
        "1" => 'a',
        "2" => 'b',
        "3" => 'c',
        _ => return None,
    };
    Some(format!("{region}{letter}"))
}

impl AwsStandIn {
    /// Starts the stand-in on a free loopback port, served by a task of
    /// the current tokio runtime.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(StandInState::default()),
            delay: Mutex::new(Duration::ZERO),
        });
        let app = Router::new()
            .route("/", post(answer))
            .with_state(shared.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "the AWS stand-in stopped");
            }
        });
        Ok(Self { addr, shared })
    }

    /// The endpoint URL to give [`AwsClientConfig::endpoint_url`](crate::AwsClientConfig::endpoint_url).
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every call is answered `delay` after it arrived (a slow API).
    pub fn set_delay(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap_or_else(|e| e.into_inner()) = delay;
    }

    fn state(&self) -> MutexGuard<'_, StandInState> {
        lock(&self.shared)
    }

    /// Makes `ami` an arm64 image.
    pub fn arm64_image(&self, ami: &str) {
        self.state().arm64.insert(ami.to_owned());
    }

    /// `zone` (such as `us-east-1b`) has no capacity for the `spot` or
    /// on-demand market: `RunInstances` there answers
    /// `InsufficientInstanceCapacity`, as EC2 does when a zone runs out.
    pub fn without_capacity(&self, zone: &str, spot: bool) {
        self.state().no_capacity.insert((zone.to_owned(), spot));
    }

    /// `zone` does not offer the instance types asked for: `RunInstances`
    /// there answers `Unsupported`, as EC2 does for a type a zone lacks.
    pub fn without_types(&self, zone: &str) {
        self.state().unsupported.insert(zone.to_owned());
    }

    /// Every instance, terminated ones included.
    pub fn instances(&self) -> Vec<StandInInstance> {
        self.state().instances.values().cloned().collect()
    }

    /// How many instances are not terminated.
    pub fn live(&self) -> usize {
        self.state().live.len()
    }

    /// The instance launched with client token `token`.
    pub fn by_client_token(&self, token: &str) -> Option<StandInInstance> {
        let state = self.state();
        let (id, _) = state.by_token.get(token)?;
        state.instances.get(id).cloned()
    }

    /// How many times each action (`RunInstances`, `AssumeRole`, ...) was
    /// called.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.state().calls.clone()
    }

    /// Resolves with the first instance launched with tag
    /// `sprinters:job = job_id` from now on, once `RunInstances` answered
    /// (its `launched` is that moment).
    pub fn expect_launch(&self, job_id: u64) -> oneshot::Receiver<StandInInstance> {
        let (tx, rx) = oneshot::channel();
        self.state().launch_waiters.insert(job_id.to_string(), tx);
        rx
    }

    /// Resolves with the moment `TerminateInstances` answered for
    /// `instance_id`.
    pub fn expect_termination(&self, instance_id: &str) -> oneshot::Receiver<Instant> {
        let (tx, rx) = oneshot::channel();
        self.state()
            .termination_waiters
            .insert(instance_id.to_owned(), tx);
        rx
    }

    /// Each `AssumeRole` call's (role ARN, external id).
    pub fn assumed_roles(&self) -> Vec<(String, String)> {
        self.state().assumed.clone()
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, StandInState> {
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The form parameters of a Query call.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The parameters a client token binds: all but the token itself and
    /// the zone ("Ensuring idempotency in Amazon EC2 API requests": a
    /// retry may change only the Region or Availability Zone).
    fn bound_by_token(&self) -> Vec<(String, String)> {
        let mut bound: Vec<(String, String)> = self
            .0
            .iter()
            .filter(|(k, _)| k != "ClientToken" && k != "Placement.AvailabilityZone")
            .cloned()
            .collect();
        bound.sort();
        bound
    }

    /// `Prefix.1`, `Prefix.2`, ... in order.
    fn list(&self, prefix: &str) -> Vec<&str> {
        (1..)
            .map_while(|n| self.get(&format!("{prefix}.{n}")))
            .collect()
    }

    /// `Filter.N.Name` → its `Filter.N.Value.M` values.
    fn filters(&self) -> Vec<(String, Vec<String>)> {
        (1..)
            .map_while(|n| {
                let name = self.get(&format!("Filter.{n}.Name"))?;
                let values = self
                    .list(&format!("Filter.{n}.Value"))
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                Some((name.to_owned(), values))
            })
            .collect()
    }
}

/// The region a call was signed for (SigV4's credential scope).
fn region(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .and_then(|scope| scope.split('/').nth(2))
        .unwrap_or("us-east-1")
        .to_owned()
}

async fn answer(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let delay = *shared.delay.lock().unwrap_or_else(|e| e.into_inner());
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let params = Params(form_urlencoded::parse(&body).into_owned().collect());
    let action = params.get("Action").unwrap_or("").to_owned();
    let region = region(&headers);
    let mut state = lock(&shared);
    *state.calls.entry(action.clone()).or_default() += 1;
    let result = match action.as_str() {
        "AssumeRole" => Ok(assume_role(&mut state, &params)),
        "RunInstances" => run_instances(&mut state, &params, &region),
        "DescribeInstances" => Ok(describe_instances(&state, &params)),
        "TerminateInstances" => terminate_instances(&mut state, &params),
        "DescribeVpcs" => Ok(Xml::response("DescribeVpcs").raw(&format!(
            "<vpcSet><item><vpcId>{VPC_ID}</vpcId><isDefault>true</isDefault><state>available</state></item></vpcSet>"
        ))),
        "DescribeSubnets" => Ok(describe_subnets(&params, &region)),
        "DescribeSecurityGroups" => Ok(describe_security_groups(&state, &params)),
        "CreateSecurityGroup" => create_security_group(&mut state, &params),
        "DescribeImages" => Ok(describe_images(&state, &params)),
        "DescribeSpotPriceHistory" => Ok(spot_prices(&params, &region)),
        other => Err(fault(
            "InvalidAction",
            &format!("the stand-in does not answer {other:?}"),
        )),
    };
    match result {
        Ok(xml) => ([("content-type", "text/xml")], xml.finish()).into_response(),
        Err(fault) => fault.into_response(),
    }
}

/// An EC2 error answer.
struct Fault {
    code: &'static str,
    message: String,
}

fn fault(code: &'static str, message: &str) -> Fault {
    Fault {
        code,
        message: message.to_owned(),
    }
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>stand-in</RequestID></Response>",
            escape(self.code),
            escape(&self.message)
        );
        (
            StatusCode::BAD_REQUEST,
            [("content-type", "text/xml")],
            body,
        )
            .into_response()
    }
}

fn assume_role(state: &mut StandInState, params: &Params) -> Xml {
    let role = params.get("RoleArn").unwrap_or("").to_owned();
    let session = params
        .get("RoleSessionName")
        .unwrap_or("session")
        .to_owned();
    let external_id = params.get("ExternalId").unwrap_or("").to_owned();
    state.assumed.push((role.clone(), external_id));
    state.next += 1;
    let seconds: u64 = params
        .get("DurationSeconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(900);
    let expires = xml::timestamp(SystemTime::now() + Duration::from_secs(seconds));
    let n = state.next;
    Xml::sts_response("AssumeRole").raw(&format!(
        "<Credentials><AccessKeyId>ASIASTANDIN{n:09}</AccessKeyId><SecretAccessKey>stand-in-secret-{n}</SecretAccessKey>\
         <SessionToken>stand-in-session-{n}</SessionToken><Expiration>{expires}</Expiration></Credentials>\
         <AssumedRoleUser><AssumedRoleId>AROASTANDIN:{session}</AssumedRoleId><Arn>{}/{}</Arn></AssumedRoleUser>",
        escape(&role.replace(":role/", ":assumed-role/")),
        escape(&session)
    ))
}

fn run_instances(state: &mut StandInState, params: &Params, region: &str) -> Result<Xml, Fault> {
    let token = params.get("ClientToken").map(str::to_owned);
    if let Some((id, bound)) = token.as_ref().and_then(|t| state.by_token.get(t)) {
        // EC2's idempotency (docs.aws.amazon.com/ec2/latest/devguide/
        // ec2-api-idempotency.html): the same token with the same
        // parameters answers with the first instance and starts nothing;
        // with any other parameter changed it is refused.
        if *bound != params.bound_by_token() {
            return Err(fault(
                "IdempotentParameterMismatch",
                "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).",
            ));
        }
        if let Some(existing) = state.instances.get(id) {
            return Ok(Xml::response("RunInstances").instances(std::slice::from_ref(existing)));
        }
    }
    volumes::check_volumes(params)?;
    let image_id = params
        .get("ImageId")
        .filter(|id| id.starts_with("ami-"))
        .ok_or_else(|| fault("InvalidAMIID.Malformed", "ImageId is required"))?
        .to_owned();
    let subnet_id = params.get("SubnetId").unwrap_or("").to_owned();
    let zone = zone_of_subnet(region, &subnet_id).ok_or_else(|| {
        fault(
            "InvalidSubnetID.NotFound",
            &format!("The subnet ID '{subnet_id}' does not exist"),
        )
    })?;
    let spot = params.get("InstanceMarketOptions.MarketType") == Some("spot");
    let instance_type = params.get("InstanceType").unwrap_or("t3.large").to_owned();
    if state.unsupported.contains(&zone) {
        return Err(fault(
            "Unsupported",
            &format!(
                "Your requested instance type ({instance_type}) is not supported in your requested Availability Zone ({zone})."
            ),
        ));
    }
    if state.no_capacity.contains(&(zone.clone(), spot)) {
        // EC2's words ("Error codes for the Amazon EC2 API").
        return Err(fault(
            "InsufficientInstanceCapacity",
            &format!(
                "We currently do not have sufficient {instance_type} capacity in the Availability Zone you requested ({zone}). \
                 Our system will be working on provisioning additional capacity."
            ),
        ));
    }
    let tags = tags_for(params, "instance");
    state.next += 1;
    let instance = StandInInstance {
        id: format!("i-0{:016x}", state.next),
        region: region.to_owned(),
        image_id,
        instance_type,
        zone,
        subnet_id,
        state: "pending".to_owned(),
        spot,
        client_token: token.clone(),
        tags,
        launched: Instant::now(),
    };
    if let Some(token) = token {
        state
            .by_token
            .insert(token, (instance.id.clone(), params.bound_by_token()));
    }
    state.live.insert(instance.id.clone());
    state
        .instances
        .insert(instance.id.clone(), instance.clone());
    if let Some(waiter) = instance
        .tags
        .get(JOB_TAG)
        .and_then(|job| state.launch_waiters.remove(job))
    {
        let _ = waiter.send(instance.clone());
    }
    Ok(Xml::response("RunInstances").instances(&[instance]))
}

fn matches(instance: &StandInInstance, filters: &[(String, Vec<String>)]) -> bool {
    filters.iter().all(|(name, values)| {
        let actual = match name.strip_prefix("tag:") {
            Some(key) => instance.tags.get(key).map(String::as_str),
            None => match name.as_str() {
                "instance-state-name" => Some(instance.state.as_str()),
                "instance-id" => Some(instance.id.as_str()),
                _ => None,
            },
        };
        actual.is_some_and(|a| values.iter().any(|v| v == a))
    })
}

fn describe_instances(state: &StandInState, params: &Params) -> Xml {
    let ids = params.list("InstanceId");
    let filters = params.filters();
    let found: Vec<StandInInstance> = if ids.is_empty() {
        let mut live: Vec<_> = state
            .live
            .iter()
            .filter_map(|id| state.instances.get(id))
            .filter(|i| matches(i, &filters))
            .cloned()
            .collect();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        live
    } else {
        ids.iter()
            .filter_map(|id| state.instances.get(*id))
            .filter(|i| matches(i, &filters))
            .cloned()
            .collect()
    };
    Xml::response("DescribeInstances").reservations(&found)
}

fn terminate_instances(state: &mut StandInState, params: &Params) -> Result<Xml, Fault> {
    let ids: Vec<String> = params
        .list("InstanceId")
        .into_iter()
        .map(str::to_owned)
        .collect();
    if let Some(unknown) = ids.iter().find(|id| !state.instances.contains_key(*id)) {
        return Err(fault(
            "InvalidInstanceID.NotFound",
            &format!("The instance ID '{unknown}' does not exist"),
        ));
    }
    let mut changes = Vec::new();
    for id in ids {
        if let Some(instance) = state.instances.get_mut(&id) {
            let previous = std::mem::replace(&mut instance.state, "terminated".to_owned());
            changes.push((id.clone(), previous));
        }
        state.live.remove(&id);
        if let Some(waiter) = state.termination_waiters.remove(&id) {
            let _ = waiter.send(Instant::now());
        }
    }
    Ok(Xml::response("TerminateInstances").state_changes(&changes))
}

fn describe_subnets(params: &Params, region: &str) -> Xml {
    let asked = params.list("SubnetId");
    let mut items = String::new();
    for letter in ['a', 'b', 'c'] {
        let id = subnet_of(letter);
        if !asked.is_empty() && !asked.contains(&id.as_str()) {
            continue;
        }
        items.push_str(&format!(
            "<item><subnetId>{id}</subnetId><vpcId>{VPC_ID}</vpcId><availabilityZone>{region}{letter}</availabilityZone>\
             <defaultForAz>true</defaultForAz><state>available</state></item>"
        ));
    }
    Xml::response("DescribeSubnets").raw(&format!("<subnetSet>{items}</subnetSet>"))
}

/// The tags a request's `TagSpecification`s give resources of `kind`.
fn tags_for(params: &Params, kind: &str) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    for n in 1.. {
        let Some(given) = params.get(&format!("TagSpecification.{n}.ResourceType")) else {
            break;
        };
        if given != kind {
            continue;
        }
        for m in 1.. {
            let key = params.get(&format!("TagSpecification.{n}.Tag.{m}.Key"));
            let Some(key) = key else { break };
            let value = params
                .get(&format!("TagSpecification.{n}.Tag.{m}.Value"))
                .unwrap_or("");
            tags.insert(key.to_owned(), value.to_owned());
        }
    }
    tags
}

fn describe_security_groups(state: &StandInState, params: &Params) -> Xml {
    let filters = params.filters();
    let wanted = |name: &str| {
        filters
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.first().cloned())
    };
    let (vpc, name) = (wanted("vpc-id"), wanted("group-name"));
    let mut items = String::new();
    for ((group_vpc, group_name), (id, tags)) in &state.security_groups {
        if vpc.as_ref().is_some_and(|v| v != group_vpc)
            || name.as_ref().is_some_and(|n| n != group_name)
        {
            continue;
        }
        let tags: String = tags
            .iter()
            .map(|(k, v)| {
                format!(
                    "<item><key>{}</key><value>{}</value></item>",
                    escape(k),
                    escape(v)
                )
            })
            .collect();
        items.push_str(&format!(
            "<item><groupId>{id}</groupId><groupName>{}</groupName><vpcId>{}</vpcId><ipPermissions/><tagSet>{tags}</tagSet></item>",
            escape(group_name),
            escape(group_vpc)
        ));
    }
    Xml::response("DescribeSecurityGroups")
        .raw(&format!("<securityGroupInfo>{items}</securityGroupInfo>"))
}

fn create_security_group(state: &mut StandInState, params: &Params) -> Result<Xml, Fault> {
    let key = (
        params.get("VpcId").unwrap_or(VPC_ID).to_owned(),
        params.get("GroupName").unwrap_or("").to_owned(),
    );
    if state.security_groups.contains_key(&key) {
        return Err(fault(
            "InvalidGroup.Duplicate",
            &format!("The security group '{}' already exists", key.1),
        ));
    }
    state.next += 1;
    let id = format!("sg-0{:016x}", state.next);
    let tags = tags_for(params, "security-group");
    state.security_groups.insert(key, (id.clone(), tags));
    Ok(Xml::response("CreateSecurityGroup").raw(&format!("<groupId>{id}</groupId>")))
}

fn describe_images(state: &StandInState, params: &Params) -> Xml {
    // EC2 answers a look-up by name with images whose name matches the
    // filter only: the stand-in's images are named to match it.
    let name = (1..=10)
        .find(|i| params.get(&format!("Filter.{i}.Name")) == Some("name"))
        .and_then(|i| params.get(&format!("Filter.{i}.Value.1")))
        .map_or_else(
            || "sprinters-runner-stand-in".to_owned(),
            |pattern| pattern.replace('*', "20261101000000"),
        );
    let image = |id: &str, arch: &str| {
        format!(
            "<item><imageId>{}</imageId><imageState>available</imageState><architecture>{arch}</architecture>\
             <name>{}</name><creationDate>2026-11-01T00:00:00.000Z</creationDate>\
             <rootDeviceName>/dev/sda1</rootDeviceName><blockDeviceMapping><item><deviceName>/dev/sda1</deviceName>\
             <ebs><volumeSize>{}</volumeSize></ebs></item></blockDeviceMapping></item>",
            escape(id),
            escape(&name),
            volumes::IMAGE_ROOT_GIB
        )
    };
    let ids = params.list("ImageId");
    let items: String = if ids.is_empty() {
        // A look-up by name: one image of each architecture.
        image(X64_AMI, "x86_64") + &image(ARM64_AMI, "arm64")
    } else {
        ids.iter()
            .map(|id| {
                let arm = state.arm64.contains(*id) || *id == ARM64_AMI;
                image(id, if arm { "arm64" } else { "x86_64" })
            })
            .collect()
    };
    Xml::response("DescribeImages").raw(&format!("<imagesSet>{items}</imagesSet>"))
}

fn spot_prices(params: &Params, region: &str) -> Xml {
    let instance_type = params
        .list("InstanceType")
        .first()
        .copied()
        .unwrap_or("t3.large");
    let now = xml::timestamp(SystemTime::now());
    let items: String = [('a', "0.0400"), ('b', "0.0310"), ('c', "0.0450")]
        .iter()
        .map(|(letter, price)| {
            format!(
                "<item><instanceType>{}</instanceType><productDescription>Linux/UNIX</productDescription>\
                 <spotPrice>{price}</spotPrice><timestamp>{now}</timestamp><availabilityZone>{region}{letter}</availabilityZone></item>",
                escape(instance_type)
            )
        })
        .collect();
    Xml::response("DescribeSpotPriceHistory").raw(&format!(
        "<spotPriceHistorySet>{items}</spotPriceHistorySet>"
    ))
}
