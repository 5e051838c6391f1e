"""A node that already served verified TLS waits out NGINX's fail_timeout after its restart
(node_render._settle): without it, a renewal or CA rotation restarting the nodes one after
another left every node marked failed in NGINX while the last one restarted (lab: 11-16
requests answered 502 "no live upstreams", tests/lab/test_ca_rotation.py). The first switch
from plain HTTP and a node being added do not wait. Run against stubs with a fake clock."""
from __future__ import annotations

from pathlib import Path

import pytest

from components import node_render
from components.node_render import node_paths, render_activate_script
from tests.helpers.scripts import syntax_ok
from tests.helpers.stubs import UPSTREAM, Stubs, run


def activate(tmp_path: Path, settle: int) -> tuple[Stubs, str]:
    stubs = Stubs(tmp_path)
    paths = node_paths(str(tmp_path / "tls"), "mattermost", systemd_dir=str(tmp_path / "systemd"))
    Path(paths.dropin).parent.mkdir(parents=True)
    Path(paths.dropin).write_text("[Service]\n")  # the TLS drop-in is installed (not a rollback to plain)
    script = render_activate_script(
        unit="mattermost", port=8065, upstream_name=UPSTREAM, paths=paths, timeout_seconds=30,
        require_system_trust=False, settle_seconds=settle,
    )
    return stubs, script


def test_a_node_on_tls_before_its_restart_waits_out_nginx_fail_timeout(tmp_path: Path) -> None:
    stubs, script = activate(tmp_path, 11)
    stubs.flag("curl_ok_after", "0")  # it answers over verified TLS before and after the restart
    r = run(script, stubs.env())
    assert r.returncode == 0, r.stderr
    calls = stubs.calls()
    restart = calls.index("systemctl restart mattermost.service")
    assert any(c.startswith("curl ") and "--cacert" in c for c in calls[:restart]), "probed before the restart"
    assert stubs.clock() == 1011, "waited 11 s after it answered"
    assert "waiting 11 s so NGINX uses it again" in r.stdout


def test_a_node_switching_from_plain_http_does_not_wait(tmp_path: Path) -> None:
    stubs, script = activate(tmp_path, 11)
    stubs.flag("curl_ok_after", "1")  # the probe before the restart fails: it served plain HTTP
    r = run(script, stubs.env())
    assert r.returncode == 0, r.stderr
    assert stubs.clock() == 1000 and "waiting" not in r.stdout


def test_a_single_node_stack_renders_no_wait() -> None:
    paths = node_paths("/etc/mattermost-tls", "mattermost")
    kw = dict(unit="m", port=8065, upstream_name=UPSTREAM, paths=paths, timeout_seconds=5, require_system_trust=False)
    plain = render_activate_script(**kw)  # type: ignore[arg-type]
    assert "was_tls" not in plain and "sleep 11" not in plain
    settled = render_activate_script(**kw, settle_seconds=node_render.NGINX_FAIL_TIMEOUT + 1)  # type: ignore[arg-type]
    assert "sleep 11" in settled
    for shell in ("sh", "bash"):
        assert syntax_ok(settled, shell)


@pytest.mark.parametrize("bad", [-1, True])
def test_settle_refuses_nonsense(bad: int) -> None:
    paths = node_paths("/etc/mattermost-tls", "mattermost")
    with pytest.raises(ValueError):
        render_activate_script(
            unit="m", port=8065, upstream_name=UPSTREAM, paths=paths, timeout_seconds=5,
            require_system_trust=False, settle_seconds=bad,
        )
