"""Pure renderers for GitLab Omnibus' bundled Mattermost: the gitlab.rb block and the shell
snippets that check and activate it.

Owns the Ruby quoting (every value becomes a double-quoted Ruby literal that evaluates back to
exactly the input, whatever it contains), the order and content of the settings in the block,
the DSN's sslmode, and where certificate, key and CA go on the GitLab host. Plain values in,
text out; `components/gitlab.py` calls these inside `Output.apply` and hands the text to
`remote_files`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from components.shell import script

# The bundled Mattermost, Rails and gitlab-ctl all come with Omnibus; the PATH remote_files sets
# has /usr/bin (gitlab-ctl's symlink) but not Omnibus' embedded tools.
EMBEDDED_BIN = "/opt/gitlab/embedded/bin"


def ruby_str(value: str) -> str:
    """A double-quoted Ruby string literal that evaluates to `value` exactly.

    Printable ASCII stays readable; `"`, `\\` and `#` (which would start `#{...}`, `#@x` or
    `#$x` interpolation) are backslash-escaped; everything else (newlines, NUL, which Ruby would
    otherwise take as the end of the source, non-ASCII) becomes `\\u{hex}`, so the literal is
    pure ASCII and one line whatever the value holds.
    """
    out = ['"']
    for ch in value:
        o = ord(ch)
        if ch in '"\\#':
            out.append("\\" + ch)
        elif 0x20 <= o <= 0x7E:
            out.append(ch)
        elif 0xD800 <= o <= 0xDFFF:
            raise ValueError("a lone surrogate cannot be written to gitlab.rb (not valid UTF-8)")
        else:
            out.append(f"\\u{{{o:x}}}")
    out.append('"')
    return "".join(out)


def _ruby(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return ruby_str(value)


@dataclass(frozen=True)
class GitlabPaths:
    """Where the bundled Mattermost's TLS material lives on the GitLab host."""

    cert: str
    key: str
    ca: str


def gitlab_paths(ssl_dir: str, host: str, ca_file: str) -> GitlabPaths:
    """Certificate and key under Omnibus' own naming (<ssl_dir>/<host>.crt/.key, its defaults
    for the Mattermost vhost), the stack CA where the DSN's sslrootcert points."""
    return GitlabPaths(cert=f"{ssl_dir}/{host}.crt", key=f"{ssl_dir}/{host}.key", ca=ca_file)


def with_sslmode(dsn: str, sslmode: str | None) -> str:
    """The PostgreSQL URL DSN with its sslmode set to `sslmode` (None: unchanged).

    Only the query changes; user, (URL-escaped) password, host and database stay byte for byte.
    """
    if sslmode is None:
        return dsn
    if not re.fullmatch(r"[a-z-]+", sslmode):
        raise ValueError(f"not an sslmode: {sslmode!r}")
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError("the GitLab Mattermost DSN must be a postgres:// URL")
    # textual, not parse_qsl/urlencode: those would re-encode the other parameters ('+' becomes a space)
    rest = [p for p in parts.query.split("&") if p and p != "sslmode" and not p.startswith("sslmode=")]
    return urlunsplit(parts._replace(query="&".join([f"sslmode={sslmode}", *rest])))


def render_gitlab_rb_block(external_url: str, paths: GitlabPaths, dsn: str | None) -> str:
    """The Ruby lines appended to gitlab.rb (between remote_files' markers, at the bottom so they
    win over earlier assignments of the same settings).

    `dsn` None keeps the bundled PostgreSQL (local socket, no network hop); otherwise it is the
    secret external-PostgreSQL DSN, verified with the stack CA.
    """
    lines = [
        "# Bundled Mattermost over HTTPS, managed by mattermost-transport-encryption:",
        "# change the stack config and run `pulumi up` instead of editing these lines.",
        # Mattermost itself keeps plain HTTP on localhost: Omnibus' nginx proxies to it with a
        # hard-coded http:// upstream, so ConnectionSecurity=TLS there would break the vhost.
        f"mattermost_external_url {ruby_str(external_url)}",
        f"mattermost_nginx[{ruby_str('redirect_http_to_https')}] = {_ruby(True)}",
        f"mattermost_nginx[{ruby_str('ssl_certificate')}] = {ruby_str(paths.cert)}",
        f"mattermost_nginx[{ruby_str('ssl_certificate_key')}] = {ruby_str(paths.key)}",
    ]
    if dsn is not None:
        lines += [
            "# External PostgreSQL over TLS, the server verified against the stack CA.",
            f"mattermost[{ruby_str('sql_driver_name')}] = {ruby_str('postgres')}",
            f"mattermost[{ruby_str('sql_data_source')}] = {ruby_str(dsn)}",
        ]
    return "\n".join(lines) + "\n"



def render_check_keypair(cert: str, key: str) -> str:
    """`validate` for the TLS files: the key must belong to the certificate (a provided pair
    that does not match would take the Mattermost vhost down at the next nginx reload)."""
    return _openssl() + script(
        # each in its own substitution: a failing pipeline's first step would go unnoticed
        "gitlab-check-keypair.sh",
        cert=cert,
        key=key,
        mismatch=f"{key} is not the key of {cert}",
    )


def render_nginx_reload() -> str:
    """A renewed certificate takes effect when Omnibus' nginx re-reads it (HUP); nothing to do
    while nginx is not running."""
    return script("gitlab-nginx-reload.sh")


def _openssl() -> str:
    return script("gitlab-openssl.sh", embedded_openssl=EMBEDDED_BIN + "/openssl")


def render_files_activate(ca_file: str) -> str:
    """`activate` for the TLS files: nginx re-reads the certificate; and when the stack CA was
    replaced by one with another subject, `gitlab-ctl reconfigure` so that Omnibus finds it.

    Omnibus' reconfigure runs c_rehash on trusted-certs and links the result into its embedded
    trust store; OpenSSL (GitLab's Rails, calling the bundled Mattermost over HTTPS) looks CAs up
    by those subject-hash names, so after a CA rotation the old name points at the new CA and the
    new one is missing until the next reconfigure. Only once a reconfigure has linked our CA: on
    the first run the gitlab.rb block's own reconfigure, which comes next, links it, and a
    renewed certificate under the same CA needs no reconfigure at all."""
    d, f = ca_file.rsplit("/", 1)
    return (
        render_nginx_reload()
        + _openssl()
        + script("gitlab-files-activate.sh", ca_file=ca_file, ca_dir=d, ca_name=f)
    )


def render_files_restore_activate() -> str:
    """`restore_activate` for the TLS files: the stack CA left trusted-certs, so Omnibus drops
    what its last reconfigure derived from it (c_rehash's hash links there, the link in its
    embedded trust store), which leaves /etc/gitlab as it was; then nginx re-reads the original
    certificate. Runs after the gitlab.rb block is gone (the block depends on these files)."""
    return script("gitlab-reconfigure.sh", code={"restart_mattermost": ""}) + render_nginx_reload()


def render_ruby_check(gitlab_rb: str) -> str:
    """`validate` for the gitlab.rb block: Ruby's own syntax check, with Omnibus' embedded Ruby
    when present. Without any Ruby, `gitlab-ctl reconfigure` (activate) still refuses bad syntax
    and remote_files then rolls the file back."""
    return script("gitlab-ruby-check.sh", embedded_ruby=EMBEDDED_BIN + "/ruby", gitlab_rb=gitlab_rb)


def render_reconfigure(restart_mattermost: bool) -> str:
    """`activate`/`restore_activate` for the block: apply gitlab.rb; when the block carries a DSN,
    also restart Mattermost, whose runit service keeps its old environment across a reconfigure.

    remote_files activates only when the block's bytes change, and a changed DSN always changes
    them, so Mattermost restarts exactly when its DSN (or another setting of the block) changes."""
    restart = "gitlab-ctl restart mattermost" if restart_mattermost else ""
    return script("gitlab-reconfigure.sh", code={"restart_mattermost": restart})
