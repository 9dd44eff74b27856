"""moto_server made as strict as EC2 where the tests rely on it: tags by direct
lookup, RunInstances' ClientToken, gp3's limits, and no hop-limit default that
makes an assertion pass on its own.

moto 5.2.5 finds one resource's tags by scanning the tags of every resource
in the region (`TaggedEC2Resource.get_tags` calls `describe_tags` with a
resource-id filter), so a DescribeInstances that filters by tag, or that
lists n instances, costs O(n x all tags). A long run of the process tests
launches thousands of instances and volumes, each tagged, and the emulator
then takes minutes per listing. The answers are unchanged: the same tags, in
the same order, as `describe_tags` gives for that one id.

moto 5.2.5 also ignores RunInstances' ClientToken: every call starts a new
instance. EC2 does not ("Ensuring idempotency in Amazon EC2 API requests",
docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html): a retry
with the same client token and the same parameters returns the original
result and starts nothing; the same token with any parameter changed other
than the Region or Availability Zone fails with IdempotentParameterMismatch;
a token stays bound for at least 24 hours after its instance terminated
(kept here for the server's life). Without this, a launch retried after a
crash proves its idempotency against moto only by luck.

moto accepts any EBS volume. EC2 holds gp3 to 3,000-80,000 IOPS, 125-2,000
MiB/s and 1 GiB-64 TiB (EBS user guide, "General Purpose SSD volumes",
docs.aws.amazon.com/ebs/latest/userguide/general-purpose.html; limits raised
in September 2025), with at most 500 IOPS per GiB and 0.25 MiB/s per IOPS
beyond the 3,000 IOPS and 125 MiB/s every gp3 volume has; a mapping without a
size has its snapshot's. Refused here with InvalidParameterValue.

moto defaults an omitted MetadataOptions.HttpPutResponseHopLimit to 1, the
value the launcher must set, so a test asserting it cannot fail. Here it
defaults to 2, what EC2 gives an instance of an AMI registered with
ImdsSupport v2.0 ("Configure instance metadata options for new instances",
EC2 user guide): a launch that omits it fails that test.
"""

import hashlib
import sys
import threading

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.responses.instances import InstanceResponse
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix
from moto.server import main


def get_tags(self):
    if not self.id:
        return []
    resource_type = EC2_PREFIX_TO_RESOURCE.get(get_prefix(self.id), "")
    tags = self.ec2_backend.tags.get(self.id, {})
    return [
        {"resource_id": self.id, "key": k, "value": v, "resource_type": resource_type}
        for k, v in tags.items()
    ]


TaggedEC2Resource.get_tags = get_tags

# (account, region, token) -> (the parameters it binds, reservation id)
_TOKENS = {}
# One RunInstances at a time per token: two concurrent calls with one token
# must not both start an instance (moto_server serves requests on threads).
# Calls with other tokens are not held up: a queue of them here would keep
# a killed process's last request in flight for longer than EC2 does.
_TOKEN_LOCKS = {}
_TOKEN_LOCKS_LOCK = threading.Lock()
_run_instances = InstanceResponse.run_instances
_IGNORED = {"ClientToken", "Action", "Version", "Placement.AvailabilityZone"}


class IdempotentParameterMismatch(EC2ClientError):
    def __init__(self) -> None:
        super().__init__(
            "IdempotentParameterMismatch",
            "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).",
        )


def _bound(querystring):
    """The parameters a token binds, each hashed (user data holds secrets)."""
    return {
        key: hashlib.sha256(repr(value).encode()).hexdigest()
        for key, value in querystring.items()
        if key not in _IGNORED
    }


def _image_root_gib(backend, image_id, device):
    """The size of `image_id`'s snapshot for `device`, as DescribeImages says."""
    image = backend.amis.get(image_id) if image_id else None
    for mapping in getattr(image, "block_device_mappings", []) or []:
        if mapping.get("DeviceName") == device:
            return int(mapping.get("Ebs", {}).get("VolumeSize", 8))
    return 8


def _check_volumes(self):
    """Refuses the first gp3 volume EC2 would refuse, naming it."""
    query = self.querystring
    first = lambda key: (query.get(key) or [None])[0]  # noqa: E731
    image_id = first("ImageId")
    n = 1
    while first(f"BlockDeviceMapping.{n}.DeviceName") is not None:
        prefix = f"BlockDeviceMapping.{n}"
        n += 1
        device = first(f"{prefix}.DeviceName")
        if first(f"{prefix}.Ebs.VolumeType") != "gp3":
            continue
        size = first(f"{prefix}.Ebs.VolumeSize")
        size = int(size) if size is not None else _image_root_gib(self.ec2_backend, image_id, device)
        iops = int(first(f"{prefix}.Ebs.Iops") or 3000)
        throughput = int(first(f"{prefix}.Ebs.Throughput") or 125)
        problem = None
        if not 1 <= size <= 65536:
            problem = f"Volume of {size}GiB for {device} is outside gp3's 1-65536GiB"
        elif not 3000 <= iops <= 80000:
            problem = f"Iops of {iops} for {device} is outside gp3's 3000-80000"
        elif not 125 <= throughput <= 2000:
            problem = f"Throughput of {throughput}MiB/s for {device} is outside gp3's 125-2000"
        elif iops > 3000 and iops > size * 500:
            problem = (
                f"Iops to volume size ratio of {iops / size:.6f} is too high; maximum is 500.000000 ({device})"
            )
        elif throughput > 125 and throughput * 4 > iops:
            problem = (
                f"Throughput (MiBps) to iops ratio of {throughput / iops:.6f} is too high; "
                f"maximum is 0.250000 MiBps per iops ({device})"
            )
        if problem is not None:
            print(f"sprinters: RunInstances refused: {problem}", file=sys.stderr)
            raise EC2ClientError("InvalidParameterValue", problem)


def _default_hop_limit(self, result):
    if "MetadataOptions.HttpPutResponseHopLimit" in self.querystring:
        return
    reservation = getattr(result, "result", None)
    for instance in getattr(reservation, "instances", []) or []:
        instance.metadata_options.http_put_response_hop_limit = 2


def run_instances(self):
    _check_volumes(self)
    result = _run_instances_once(self)
    _default_hop_limit(self, result)
    return result


def _run_instances_once(self):
    # Each replay or refusal is logged: a run's moto log shows how often a
    # retried launch relied on its token.
    token = self._get_param("ClientToken")
    if not token:
        return _run_instances(self)
    key = (self.current_account, self.region, token)
    bound = _bound(self.querystring)
    with _TOKEN_LOCKS_LOCK:
        token_lock = _TOKEN_LOCKS.setdefault(key, threading.Lock())
    with token_lock:
        known = _TOKENS.get(key)
        if known is not None:
            if known[0] != bound:
                changed = sorted(k for k in set(known[0]) | set(bound) if known[0].get(k) != bound.get(k))
                print(f"sprinters: ClientToken {token} reused with other {changed}", file=sys.stderr)
                raise IdempotentParameterMismatch()
            reservation = self.ec2_backend.reservations.get(known[1])
            if reservation is not None:
                print(f"sprinters: ClientToken {token} answered with its first instance", file=sys.stderr)
                return ActionResult(reservation)
        result = _run_instances(self)
        reservation = getattr(result, "result", None)
        reservation_id = getattr(reservation, "id", None)
        if reservation_id is not None:
            _TOKENS[key] = (bound, reservation_id)
        return result


InstanceResponse.run_instances = run_instances

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
