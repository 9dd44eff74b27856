"""moto_server with two fixes: tags by direct lookup, and RunInstances' ClientToken.

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


def run_instances(self):
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
