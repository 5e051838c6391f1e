"""The transitional NGINX site that carries a zero-downtime rollout, and the guarded apply script
that installs it only when migrating from plain HTTP.

- Structure: every transitional location is the final site's location plus only the fallback
  directives (so the two cannot drift apart), the plain fallback never verifies or carries TLS
  settings, and the TLS upstream never marks a node down.
- Real NGINX in a private network namespace in front of real stand-in listeners
  (lab/standin, which answers plain HTTP on its TLS port like Mattermost): requests keep
  succeeding while nodes switch, including the node that switches between NGINX's two attempts.
- The guard and the remote_files lifecycle, run for real in a scratch state directory: the
  original site comes back byte for byte whichever of the two resources restores it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from components.nginx_render import (
    HEADER,
    TRANSITION_HEADER,
    Backend,
    proxy_paths,
    render_nginx_site,
    render_site_handback,
    render_transition_apply,
    render_transition_guard,
    render_transition_site,
)
from components.remote_files_render import FileSpec, encode_bundle, render_files_restore
from tests.helpers.nginx import (
    PING,
    SERVER,
    UPSTREAM,
    Block,
    marked,
    needs_nginx,
    needs_root,
    nginx_t,
    nginx_tree,
    parse,
    real_nginx,
    run_nodes,
)
from tests.helpers.scripts import run_script

ROOT = Path(__file__).resolve().parents[2]
NODES = [Backend("10.251.0.101", 8065), Backend("10.251.0.102", 8065), Backend("10.251.0.103", 8065)]
PATHS = proxy_paths("/etc/nginx/mattermost-tls")


def transition(backends: list[Backend] = NODES, keepalive: int = 32) -> str:
    return render_transition_site(
        server_name=SERVER, backends=backends, upstream_name=UPSTREAM, keepalive=keepalive, paths=PATHS
    )


def final(backends: list[Backend] = NODES) -> str:
    return render_nginx_site(server_name=SERVER, backends=backends, upstream_name=UPSTREAM, keepalive=32, paths=PATHS)


# ---------------------------------------------------------------- structure


def _servers(root: Block) -> tuple[Block, Block]:
    servers = [b for b in root.children if b.name == "server"]
    (plain,) = [s for s in servers if s.get("listen") == [["80"]]]
    (tls,) = [s for s in servers if s.get("listen") == [["443", "ssl"]]]
    return plain, tls


def _upstreams(root: Block) -> dict[str, Block]:
    return {b.args[0]: b for b in root.children if b.name == "upstream"}


def test_upstreams_tls_never_marks_a_node_down_plain_is_the_same_nodes() -> None:
    ups = _upstreams(parse(transition()))
    assert set(ups) == {"backend", "backend_plain"}
    addrs = [f"{b.address}:{b.port}" for b in NODES]
    assert ups["backend"].get("server") == [[a, "max_fails=0"] for a in addrs]
    assert ups["backend_plain"].get("server") == [[a] for a in addrs]
    assert ups["backend"].one("keepalive") == ups["backend_plain"].one("keepalive") == "32"
    assert all(u.get("keepalive") == [] for u in _upstreams(parse(transition(keepalive=0))).values())


def test_browsers_see_exactly_the_final_site() -> None:
    t_plain, t_tls = _servers(parse(transition()))
    f_plain, f_tls = _servers(parse(final()))
    assert (t_plain.directives, [(c.name, c.args, c.directives) for c in t_plain.children]) == (
        f_plain.directives,
        [(c.name, c.args, c.directives) for c in f_plain.children],
    )
    assert t_tls.directives == [*f_tls.directives, ("recursive_error_pages", ["on"])]


def _without(directives: list[tuple[str, list[str]]], drop: str) -> list[tuple[str, list[str]]]:
    return [(n, a) for n, a in directives if not n.startswith(drop)]


@pytest.mark.parametrize("kind", ["websocket", "root"])
def test_each_location_is_the_final_one_plus_only_the_fallback(kind: str) -> None:
    _, t_tls = _servers(parse(transition()))
    _, f_tls = _servers(parse(final()))
    match = ["~", "/api/v[0-9]+/(users/)?websocket$"] if kind == "websocket" else ["/"]
    (f_loc,) = [c for c in f_tls.children if c.args == match]
    locs = {tuple(c.args): c for c in t_tls.children}
    assert set(locs) == {
        (*m,) for m in (["~", "/api/v[0-9]+/(users/)?websocket$"], ["/"])
    } | {(f"@{k}_{s}",) for k in ("websocket", "root") for s in ("plain", "tls_again", "plain_last")}
    tls_dirs = f_loc.directives
    plain_dirs = [
        ("proxy_pass", ["http://backend_plain"]) if n == "proxy_pass" else (n, a) for n, a in _without(tls_dirs, "proxy_ssl_")
    ]
    nxt = ("proxy_next_upstream", ["error", "timeout"])
    assert locs[tuple(match)].directives == [*tls_dirs, nxt, ("error_page", ["502", "504", "=", f"@{kind}_plain"])]
    assert locs[(f"@{kind}_plain",)].directives == [
        *plain_dirs, nxt, ("proxy_intercept_errors", ["on"]), ("error_page", ["400", "=", f"@{kind}_tls_again"]),
    ]
    assert locs[(f"@{kind}_tls_again",)].directives == [
        *tls_dirs, nxt, ("error_page", ["502", "504", "=", f"@{kind}_plain_last"]),
    ]
    assert locs[(f"@{kind}_plain_last",)].directives == [*plain_dirs, nxt]
    assert ("proxy_pass", ["https://backend"]) in tls_dirs and ("proxy_ssl_verify", ["on"]) in tls_dirs


def test_adding_a_node_adds_its_two_server_lines() -> None:
    three = transition().splitlines()
    four = transition([*NODES, Backend("10.251.0.104", 8065)]).splitlines()
    assert [line for line in four if line not in three] == [
        "    server 10.251.0.104:8065 max_fails=0;",
        "    server 10.251.0.104:8065;",
    ]
    assert len(four) == len(three) + 2


def test_bad_values_are_refused_as_in_the_final_site() -> None:
    with pytest.raises(ValueError):
        transition([])
    with pytest.raises(ValueError):
        transition([Backend("10.0.0.1", 1), Backend("10.0.0.1", 1)])
    with pytest.raises(ValueError):
        render_transition_site(server_name="a;b", backends=NODES, upstream_name=UPSTREAM, keepalive=1, paths=PATHS)


@needs_nginx
@needs_root
def test_nginx_accepts_the_transitional_site(tmp_path: Path) -> None:
    paths, main, _ = nginx_tree(tmp_path)
    (tmp_path / "site.conf").write_text(
        render_transition_site(server_name=SERVER, backends=NODES, upstream_name=UPSTREAM, keepalive=32, paths=paths)
    )
    r = nginx_t(tmp_path, main)
    assert r.returncode == 0 and "test is successful" in r.stderr, r.stderr


# ---------------------------------------------------------------- real NGINX, real stand-in nodes

@marked(real_nginx)
def test_nodes_switching_one_at_a_time_never_fail_a_request(tmp_path: Path) -> None:
    steps: list[list[object]] = [["start", 1, "plain"], ["start", 2, "plain"], ["start", 3, "plain"], ["nginx"]]
    steps += [PING, PING, PING]
    for i in (1, 2, 3):
        # down (refused), then back over TLS: the serial rollout, node by node
        steps += [["stop", i], PING, PING, ["start", i, "tls"], PING, PING]
    out = run_nodes(tmp_path, [1, 2, 3], steps)
    assert [o["status"] for o in out] == [200] * len(out), out
    plain = [sum(v for k, v in o["served"].items() if k.endswith("-plain")) for o in out]
    assert plain[:5] == [1, 2, 3, 4, 5], "all plain: the fallback serves"
    # once node 1 is back over TLS (request 6 on), nothing goes over plain HTTP any more
    assert plain[5:] == [5] * (len(out) - 5), plain
    assert out[5]["served"]["1-tls"] == 1 and out[-1]["served"]["3-tls"] >= 1


@marked(real_nginx)
def test_a_node_refused_during_its_restart_is_used_over_tls_at_once(tmp_path: Path) -> None:
    steps = [["start", 2, "plain"], ["start", 3, "plain"], ["nginx"], PING, PING, ["start", 1, "tls"], PING, PING, PING]
    out = run_nodes(tmp_path, [1, 2, 3], steps)
    assert [o["status"] for o in out] == [200] * 5
    assert [o["served"]["1-tls"] for o in out[2:]] == [1, 2, 3], "node 1 serves every request once it is back"
    # control: with NGINX's default max_fails the TLS group skips node 1 and everything goes plain
    control = run_nodes(tmp_path / "control", [1, 2, 3], steps, site_edit=" max_fails=0")
    assert [o["served"]["1-tls"] for o in control[2:]] == [0, 0, 0]


@marked(real_nginx)
def test_a_node_that_switches_between_the_two_attempts_still_answers(tmp_path: Path) -> None:
    """TLS attempt refused, then the node is up over TLS and answers the plain attempt with
    Mattermost's 400: the request goes back to TLS instead of returning that 400."""
    steps = [["start", 1, "tls-late"], ["nginx"], PING, PING]
    out = run_nodes(tmp_path, [1], steps)
    assert [o["status"] for o in out] == [200, 200], out
    # control: without the 400 interception the client gets Mattermost's complaint
    control = run_nodes(
        tmp_path / "control", [1], steps, site_edit=r"proxy_intercept_errors on;|error_page 400 = @\w+;"
    )
    assert control[0]["status"] == 400 and "HTTP request to an HTTPS server" in control[0]["body"]


@marked(real_nginx)
def test_an_application_400_reaches_the_client_while_every_node_is_plain(tmp_path: Path) -> None:
    steps = [
        ["start", 1, "plain"], ["start", 2, "plain"], ["nginx"],
        ["get", "/api/v4/websocket", {"Upgrade": "websocket", "Connection": "Upgrade"}],
    ]
    (out,) = run_nodes(tmp_path, [1, 2], steps)
    assert out["status"] == 400 and "api.web_socket.connect.upgrade.app_error" in out["body"]


# ---------------------------------------------------------------- guard and lifecycle (real scripts)

ORIGINAL = (ROOT / "lab" / "seed" / "nginx-mattermost.conf").read_text().replace(
    "@UPSTREAM_SERVERS@", "    server 10.251.0.101:8065;"
)
UNVERIFIED = ORIGINAL.replace("proxy_pass http://backend;", "proxy_pass https://backend;")


@pytest.mark.parametrize(
    ("live", "acts"),
    [
        (ORIGINAL, True),
        (transition(), True),  # a rollout that stopped half way: install again (new node set)
        (final(), False),
        # TLS without verification: the transitional upstream (max_fails=0) keeps restarting nodes
        (UNVERIFIED, True),
        # verified TLS set up by the admin: nothing to do
        (UNVERIFIED.replace("proxy_pass https://backend;", "proxy_pass https://backend;\n proxy_ssl_verify on;"), False),
        ("# proxy_pass http://backend;\nserver {}\n", False),
        (None, False),
        # the admin's site as nginx_live changed it: the final one is left alone even with another
        # location proxying elsewhere over http://, the transitional one is installed again
        (HEADER + ORIGINAL.replace("http://backend", "https://backend") + "proxy_pass http://127.0.0.1:9000;\n", False),
        (TRANSITION_HEADER + "server {}\n", True),
    ],
)
def test_guard_acts_only_on_a_site_that_proxies_over_plain_http(tmp_path: Path, live: str | None, acts: bool) -> None:
    site = tmp_path / "site.conf"
    if live is not None:
        site.write_text(live)
    script = "set -eu\n" + render_transition_guard(owner="proxy-transition", site_file=str(site)) + "echo ACTS\n"
    r = run_script(script)
    assert r.returncode == 0, r.stderr
    assert ("ACTS" in r.stdout) == acts, r.stdout
    if not acts:
        assert "no transitional site needed" in r.stdout


def test_guarded_site_must_be_one_of_the_files() -> None:
    with pytest.raises(ValueError, match="not among"):
        render_transition_apply(
            owner="t", specs=[FileSpec("/etc/a")], site_file="/etc/b", validate="true", activate="true"
        )


class Host:
    """The proxy's files in a scratch directory, changed by the real remote_files scripts."""

    def __init__(self, d: Path):
        self.d = d
        self.site = d / "sites-available" / "mattermost"
        self.site.parent.mkdir()
        self.site.write_text(ORIGINAL)
        os.chmod(self.site, 0o644)
        self.state = d / "state"
        self.specs = [FileSpec(str(d / "tls" / "ca.crt")), FileSpec(str(self.site))]

    def run(self, script: str, contents: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/bin/sh", "-c", script], input=encode_bundle(contents or []), capture_output=True, text=True
        )

    def transition(self, validate: str = "true") -> subprocess.CompletedProcess[str]:
        script = "set -eu\n" + render_transition_apply(
            owner="proxy-transition", specs=self.specs, site_file=str(self.site),
            validate=validate, activate="true", state_dir=str(self.state),
        )
        return self.run(script, ["CA\n", transition()])

    def _site_scripts(self) -> tuple[str, str]:
        """(apply, delete) of the https-only site as components.nginx builds them."""
        return render_site_handback(
            owner="proxy-site", specs=self.specs, validate="true", activate="true",
            transition_owner="proxy-transition", transition_specs=self.specs, transition_activate="true",
            state_dir=str(self.state),
        )

    def final(self) -> subprocess.CompletedProcess[str]:
        return self.run(self._site_scripts()[0], ["CA\n", final(), "CA\n", transition()])

    def handback(self) -> subprocess.CompletedProcess[str]:
        """The https-only site's delete (same stdin as its apply)."""
        return self.run(self._site_scripts()[1], ["CA\n", final(), "CA\n", transition()])

    def owners(self) -> set[str]:
        return {f.read_text().strip() for f in (self.state / "owners").iterdir()}

    def restore(self, owner: str) -> subprocess.CompletedProcess[str]:
        return self.run(render_files_restore(owner, self.specs, restore_activate="true", state_dir=str(self.state)))


@needs_root
def test_destroy_after_a_full_rollout_restores_the_original_site(tmp_path: Path) -> None:
    h = Host(tmp_path)
    assert h.transition().returncode == 0 and h.site.read_text() == transition()
    assert h.final().returncode == 0 and h.site.read_text() == final()
    # a later `up` (a node added, a renewed certificate): the fallback does not come back
    again = h.transition()
    assert again.returncode == 0 and "no transitional site needed" in again.stdout
    assert h.site.read_text() == final()
    # destroy is the rollout backwards: the final site goes first (it depends on the nodes and the
    # transition) and hands the files back to the transition: NOT the plain original, which NGINX
    # would send over http:// to nodes that still serve only TLS (the lab measured 140 such 400s)
    r = h.handback()
    assert r.returncode == 0, r.stderr
    assert h.site.read_text() == transition() and (tmp_path / "tls" / "ca.crt").read_text() == "CA\n"
    assert h.owners() == {"proxy-transition"}
    # then, after the nodes went back to plain, the transition's delete restores the originals
    r = h.restore("proxy-transition")
    assert r.returncode == 0, r.stderr
    assert h.site.read_text() == ORIGINAL and not h.state.exists() and not (tmp_path / "tls").exists()


@needs_root
def test_a_handback_whose_transitional_site_nginx_refuses_keeps_the_https_site(tmp_path: Path) -> None:
    h = Host(tmp_path)
    assert h.transition().returncode == 0 and h.final().returncode == 0
    _, refused = render_site_handback(
        owner="proxy-site", specs=h.specs, validate="false", activate="true",
        transition_owner="proxy-transition", transition_specs=h.specs, transition_activate="true",
        state_dir=str(h.state),
    )
    r = h.run(refused, ["CA\n", final(), "CA\n", transition()])
    assert r.returncode != 0 and "validation failed" in r.stderr
    assert h.site.read_text() == final() and h.owners() == {"proxy-site"}
    # the retried destroy then hands back and restores as usual
    assert h.handback().returncode == 0 and h.restore("proxy-transition").returncode == 0
    assert h.site.read_text() == ORIGINAL and not h.state.exists()


@needs_root
def test_destroy_of_a_rollout_that_stopped_half_way_restores_the_original_site(tmp_path: Path) -> None:
    h = Host(tmp_path)
    assert h.transition().returncode == 0
    r = h.restore("proxy-transition")
    assert r.returncode == 0, r.stderr
    assert h.site.read_text() == ORIGINAL and not h.state.exists()


@needs_root
def test_a_transitional_site_nginx_refuses_leaves_the_original_in_place(tmp_path: Path) -> None:
    h = Host(tmp_path)
    r = h.transition(validate="echo 'nginx: [emerg] unknown directive' >&2; exit 1")
    assert r.returncode != 0 and "unknown directive" in r.stderr and "validation failed" in r.stderr
    assert h.site.read_text() == ORIGINAL and not (tmp_path / "tls" / "ca.crt").exists()
    assert not list((h.state / "backup").iterdir()) if h.state.exists() else True
    # and the next attempt still sees a plain site, so it acts
    assert h.transition().returncode == 0 and h.site.read_text() == transition()

