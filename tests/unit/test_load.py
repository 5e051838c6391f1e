"""tools.load against a local HTTPS server: `under_load` counts the requests and failures of one
step (the figures benches print), `Load.trust` swaps the client's trust mid-run (a client that
re-read `caCertPem`), and a server switching to a certificate from a second CA fails a client
that trusts only the first, and no client that trusts the bundle of both (the CA rotation's
premise, components.pki.trust_bundle)."""

from __future__ import annotations

import http.server
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from components.pki import trust_bundle
from tests.helpers.certs import make_ca, make_leaf, pem
from tools.load import Load, under_load

NAME = "mattermost.test.internal"


def _pem(cert: x509.Certificate) -> str:
    return pem(cert)


def _server_context(ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], tmp: Path) -> ssl.SSLContext:
    cert, key = make_leaf(ca, [NAME])
    path = tmp / f"{ca[1].serial_number}.pem"
    path.write_text(cert + key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(path)
    return ctx


class Server(http.server.ThreadingHTTPServer):
    """HTTPS on 127.0.0.1; `ctx` (the certificate served) and `status` can change at any time."""

    daemon_threads = True

    def __init__(self, ctx: ssl.SSLContext):
        self.ctx, self.status = ctx, 200

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                status = self.server.status  # type: ignore[attr-defined]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def get_request(self) -> tuple[socket.socket, object]:
        sock, addr = super().get_request()
        return self.ctx.wrap_socket(sock, server_side=True), addr

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client refusing our certificate is what some tests want


@pytest.fixture()
def tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@pytest.fixture()
def cas() -> tuple[tuple[ec.EllipticCurvePrivateKey, x509.Certificate], ...]:
    return make_ca("old CA"), make_ca("new CA")


@pytest.fixture()
def server(tmp: Path, cas: tuple) -> Iterator[Server]:  # type: ignore[type-arg]
    srv = Server(_server_context(cas[0], tmp))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _load(server: Server, ca_pem: str) -> Load:
    return Load(NAME, "127.0.0.1", ca_pem, "/ping", port=server.server_address[1], interval=0.005, timeout=2)


def test_a_quiet_step_counts_requests_and_no_failure(server: Server, cas: tuple) -> None:  # type: ignore[type-arg]
    load = _load(server, _pem(cas[0][1]))
    requests, failed, seconds = under_load(lambda: time.sleep(0.2), load)
    assert failed == 0 and requests >= 10 and 0.2 <= seconds < 5
    assert not load.running, "stopped unless keep_running"


def test_failures_during_the_step_are_counted_and_only_this_steps(server: Server, cas: tuple) -> None:  # type: ignore[type-arg]
    load = _load(server, _pem(cas[0][1]))

    def outage() -> str:
        server.status = 502
        time.sleep(0.15)
        server.status = 200
        return "done"

    first = under_load(outage, load, keep_running=True)
    assert first.value == "done" and first.failed > 0 and first.errors == {"HTTP 502": first.failed}
    assert load.running
    second = under_load(lambda: time.sleep(0.1), load)
    assert second.failed == 0 and second.requests >= 5, "a later step does not inherit the earlier failures"
    assert load.result.failed == first.failed and load.result.sent >= first.requests + second.requests
    assert len(load.result.failure_times) == first.failed and load.result.started > 0


def test_a_failing_step_stops_the_load_and_raises(server: Server, cas: tuple) -> None:  # type: ignore[type-arg]
    load = _load(server, _pem(cas[0][1]))

    def boom() -> None:
        raise RuntimeError("the up failed")

    with pytest.raises(RuntimeError, match="the up failed"):
        under_load(boom, load, keep_running=True)
    assert not load.running


def test_switching_the_server_to_a_new_ca_fails_old_only_clients_not_bundle_clients(
    server: Server, cas: tuple, tmp: Path  # type: ignore[type-arg]
) -> None:
    old_only = _load(server, _pem(cas[0][1]))
    bundled = _load(server, trust_bundle([_pem(cas[0][1]), _pem(cas[1][1])]))
    new_ctx = _server_context(cas[1], tmp)

    def switch() -> None:
        time.sleep(0.05)
        server.ctx = new_ctx
        time.sleep(0.1)

    old_only.start()
    with_bundle = under_load(switch, bundled)
    old = old_only.stop()
    assert with_bundle.failed == 0 and with_bundle.requests >= 10
    assert old.failed > 0 and set(old.errors) == {"SSLCertVerificationError"}


def test_trust_swaps_the_clients_ca_mid_run(server: Server, cas: tuple, tmp: Path) -> None:  # type: ignore[type-arg]
    server.ctx = _server_context(cas[1], tmp)
    load = _load(server, _pem(cas[0][1]))
    refused = under_load(lambda: time.sleep(0.05), load, keep_running=True)
    assert refused.failed == refused.requests > 0
    load.trust(_pem(cas[1][1]))
    # a request already under way finishes with the old trust: let it end first
    n = load.result.sent
    while load.result.sent < n + 2:
        time.sleep(0.005)
    after = under_load(lambda: time.sleep(0.05), load)
    assert after.failed == 0 and after.requests > 0


def test_a_step_carries_its_label_and_when_its_failures_fell(server: Server, cas: tuple) -> None:  # type: ignore[type-arg]
    load = _load(server, _pem(cas[0][1]))

    def late_outage() -> None:
        time.sleep(0.1)
        server.status = 503
        time.sleep(0.1)
        server.status = 200
        time.sleep(0.05)

    r = under_load(late_outage, load, label="renew")
    assert str(r).startswith("renew: ") and r.failed > 0
    # counted from the step's start, not the load's: the outage began 0.1 s into the step
    assert len(r.failure_times) == r.failed and all(0.05 <= t <= 1.0 for t in r.failure_times), r.failure_times


def test_figures_table_is_the_readmes_markdown_table() -> None:
    from tools.load import StepUnderLoad, figures_table

    rows = [StepUnderLoad("first up", 1508, 0, 39.94, None), StepUnderLoad("CA rotation: switch", 12, 3, 4.0, None)]
    assert figures_table(rows).splitlines() == [
        "| step | requests | failed | seconds |",
        "|---|---|---|---|",
        "| first up | 1,508 | **0** | 39.9 |",
        "| CA rotation: switch | 12 | **3** | 4.0 |",
    ]
