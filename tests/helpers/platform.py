"""A second OS family for the tests of the platform seam: every value of Debian's description
changed, so a renderer that ignores the Platform it is given shows up as an unchanged line."""

from __future__ import annotations

import dataclasses
import re

from components.platform import DEBIAN

FAKE = dataclasses.replace(
    DEBIAN,
    name="fake",
    description="a family that names everything differently",
    label="Fake",
    system_ca_dir="/etc/pki/ca-trust/source/anchors",
    system_ca_suffix=".pem",
    trust_update="update-fake-trust",
    trust_package="fake-ca-certs",
    system_cert_dir="/etc/pki/tls/certs",
    trust_link_suffix=".0",
    system_bundle="/etc/pki/tls/certs/ca-bundle.crt",
    postgres_service="postgresql-16",
    postgres_config_dir="/var/lib/pgsql/16/data",
    postgres_cluster_dir=re.compile(r"^/srv/pg/([0-9.]+)/([A-Za-z0-9_.-]+)$"),
    postgres_cluster_unit="pg-{cluster}@{version}",
    postgres_cluster_log="/srv/pg/log/{version}-{cluster}.log",
    postgres_socket_dir="/run/pgsql",
    postgres_user="pgsql",
    mysql_service="mysqld",
    mysql_config_dir="/etc/my.cnf.d",
    mysql_server_binaries=("mysqld",),
    mysql_user="mysqlsrv",
    nginx_service="nginx-fake",
    nginx_site_file="/etc/nginx/sites.d/mm.conf",
    nginx_tls_dir="/etc/nginx/tls-mm",
    sshd_dropin_dir="/etc/ssh/sshd.d",
    sshd_units=("sshd.service",),
    iptables="iptables-nft",
    iptables_restore="iptables-nft-restore",
    firewall_units=("firewalld.service",),
    firewall_rule_files=("/etc/sysconfig/iptables",),
    install_hint="fakepkg add",
    jq_package="jq1",
    cluster_packages=("openssh", "iptables-nft"),
)
