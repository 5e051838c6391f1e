"""mattermost-transport-encryption: read and validate the stack config, build the Deployment
(components/deployment.py: every component, in the order the rollout needs) and export what
other stacks consume."""

import gc

import pulumi

from components import config
from components.deployment import Deployment

# The SDK keeps an asyncio task, its callbacks and a Context copy per pending Output; surviving
# two young collections, they reach the oldest generation, whose full collections walk the whole
# heap (~1 M objects at 100 nodes): 90 % of the evaluation's CPU at 100 nodes and the reason it
# grew faster than the resources (bench/run.py prints the GC share). Fewer young collections
# let them die young; the memory cost is a few MB of garbage held a little longer.
gc.set_threshold(50_000, 10, 10)
try:
    deployment = Deployment(config.load())
except config.ConfigError as e:
    # A RunError is printed as its message alone; any other exception as "Program failed with an
    # unhandled exception" and a traceback (pulumi/pulumi sdk/python/cmd/pulumi-language-python-exec,
    # `except pulumi.RunError as e: pulumi.log.error(str(e))`). ConfigError stays plain so the
    # config and the renderers never import Pulumi; the checks that run inside an apply raise
    # components.database.ConfigRunError, because they fail after this line has returned.
    raise pulumi.RunError(str(e)) from None
for name, value in deployment.exports.items():
    pulumi.export(name, value)
