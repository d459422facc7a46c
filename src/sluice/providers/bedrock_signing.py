"""AWS Signature Version 4 for Bedrock calls, by botocore's signer (imported only with a Bedrock provider)."""

from __future__ import annotations

from collections.abc import Mapping

from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

SERVICE = "bedrock"
SIGNATURE_HEADERS = frozenset({"authorization", "x-amz-date", "x-amz-security-token"})
"""What the signer adds to a request: the headers to send along with the signed ones."""


class RequestSigner:
    """Signs requests for one region with one set of credentials (the signature covers method, URL, the headers
    given and the body's SHA-256)."""

    def __init__(self, access_key_id: str, secret_access_key: str, session_token: str | None, region: str,
                 service: str = SERVICE) -> None:
        self._auth = SigV4Auth(Credentials(access_key_id, secret_access_key, session_token), service, region)

    def signature_headers(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
        """`Authorization`, `X-Amz-Date` and (with a session token) `X-Amz-Security-Token` for this request; `Host`
        is signed as `url` names it, so `url` must be the one the request is sent to."""
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        self._auth.add_auth(request)
        return {str(name): str(value) for name, value in request.headers.items()
                if str(name).lower() in SIGNATURE_HEADERS}
