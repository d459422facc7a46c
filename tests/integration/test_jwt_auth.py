"""JWTs in place of API keys, against a loopback JWKS server with RSA and EC keys made here: valid tokens call the
LLM routes; every bad token gets the incorrect-key 401; unknown `kid`s fetch the JWKS once more; claims scope the
models and the admin API; the token never reaches the request log."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sluice.config import parse_config
from sluice.errors import AuthenticationFailed, PermissionDenied
from sluice.keys.hashing import key_hash
from sluice.keys.principal import Principal
from sluice.keys.ring import build_key_ring
from sluice.settings import Settings
from tests.conftest import run_gateway
from tests.servers import free_port, serve

ISSUER = "https://issuer.test"
AUDIENCE = "sluice-gateway"
PEPPER = "pepper-for-the-jwt-tests"
ADMIN = "sk-admin-jwt-tests"
CHAT = {"model": "mock", "messages": [{"role": "user", "content": "hello"}]}
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ROTATED_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
STRANGER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def config(jwks_url: str, **jwt_settings: Any) -> str:
    settings = {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["RS256", "ES256"], "jwks_url": jwks_url,
                "leeway_seconds": 30, **jwt_settings}
    return f"""
providers:
  mock: {{type: mock}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
  - {{name: second, provider: mock, model: mock-2}}
discover_projects: false
request_log: {{flush_interval_seconds: 0.05, stdout: true}}
jwt: {orjson.dumps(settings).decode()}
"""


def jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str, **extra: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        public: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        public = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return public | {"kid": kid, "use": "sig", **extra}


@dataclass
class Issuer:
    """The identity provider's JWKS endpoint, with the keys it publishes now and the fetches it served."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    fetches: int = 0
    failing: bool = False

    def app(self) -> Starlette:
        async def jwks(request: Request) -> JSONResponse:
            self.fetches += 1
            if self.failing:
                return JSONResponse({"error": "down for maintenance"}, status_code=503)
            return JSONResponse({"keys": self.keys})

        return Starlette(routes=[Route("/.well-known/jwks.json", jwks)])


@contextlib.contextmanager
def issuer(*keys: dict[str, Any]) -> Iterator[tuple[Issuer, str]]:
    published = Issuer(list(keys))
    with serve(published.app()) as url:
        yield published, url + "/.well-known/jwks.json"


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    values = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300} | changes
    return {name: value for name, value in values.items() if value is not None}


def token(key: Any = RSA_KEY, kid: str | None = "rsa-1", algorithm: str = "RS256", **changes: Any) -> str:
    return jwt.encode(claims(**changes), key, algorithm=algorithm, headers={"kid": kid} if kid else None)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(**changes: Any) -> str:
    return f"{_b64(orjson.dumps({'alg': 'none', 'typ': 'JWT'}))}.{_b64(orjson.dumps(claims(**changes)))}."


def hs256_with_public_key() -> str:
    """The algorithm-confusion attack: HS256 keyed with the RSA public key's PEM, which the attacker has."""
    secret = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{_b64(orjson.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': 'rsa-1'}))}." \
                    f"{_b64(orjson.dumps(claims(scope='admin')))}"
    return f"{signing_input}.{_b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def tampered() -> str:
    header, _, signature = token().split(".")
    return f"{header}.{_b64(orjson.dumps(claims(sub='mallory', scope='admin')))}.{signature}"


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
def published() -> Iterator[tuple[Issuer, str]]:
    with issuer(jwk(RSA_KEY, "rsa-1", alg="RS256"), jwk(EC_KEY, "ec-1")) as served:
        yield served


@pytest.fixture(scope="module")
def gateway(published: tuple[Issuer, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("jwt-gateway")
    with run_gateway(config(published[1]), keys=("sk-static-jwt-tests",), admin_key=ADMIN, key_pepper=PEPPER,
                     data_dir=str(data_dir)) as url:
        yield url


@pytest.mark.parametrize(("key", "kid", "algorithm"), [(RSA_KEY, "rsa-1", "RS256"), (EC_KEY, "ec-1", "ES256")])
def test_a_valid_token_calls_chat_and_lists_models(gateway: str, key: Any, kid: str, algorithm: str) -> None:
    headers = bearer(token(key, kid, algorithm))
    with httpx.Client(base_url=gateway, timeout=10) as client:
        chat = client.post("/v1/chat/completions", json=CHAT, headers=headers)
        assert chat.status_code == 200, chat.text
        assert chat.json()["choices"][0]["message"]["content"]
        models = client.get("/v1/models", headers=headers)
        assert models.status_code == 200
        assert {model["id"] for model in models.json()["data"]} == {"mock", "second"}
        assert client.post("/v1/chat/completions", json=CHAT,  # also in X-API-Key, like a key
                           headers={"X-API-Key": token(key, kid, algorithm, sub="bob")}).status_code == 200


def test_leeway_admits_a_token_just_expired_or_just_not_yet_valid(gateway: str) -> None:
    now = int(time.time())
    with httpx.Client(base_url=gateway, timeout=10) as client:
        for changes in ({"exp": now - 10}, {"nbf": now + 10}):
            reply = client.post("/v1/chat/completions", json=CHAT, headers=bearer(token(**changes)))
            assert reply.status_code == 200, (changes, reply.text)


BAD_TOKENS = {
    "expired beyond the leeway": lambda: token(exp=int(time.time()) - 60),
    "not yet valid beyond the leeway": lambda: token(nbf=int(time.time()) + 60),
    "without exp": lambda: token(exp=None),
    "wrong issuer": lambda: token(iss="https://someone-else.test"),
    "wrong audience": lambda: token(aud="another-service"),
    "unknown kid": lambda: token(STRANGER_KEY, "stranger"),
    "a known kid, signed by another key": lambda: token(STRANGER_KEY, "rsa-1"),
    "an EC kid with an RSA signature": lambda: token(RSA_KEY, "ec-1"),
    "an algorithm outside the allow-list": lambda: token(algorithm="RS384"),
    "no kid with several keys published": lambda: token(kid=None),
    "alg none, unsigned": unsigned,
    "HS256 keyed with the public key": hs256_with_public_key,
    "tampered payload": tampered,
    "without the key-id claim": lambda: token(sub=None),
    "garbage in three parts": lambda: "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2lnbmF0dXJl",
    "garbage": lambda: "not-a-token-at-all",
}


def test_every_bad_token_gets_the_same_401_as_a_wrong_key(gateway: str, capfd: pytest.CaptureFixture[str]) -> None:
    with httpx.Client(base_url=gateway, timeout=10) as client:
        wrong_key = client.post("/v1/chat/completions", json=CHAT, headers=bearer("sk-wrong-key"))
        assert wrong_key.status_code == 401
        assert wrong_key.json()["error"]["message"] == "Incorrect API key provided."
        answers = {}
        for case, make in BAD_TOKENS.items():
            chat = client.post("/v1/chat/completions", json=CHAT, headers=bearer(make()))
            models = client.get("/v1/models", headers=bearer(make()))
            answers[case] = (chat.status_code, chat.content, models.status_code, models.content)
    expected = (401, wrong_key.content, 401, wrong_key.content)
    assert {case: answer for case, answer in answers.items() if answer != expected} == {}
    assert "eyJ" not in capfd.readouterr().out  # no token (nor any part of one) on stdout, refused or not


def test_claims_scope_the_models_and_the_admin_api(gateway: str) -> None:
    scoped = bearer(token(sub="carol", scope="openid models:mock services:users"))
    admin = bearer(token(sub="dana", scope="admin"))
    with httpx.Client(base_url=gateway, timeout=10) as client:
        assert [model["id"] for model in client.get("/v1/models", headers=scoped).json()["data"]] == ["mock"]
        assert client.post("/v1/chat/completions", json=CHAT, headers=scoped).status_code == 200
        refused = client.post("/v1/chat/completions", json=CHAT | {"model": "second"}, headers=scoped)
        assert refused.status_code == 404, refused.text  # as for a key scoped to other models
        assert client.get("/admin/logs", headers=scoped).status_code == 403
        assert client.get("/admin/logs", headers=admin).status_code == 200


def test_the_token_never_reaches_the_request_log(published: tuple[Issuer, str], tmp_path: Path,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    presented = token(sub="erin")
    with run_gateway(config(published[1]), keys=(), key_pepper=PEPPER, data_dir=str(tmp_path)) as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.post("/v1/chat/completions", json=CHAT, headers=bearer(presented)).status_code == 200
            rows = _rows(tmp_path / "sluice.db")
    output = capfd.readouterr().out
    assert [(row["key_id"], row["key_hash"]) for row in rows] == [("jwt:erin", key_hash(PEPPER.encode(), "jwt:erin"))]
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("sluice.db*"))
    signature = presented.rsplit(".", 1)[1]
    assert "jwt:erin" in output  # the log line was written ...
    for text in (str(rows), output, stored.decode("latin-1")):
        assert presented not in text and signature not in text  # ... without the token


def test_an_unknown_kid_fetches_the_jwks_again_once_then_a_rotated_key_works(tmp_path: Path) -> None:
    with issuer(jwk(RSA_KEY, "rsa-1")) as (published, jwks_url), \
            run_gateway(config(jwks_url, jwks_refresh_min_seconds=0.5), keys=(), key_pepper=PEPPER,
                        data_dir=str(tmp_path)) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/v1/models", headers=bearer(token())).status_code == 200
        assert published.fetches == 1
        time.sleep(0.6)
        rotated = token(ROTATED_KEY, "rsa-2", sub="frank")
        assert [client.get("/v1/models", headers=bearer(rotated)).status_code for _ in range(10)] == [401] * 10
        assert published.fetches == 2  # looked again once; the other nine did not hammer the issuer
        published.keys = [jwk(ROTATED_KEY, "rsa-2")]  # the issuer rotates its key
        time.sleep(0.6)
        assert client.get("/v1/models", headers=bearer(rotated)).status_code == 200
        assert published.fetches == 3


def test_keys_past_their_cache_time_are_fetched_again_and_serve_while_the_issuer_is_down(tmp_path: Path) -> None:
    with issuer(jwk(RSA_KEY, "rsa-1")) as (published, jwks_url), \
            run_gateway(config(jwks_url, jwks_cache_seconds=0.5, jwks_refresh_min_seconds=0), keys=(),
                        key_pepper=PEPPER, data_dir=str(tmp_path)) as url, \
            httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/v1/models", headers=bearer(token(sub="jo"))).status_code == 200
        assert client.get("/v1/models", headers=bearer(token(sub="kim"))).status_code == 200
        assert published.fetches == 1  # cached
        published.failing = True
        time.sleep(0.6)
        assert client.get("/v1/models", headers=bearer(token(sub="lee"))).status_code == 200  # the old keys serve
        deadline = time.monotonic() + 5
        while published.fetches < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert published.fetches == 2  # ... while they are fetched again in the background


def test_a_jwks_that_cannot_be_fetched_is_503_not_401(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/jwks.json"
    with run_gateway(config(nowhere, jwks_timeout_seconds=1), keys=(), key_pepper=PEPPER,
                     data_dir=str(tmp_path)) as url, httpx.Client(base_url=url, timeout=10) as client:
        reply = client.get("/v1/models", headers=bearer(token()))
        assert reply.status_code == 503, reply.text
        assert "JWKS" in reply.json()["error"]["message"]
        assert client.get("/v1/models", headers=bearer("sk-some-key")).status_code == 401  # keys are unaffected


def test_a_pem_public_key_file(tmp_path: Path) -> None:
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(EC_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    text = config("unused").replace('"jwks_url":"unused"', f'"public_key_file":"{pem}"')
    with run_gateway(text, keys=(), key_pepper=PEPPER, data_dir=str(tmp_path)) as url, \
            httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/v1/models", headers=bearer(token(EC_KEY, None, "ES256"))).status_code == 200
        assert client.get("/v1/models", headers=bearer(token(EC_KEY, "any-kid", "ES256"))).status_code == 200
        assert client.get("/v1/models", headers=bearer(token(RSA_KEY, None))).status_code == 401


SERVICES = """
services:
  users: {instances: [{url: "http://127.0.0.1:9"}]}
  orders: {instances: [{url: "http://127.0.0.1:9"}]}
"""


def test_a_managed_key_scoped_to_services(published: tuple[Issuer, str], tmp_path: Path) -> None:
    """`services` on a managed key (stored with its other scopes; no migration), checked against the config."""
    text = config(published[1]) + SERVICES
    with run_gateway(text, keys=(), admin_key=ADMIN, key_pepper=PEPPER, data_dir=str(tmp_path)) as url, \
            httpx.Client(base_url=url, timeout=10, headers=bearer(ADMIN)) as client:
        unknown = client.post("/admin/keys", json={"name": "typo", "services": ["user"]})
        assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "services"
        created = client.post("/admin/keys", json={"name": "users-team", "services": ["users"]})
        assert created.status_code == 201 and created.json()["services"] == ["users"]
        record = client.get(f"/admin/keys/{created.json()['id']}").json()
        assert record["services"] == ["users"]
        principal = asyncio.run(_principal_of(created.json()["key"], text, tmp_path))
        assert principal.services == frozenset({"users"})
        widened = client.patch(f"/admin/keys/{record['id']}", json={"services": ["users", "orders"]})
        assert widened.status_code == 200 and widened.json()["services"] == ["users", "orders"]
        assert client.patch(f"/admin/keys/{record['id']}", json={"services": None}).json()["services"] is None


async def _principal_of(key: str, text: str, data_dir: Path) -> Principal:
    """The principal a fresh key ring (another instance on the same database) finds for `key`."""
    ring = build_key_ring(parse_config(text, "test.yaml"), Settings(key_pepper=PEPPER, data_dir=str(data_dir)))
    try:
        return await ring.authenticate(key)
    finally:
        await ring.aclose()


def _rows(database: Path, within: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        with sqlite3.connect(database) as connection:
            connection.row_factory = sqlite3.Row
            try:
                rows = [dict(row) for row in connection.execute("SELECT * FROM request_logs")]
            except sqlite3.OperationalError:
                rows = []
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_a_remembered_token_stops_working_when_it_expires(published: tuple[Issuer, str], tmp_path: Path) -> None:
    short = token(sub="gina", exp=int(time.time()) + 2)
    with run_gateway(config(published[1], leeway_seconds=0), keys=(), key_pepper=PEPPER,
                     data_dir=str(tmp_path)) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert [client.get("/v1/models", headers=bearer(short)).status_code for _ in range(3)] == [200] * 3
        time.sleep(max(0.0, jwt.decode(short, options={"verify_signature": False})["exp"] - time.time()) + 0.1)
        assert client.get("/v1/models", headers=bearer(short)).status_code == 401


@pytest.mark.anyio
async def test_jwt_only_routes_and_service_scopes(published: tuple[Issuer, str], tmp_path: Path) -> None:
    """`authenticate_jwt` (routes with `auth: jwt`) takes a token and nothing else; a static key's `services:`
    scope and a token's `services:` grants decide `check_service`."""
    text = config(published[1]) + SERVICES + """
static_keys:
  - {key: sk-only-users, name: users-only, services: [users]}
"""
    ring = build_key_ring(parse_config(text, "test.yaml"),
                          Settings(api_keys=["sk-every-service"], key_pepper=PEPPER, data_dir=str(tmp_path)))
    try:
        principal = await ring.authenticate_jwt(token(sub="hana", scope="services:users"))
        assert (principal.key_id, principal.jwt_subject, principal.services) == ("jwt:hana", "hana",
                                                                                 frozenset({"users"}))
        principal.check_service("users")
        with pytest.raises(PermissionDenied):
            principal.check_service("orders")
        (await ring.authenticate_jwt(token(sub="ida"))).check_service("orders")  # no services: grant: all
        for refused in ("sk-every-service", unsigned()):
            with pytest.raises(AuthenticationFailed, match="Incorrect API key provided"):
                await ring.authenticate_jwt(refused)
        with pytest.raises(AuthenticationFailed, match="didn't provide a token"):
            await ring.authenticate_jwt(None)
        users_only = await ring.authenticate("sk-only-users")
        users_only.check_service("users")
        with pytest.raises(PermissionDenied):
            users_only.check_service("orders")
        (await ring.authenticate("sk-every-service")).check_service("orders")
    finally:
        await ring.aclose()


def test_a_jwt_route_takes_only_tokens_and_tells_the_service_who_called(published: tuple[Issuer, str],
                                                                        tmp_path: Path) -> None:
    seen: list[dict[str, str]] = []

    async def echo(request: Request) -> JSONResponse:
        seen.append(dict(request.headers))
        return JSONResponse({"ok": True})

    service = Starlette(routes=[Route("/{path:path}", echo)])
    with serve(service) as service_url:
        text = config(published[1]) + f"""
services:
  users: {{instances: [{{url: "{service_url}"}}]}}
  orders: {{instances: [{{url: "{service_url}"}}]}}
routes:
  - {{path: "/api/users/**", service: users, auth: jwt}}
  - {{path: "/api/orders/**", service: orders}}
"""
        with run_gateway(text, keys=("sk-static-jwt-tests",), key_pepper=PEPPER, data_dir=str(tmp_path)) as url:
            bearer = {"Authorization": f"Bearer {token(sub='hana', scope='services:users')}"}
            assert httpx.get(url + "/api/users/1", headers=bearer).status_code == 200
            assert httpx.get(url + "/api/users/1", headers={"Authorization": "Bearer sk-static-jwt-tests"}
                             ).status_code == 401  # an API key is not a token
            assert httpx.get(url + "/api/orders/1", headers=bearer).status_code == 403  # scoped to users
            crafted = token(sub="eve\r\nX-Admin: 1")
            with_newline = {"Authorization": f"Bearer {crafted}"}
            assert httpx.get(url + "/api/users/2", headers=with_newline).status_code == 200
    assert seen[0]["x-sluice-subject"] == "hana" and seen[0]["x-sluice-key-id"] == "jwt:hana"
    assert "authorization" not in seen[0]
    assert seen[1]["x-sluice-subject"] == "eve%0D%0AX-Admin: 1" and "x-admin" not in seen[1]
