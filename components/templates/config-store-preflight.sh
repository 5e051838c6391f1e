engine=@engine@
database=@database@
address=@address@
cluster_enabled=@cluster_enabled@
accept_pg=@accept_pg@
replica_targets=@replica_targets@
search_targets=@search_targets@
sql() { @local_sql@ "$@"; }
@dsn_checks@
# Preflight of the configuration stored in the stack's database (read-only), run on the database
# host as its local admin. Parameters set above: engine, database, address, cluster_enabled,
# accept_pg, replica_targets, search_targets, and sql() (the local admin client).
# A node whose configuration lives in the database (MM_CONFIG) cannot show its own preflight the
# settings stored there; they are read here: the active row of Configurations
# (server/config/database.go DatabaseStore.Load: SELECT Value FROM Configurations WHERE Active).
# It refuses, like the node preflight, clustering on while cluster.enabled is false, and replica
# DSNs for servers the stack does not list (or, where it lists none, without verified TLS).
# Values that may carry a password (DSNs) are never printed.
driver=$engine
accept_my=true
found=$(mktemp)
cfg=$(mktemp)
trap 'rm -f "$found" "$cfg"' EXIT
say() { printf '  - %s\n' "$*" >> "$found"; }
where="database host $address, database $database"
row="the active row of Configurations in database $database"

if [ "$engine" = postgres ]; then
  has=$(sql -d "$database" -At -c "SELECT to_regclass('public.configurations') IS NOT NULL" </dev/null)
  if [ "$has" = t ]; then
    sql -d "$database" -At -c "SELECT Value FROM Configurations WHERE Active" </dev/null > "$cfg"
  fi
else
  has=$(sql -N -B -e "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$database' AND TABLE_NAME = 'Configurations'" </dev/null)
  if [ "$has" = 1 ]; then
    sql -N -B -r -e "SELECT Value FROM Configurations WHERE Active" "$database" </dev/null > "$cfg"
  fi
fi

if [ ! -s "$cfg" ]; then
  # no stored configuration yet: Mattermost starts from its defaults with MM_CONFIG's DSN as
  # its DataSource (DatabaseStore.Load), which is the program's verified-TLS DSN
  echo "$where: no stored configuration yet (Mattermost creates it with its defaults)"
  exit 0
fi

out=$(mktemp)
trap 'rm -f "$found" "$cfg" "$out"' EXIT
rc=0
read_config_json "$cfg" > "$out" 2>/dev/null || rc=$?
case $rc in
  0) ;;
  3) say "cannot read $row: neither python3 nor jq is installed on the database host (@INSTALL_JQ@)." ;;
  *) say "$row is not readable JSON, so its ClusterSettings and SqlSettings cannot be checked. Fix it (Mattermost refuses it too)." ;;
esac

if grep -qx 'enable	true' "$out" && [ "$cluster_enabled" != true ]; then
  say "clustering is on (ClusterSettings.Enable is true in $row) while cluster.enabled is false: the nodes' gossip would stay in clear. Set cluster.enabled: true in the stack, or turn clustering off in the stored configuration."
fi
sed -n 's/^DataSourceReplicas	//p' "$out" | check_replica_list "SqlSettings.DataSourceReplicas in $row" database.replicas "$replica_targets"
sed -n 's/^DataSourceSearchReplicas	//p' "$out" | check_replica_list "SqlSettings.DataSourceSearchReplicas in $row" database.searchReplicas "$search_targets"

if [ -s "$found" ]; then
  {
    echo "$where: refusing to go on: the configuration stored there would leave a node connection in clear."
    echo "Fix the following, then run 'pulumi up' again (this check changed nothing, and no host is changed before it passes):"
    cat "$found"
  } >&2
  exit 1
fi
echo "$where: stored configuration checked (clustering as the stack says, replica DSNs verified or managed)"
