"""GitlabMattermost: GitLab Omnibus' bundled Mattermost (GitLab 18.x and older) served over
HTTPS, talking to the stack's PostgreSQL over verified TLS.

Owns, on the GitLab host: the Mattermost vhost's certificate and key (<sslDir>/<host>.crt 0644,
.key 0600 root; from the stack CA or provided), the stack CA (`gitlab.caFile`, the DSN's
sslrootcert), and one marked block at the bottom of gitlab.rb that sets the external URL, the
HTTP->HTTPS redirect, the certificate paths and, for an external PostgreSQL, the driver and the
secret DSN. A changed block is syntax-checked with Ruby, then applied with `gitlab-ctl
reconfigure` (and `gitlab-ctl restart mattermost` when it carries a DSN); a failure puts the
previous gitlab.rb back. Destroy removes exactly the block (the rest of gitlab.rb stays byte
for byte), reconfigures, then restores the original certificate files.

Mattermost's own ConnectionSecurity stays off: Omnibus' nginx proxies to it over a hard-coded
http:// upstream on the same host, so TLS there would break the vhost without protecting a
network hop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_command import remote

from components import gitlab_render
from components.config import Gitlab
from components.pki import Pki, split_sans
from components.remote_files import ManagedFile, managed_block, managed_files
from components.remote_files_render import FileSpec


@dataclass(frozen=True)
class GitlabMattermostArgs:
    """Inputs of the GitLab host's bundled Mattermost (built from the stack config by
    components/adapter.py)."""

    gitlab: Gitlab
    """The validated `gitlab` section (enabled, with an address)."""
    connection: remote.ConnectionArgs
    """SSH to the GitLab host."""
    pki: Pki
    """Issues the vhost certificate (tlsSource 'ca'); its CA goes onto the GitLab host."""
    tls_key: pulumi.Output[str] | None = None
    """gitlabTlsKey (secret): the vhost key with tlsSource 'provided', else None."""
    dsn: pulumi.Input[str] | None = None
    """Secret PostgreSQL DSN for the bundled Mattermost, built by the database component for the
    CA at `gitlab.ca_file` (`database.gitlab_dsn(gitlab.ca_file)`: its own role and database); required when
    gitlab.externalPostgres, else None."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)
    """What must be live before gitlab.rb points Mattermost at the database (`database.gitlab_ready`)."""


class GitlabMattermost(pulumi.ComponentResource):
    """The bundled Mattermost over HTTPS with a verified TLS database (see the module docstring)."""

    url: pulumi.Output[str]
    """The bundled Mattermost's external URL (https)."""
    cert_expiry: pulumi.Output[str]
    """RFC 3339 end of the vhost certificate's validity."""
    installed: dict[str, str]
    """Paths on the GitLab host: cert, key, ca, gitlabRb."""
    ready: pulumi.Resource
    """Completes once gitlab.rb is reconfigured with the block."""

    def __init__(self, name: str, args: GitlabMattermostArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mattermost-tls:gitlab:GitlabMattermost", name, None, opts)
        gl, conn = args.gitlab, args.connection
        if gl.external_postgres != (args.dsn is not None):
            raise ValueError("pass dsn exactly when gitlab.externalPostgres is true")
        host = gl.mattermost_host
        paths = gitlab_render.gitlab_paths(gl.ssl_dir, host, gl.ca_file)

        if gl.tls_source == "ca":
            issued = args.pki.issue_server_cert(f"{gl.host}-gitlab-mattermost", split_sans([host]), parent=self)
            cert_pem, key_pem = issued.cert_pem, issued.key_pem
            self.cert_expiry = issued.cert.validity_end_time
        else:
            assert gl.tls_cert is not None and args.tls_key is not None  # schema cross-check
            cert_pem = pulumi.Output.from_input(gl.tls_cert)
            key_pem = pulumi.Output.secret(args.tls_key)
            self.cert_expiry = pulumi.Output.from_input(_expiry(gl.tls_cert))

        files = managed_files(
            f"{gl.host}-gitlab-tls-files",
            connection=conn,
            files=[
                ManagedFile(FileSpec(paths.cert, "0644"), cert_pem),
                ManagedFile(FileSpec(paths.key, "0600"), key_pem),
                ManagedFile(FileSpec(paths.ca, "0644"), args.pki.ca_cert_pem),
            ],
            validate=gitlab_render.render_check_keypair(paths.cert, paths.key),
            activate=gitlab_render.render_files_activate(paths.ca),
            restore_activate=gitlab_render.render_files_restore_activate(),
            secret=True,
            opts=pulumi.ResourceOptions(parent=self),
        )

        has_dsn = args.dsn is not None
        url = gl.mattermost_external_url
        if args.dsn is not None:
            block = pulumi.Output.from_input(args.dsn).apply(
                lambda d: gitlab_render.render_gitlab_rb_block(url, paths, gitlab_render.with_sslmode(d, gl.sslmode))
            )
        else:
            block = pulumi.Output.from_input(gitlab_render.render_gitlab_rb_block(url, paths, None))
        self.ready = managed_block(
            f"{gl.host}-gitlab-rb",
            connection=conn,
            path=gl.gitlab_rb,
            content=block,
            position="bottom",  # later assignments win in Ruby: ours override earlier ones
            validate=gitlab_render.render_ruby_check(gl.gitlab_rb),
            activate=gitlab_render.render_reconfigure(restart_mattermost=has_dsn),
            restore_activate=gitlab_render.render_reconfigure(restart_mattermost=has_dsn),
            # the DSN holds the database password; the block travels in stdin either way
            secret=has_dsn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[files, *args.depends_on]),
        )

        self.url = pulumi.Output.from_input(url)
        self.installed = {"cert": paths.cert, "key": paths.key, "ca": paths.ca, "gitlabRb": gl.gitlab_rb}
        self.register_outputs({"url": self.url, "cert_expiry": self.cert_expiry, "installed": self.installed})


def _expiry(cert_pem: str) -> str:
    """End of validity of a provided certificate (the leaf, first in the PEM)."""
    from cryptography import x509

    leaf = x509.load_pem_x509_certificates(cert_pem.encode())[0]
    return leaf.not_valid_after_utc.isoformat().replace("+00:00", "Z")
