"""NginxProxy: the NGINX reverse proxy in front of the nodes, switched to verified TLS upstream
without a moment in which the site stops answering.

Owns the Mattermost site file: the admin's live site, found by a read-only capture of what NGINX
loads (`<name>-live-site`, `nginx -T`, once) and changed only on the hop to the nodes
(components/nginx_live.py: upstream servers, `proxy_pass https://` with `proxy_ssl_verify on`
against the stack CA for the upstream name); with no live site, the program's own site
(nginx_render). Also the CA file NGINX verifies the nodes with, and, unless proxy.tls.source is
'keep', the public certificate and key (issued by the stack CA, or the provided ones). Changes are validated with `nginx -t` before the reload and checked end
to end after it; a failure puts the previous site and certificates back, so the site keeps
answering. Delete restores the original site and files, then `nginx -t && systemctl reload`.

The rollout has two steps, because the nodes switch to TLS one at a time in between:
1. Built BEFORE the nodes: `<name>-transition` installs the transitional site (verified TLS to
   every node, plain HTTP only when no node answers over TLS; nginx_render says why) - but only
   while the live site still proxies over plain HTTP (or over TLS without verification: then the
   hop stays and only the upstream keeps restarting nodes, nginx_live.needs_transition).
   `transition` is what the first node's restart waits for.
2. `install_final_site(nodes, parent)`, after the nodes, called by the step's own component
   (components/nginx_site.py NginxFinalSite): `<name>-site` installs the https-only site once
   every node's `ready` completed; no plain fallback remains.

Both own the same four files. remote_files keeps the ORIGINAL of each path once, whoever changes
it first, and the ledger names the last installer. A destroy is the rollout backwards: `<name>-site`
depends on the nodes and on `<name>-transition`, so it is deleted first, and its delete does NOT
put the plain original back (NGINX would send http:// to nodes that still serve only TLS): it
hands the files back to the transition, installing the transitional site in the transition's name
(nginx_render.render_site_handback). The nodes then go back to plain one at a time (the
transitional site falls back per request), and the transition's delete, last, restores the
originals - after a drain where the original served browsers over plain HTTP: for a second its
port 80 proxies as the original did while 443 still answers, so a browser redirected just before
that reload is not refused (nginx_render.render_transition_drain). A rollout that stopped before step 2 leaves the transition in the ledger, and its
delete restores the originals. Neither is ever replaced (no triggers), so create-before-delete
never runs one's delete after the other.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict, Unpack

import pulumi
from pulumi_command import remote

from components import nginx_live, nginx_render
from components.config import Proxy
from components.node import MattermostNode
from components.pki import Pki, split_sans
from components.remote_files import ManagedFile, run_script
from components.remote_files_render import HELPER_PATH, FileSpec, encode_bundle, render_files_restore


class _ReloadOptions(TypedDict, total=False):
    """The keyword arguments NginxProxy._reload passes on to nginx_render.render_reload_script."""

    answers: str


@dataclass(frozen=True)
class NginxProxyArgs:
    """Inputs of the proxy (built from the stack config by components/adapter.py)."""

    proxy: Proxy
    """The validated `proxy` section (with an address)."""
    connection: remote.ConnectionArgs
    """SSH to the proxy host."""
    pki: Pki
    """The stack CA: verifies the nodes, and issues the public certificate when proxy.tls.source is 'ca'."""
    backends: Sequence[nginx_render.Backend]
    """Every node's address and Mattermost port (`mattermost.port`): the transitional site's upstream servers."""
    upstream_name: str
    """`mattermost.upstreamName`: the name NGINX verifies in every node certificate."""
    tls_key: pulumi.Output[str] | None = None
    """proxyTlsKey (secret): the public key with proxy.tls.source 'provided', else None."""


class NginxProxy(pulumi.ComponentResource):
    """The proxy (see the module docstring). Build it before the nodes, then its NginxFinalSite
    once they exist."""

    url: str
    """The site's public URL, https://<server name>/."""
    site_file: str
    """Path of the site file on the proxy."""
    upstream_name: str
    """The name NGINX verifies in every node certificate."""
    transition: pulumi.Resource
    """Completes once NGINX can serve every node whether it speaks TLS or not yet (or found the
    live site already proxying over TLS): no node may restart into TLS before."""

    def __init__(self, name: str, args: NginxProxyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mattermost-tls:nginx:NginxProxy", name, None, opts)
        proxy = args.proxy
        if proxy.address is None:  # the schema refuses this; keep the promise if misused
            raise ValueError("proxy.address is not set")
        if not args.backends:
            raise ValueError("NginxProxy needs at least one node")
        self._name = name
        self._proxy = proxy
        self._paths = paths = nginx_render.proxy_paths(proxy.tls_dir)
        self._connection = args.connection
        self._site: pulumi.Resource | None = None
        self.url = f"https://{proxy.server_name}/"
        self.site_file = proxy.site_file
        self.upstream_name = upstream_name = args.upstream_name

        if proxy.tls.source in ("ca", None):
            issued = args.pki.issue_server_cert(
                f"{name}-public", split_sans([proxy.server_name, proxy.address]), parent=self
            )
            public_cert: pulumi.Input[str] = issued.cert_pem
            public_key: pulumi.Input[str] = issued.key_pem
        elif proxy.tls.source == "provided":
            if proxy.tls.cert is None or args.tls_key is None:  # refused by the schema
                raise ValueError("proxy.tls.source 'provided' needs proxy.tls.cert and proxyTlsKey")
            # config strips surrounding whitespace; a PEM file ends with a newline
            public_cert = _pem_file(proxy.tls.cert)
            public_key = pulumi.Output.secret(args.tls_key.apply(_pem_file))
        self._tls_files = [
            ManagedFile(FileSpec(paths.ca, "0644"), args.pki.ca_cert_pem),
        ]
        if proxy.tls.source != "keep":
            # unset: the stack CA's certificate is installed too, used only if the live site
            # serves browsers over plain HTTP (known once the capture ran)
            self._tls_files[:0] = [
                ManagedFile(FileSpec(paths.cert, "0644"), public_cert),
                # the master process reads it as root before dropping privileges
                ManagedFile(FileSpec(paths.key, "0600"), public_key),
            ]
        self._validate = nginx_render.render_validate_script()
        self._restore_activate = nginx_render.render_restore_activate_script(service=proxy.service)
        self._hop = nginx_live.Hop(
            backends=list(args.backends),
            upstream_name=upstream_name,
            ca_file=paths.ca,
            tls=proxy.tls.source,
            cert_file=paths.cert,
            key_file=paths.key,
            keepalive=proxy.upstream_keepalive,
        )
        # Read-only, once: what NGINX really loads, before anything changes (nginx_live says why
        # the program keeps it). Its text never changes, so it never runs again: later renders
        # start from the original, not from this program's own output.
        self.live = run_script(
            f"{name}-live-site",
            connection=self._connection,
            create=nginx_live.render_capture_script(),
            secret=True,  # a config may hold credentials
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._live_site = self.live.stdout.apply(lambda out: _find_site(out, proxy.site_file, self._hop.backends))
        self.site_checked: pulumi.Output[pulumi.Resource] = self._live_site.apply(lambda _site: self.live)
        """The capture, once find_site accepted it (a refusal fails this Output): whatever changes
        another host depends on it, so a refused site stops the run before that host changes."""

        transitional = self._live_site.apply(
            lambda site: nginx_render.render_transition_site(
                server_name=proxy.server_name,
                backends=self._hop.backends,
                upstream_name=upstream_name,
                keepalive=_template_keepalive(proxy.upstream_keepalive),
                paths=paths,
            )
            if site is None
            else nginx_live.render_site(site, self._hop, stage="transition")
            if nginx_live.needs_transition(site)
            # already verified TLS to the nodes: nothing to fall back to, and the guard skips it anyway
            else site.text
        )
        files = [*self._tls_files, ManagedFile(FileSpec(proxy.site_file, "0644"), transitional)]
        owner = f"{name}-transition"
        specs = [f.spec for f in files]
        self._transition_files = files
        apply = nginx_render.render_transition_apply(
            owner=owner,
            specs=specs,
            site_file=proxy.site_file,
            validate=self._validate,
            activate=self._reload(answers="answers through the transitional site"),
            helper=HELPER_PATH,
        )
        # managed_files' scripts behind a guard (nginx_render.render_transition_guard); same
        # stdin framing, same secrecy (the public key is in it)
        self.transition = self._files_command(
            owner,
            apply,
            # a drain first (nginx_render.render_transition_drain), then the originals back
            self._live_site.apply(
                lambda site: nginx_render.render_transition_drain(
                    site_file=proxy.site_file, target=nginx_live.drain_proxy(site), service=proxy.service
                )
                + render_files_restore(owner, specs, restore_activate=self._restore_activate, helper=HELPER_PATH)
            ),
            files,
            pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"url": self.url, "site_file": self.site_file, "upstream_name": self.upstream_name})

    def _files_command(
        self, owner: str, apply: str, delete: pulumi.Input[str], files: Sequence[ManagedFile], opts: pulumi.ResourceOptions
    ) -> pulumi.Resource:
        """A command whose self-contained scripts read the files' contents as an `encode_bundle`
        on stdin (secret: the public key may be among them)."""
        return run_script(
            owner,
            connection=self._connection,
            create=apply,
            update=apply,
            delete=delete,
            stdin=pulumi.Output.all(*[f.content for f in files]).apply(encode_bundle),
            secret=True,
            opts=opts,
        )

    def _reload(self, **kw: Unpack[_ReloadOptions]) -> str:
        proxy = self._proxy
        return nginx_render.render_reload_script(
            service=proxy.service,
            server_name=proxy.server_name,
            # unset or 'keep': the browsers' certificate may be the admin's, from a CA this host
            # need not trust; what the check proves is the hop to the nodes
            ca_file=self._paths.ca if proxy.tls.source == "ca" else None,
            **kw,
        )

    def install_final_site(self, nodes: Sequence[MattermostNode], parent: pulumi.Resource) -> pulumi.Resource:
        """`<name>-site`, a child of `parent` (the NginxFinalSite): the https-only site (every node
        in `nodes` an upstream server) once each of them is `ready`; exactly once. Its alias keeps
        the place it had as this component's child in existing stacks (no replacement). The nodes
        roll out one after another (each node's `previous` is the one before's `ready`, as
        components/deployment.py builds them), so the site waits for the last one's `ready` only."""
        if not nodes:
            raise ValueError("NginxProxy needs at least one node")
        for before, node in itertools.pairwise(nodes):
            if node.previous is not before.ready:
                raise ValueError(
                    f"{self._name}: node {node.node_name} does not wait for {before.node_name}'s ready: the "
                    "https-only site waits for the last node only, so the nodes must roll out one after another"
                )
        if self._site is not None:
            raise RuntimeError(f"{self._name}: install_final_site() was already called")
        proxy = self._proxy
        backends = [nginx_render.Backend(n.address, n.port) for n in nodes]
        hop = nginx_live.Hop(**{**self._hop.__dict__, "backends": backends})
        site = self._live_site.apply(
            lambda live: nginx_render.render_nginx_site(
                server_name=proxy.server_name,
                backends=backends,
                upstream_name=self.upstream_name,
                keepalive=_template_keepalive(proxy.upstream_keepalive),
                paths=self._paths,
            )
            if live is None
            else nginx_live.render_site(live, hop, stage="final")
        )
        # One command: site and certificates are validated, reloaded and rolled back together.
        files = [*self._tls_files, ManagedFile(FileSpec(proxy.site_file, "0644"), site)]
        owner = f"{self._name}-site"
        handback = self._transition_files
        apply, delete = nginx_render.render_site_handback(
            owner=owner,
            specs=[f.spec for f in files],
            validate=self._validate,
            activate=self._reload(),
            transition_owner=f"{self._name}-transition",
            transition_specs=[f.spec for f in handback],
            transition_activate=self._reload(answers="answers through the transitional site"),
            helper=HELPER_PATH,
        )
        self._site = self._files_command(
            owner,
            apply,
            delete,
            # the final files, then the transitional ones (what the delete hands back)
            [*files, *handback],
            # https upstreams only work once every node serves TLS; after the transition, so a
            # destroy deletes this one first (see the module docstring). The LAST node's `ready`
            # stands for every node's: the rollout is serial (each node waits for the one before,
            # see `install_final_site`), and each listed resource costs the SDK's cycle check a walk
            # of its whole upstream (N nodes made it N walks of the rollout)
            pulumi.ResourceOptions(
                parent=parent,
                depends_on=[nodes[-1].ready, self.transition],
                aliases=[pulumi.Alias(parent=self)] if parent is not self else None,
            ),
        )
        return self._site


def _pem_file(text: str) -> str:
    return text.strip() + "\n"


def _find_site(capture_stdout: str, site_file: str, backends: Sequence[nginx_render.Backend]) -> nginx_live.Site | None:
    if not capture_stdout:
        # not captured: a preview under mocks (the engine itself leaves it unknown until the
        # capture ran, and the capture always prints its header)
        return None
    return nginx_live.find_site(nginx_live.parse_capture(capture_stdout, site_file=site_file), backends)


TEMPLATE_KEEPALIVE = 32
"""`keepalive` of a site the program writes from its template (no live site): Mattermost's guide."""


def _template_keepalive(configured: int | None) -> int:
    return TEMPLATE_KEEPALIVE if configured is None else configured
