"""The span exporter against an https collector on loopback that asks for a client certificate (mutual TLS):
the files `OTEL_EXPORTER_OTLP_CERTIFICATE`, `…_CLIENT_CERTIFICATE` and `…_CLIENT_KEY` name reach the exporter,
spans arrive with them, a collector refuses an exporter without them, and a missing file stops the start."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import ValidationError

from sluice.settings import Settings
from sluice.telemetry import otlp_wire
from sluice.telemetry.otlp_sender import OtlpSender
from tests.servers import serve
from tests.telemetry_support import Collector

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    folder = tmp_path_factory.mktemp("pki")
    _openssl(folder, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "1", "-subj", "/CN=sluice-test-ca")
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        _openssl(folder, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}")
        _openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")
    return folder


def _mutual_tls(pki: Path) -> dict[str, object]:
    return {"ssl_certfile": str(pki / "server.pem"), "ssl_keyfile": str(pki / "server.key"),
            "ssl_ca_certs": str(pki / "ca.pem"), "ssl_cert_reqs": ssl.CERT_REQUIRED}


def _span() -> bytes:
    return otlp_wire.span(trace_id=bytes(16), span_id=bytes(8), parent_span_id=None, parent_is_remote=False,
                          name="tls", kind=otlp_wire.SPAN_KIND_SERVER, start=1, end=2, attributes_={})


def test_spans_reach_a_collector_that_asks_for_a_client_certificate(pki: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(pki / "ca.pem"))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", str(pki / "client.pem"))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", str(pki / "client.key"))
    tls = Settings().otlp_tls
    assert tls == {"ca": str(pki / "ca.pem"), "cert": str(pki / "client.pem"), "key": str(pki / "client.key")}
    collector = Collector()
    with serve(collector.app, tls=_mutual_tls(pki)) as url:
        sender = OtlpSender(f"{url}/v1/traces", {}, {"service.name": "t"}, delay=0.1, tls=tls)
        sender.add(_span())
        sender.close()
    assert sender.sent == 1 and sender.failed == 0
    ((path, _, body),) = collector.seen
    (resource_spans,) = ExportTraceServiceRequest.FromString(body).resource_spans
    assert path == "/v1/traces" and resource_spans.scope_spans[0].spans[0].name == "tls"


def test_without_a_client_certificate_the_collector_refuses_the_spans(pki: Path) -> None:
    collector = Collector()
    with serve(collector.app, tls=_mutual_tls(pki)) as url:
        started = time.monotonic()
        sender = OtlpSender(f"{url}/v1/traces", {}, {"service.name": "t"}, delay=0.1, tls={"ca": str(pki / "ca.pem")})
        sender.add(_span())
        sender.close()
    assert sender.sent == 0 and sender.failed == 1 and collector.seen == []
    assert time.monotonic() - started >= 1.4  # retried twice (0.5 s, 1 s) before it was dropped


def test_a_missing_or_unmatched_tls_file_stops_the_start(pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(pki / "missing.pem"))
    with pytest.raises(ValidationError, match="TLS files"):
        Settings()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(pki / "ca.pem"))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", str(pki / "client.key"))
    with pytest.raises(ValidationError, match="client key needs its client certificate"):
        Settings()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", str(pki / "server.pem"))  # not this key's
    with pytest.raises(ValidationError, match="TLS files"):
        Settings()
