"""deploy/nginx/sluice.conf, run by the real nginx over HTTPS in front of two `sluice serve` processes.

The file is used as it is, with only what a deployment changes rewritten for loopback: the listen addresses, the
certificate (self-signed, made here), the upstream `server` lines and the log and pid paths. What it shows:
SSE chunks arrive through it one at a time as the upstream writes them; both instances get traffic; a WebSocket
route works through it; and with `limits.trusted_proxies` naming nginx, Sluice's per-address limit (kept in
Redis, so one limit across both instances) counts each client by its own address, which a forged
X-Forwarded-For does not change.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import sqlite3
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.sync.client import connect

from tests.e2e.test_serve import run_serve
from tests.fakes.websocket_service import WebSocketService
from tests.limits_support import redis_backend
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "nginx" / "sluice.conf"
PER_IP_RPM = 3
CHUNKS = 8
CHUNK_DELAY_MS = 150

pytestmark = pytest.mark.redis

CONFIG = """
providers:
  mock: {{type: mock, chunk_delay_ms: {delay}, chunks: {chunks}}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
limits: {{{backend}, trusted_proxies: [127.0.0.1/32], per_ip: {{requests_per_minute: {rpm}}}}}
services:
  chat: {{instances: [{{url: "{ws_url}"}}]}}
routes:
  - {{path: "/ws/**", service: chat, websocket: true, strip_prefix: /ws}}
"""


def nginx_executable() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed (apt-get install -y nginx)")
        pytest.skip("nginx is not installed (apt-get install -y nginx)")
    return found


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def render(conf: str, prefix: Path, https_port: int, http_port: int, upstreams: list[int], cert: Path,
           key: Path) -> str:
    """sluice.conf with loopback ports, this certificate and these upstreams; everything else as shipped."""
    servers = "".join(f"        server 127.0.0.1:{port} max_fails=3 fail_timeout=10s;\n" for port in upstreams)
    replacements = [
        (r"(?m)^ *server sluice-\d:8000 [^\n]*\n", ""),
        (r"(upstream sluice \{\n(?: *#[^\n]*\n)*(?: *least_conn;[^\n]*\n))", r"\1" + servers),
        (r"(?m)^ *listen \[::\]:\d+[^\n]*\n", ""),
        (r"listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        (r"listen 80;", f"listen 127.0.0.1:{http_port};"),
        (r"/etc/nginx/tls/tls\.crt", str(cert)),
        (r"/etc/nginx/tls/tls\.key", str(key)),
        (r"pid /run/nginx-sluice\.pid;", f"pid {prefix}/nginx.pid;"),
        (r"error_log /var/log/nginx/sluice\.error\.log", f"error_log {prefix}/error.log"),
        (r"access_log /var/log/nginx/sluice\.access\.log", f"access_log {prefix}/access.log"),
    ]
    for pattern, replacement in replacements:
        conf, count = re.subn(pattern, replacement, conf)
        assert count, f"sluice.conf no longer has {pattern!r}: update the test's rendering"
    temp = "".join(f"    {name}_temp_path {prefix}/{name};\n" for name in
                   ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return conf.replace("http {\n", "http {\n" + temp, 1)


@dataclass
class Front:
    url: str
    cert: Path
    prefix: Path


@contextlib.contextmanager
def nginx_in_front(upstreams: list[int]) -> Iterator[Front]:
    nginx = nginx_executable()
    prefix = Path(tempfile.mkdtemp(prefix="sluice-nginx-"))
    prefix.chmod(0o755)  # nginx's workers (www-data when run as root) reach its temp dirs
    try:
        cert, key = self_signed(prefix)
        https_port, http_port = free_port(), free_port()
        conf = prefix / "sluice.conf"
        conf.write_text(render(CONF.read_text(), prefix, https_port, http_port, upstreams, cert, key))
        check = subprocess.run([nginx, "-t", "-q", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "t.log")],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        process = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"),
                                    "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"https://127.0.0.1:{https_port}"
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    httpx.get(url + "/health", verify=ssl.create_default_context(cafile=str(cert)), timeout=1)
                    break
                except httpx.TransportError:
                    assert process.poll() is None, process.stderr.read() if process.stderr else ""
                    assert time.monotonic() < deadline, "nginx did not answer"
                    time.sleep(0.05)
            redirect = httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=5)
            assert redirect.status_code == 308 and redirect.headers["location"].startswith("https://")
            yield Front(url, cert, prefix)
        finally:
            process.send_signal(signal.SIGQUIT)  # graceful stop of this nginx only (never the system's)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


@dataclass
class Stack:
    front: Front
    ws: WebSocketService
    databases: list[Path]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with contextlib.ExitStack() as stack, redis_backend() as backend:
        ws = stack.enter_context(WebSocketService())
        config = CONFIG.format(delay=CHUNK_DELAY_MS, chunks=CHUNKS, backend=backend.yaml, rpm=PER_IP_RPM,
                               ws_url=ws.url)
        ports, databases = [], []
        for name in ("a", "b"):
            directory = tmp_path_factory.mktemp(f"instance-{name}")
            env = {"SLUICE_REDIS_URL": backend.settings["redis_url"], "SLUICE_BUILD": f"instance-{name}",
                   "SLUICE_KEY_PEPPER": "one-pepper-for-both-instances"}
            url, _ = stack.enter_context(run_serve(config, directory, env))
            ports.append(int(url.rsplit(":", 1)[1]))
            databases.append(directory / "data" / "sluice.db")  # each instance's request log (SQLite)
        yield Stack(stack.enter_context(nginx_in_front(ports)), ws, databases)


def https_client(front: Front, source: str = "127.0.0.1", timeout: float = 10) -> httpx.Client:
    """A client trusting the test's certificate, connecting from the loopback address `source`."""
    context = ssl.create_default_context(cafile=str(front.cert))
    return httpx.Client(transport=httpx.HTTPTransport(verify=context, local_address=source), timeout=timeout)


def chat(client: httpx.Client, url: str, **headers: str) -> int:
    return client.post(url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-e2e", **headers},
                       json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]}).status_code


def test_sse_chunks_arrive_one_by_one_over_https(stack: Stack) -> None:
    front = stack.front
    words = " ".join(f"w{i}" for i in range(CHUNKS))
    body = {"model": "mock", "stream": True, "messages": [{"role": "user", "content": words}]}
    arrivals: list[float] = []
    with https_client(front, "127.0.0.9", timeout=20) as client:
        started = time.monotonic()
        with client.stream("POST", front.url + "/v1/chat/completions", json=body,
                           headers={"Authorization": "Bearer sk-e2e"}) as reply:
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/event-stream")
            for line in reply.iter_lines():
                if line.startswith("data: ") and '"content":"' in line:
                    arrivals.append(time.monotonic() - started)
    assert len(arrivals) >= CHUNKS - 1, arrivals
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    # The mock writes a chunk every 150 ms: through nginx they must come spread out like that, not in one burst.
    assert arrivals[-1] - arrivals[0] > 0.6 * (CHUNK_DELAY_MS / 1000) * (len(arrivals) - 1), arrivals
    assert sorted(gaps)[len(gaps) // 2] > 0.5 * CHUNK_DELAY_MS / 1000, gaps


def test_both_instances_serve_behind_it(stack: Stack) -> None:
    with https_client(stack.front) as client:
        builds = {client.get(stack.front.url + "/health").json()["build"] for _ in range(6)}
        assert client.get(stack.front.url + "/health/ready").status_code == 200
    assert builds == {"instance-a", "instance-b"}


def test_websocket_route_through_nginx(stack: Stack) -> None:
    context = ssl.create_default_context(cafile=str(stack.front.cert))
    with connect(stack.front.url.replace("https://", "wss://") + "/ws/echo", ssl=context, open_timeout=5,
                 additional_headers={"Authorization": "Bearer sk-e2e"}) as ws:
        ws.send("through nginx")
        assert ws.recv(timeout=5) == "through nginx"
    seen = stack.ws.seen.get(timeout=5)
    assert seen["path"] == "/echo"


def test_trusted_proxy_lets_the_limit_see_each_client(stack: Stack) -> None:
    """Clients from 127.0.0.2 and 127.0.0.3 reach nginx; nginx reaches both Sluice instances from 127.0.0.1."""
    url = stack.front.url
    with https_client(stack.front, "127.0.0.2") as first, https_client(stack.front, "127.0.0.3") as second:
        assert [chat(first, url) for _ in range(PER_IP_RPM)] == [200] * PER_IP_RPM
        # One limit across both instances (Redis), for this client's address: its next request is refused ...
        assert chat(first, url) == 429
        # ... and a forged X-Forwarded-For does not make it someone else: nginx appends the real peer.
        assert chat(first, url, **{"X-Forwarded-For": "198.51.100.7"}) == 429
        # Another client, behind the same nginx, still has its own quota.
        assert chat(second, url) == 200
    # nginx's own log names them too (it writes a line once the response is sent: wait for it).
    deadline = time.monotonic() + 5
    while not {"127.0.0.2", "127.0.0.3"} <= (clients := logged_clients(stack.front)):
        assert time.monotonic() < deadline, clients
        time.sleep(0.1)
    # The request log keeps the headers nginx added: the row says who the client was.
    deadline = time.monotonic() + 10
    while not (forwarded := logged_forwarded_for(stack.databases)) >= {"127.0.0.2", "127.0.0.3"}:
        assert time.monotonic() < deadline, forwarded
        time.sleep(0.2)


def logged_clients(front: Front) -> set[str]:
    """The client address of every chat request in nginx's access log."""
    lines = (front.prefix / "access.log").read_text().splitlines()
    return {line.split(" ", 1)[0] for line in lines if "/v1/chat/completions" in line}


def logged_forwarded_for(databases: list[Path]) -> set[str]:
    """The X-Real-IP of every chat row in the instances' request logs."""
    seen = set()
    for database in databases:
        if not database.exists():
            continue
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
            with contextlib.suppress(sqlite3.OperationalError):  # the table appears with the first batch
                for (headers,) in db.execute("SELECT request_headers FROM request_logs WHERE endpoint LIKE '%chat%'"):
                    seen.add(json.loads(headers).get("x-real-ip"))
    return seen
