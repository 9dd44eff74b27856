//! The parser behind [`LabelParser::parse_label`](super::LabelParser::parse_label).

use super::{
    Image, LabelError, LabelParser, Provider, RootVolume, RunnerSpec, SpotMode, TempKind,
    TempVolume, VolumeType,
};
use crate::domain::{
    AccountId, Arch, AvailabilityZone, InstanceType, Region, SecurityGroupId, SubnetId,
};

const GP3_IOPS: (u32, u32) = (3000, 16000);
const GP3_THROUGHPUT: (u32, u32) = (125, 1000);
/// gp3 sizes: up to 64 TiB since EBS raised gp3's limits in September 2025
/// (the product's grammar; older API references still say 16,384 GiB).
const GP3_SIZE_GIB: (u32, u32) = (1, 65536);
const ZRAM_SIZE_GIB: (u32, u32) = (1, 1024);
/// gp3 allows 500 IOPS per GiB above the 3000 baseline...
const GP3_IOPS_PER_GIB: u32 = 500;
/// ...and 0.25 MiB/s per IOPS above the 125 MiB/s baseline.
const GP3_IOPS_PER_MIBPS: u32 = 4;
const SWAP_GIB: u32 = 4;

const PART_FORMS: &str = "expected a provider (aws, aws/<account id>), an image (ubuntu-latest, ubuntu-24.04, ...), \
a region or zone (us-east-1, eu-central-1b), an instance type (m7i.large), a security group (sg-...), \
or spot=, root=, temp=, events=";

/// Collects each part once; a second occurrence is an error.
#[derive(Default)]
struct Parts<'a> {
    account: Option<Option<AccountId>>,
    placement: Option<(Region, Option<AvailabilityZone>, Option<SubnetId>)>,
    image: Option<(Image, &'a str)>,
    instance_type: Option<(InstanceType, &'a str)>,
    spot: Option<SpotMode>,
    security_group: Option<SecurityGroupId>,
    root: Option<(Option<u32>, Option<u32>, &'a str)>,
    temp: Option<(TempKind, [Option<Amount>; 3], &'a str)>,
    events: Option<bool>,
}

/// A number or `max`.
#[derive(Clone, Copy)]
enum Amount {
    Exactly(u32),
    Max,
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    label: &str,
    part: &str,
    name: &str,
) -> Result<(), LabelError> {
    if slot.is_some() {
        return Err(LabelError::new(
            label,
            part,
            format!("{name} is given twice; each part may appear at most once"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

pub(super) fn parse_label(parser: &LabelParser, original: &str) -> Result<RunnerSpec, LabelError> {
    // GitHub compares labels without case; so do we.
    let lowered = original.to_ascii_lowercase();
    let label = lowered.as_str();
    let mut parts_iter = label.split(':');
    let prefix = parts_iter.next().unwrap_or_default();
    if prefix != parser.prefix() {
        return Err(LabelError::new(
            original,
            prefix,
            format!("expected the label to start with `{}:`", parser.prefix()),
        ));
    }

    let mut p = Parts::default();
    for part in parts_iter {
        parse_part(&mut p, original, part)?;
    }

    let (image, image_part) = p.image.unwrap_or((Image::DEFAULT, ""));
    let instance_type = match p.instance_type {
        Some((t, part)) => {
            if t.arch() != image.arch() {
                let (want, example) = match image.arch() {
                    Arch::X64 => ("an x64", "t3.large"),
                    Arch::Arm64 => ("an arm64 (Graviton)", "t4g.large"),
                };
                let hint = if image_part.is_empty() {
                    format!(
                        "{} is an {} type but the image is {}; add an {} image such as ubuntu-24.04-arm, or use {want} type such as {example}",
                        t,
                        t.arch(),
                        image,
                        t.arch()
                    )
                } else {
                    format!(
                        "{} is an {} type but {} is an {} image; use {want} type such as {example}",
                        t,
                        t.arch(),
                        image,
                        image.arch()
                    )
                };
                return Err(LabelError::new(original, part, hint));
            }
            t
        }
        None => default_type(image.arch()),
    };
    let (region, availability_zone, subnet) = p
        .placement
        .unwrap_or_else(|| (parser.default_region().clone(), None, None));

    let root = match p.root {
        None => RootVolume::default(),
        Some((iops, throughput, part)) => {
            let iops = iops.unwrap_or(RootVolume::default().iops);
            let throughput = throughput.unwrap_or(RootVolume::default().throughput_mibps);
            check_gp3_ratio(original, part, iops, throughput)?;
            RootVolume {
                volume_type: VolumeType::Gp3,
                iops,
                throughput_mibps: throughput,
            }
        }
    };
    let temp = match p.temp {
        None => TempVolume::default(),
        Some((kind, amounts, part)) => resolve_temp(original, part, kind, amounts)?,
    };

    Ok(RunnerSpec {
        provider: Provider::Aws,
        account: p.account.flatten(),
        region,
        availability_zone,
        subnet,
        image,
        instance_type,
        spot: p.spot.unwrap_or_default(),
        security_group: p.security_group,
        root,
        temp,
        swap_gib: SWAP_GIB,
        events: p.events.unwrap_or(true),
    })
}

fn default_type(arch: Arch) -> InstanceType {
    InstanceType::default_for(arch)
}

fn parse_part<'a>(p: &mut Parts<'a>, label: &str, part: &'a str) -> Result<(), LabelError> {
    if part.is_empty() {
        return Err(LabelError::new(
            label,
            "",
            "an empty part (two colons in a row, or a trailing colon); remove it",
        ));
    }
    if let Some((key, value)) = part.split_once('=') {
        return match key {
            "spot" => {
                let mode = match value {
                    "false" => SpotMode::False,
                    "true" => SpotMode::True,
                    "auto" => SpotMode::Auto,
                    "rerun" => SpotMode::Rerun,
                    _ => {
                        return Err(LabelError::new(
                            label,
                            part,
                            "expected one of false, true, auto, rerun",
                        ));
                    }
                };
                set_once(&mut p.spot, mode, label, part, "spot")
            }
            "events" => {
                let on = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(LabelError::new(label, part, "expected one of true, false")),
                };
                set_once(&mut p.events, on, label, part, "events")
            }
            "root" => {
                let root = parse_root(label, part, value)?;
                set_once(&mut p.root, root, label, part, "root")
            }
            "temp" => {
                let temp = parse_temp(label, part, value)?;
                set_once(&mut p.temp, temp, label, part, "temp")
            }
            _ => Err(LabelError::new(
                label,
                part,
                "unknown setting; expected one of spot=, root=, temp=, events=",
            )),
        };
    }
    if part == "aws" || part.starts_with("aws/") {
        let account = match part.strip_prefix("aws/") {
            None => None,
            Some(id) => Some(AccountId::parse(id).map_err(|_| {
                LabelError::new(label, part, "expected aws/<12-digit AWS account id>")
            })?),
        };
        return set_once(&mut p.account, account, label, part, "the provider");
    }
    if part.starts_with("ubuntu-") {
        let image = Image::parse(part).ok_or_else(|| {
            LabelError::new(
                label,
                part,
                format!(
                    "unknown image; expected ubuntu-latest or one of {}",
                    super::IMAGE_NAMES.join(", ")
                ),
            )
        })?;
        return set_once(&mut p.image, (image, part), label, part, "the image");
    }
    if part.starts_with("sg-") {
        let sg = SecurityGroupId::parse(part).map_err(|_| {
            LabelError::new(
                label,
                part,
                "expected a security group id: sg- and 8 or 17 hex digits",
            )
        })?;
        return set_once(&mut p.security_group, sg, label, part, "the security group");
    }
    if part.contains('.') {
        let t = InstanceType::parse(part).map_err(|_| {
            LabelError::new(
                label,
                part,
                "expected an EC2 instance type such as m7i.large or c7g.xlarge",
            )
        })?;
        if t.family().starts_with("mac") {
            return Err(LabelError::new(
                label,
                part,
                "mac instances run macOS, not the Ubuntu runner images",
            ));
        }
        return set_once(
            &mut p.instance_type,
            (t, part),
            label,
            part,
            "the instance type",
        );
    }
    let b = part.as_bytes();
    if b.len() > 3 && b[0].is_ascii_lowercase() && b[1].is_ascii_lowercase() && b[2] == b'-' {
        let placement = parse_placement(label, part)?;
        return set_once(&mut p.placement, placement, label, part, "the placement");
    }
    Err(LabelError::new(
        label,
        part,
        format!("unknown part; {PART_FORMS}"),
    ))
}

type Placement = (Region, Option<AvailabilityZone>, Option<SubnetId>);

fn parse_placement(label: &str, part: &str) -> Result<Placement, LabelError> {
    const FORMS: &str = "expected <region>, <region>/<zone>, <region>/<zone>/<subnet-id> or a zone alone, e.g. eu-central-1, eu-central-1/eu-central-1b, eu-central-1b";
    let mut pieces = part.split('/');
    let first = pieces.next().unwrap_or_default();
    let second = pieces.next();
    let third = pieces.next();
    if pieces.next().is_some() {
        return Err(LabelError::new(label, part, FORMS));
    }
    if second.is_none() {
        if let Ok(region) = Region::parse(first) {
            return Ok((region, None, None));
        }
        if let Ok(az) = AvailabilityZone::parse(first) {
            return Ok((az.region(), Some(az), None));
        }
        return Err(LabelError::new(label, part, FORMS));
    }
    let region = Region::parse(first).map_err(|_| LabelError::new(label, part, FORMS))?;
    let zone = second.unwrap_or_default();
    // The zone may be given in full or as its letter(s) after the region.
    let az = AvailabilityZone::parse(zone)
        .or_else(|_| AvailabilityZone::parse(&format!("{region}{zone}")))
        .map_err(|_| LabelError::new(label, part, FORMS))?;
    if az.region() != region {
        return Err(LabelError::new(
            label,
            part,
            format!("zone {az} is not in region {region}"),
        ));
    }
    let subnet = match third {
        None => None,
        Some(s) => Some(SubnetId::parse(s).map_err(|_| {
            LabelError::new(
                label,
                part,
                "expected a subnet id after the zone: subnet- and 8 or 17 hex digits",
            )
        })?),
    };
    Ok((region, Some(az), subnet))
}

fn parse_amount(
    label: &str,
    part: &str,
    s: &str,
    what: &str,
    (lo, hi): (u32, u32),
) -> Result<Amount, LabelError> {
    if s == "max" {
        return Ok(Amount::Max);
    }
    match s.parse::<u32>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(Amount::Exactly(n)),
        _ => Err(LabelError::new(
            label,
            part,
            format!("{what} must be a number from {lo} to {hi}, or max; got `{s}`"),
        )),
    }
}

fn parse_root<'a>(
    label: &str,
    part: &'a str,
    value: &str,
) -> Result<(Option<u32>, Option<u32>, &'a str), LabelError> {
    let mut pieces = value.split('/');
    if pieces.next() != Some("gp3") {
        return Err(LabelError::new(
            label,
            part,
            "expected root=gp3/<iops>/<throughput MiB/s>",
        ));
    }
    let iops = pieces
        .next()
        .map(|s| parse_amount(label, part, s, "iops", GP3_IOPS))
        .transpose()?;
    let throughput = pieces
        .next()
        .map(|s| parse_amount(label, part, s, "throughput", GP3_THROUGHPUT))
        .transpose()?;
    if pieces.next().is_some() {
        return Err(LabelError::new(
            label,
            part,
            "expected root=gp3/<iops>/<throughput MiB/s>",
        ));
    }
    let iops = iops.map(|a| resolve_iops(a, None));
    let iops_for_max = iops.unwrap_or(RootVolume::default().iops);
    let throughput = throughput.map(|a| resolve_throughput(a, iops_for_max));
    Ok((iops, throughput, part))
}

fn parse_temp<'a>(
    label: &str,
    part: &'a str,
    value: &str,
) -> Result<(TempKind, [Option<Amount>; 3], &'a str), LabelError> {
    const FORMS: &str = "expected temp=<size>, temp=<type>, temp=<type>/<size> or temp=gp3/<size>/<iops>/<throughput>, with type gp3, ephemeral or zram";
    let pieces: Vec<&str> = value.split('/').collect();
    if pieces.len() > 4 || pieces.iter().any(|p| p.is_empty()) {
        return Err(LabelError::new(label, part, FORMS));
    }
    // `temp=64` means gp3 of 64 GiB.
    if pieces.len() == 1 && pieces[0].bytes().all(|b| b.is_ascii_digit()) {
        let size = parse_amount(label, part, pieces[0], "gp3 size (GiB)", GP3_SIZE_GIB)?;
        return Ok((TempKind::Gp3, [Some(size), None, None], part));
    }
    let kind = match pieces[0] {
        "gp3" => TempKind::Gp3,
        "ephemeral" => TempKind::Ephemeral,
        "zram" => TempKind::Zram,
        _ => return Err(LabelError::new(label, part, FORMS)),
    };
    let mut amounts = [None; 3];
    match kind {
        TempKind::Gp3 => {
            if pieces.len() == 3 {
                return Err(LabelError::new(
                    label,
                    part,
                    "expected temp=gp3/<size>/<iops>/<throughput>: give both iops and throughput",
                ));
            }
            let bounds = [
                ("gp3 size (GiB)", GP3_SIZE_GIB),
                ("iops", GP3_IOPS),
                ("throughput", GP3_THROUGHPUT),
            ];
            for (i, s) in pieces.iter().skip(1).enumerate() {
                let (what, range) = bounds[i];
                amounts[i] = Some(parse_amount(label, part, s, what, range)?);
            }
        }
        TempKind::Ephemeral => {
            if pieces.len() > 1 {
                return Err(LabelError::new(
                    label,
                    part,
                    "temp=ephemeral takes no size: it is the instance's first instance-store disk",
                ));
            }
        }
        TempKind::Zram => {
            if pieces.len() > 2 {
                return Err(LabelError::new(
                    label,
                    part,
                    "expected temp=zram or temp=zram/<size GiB>: a RAM disk has no iops or throughput",
                ));
            }
            if let Some(s) = pieces.get(1) {
                amounts[0] = Some(parse_amount(
                    label,
                    part,
                    s,
                    "zram size (GiB)",
                    ZRAM_SIZE_GIB,
                )?);
            }
        }
    }
    Ok((kind, amounts, part))
}

/// `max` IOPS is the most gp3 allows, for the volume's size when known.
fn resolve_iops(a: Amount, size_gib: Option<u32>) -> u32 {
    match a {
        Amount::Exactly(n) => n,
        Amount::Max => {
            let by_size = size_gib.map_or(GP3_IOPS.1, |s| s.saturating_mul(GP3_IOPS_PER_GIB));
            by_size.clamp(GP3_IOPS.0, GP3_IOPS.1)
        }
    }
}

/// `max` throughput is the most gp3 allows for the volume's IOPS.
fn resolve_throughput(a: Amount, iops: u32) -> u32 {
    match a {
        Amount::Exactly(n) => n,
        Amount::Max => (iops / GP3_IOPS_PER_MIBPS).clamp(GP3_THROUGHPUT.0, GP3_THROUGHPUT.1),
    }
}

fn check_gp3_ratio(label: &str, part: &str, iops: u32, throughput: u32) -> Result<(), LabelError> {
    if throughput > GP3_THROUGHPUT.0 && throughput.saturating_mul(GP3_IOPS_PER_MIBPS) > iops {
        return Err(LabelError::new(
            label,
            part,
            format!(
                "throughput {throughput} MiB/s needs at least {} iops (gp3 allows 0.25 MiB/s per iops)",
                throughput * GP3_IOPS_PER_MIBPS
            ),
        ));
    }
    Ok(())
}

fn resolve_temp(
    label: &str,
    part: &str,
    kind: TempKind,
    amounts: [Option<Amount>; 3],
) -> Result<TempVolume, LabelError> {
    match kind {
        TempKind::Gp3 => {
            let default = TempVolume::default();
            let size = match amounts[0] {
                Some(Amount::Exactly(n)) => n,
                Some(Amount::Max) => GP3_SIZE_GIB.1,
                None => default.size_gib.unwrap_or(14),
            };
            let iops = amounts[1].map_or(default.iops.unwrap_or(GP3_IOPS.0), |a| {
                resolve_iops(a, Some(size))
            });
            let throughput = amounts[2]
                .map_or(default.throughput_mibps.unwrap_or(GP3_THROUGHPUT.0), |a| {
                    resolve_throughput(a, iops)
                });
            if iops > GP3_IOPS.0 && iops > size.saturating_mul(GP3_IOPS_PER_GIB) {
                return Err(LabelError::new(
                    label,
                    part,
                    format!(
                        "{iops} iops needs a volume of at least {} GiB (gp3 allows 500 iops per GiB)",
                        iops.div_ceil(GP3_IOPS_PER_GIB)
                    ),
                ));
            }
            check_gp3_ratio(label, part, iops, throughput)?;
            Ok(TempVolume {
                kind,
                size_gib: Some(size),
                iops: Some(iops),
                throughput_mibps: Some(throughput),
            })
        }
        TempKind::Ephemeral => Ok(TempVolume {
            kind,
            size_gib: None,
            iops: None,
            throughput_mibps: None,
        }),
        TempKind::Zram => Ok(TempVolume {
            kind,
            size_gib: match amounts[0] {
                Some(Amount::Exactly(n)) => Some(n),
                Some(Amount::Max) => Some(ZRAM_SIZE_GIB.1),
                None => None,
            },
            iops: None,
            throughput_mibps: None,
        }),
    }
}
