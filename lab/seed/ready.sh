#!/bin/sh
# Is this lab host in its seeded "before" state yet? Run by `lab.hosts up`
# over ssh. Exit 0 = ready, 1 = not yet, 2 = seeding failed (reason on stderr).
set -u
. /etc/mmtls-lab/host.env
for unit in mmtls-lab-seed.service mmtls-lab-seed-sql.service; do
    if systemctl is-failed --quiet "$unit"; then
        echo "$unit failed:" >&2
        journalctl -u "$unit" --no-pager -n 20 >&2
        exit 2
    fi
done
[ -f /var/lib/mmtls-lab/seed-files.done ] || exit 1
case "$ROLE" in
    node)
        systemctl is-active --quiet mattermost.service || exit 1
        curl -fsS -o /dev/null --max-time 3 http://127.0.0.1:8065/api/v4/system/ping || exit 1 ;;
    proxy)
        systemctl is-active --quiet nginx.service || exit 1 ;;
    mariadb)
        [ -f /var/lib/mmtls-lab/seed-sql.done ] || exit 1
        systemctl is-active --quiet mariadb.service || exit 1 ;;
    postgres)
        [ -f /var/lib/mmtls-lab/seed-sql.done ] || exit 1
        runuser -u postgres -- pg_isready -q || exit 1 ;;
    pgreplica)
        [ -f /var/lib/mmtls-lab/seed-sql.done ] || exit 1
        runuser -u postgres -- pg_isready -q || exit 1
        [ "$(runuser -u postgres -- psql -XAtq -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = t ] || exit 1 ;;
esac
exit 0
