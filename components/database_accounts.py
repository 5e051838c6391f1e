"""MySQL/MariaDB: which account of the Mattermost user each node logs in through, decided the way
the server decides, and the preflight that stops before anything changes when the program
cannot handle that account.

A user name is not one account: `'mmuser'@'%'`, `'mmuser'@'10.0.0.5'`, `'mmuser'@'localhost'`
(and anonymous `''@'host'` accounts) are separate rows with their own password and REQUIRE flags.
For each connection the server takes the FIRST row, in its sort order, whose host matches the
client and whose user is the client's user or anonymous; the order puts the most specific host
first, and for the same host a named user before an anonymous one (MySQL Reference Manual,
"Access Control, Stage 1: Connection Verification"; MariaDB sql/sql_acl_getsort.ic,
get_magic_sort, whose "hu" ordering `magic_sort` ports). tests/unit/test_database_accounts.py
checks that order against a real MariaDB.

Pure: plain values in, account names and SQL out. The Database component reads the accounts
on the database host (`render_accounts_read`, read-only), and `plan_hosts` decides: every
account a node logs in through gets the password and, in phase 2, REQUIRE SSL; an account the
program cannot decide or handle (an anonymous winner, a host pattern that needs DNS) stops the
run naming the account, before any host has changed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from components.shell import script

# MariaDB's HOSTNAME_LENGTH bound in get_magic_sort; only the relative order of patterns
# matters here, and that is the same for any bound at least as long as the patterns.
_MAXLEN = 255
_IPV4_MASK = re.compile(r"^([0-9]{1,3}(?:\.[0-9]{1,3}){3})/([0-9]{1,3}(?:\.[0-9]{1,3}){3})$")
# the characters of an address pattern: with none other, the pattern never needs DNS
_ADDRESS_CHARS = re.compile(r"^[0-9a-fA-F.:%_\\/]*$")


RERUN = (
    "then read the accounts again with `pulumi up --replace <URN of database-accounts>` (`pulumi stack --show-urns` "
    "lists it; a plain `pulumi up` keeps the accounts read by this run); nothing was changed"
)


class AccountError(ValueError):
    """The program cannot handle the account a node would log in through (message names it)."""


@dataclass(frozen=True)
class Account:
    """One row of mysql.user: the user name ('' = anonymous) and the host pattern."""

    user: str
    host: str

    def __str__(self) -> str:
        return f"{sql_string(self.user)}@{sql_string(self.host)}"


def sql_string(value: str) -> str:
    """A single-quoted SQL literal as MariaDB's QUOTE() writes it (for messages and SQL)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\0", "\\0").replace("\x1a", "\\Z") + "'"


def render_accounts_read(*, user: str, client: str) -> str:
    """Read-only script for the database host: prints `skip_name_resolve <0|1>`, then one line
    `<hex user> <hex host>` per account of `user` and per anonymous account (hex: a host may
    hold any character). `client` is the admin client command (the local socket by default)."""
    query = f"SELECT HEX(User), HEX(Host) FROM mysql.user WHERE User IN ({sql_string(user)}, '')"
    return script("db-accounts-read.sh", code={"sql_client": client}, query=query)


def parse_accounts(stdout: str) -> tuple[list[Account], bool]:
    """`render_accounts_read`'s output: (accounts, skip_name_resolve)."""
    lines = [x for x in stdout.split("\n") if x.strip()]
    if not lines or not lines[0].startswith("skip_name_resolve "):
        raise AccountError("could not read the database's accounts (no skip_name_resolve line)")
    skip = lines[0].split()[1] in ("1", "ON")
    accounts = []
    for line in lines[1:]:
        parts = line.split("\t") if "\t" in line else line.split()
        user_hex, host_hex = (parts + [""])[:2]
        accounts.append(Account(bytes.fromhex(user_hex).decode(), bytes.fromhex(host_hex).decode()))
    return accounts, skip


def like(pattern: str, text: str) -> bool:
    """MariaDB's wild_case_compare as compare_hostname uses it: '%' any run, '_' one character,
    '\\' takes the next character literally, case-insensitive."""
    rx = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            i += 1
            rx.append(re.escape(pattern[i]))
        elif c == "%":
            rx.append(".*")
        elif c == "_":
            rx.append(".")
        else:
            rx.append(re.escape(c))
        i += 1
    return re.fullmatch("".join(rx), text, re.IGNORECASE | re.DOTALL) is not None


def needs_dns(host: str) -> bool:
    """True if the pattern can only match a client by its (reverse-resolved) host name, so this
    program cannot tell from an address whether it matches. 'localhost' never matches a TCP
    client on another host."""
    if host.lower() == "localhost" or _IPV4_MASK.match(host):
        return False
    return not _ADDRESS_CHARS.match(host) or "/" in host


def host_matches(host: str, ip: str) -> bool:
    """Whether the host pattern admits a TCP client at address `ip` (name resolution aside;
    see `needs_dns`). An IPv4 `address/netmask` pattern compares the masked address."""
    m = _IPV4_MASK.match(host)
    if m:
        try:
            net, mask, addr = (int(ipaddress.IPv4Address(x)) for x in (m[1], m[2], ip))
        except ValueError:
            return False
        return addr & mask == net
    if host.lower() == "localhost":
        return False
    return like(host, ip)


def magic_sort(account: Account) -> int:
    """The rank MariaDB sorts accounts by (get_magic_sort("hu", host, user)), SMALLER first here:
    the function returns the complement and the server sorts it descending. The host pattern
    counts non-wildcards N, '_' M, '%' runs K, the literal prefix P; then one bit for an
    anonymous user, so that for the same host a named user comes first."""
    pat = account.host
    n = m = k = p = 0
    i = 0
    while i < len(pat):
        c = pat[i]
        if c == "%":
            if not k and not m:
                p = n
            k += 1
            while i + 1 < len(pat) and pat[i + 1] == "%":
                i += 1
        elif c == "_":
            if not k and not m:
                p = n
            m += 1
        else:
            if c == "\\" and i + 1 < len(pat):
                i += 1
            n += 1
        i += 1
    k, m = min(k, 31), min(m, 31)
    big_l = _MAXLEN - n - m if k else 0
    d, d1 = _MAXLEN + 1, min(_MAXLEN + 1, 32)
    if big_l > m:
        magic = (((big_l * 2 + 1) * d + k) * d1 + m) * d + p
    else:
        magic = (((m * 2 + 0) * d + big_l) * d1 + k) * d + p
    return (magic << 1) + (account.user == "")


def login_account(accounts: Sequence[Account], user: str, ip: str) -> Account | None:
    """The account a TCP login of `user` from `ip` goes through: the first match in the
    server's order (ties: the larger host string first, as acl_user_compare breaks them)."""
    candidates = [a for a in accounts if a.user in (user, "") and host_matches(a.host, ip)]
    if not candidates:
        return None
    return min(candidates, key=lambda a: (magic_sort(a), [-ord(c) for c in a.host] + [1]))


def plan_hosts(
    accounts: Sequence[Account],
    *,
    user: str,
    clients: Mapping[str, str],
    skip_name_resolve: bool,
) -> list[str]:
    """The hosts of `user`'s accounts this program handles: '%' (created if missing, as before)
    and every account a client (node name -> address) logs in through. Raises AccountError,
    naming the account and the fix, when a client would log in through an anonymous account,
    or when, with name resolution on, an account's host is a name this program cannot match."""
    if not skip_name_resolve:
        for a in accounts:
            if needs_dns(a.host):
                raise AccountError(
                    f"the database has the account {a}, whose host is a name: MariaDB may match it to a node "
                    "by reverse DNS, ahead of the address accounts, so this program cannot tell which account "
                    f"the nodes log in through. Replace it by an account for the node's address (or drop it), "
                    f"or turn on skip_name_resolve, {RERUN}"
                )
    hosts = ["%"]
    for name, ip in clients.items():
        won = login_account(accounts, user, ip)
        if won is None or won.user == user:
            if won is not None and won.host not in hosts:
                hosts.append(won.host)
            continue
        named = [a for a in accounts if a.user == user and host_matches(a.host, ip)]
        beaten = f", ahead of {', '.join(str(a) for a in named)}" if named else ""
        raise AccountError(
            f"node {name} ({ip}) would log in as the anonymous account {won}{beaten}: MariaDB takes the "
            "account with the most specific host first, and this program does not change anonymous accounts. "
            f"Drop it (DROP USER {won}) or create {Account(user, won.host)} with the Mattermost password, {RERUN}"
        )
    return hosts


def _lit(value: str) -> str:
    """A string literal for a session with sql_mode NO_BACKSLASH_ESCAPES (the scripts set it)."""
    return "'" + value.replace("'", "''") + "'"


def render_require_ssl_sql(user: str, hosts: Sequence[str]) -> tuple[str, str]:
    """Phase 2 for the planned accounts, for a NO_BACKSLASH_ESCAPES session: (the SELECT that
    prints, per account, the ALTER USER that puts its REQUIRE flags back; the ALTER USER ...
    REQUIRE SSL of every account)."""
    u = _lit(user)
    if not hosts:
        raise AccountError("no accounts to require TLS of")
    spec = (
        "CONCAT_WS(' AND ', IF(ssl_cipher <> '', CONCAT('CIPHER ', QUOTE(ssl_cipher)), NULL), "
        "IF(x509_issuer <> '', CONCAT('ISSUER ', QUOTE(x509_issuer)), NULL), "
        "IF(x509_subject <> '', CONCAT('SUBJECT ', QUOTE(x509_subject)), NULL))"
    )
    previous = (
        "SELECT CONCAT('ALTER USER ', QUOTE(User), '@', QUOTE(Host), ' REQUIRE ', "
        "CASE ssl_type WHEN 'ANY' THEN 'SSL' WHEN 'X509' THEN 'X509' "
        f"WHEN 'SPECIFIED' THEN COALESCE(NULLIF({spec}, ''), 'SSL') ELSE 'NONE' END, ';') "
        f"FROM mysql.user WHERE User = {u} AND Host IN ({', '.join(_lit(h) for h in hosts)}) ORDER BY Host;"
    )
    require = "".join(f"ALTER USER {u}@{_lit(h)} REQUIRE SSL;\n" for h in hosts)
    return previous, require
