who=@who@
mtm_fail() { printf '%s\n' "$who: $*" >&2; exit 1; }
sql() { @sql_client@ "$@"; }
