//! The zone with the cheapest spot price for an instance type.

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_sdk_ec2::types::InstanceType as Ec2InstanceType;
use aws_smithy_types::DateTime;
use sprinters_core::Result;
use sprinters_core::domain::{AvailabilityZone, InstanceType};

use super::Target;
use crate::error::map_sdk_error;

/// The current spot price of one type, per zone, in millionths of a dollar
/// an hour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SpotPrices {
    pub(crate) by_zone: BTreeMap<AvailabilityZone, u64>,
}

impl SpotPrices {
    /// The latest Linux price of `instance_type` in each zone.
    pub(crate) async fn load(target: &Target<'_>, instance_type: &InstanceType) -> Result<Self> {
        let context = format!(
            "reading spot prices of {instance_type} in {}",
            target.region
        );
        let output = target
            .client
            .describe_spot_price_history()
            .instance_types(Ec2InstanceType::from(instance_type.as_str()))
            .product_descriptions("Linux/UNIX")
            .product_descriptions("Linux/UNIX (Amazon VPC)")
            // From now: only the current price of each zone.
            .start_time(DateTime::from(SystemTime::now()))
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "ec2:DescribeSpotPriceHistory", &context))?;
        let mut latest: BTreeMap<AvailabilityZone, (DateTime, u64)> = BTreeMap::new();
        for price in output.spot_price_history() {
            let (Some(zone), Some(value)) = (price.availability_zone(), price.spot_price()) else {
                continue;
            };
            let (Ok(zone), Some(micros)) =
                (AvailabilityZone::parse(zone), dollars_to_micros(value))
            else {
                continue;
            };
            let at = price.timestamp().copied().unwrap_or(DateTime::from_secs(0));
            let newer = latest
                .get(&zone)
                .is_none_or(|(seen, _)| at.secs() > seen.secs());
            if newer {
                latest.insert(zone, (at, micros));
            }
        }
        Ok(Self {
            by_zone: latest.into_iter().map(|(z, (_, p))| (z, p)).collect(),
        })
    }

    /// The cheapest of `zones` that has a price, and its price; ties go to
    /// the first zone in order.
    pub(crate) fn cheapest<'z>(
        &self,
        zones: impl IntoIterator<Item = &'z AvailabilityZone>,
    ) -> Option<(AvailabilityZone, u64)> {
        zones
            .into_iter()
            .filter_map(|z| self.by_zone.get(z).map(|p| (z.clone(), *p)))
            .min_by_key(|(_, p)| *p)
    }
}

/// "0.0312" dollars → 31_200 micros. Anything else is ignored.
fn dollars_to_micros(s: &str) -> Option<u64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut digits: String = frac.chars().take(6).collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    while digits.len() < 6 {
        digits.push('0');
    }
    whole
        .checked_mul(1_000_000)?
        .checked_add(digits.parse().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_parse_to_micros() {
        assert_eq!(dollars_to_micros("0.0312"), Some(31_200));
        assert_eq!(dollars_to_micros("1.5"), Some(1_500_000));
        assert_eq!(dollars_to_micros("2"), Some(2_000_000));
        assert_eq!(dollars_to_micros("0.00001"), Some(10));
        assert_eq!(dollars_to_micros("abc"), None);
        assert_eq!(dollars_to_micros("."), None);
        assert_eq!(dollars_to_micros("-1"), None);
    }

    #[test]
    fn the_cheapest_known_zone_wins() {
        let z = |s| AvailabilityZone::parse(s).unwrap();
        let prices = SpotPrices {
            by_zone: [
                (z("us-east-1a"), 50),
                (z("us-east-1b"), 20),
                (z("us-east-1c"), 10),
            ]
            .into_iter()
            .collect(),
        };
        let zones = [z("us-east-1a"), z("us-east-1b"), z("us-east-1d")];
        assert_eq!(prices.cheapest(&zones), Some((z("us-east-1b"), 20)));
        assert_eq!(prices.cheapest(&[z("us-east-1d")]), None);
    }
}
