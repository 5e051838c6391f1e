"""mattermost-transport-encryption: read and validate the stack config, build the Deployment
(components/deployment.py: every component, in the order the rollout needs) and export what
other stacks consume."""

import pulumi

from components import config
from components.deployment import Deployment

deployment = Deployment(config.load())
for name, value in deployment.exports.items():
    pulumi.export(name, value)
