node=@node@
address=@address@
unit=@unit@
install_dir=@install_dir@
version=@version@
version_key=@version_key@
cluster_enabled=@cluster_enabled@
own_env=@own_env@
accept_pg=@accept_pg@
accept_my=@accept_my@
driver=@driver@
proc=@proc@
config_store=@config_store@
store_key=@store_key@
store_targets=@store_targets@
replica_key=@replica_key@
replica_targets=@replica_targets@
search_key=@search_key@
search_targets=@search_targets@
@dsn_checks@
# Preflight of one Mattermost node (read-only). Parameters set above: node, address, unit,
# install_dir, version, version_key, cluster_enabled, own_env, accept_pg, accept_my, driver, proc,
# config_store, store_key, store_targets, replica_key, replica_targets, search_key, search_targets.
# It changes nothing. It reads what is really on the host and refuses to let the stack touch any
# host when the config would describe this node wrongly or leave one of its connections in clear:
#   1. the installed version (`mattermost version`) differs from the stack's version key, which
#      decides the gossip-encryption setting name and MySQL support;
#   2. clustering is on in the node's effective config while cluster.enabled is false (its gossip
#      would stay in clear, untunnelled and unencrypted);
#   3. the config lives in the database (MM_CONFIG / --config is a DSN) while the stack says
#      configStore file, or points at another server than the stack's database (the program
#      replaces that DSN with the stack's, verified TLS); or the stack says database and the node
#      reads a file. The settings stored in the database are checked on the database host
#      (config-store-preflight.sh);
#   4. SqlSettings.DataSourceReplicas / DataSourceSearchReplicas hold a DSN for a server that is
#      not in the stack's database.replicas / searchReplicas (the program replaces the list with
#      verified-TLS DSNs for exactly those), or, where the stack lists none, without verified TLS.
# Values that may carry a password (DSNs) are never printed.
found=$(mktemp)
trap 'rm -f "$found"' EXIT
say() { printf '  - %s\n' "$*" >> "$found"; }
where="node $node ($address)"

# Env booleans as Mattermost reads them: strconv.ParseBool (server/config/environment.go applyEnvKey).
is_true() { case "$1" in 1|t|T|TRUE|true|True) return 0 ;; *) return 1 ;; esac; }

# One variable from an EnvironmentFile (systemd.exec(5): NAME=value, optionally quoted). Last wins.
env_file_get() {
  sed -n "s/^[[:space:]]*$1=//p" "$2" 2>/dev/null | tail -n 1 | sed -e 's/^"\(.*\)"[[:space:]]*$/\1/' -e "s/^'\(.*\)'[[:space:]]*\$/\1/"
}

# The unit's environment as systemd will start it (Environment=, then EnvironmentFile= which
# overrides it), without this program's own env file: what the node has apart from us.
# Prints "value<TAB>source" of NAME, or nothing.
unit_env_get() {
  hit=""
  # systemctl show quotes an assignment holding spaces ("NAME=a b"); xargs undoes that quoting
  value=$(systemctl show -p Environment --value "$unit.service" 2>/dev/null | xargs -n 1 printf '%s\n' 2>/dev/null | grep "^$1=" | tail -n 1) || true
  [ -z "$value" ] || hit="${value#*=}	Environment= of $unit.service"
  for f in $(systemctl show -p EnvironmentFiles --value "$unit.service" 2>/dev/null | sed 's/ (ignore_errors=[a-z]*)$//'); do
    [ "$f" != "$own_env" ] || continue
    [ -r "$f" ] || continue
    if grep -q "^[[:space:]]*$1=" "$f" 2>/dev/null; then
      hit="$(env_file_get "$1" "$f")	$f"
    fi
  done
  [ -z "$hit" ] || printf '%s\n' "$hit"
}

# One variable of the running server (/proc/<MainPID>/environ, NUL-separated).
proc_env_get() {
  pid=$(systemctl show -p MainPID --value "$unit.service" 2>/dev/null || true)
  case "$pid" in ''|0|*[!0-9]*) return 0 ;; esac
  [ -r "$proc/$pid/environ" ] || return 0
  tr '\0' '\n' < "$proc/$pid/environ" | sed -n "s/^$1=//p" | tail -n 1
}

# ---- 0. the unit
if ! systemctl cat "$unit.service" >/dev/null 2>&1; then
  say "systemd does not know $unit.service. Set mattermost.unit (or this node's unit) to the unit that runs Mattermost."
fi

# ---- 1. the installed version decides (server/cmd/mattermost/commands/version.go versionCmdF prints "Version: X.Y.Z")
bin="$install_dir/bin/mattermost"
installed=""
if [ ! -x "$bin" ]; then
  say "no Mattermost binary at $bin. Set mattermost.installDir (or this node's installDir) to where Mattermost is installed."
else
  out=$(timeout 60 "$bin" version 2>/dev/null) || out=""
  installed=$(printf '%s\n' "$out" | sed -n 's/^Version:[[:space:]]*\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n 1)
  if [ -z "$installed" ]; then
    say "'$bin version' printed no 'Version: X.Y.Z' line, so the installed version is unknown. Check that $bin is the Mattermost server."
  else
    # the stack's value may name X.Y (any patch release) or X.Y.Z (exactly that one)
    case "$installed." in
      "$version".*) ;;
      *) say "Mattermost $installed is installed ($bin version), but the stack says $version ($version_key). The version decides the gossip-encryption setting name (EnableExperimentalGossipEncryption before v10.11) and MySQL support. Set $version_key to $installed, or upgrade the node to $version first." ;;
    esac
  fi
fi

# ---- 2. where the effective config comes from (server/cmd/mattermost/commands: getConfigDSN):
# --config/-c on the command line, else MM_CONFIG, else config.json; a relative file path is
# found under the config directory (server/config/file.go resolveConfigFilePath).
source_desc=""
cfg_arg=""
argv=$(systemctl show -p ExecStart --value "$unit.service" 2>/dev/null | sed -n 's/.*argv\[\]=\([^;]*\);.*/\1/p' | head -n 1) || argv=""
next=""
for word in $argv; do
  if [ -n "$next" ]; then cfg_arg=$word; next=""; continue; fi
  case "$word" in
    --config|-c) next=1 ;;
    --config=*) cfg_arg=${word#--config=} ;;
    -c=*) cfg_arg=${word#-c=} ;;
    -c?*) cfg_arg=${word#-c} ;;
  esac
done
if [ -n "$cfg_arg" ]; then
  dsn=$cfg_arg
  source_desc="--config in ExecStart= of $unit.service"
else
  dsn=""
  line=$(unit_env_get MM_CONFIG)
  if [ -n "$line" ]; then
    dsn=$(printf '%s' "$line" | cut -f 1)
    source_desc="MM_CONFIG in $(printf '%s' "$line" | cut -f 2-)"
  fi
  running=$(proc_env_get MM_CONFIG)
  if [ -z "$dsn" ] && [ -n "$running" ]; then
    dsn=$running
    source_desc="MM_CONFIG in the environment of the running $unit.service"
  fi
fi
[ -n "$dsn" ] || dsn=config.json

config_file=""
in_database=false
case "$dsn" in
  postgres://*|postgresql://*|mysql://*)
    in_database=true
    scheme=${dsn%%://*}
    at=$(dsn_where "$dsn")
    kind=postgres; [ "$scheme" != mysql ] || kind=mysql
    if [ "$config_store" != database ]; then
      problem=$(dsn_problem "$dsn")
      say "Mattermost reads its configuration from the database ($scheme://$at, $source_desc; ${problem:-its DSN verifies TLS}), but the stack says $store_key: file. Set $store_key: database: the program then gives that connection the stack's verified TLS (its own MM_CONFIG, which wins over ${source_desc%% in *}), and the settings stored there are checked on the database host. Or move the configuration to a file (export it to $install_dir/config/config.json) and remove ${source_desc%% in *} from $unit.service. Then run 'pulumi up' again."
    elif [ -n "$cfg_arg" ]; then
      say "Mattermost reads its configuration from $scheme://$at given by $source_desc, which wins over any MM_CONFIG, so the program could not give that connection TLS. Set MM_CONFIG in the unit's environment instead of --config (the program then replaces it with the verified-TLS DSN), or set $store_key: file and keep the configuration in a file."
    elif [ "$kind" != "$driver" ] || ! one_of "$at" "$store_targets"; then
      say "Mattermost reads its configuration from $scheme://$at ($source_desc), which is not the stack's database (${store_targets%% *}, driver $driver). The program sets MM_CONFIG to the stack's database with verified TLS, so the configuration must live there: move it into the stack's database (mattermost config migrate), or set $store_key: file and keep it in a file."
    fi
    ;;
  /*) config_file=$dsn ;;
  *) config_file="$install_dir/config/$dsn" ;;
esac
if [ "$config_store" = database ] && [ "$in_database" = false ]; then
  say "the stack says $store_key: database, but Mattermost on this node reads its configuration from ${config_file} (${source_desc:-the default path}). Set $store_key: file, or move the configuration into the stack's database first."
fi

# ---- 3. clustering and read replicas of the effective config (env wins over the file)
cluster_on=false
cluster_src=""
replicas=$(mktemp)
trap 'rm -f "$found" "$replicas"' EXIT
if [ -n "$config_file" ]; then
  if [ -e "$config_file" ]; then
    if read_config_json "$config_file" > "$replicas" 2>/dev/null; then
      if grep -qx 'enable	true' "$replicas"; then
        cluster_on=true
        cluster_src="ClusterSettings.Enable is true in $config_file"
      fi
    elif command -v python3 >/dev/null 2>&1 || command -v jq >/dev/null 2>&1; then
      say "$config_file is not readable JSON, so its ClusterSettings and SqlSettings cannot be checked. Fix the file (Mattermost refuses it too)."
    else
      say "cannot read $config_file: neither python3 nor jq is installed (@INSTALL_JQ@)."
    fi
  fi
  # a file that does not exist yet is created with Mattermost's defaults: clustering off, no replicas
fi
line=$(unit_env_get MM_CLUSTERSETTINGS_ENABLE)
if [ -n "$line" ]; then
  if is_true "$(printf '%s' "$line" | cut -f 1)"; then
    cluster_on=true
    cluster_src="MM_CLUSTERSETTINGS_ENABLE is true in $(printf '%s' "$line" | cut -f 2-)"
  else
    cluster_on=false
  fi
fi
if [ "$cluster_on" = true ] && [ "$cluster_enabled" != true ]; then
  say "clustering is on ($cluster_src) while cluster.enabled is false: this node's gossip would stay in clear. Set cluster.enabled: true in the stack (it then tunnels and encrypts the gossip), or turn clustering off on the node (ClusterSettings.Enable: false)."
fi

for setting in DataSourceReplicas DataSourceSearchReplicas; do
  var=MM_SQLSETTINGS_$(printf '%s' "$setting" | tr '[:lower:]' '[:upper:]')
  line=$(unit_env_get "$var")
  if [ -n "$line" ]; then
    # env wins over the file; a list setting is split on spaces
    list=$(printf '%s' "$line" | cut -f 1 | tr ' ' '\n' | sed '/^$/d')
    src="$var in $(printf '%s' "$line" | cut -f 2-)"
  else
    list=$(sed -n "s/^$setting	//p" "$replicas")
    src="SqlSettings.$setting in ${config_file:-the config}"
  fi
  if [ "$setting" = DataSourceReplicas ]; then key=$replica_key; targets=$replica_targets; else key=$search_key; targets=$search_targets; fi
  printf '%s\n' "$list" | check_replica_list "$src" "$key" "$targets"
done

if [ -s "$found" ]; then
  {
    echo "$where: refusing to go on: what is installed on this node does not match the stack, or would stay in clear."
    echo "Fix the following, then run 'pulumi up' again (this check changed nothing, and no host is changed before it passes):"
    cat "$found"
  } >&2
  exit 1
fi
if [ "$in_database" = true ]; then cfg_desc="in the stack's database"; else cfg_desc=$config_file; fi
echo "$where: Mattermost $installed (as $version_key says), config $cfg_desc, clustering ${cluster_on}, replica DSNs verified or managed"
