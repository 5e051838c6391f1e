"""NginxFinalSite: the proxy's second rollout step (components/nginx.py), the https-only site,
built once every node is ready. Its own component so that each component registers its outputs
once, at the end of its constructor; its command, `<proxy>-site`, keeps its name and (an alias)
the place it had as the proxy's child, so existing stacks move it instead of replacing it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components.nginx import NginxProxy
from components.node import MattermostNode


@dataclass(frozen=True)
class NginxFinalSiteArgs:
    """Inputs of the final site."""

    proxy: NginxProxy
    """The proxy whose transitional site this one follows (its files, its live site)."""
    nodes: Sequence[MattermostNode]
    """Every node: each is an upstream server, and each one's `ready` comes first."""


class NginxFinalSite(pulumi.ComponentResource):
    """The https-only site: no plain fallback to the nodes remains (a child of the proxy)."""

    site: pulumi.Resource
    """`<proxy>-site`, the command that installs it."""
    url: str
    """The site's public URL (the proxy's)."""

    def __init__(self, name: str, args: NginxFinalSiteArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(
            "mattermost-tls:nginx_site:NginxFinalSite",
            name,
            None,
            pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=args.proxy), opts),
        )
        self.url = args.proxy.url
        self.site = args.proxy.install_final_site(args.nodes, parent=self)
        self.register_outputs({"url": self.url})
