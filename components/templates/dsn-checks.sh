# Shared by the node and config-store preflights (prepended to each). Needs: driver, accept_pg,
# accept_my, and a say() that records one finding.

# JSON of the config file: python3, else jq. Prints "enable<TAB>ok" then one line per replica
# as "<setting><TAB><dsn>".
read_config_json() {
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$1" <<'PY'
import json, sys
with open(sys.argv[1], encoding="utf-8") as fh:
    cfg = json.load(fh)
cluster = cfg.get("ClusterSettings") or {}
sql = cfg.get("SqlSettings") or {}
print("enable\t" + ("true" if cluster.get("Enable") is True else "false"))
for key in ("DataSourceReplicas", "DataSourceSearchReplicas"):
    for dsn in sql.get(key) or []:
        if isinstance(dsn, str) and dsn.strip() and "\n" not in dsn:
            print(key + "\t" + dsn)
PY
  elif command -v jq >/dev/null 2>&1; then
    jq -r '"enable\t" + (if .ClusterSettings.Enable == true then "true" else "false" end),
      ((.SqlSettings.DataSourceReplicas // [])[] | select(type == "string" and . != "") | "DataSourceReplicas\t" + .),
      ((.SqlSettings.DataSourceSearchReplicas // [])[] | select(type == "string" and . != "") | "DataSourceSearchReplicas\t" + .)' "$1"
  else
    return 3
  fi
}

# Is a DSN's TLS verified? Prints nothing if so, else what it has instead. Never prints the DSN.
# PostgreSQL (lib/pq): sslmode; MySQL (go-sql-driver): tls. Accepted: what the main DSN uses.
dsn_problem() {
  dsn=$1
  case "$dsn" in
    postgres://*|postgresql://*) kind=postgres ;;
    mysql://*|*@tcp\(*|*@unix\(*) kind=mysql ;;
    *sslmode=*|*host=*) kind=postgres ;;
    *) kind=$driver ;;
  esac
  if [ "$kind" = postgres ]; then
    mode=$(printf '%s' "$dsn" | sed -n 's/.*[?&[:space:]]sslmode=\([A-Za-z-]*\).*/\1/p; s/^sslmode=\([A-Za-z-]*\).*/\1/p' | head -n 1)
    for ok in $accept_pg; do [ "$mode" != "$ok" ] || return 0; done
    if [ -n "$mode" ]; then have="sslmode=$mode"; else have="no sslmode (lib/pq then does not verify the server)"; fi
    printf 'a PostgreSQL DSN with %s; use sslmode=%s with sslrootcert=<the stack CA>' "$have" "${accept_pg%% *}"
  else
    mode=$(printf '%s' "$dsn" | sed -n 's/.*[?&]tls=\([A-Za-z0-9_-]*\).*/\1/p' | head -n 1)
    for ok in $accept_my; do [ "$mode" != "$ok" ] || return 0; done
    if [ -n "$mode" ]; then have="tls=$mode"; else have="no tls parameter (plain text)"; fi
    printf 'a MySQL DSN with %s; use tls=%s (the stack CA is in the system trust store)' "$have" "${accept_my%% *}"
  fi
}

# "user@host:port/db" of a DSN (never its password), as lib/pq / go-sql-driver read it.
dsn_where() {
  d=$1
  case "$d" in mysql://*) d=${d#mysql://} ;; esac
  case "$d" in
    postgres://*|postgresql://*)
      r=${d#*://}; r=${r%%\?*}
      w_db=""; case "$r" in */*) w_db=${r#*/} ;; esac
      r=${r%%/*}
      w_user=""; case "$r" in *@*) w_user=${r%@*}; w_user=${w_user%%:*}; r=${r##*@} ;; esac
      case "$r" in *:*) w_host=${r%:*}; w_port=${r##*:} ;; *) w_host=$r; w_port=5432 ;; esac
      [ -n "$w_host" ] || w_host=localhost
      ;;
    *@tcp\(*)
      cred=${d%@tcp(*}; w_user=${cred%%:*}
      addr=$(printf '%s' "$d" | sed -n 's/.*@tcp(\([^)]*\)).*/\1/p')
      case "$addr" in *:*) w_host=${addr%:*}; w_port=${addr##*:} ;; *) w_host=${addr:-127.0.0.1}; w_port=3306 ;; esac
      w_db=${d#*@tcp(*)/}; w_db=${w_db%%\?*}
      ;;
    *)
      kv() { printf '%s' "$d" | sed -n "s/.*\(^\|[[:space:]]\)$1=\([^[:space:]]*\).*/\2/p" | head -n 1; }
      w_user=$(kv user); w_host=$(kv host); w_port=$(kv port); w_db=$(kv dbname)
      [ -n "$w_host" ] || w_host=localhost
      [ -n "$w_port" ] || w_port=5432
      ;;
  esac
  printf '%s@%s:%s/%s' "$w_user" "$w_host" "$w_port" "$w_db"
}

# Is $1 one of the words in $2?
one_of() { for w in $2; do [ "$1" != "$w" ] || return 0; done; return 1; }

# Check one replica list (one DSN per line on stdin) of setting source $1 against the stack's
# key $2 and its servers $3 ("user@host:port/db" words; empty: the stack manages none).
check_replica_list() {
  i=0
  while IFS= read -r one; do
    [ -n "$one" ] || continue
    at=$(dsn_where "$one")
    if [ -n "$3" ]; then
      # the program replaces the node's whole list with verified-TLS DSNs for the stack's servers
      one_of "$at" "$3" || say "$1, entry $i (counted from 0) points at $at, which is not in $2. The program replaces this list with verified-TLS DSNs for the servers in $2: add that server there, or remove the entry."
    else
      problem=$(dsn_problem "$one")
      [ -z "$problem" ] || say "$1, entry $i (counted from 0): $problem, or remove the entry, or list that server ($at) in $2 (the program then gives it a certificate and every node a verified-TLS DSN for it). Every database connection of the node must verify TLS like the main DSN."
    fi
    i=$((i + 1))
  done
}
