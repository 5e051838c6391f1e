#!/bin/sh
# First-boot seeding of one lab host's "before" state (the manual install the
# program then encrypts). Runs inside the host, from two oneshot units:
#   seed.sh files  (mmtls-lab-seed.service, before the role's services start)
#   seed.sh sql    (mmtls-lab-seed-sql.service, after the database started)
# Inputs were staged by lab/seeding.py into /usr/local/lib/mmtls-lab and
# /etc/mmtls-lab/host.env (NAME, ROLE, passwords of this host's database).
set -eu
stage=/usr/local/lib/mmtls-lab
state=/var/lib/mmtls-lab
. /etc/mmtls-lab/host.env
mkdir -p "$state"

files_node() {
    getent group mattermost >/dev/null || groupadd --system mattermost
    getent passwd mattermost >/dev/null ||
        useradd --system --gid mattermost --home-dir /opt/mattermost --no-create-home \
            --shell /usr/sbin/nologin mattermost
    install -d -m 0755 -o mattermost -g mattermost /opt/mattermost /opt/mattermost/bin \
        /opt/mattermost/config /opt/mattermost/logs /opt/mattermost/data
    # The stand-in in place of the Mattermost binary, its package beside it.
    rm -rf /opt/mattermost/bin/mmstandin
    cp -r "$stage/standin/mmstandin" /opt/mattermost/bin/mmstandin
    find /opt/mattermost/bin/mmstandin -name __pycache__ -prune -exec rm -rf {} +
    chown -R root:root /opt/mattermost/bin/mmstandin
    chmod -R u=rwX,go=rX /opt/mattermost/bin/mmstandin
    install -m 0755 -o root -g root "$stage/standin/mattermost-standin.py" /opt/mattermost/bin/mattermost
    install -m 0600 -o mattermost -g mattermost "$stage/config.json" /opt/mattermost/config/config.json
}

files_proxy() {
    install -m 0644 -o root -g root "$stage/nginx-mattermost.conf" /etc/nginx/sites-available/mattermost
    ln -sf /etc/nginx/sites-available/mattermost /etc/nginx/sites-enabled/mattermost
    rm -f /etc/nginx/sites-enabled/default
    nginx -t
}

files_mariadb() {
    # As a manual install does it: listen on the network, no TLS configured.
    sed -i 's/^bind-address[[:space:]]*=.*/bind-address            = 0.0.0.0/' \
        /etc/mysql/mariadb.conf.d/50-server.cnf
}

files_postgres() {
    conf=$(ls -d /etc/postgresql/*/main | head -n 1)
    sed -i "s/^#\{0,1\}listen_addresses[[:space:]]*=.*/listen_addresses = '*'/" "$conf/postgresql.conf"
    # Debian turns ssl on with the snakeoil certificate; the "before" state has no TLS.
    sed -i "s/^ssl[[:space:]]*=.*/ssl = off/" "$conf/postgresql.conf"
    grep -q '^host mattermost mmuser ' "$conf/pg_hba.conf" ||
        printf 'host mattermost mmuser %s scram-sha-256\n' "$SUBNET" >>"$conf/pg_hba.conf"
    if [ -n "${REPLICA_ADDRESS:-}" ]; then
        # A streaming replica's admin setup: replication only over TLS (hostssl; Debian's own
        # snakeoil certificate, which the replica does not verify: sslmode=require). The
        # Mattermost user's logins stay plain, as in every "before" state.
        sed -i "s/^ssl[[:space:]]*=.*/ssl = on/" "$conf/postgresql.conf"
        grep -q '^hostssl replication replicator ' "$conf/pg_hba.conf" ||
            printf 'hostssl replication replicator %s/32 scram-sha-256\n' "$REPLICA_ADDRESS" >>"$conf/pg_hba.conf"
    fi
}

files_pgreplica() {
    # Its own config files, like the primary's "before" state: plain logins of mmuser from the
    # lab subnet; a hot standby (Debian's default hot_standby = on) serves them read-only.
    conf=$(ls -d /etc/postgresql/*/main | head -n 1)
    sed -i "s/^#\{0,1\}listen_addresses[[:space:]]*=.*/listen_addresses = '*'/" "$conf/postgresql.conf"
    sed -i "s/^ssl[[:space:]]*=.*/ssl = off/" "$conf/postgresql.conf"
    grep -q '^host mattermost mmuser ' "$conf/pg_hba.conf" ||
        printf 'host mattermost mmuser %s scram-sha-256\n' "$SUBNET" >>"$conf/pg_hba.conf"
}

sql_pgreplica() {
    # pg_basebackup from the primary over TLS (sslmode=require), then start as a standby
    # (-R: standby.signal + primary_conninfo). The password is in ~postgres/.pgpass, so
    # primary_conninfo does not carry it. The primary may still be seeding: retry.
    data=$(ls -d /var/lib/postgresql/*/main | head -n 1)
    unit=postgresql@$(basename "$(dirname "$data")")-main
    pw=$(printf '%s' "$PG_REPL_PASSWORD" | sed 's/[\\:]/\\&/g')
    umask 077
    printf '%s:5432:replication:replicator:%s\n' "$PRIMARY_ADDRESS" "$pw" > /var/lib/postgresql/.pgpass
    chown postgres:postgres /var/lib/postgresql/.pgpass
    systemctl stop "$unit"
    i=0
    while :; do
        find "$data" -mindepth 1 -delete
        if runuser -u postgres -- pg_basebackup -w -X stream -R -D "$data" \
            -d "host=$PRIMARY_ADDRESS port=5432 user=replicator sslmode=require connect_timeout=5" 2>"$state/basebackup.err"; then
            break
        fi
        i=$((i + 1)); [ "$i" -lt 120 ] || { cat "$state/basebackup.err" >&2; exit 1; }
        sleep 1
    done
    systemctl start "$unit"
}

sql_mariadb() {
    i=0
    until mysqladmin --protocol=socket ping >/dev/null 2>&1; do
        i=$((i + 1)); [ "$i" -lt 120 ] || { echo "mariadb did not start" >&2; exit 1; }
        sleep 0.5
    done
    # Passwords are generated [A-Za-z0-9]; quoting is still done for safety.
    pw=$(printf '%s' "$MYSQL_PASSWORD" | sed "s/'/''/g")
    mysql --protocol=socket <<SQL
CREATE DATABASE IF NOT EXISTS mattermost CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;
CREATE USER IF NOT EXISTS 'mmuser'@'%' IDENTIFIED BY '$pw';
ALTER USER 'mmuser'@'%' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON mattermost.* TO 'mmuser'@'%';
FLUSH PRIVILEGES;
SQL
}

sql_postgres() {
    i=0
    until runuser -u postgres -- pg_isready -q; do
        i=$((i + 1)); [ "$i" -lt 120 ] || { echo "postgres did not start" >&2; exit 1; }
        sleep 0.5
    done
    pw=$(printf '%s' "$PG_PASSWORD" | sed "s/'/''/g")
    runuser -u postgres -- psql -v ON_ERROR_STOP=1 -q <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mmuser') THEN
    CREATE ROLE mmuser LOGIN;
  END IF;
END \$\$;
ALTER ROLE mmuser WITH LOGIN PASSWORD '$pw';
SQL
    if [ -n "${REPLICA_ADDRESS:-}" ]; then
        rpw=$(printf '%s' "$PG_REPL_PASSWORD" | sed "s/'/''/g")
        runuser -u postgres -- psql -v ON_ERROR_STOP=1 -q <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'replicator') THEN
    CREATE ROLE replicator REPLICATION LOGIN;
  END IF;
END \$\$;
ALTER ROLE replicator WITH REPLICATION LOGIN PASSWORD '$rpw';
SQL
    fi
    if ! runuser -u postgres -- psql -tAq -c "SELECT 1 FROM pg_database WHERE datname='mattermost'" | grep -q 1; then
        runuser -u postgres -- createdb -O mmuser mattermost
    fi
}

phase=${1:?usage: seed.sh files|sql}
case "$phase:$ROLE" in
    files:node) files_node ;;
    files:proxy) files_proxy ;;
    files:mariadb) files_mariadb ;;
    files:postgres) files_postgres ;;
    files:pgreplica) files_pgreplica ;;
    sql:mariadb) sql_mariadb ;;
    sql:postgres) sql_postgres ;;
    sql:pgreplica) sql_pgreplica ;;
    files:* | sql:*) ;;
    *) echo "seed.sh: unknown phase $phase" >&2; exit 2 ;;
esac
touch "$state/seed-$phase.done"
echo "seed.sh: $phase done for $NAME ($ROLE)"
