#!/bin/sh
# First-boot seeding of one lab host's "before" state (the manual install the
# program then encrypts). Runs inside the host, from two oneshot units:
#   seed.sh files  (mmtls-lab-seed.service, before the role's services start)
#   seed.sh sql    (mmtls-lab-seed-sql.service, after the database started)
# Inputs were staged by lab/_seed.py into /usr/local/lib/mmtls-lab and
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
    sql:mariadb) sql_mariadb ;;
    sql:postgres) sql_postgres ;;
    files:* | sql:*) ;;
    *) echo "seed.sh: unknown phase $phase" >&2; exit 2 ;;
esac
touch "$state/seed-$phase.done"
echo "seed.sh: $phase done for $NAME ($ROLE)"
