"""A second stack that consumes a mattermost-transport-encryption stack through a StackReference:
it trusts that stack's CA (`caCertPem`) and pins each node's certificate by its SHA-256
fingerprint (`nodes.<name>.certFingerprintSha256`), e.g. for a monitoring probe or a client
outside the deployment. Set the producer with
`pulumi config set producer organization/mattermost-transport-encryption/prod`."""

import pulumi
from trust import node_pins, trusted_ca

producer = pulumi.StackReference(pulumi.Config().require("producer"))

pulumi.export("trustedCaPem", producer.require_output("caCertPem").apply(trusted_ca))
pulumi.export("nodePins", producer.require_output("nodes").apply(node_pins))
