"""moto_server with one fix: a tagged EC2 resource's own tags by direct lookup.

moto 5.2.5 finds one resource's tags by scanning the tags of every resource
in the region (`TaggedEC2Resource.get_tags` calls `describe_tags` with a
resource-id filter), so a DescribeInstances that filters by tag, or that
lists n instances, costs O(n x all tags). A long run of the process tests
launches thousands of instances and volumes, each tagged, and the emulator
then takes minutes per listing. The answers are unchanged: the same tags, in
the same order, as `describe_tags` gives for that one id.
"""

import sys

from moto.ec2.models.core import TaggedEC2Resource
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

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
