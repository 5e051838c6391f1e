mtm_node_fail() { printf '%s\n' "$1" >&2; exit 1; }
@system_trust@
