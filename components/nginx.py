"""NginxProxy: the NGINX reverse proxy in front of the nodes, switched to verified TLS upstream.

Owns the Mattermost site file (upstream of every node, browser TLS on 443, `proxy_pass
https://backend` with `proxy_ssl_verify on` against the stack CA for the upstream name), the
public certificate and key (issued by the stack CA, or the provided ones), and the CA file NGINX
verifies the nodes with. Changes are validated with `nginx -t` before the reload and checked end
to end after it; a failure puts the previous site and certificates back, so the site keeps
answering. The reload waits for every node's `ready`: before that a node may not serve TLS yet.
Delete restores the original site and files, then `nginx -t && systemctl reload`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components import nginx_render
from components.config import StackConfig
from components.connection import connection_for
from components.node import MattermostNode
from components.pki import Pki, split_sans
from components.remote_files import FileSpec, ManagedFile, managed_files


@dataclass(frozen=True)
class NginxProxyArgs:
    """Inputs of the proxy."""

    cfg: StackConfig
    """Validated stack config (section `proxy`, `mattermost.upstreamName`, `proxyTlsKey`)."""
    pki: Pki
    """The stack CA: verifies the nodes, and issues the public certificate when proxy.tls.source is 'ca'."""
    nodes: Sequence[MattermostNode]
    """Every node, in config order; each becomes an upstream server and a reload dependency."""


class NginxProxy(pulumi.ComponentResource):
    """The proxy (see the module docstring)."""

    url: str
    """The site's public URL, https://<server name>/."""
    site_file: str
    """Path of the site file on the proxy."""
    upstream_name: str
    """The name NGINX verifies in every node certificate."""

    def __init__(self, name: str, args: NginxProxyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mattermost-tls:nginx:NginxProxy", name, None, opts)
        cfg, proxy = args.cfg, args.cfg.proxy
        if proxy.address is None:  # the schema refuses this; keep the promise if misused
            raise ValueError("proxy.address is not set")
        if not args.nodes:
            raise ValueError("NginxProxy needs at least one node")
        paths = nginx_render.proxy_paths(proxy.tls_dir)
        self.url = f"https://{proxy.server_name}/"
        self.site_file = proxy.site_file
        self.upstream_name = cfg.mattermost.upstream_name

        if proxy.tls.source == "ca":
            issued = args.pki.issue_server_cert(
                f"{name}-public", split_sans([proxy.server_name, proxy.address]), parent=self
            )
            public_cert: pulumi.Input[str] = issued.cert_pem
            public_key: pulumi.Input[str] = issued.key_pem
        else:
            if proxy.tls.cert is None or cfg.proxy_tls_key is None:  # refused by the schema
                raise ValueError("proxy.tls.source 'provided' needs proxy.tls.cert and proxyTlsKey")
            # config strips surrounding whitespace; a PEM file ends with a newline
            public_cert = _pem_file(proxy.tls.cert)
            public_key = pulumi.Output.secret(_pem_file(cfg.proxy_tls_key.get_secret_value()))

        site = nginx_render.render_nginx_site(
            server_name=proxy.server_name,
            backends=[nginx_render.Backend(n.address, n.port) for n in args.nodes],
            upstream_name=cfg.mattermost.upstream_name,
            keepalive=proxy.upstream_keepalive,
            paths=paths,
        )
        files = [
            ManagedFile(FileSpec(paths.cert, "0644"), public_cert),
            # the master process reads it as root before dropping privileges
            ManagedFile(FileSpec(paths.key, "0600"), public_key),
            ManagedFile(FileSpec(paths.ca, "0644"), args.pki.ca_cert_pem),
            ManagedFile(FileSpec(proxy.site_file, "0644"), site),
        ]
        # One command: site and certificates are validated, reloaded and rolled back together.
        self._files = managed_files(
            f"{name}-site",
            connection=connection_for(cfg, proxy.address, proxy.ssh),
            files=files,
            validate=nginx_render.render_validate_script(),
            activate=nginx_render.render_reload_script(
                service=proxy.service,
                server_name=proxy.server_name,
                ca_file=paths.ca if proxy.tls.source == "ca" else None,
            ),
            restore_activate=nginx_render.render_restore_activate_script(service=proxy.service),
            secret=True,
            # https upstreams only work once every node serves TLS
            opts=pulumi.ResourceOptions(parent=self, depends_on=[n.ready for n in args.nodes]),
        )
        self.register_outputs({"url": self.url, "site_file": self.site_file, "upstream_name": self.upstream_name})


def _pem_file(text: str) -> str:
    return text.strip() + "\n"
