"""The stack configuration: one schema, read once, validated once, before any resource exists.

Owns every decision about what a valid configuration is and every default. A bad value raises
`ConfigError` naming the full key (e.g. `mattermost-transport-encryption:nodes[1].address`) and
the fix; __main__.py hands it to Pulumi as a RunError, which stops the preview with that message
(no traceback) and registers nothing.

Values that reach a shell script or a configuration file (names, paths, users, addresses) are
restricted to characters that cannot break out of either, on top of the quoting every renderer
does. Secrets (SSH private key, database passwords, tokens) are separate secret config keys and
come back as `SecretStr`; components wrap them in `pulumi.Output.secret` at once.

The package: `fields` (restricted value types, the project's keys and ConfigError), `schema`
(the sections, StackConfig and the checks across them, the resource names a config plans),
`loading` (reading the keys, `parse`, `load`, error messages). The lab's inventory merge lives in
lab/stack_inventory.py, outside the production schema.
"""

from components.config.fields import (
    NAME_RE,
    PROJECT,
    SECRET_KEYS,
    SECRET_SET_COMMANDS,
    ConfigError,
    version_tuple,
)
from components.config.loading import (
    EMPTY_DEFAULT_KEYS,
    REMOVED_KEYS,
    fields_of,
    known_keys,
    load,
    parse,
    section_of,
)
from components.config.schema import (
    MYSQL_TLS_MODES,
    POSTGRES_SSLMODES,
    Ca,
    Cluster,
    Database,
    DatabaseReplica,
    Gitlab,
    HostSsh,
    MattermostDefaults,
    Model,
    Node,
    Proxy,
    ProxyTls,
    SshDefaults,
    StackConfig,
    Teleport,
    ca_prefix,
    planned_resource_names,
)

__all__ = [
    "EMPTY_DEFAULT_KEYS",
    "MYSQL_TLS_MODES",
    "NAME_RE",
    "POSTGRES_SSLMODES",
    "PROJECT",
    "REMOVED_KEYS",
    "SECRET_KEYS",
    "SECRET_SET_COMMANDS",
    "Ca",
    "Cluster",
    "ConfigError",
    "Database",
    "DatabaseReplica",
    "Gitlab",
    "HostSsh",
    "MattermostDefaults",
    "Model",
    "Node",
    "Proxy",
    "ProxyTls",
    "SshDefaults",
    "StackConfig",
    "Teleport",
    "ca_prefix",
    "fields_of",
    "known_keys",
    "load",
    "parse",
    "planned_resource_names",
    "section_of",
    "version_tuple",
]
