"""Signature verifiers for loopback servers: recompute a received request's signature with the provider's OFFICIAL SDK.

None of these calls metrics-bridge's signers. Each takes what a server received (method, raw path, raw query,
headers, body) and the secret, checks what the provider's gateway checks (the credential, the signed headers,
the body digest, the timestamp window) and recomputes the signature with the SDK's own signing function:

- Alibaba Cloud V3: `alibabacloud_openapi_util` (the Tea SDK's `get_authorization`); RPC: its `get_rpcsignature`
  (and tests also compare with `aliyunsdkcore`'s RPC composer).
- Huawei Cloud: `huaweicloudsdkcore.signer.signer.Signer`.
- Volcengine: `volcengine.auth.SignerV4.sign_only` (it takes the date explicitly).
- Baidu AI Cloud: `baidubce.auth.bce_v1_signer.sign`.

The SDKs are test-only dependencies (the `test` extra), never needed by metrics-bridge itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Mapping, Optional
from urllib.parse import parse_qsl, unquote

# The BCE SDK logs the derived signing key at DEBUG: keep it out of the logs the secrets tests search.
logging.getLogger("baidubce").setLevel(logging.WARNING)

DEFAULT_MAX_AGE = timedelta(minutes=5)


@dataclass(frozen=True)
class Received:
    """A request as a server received it."""

    method: str
    path: str  # percent-encoded, as on the wire
    query: str  # the raw query string
    headers: Mapping[str, str]  # lower-cased names
    body: bytes

    @classmethod
    def of(cls, request) -> "Received":  # type: ignore[no-untyped-def]
        """From a `fakeapi.Request`."""
        return cls(request.method, request.path, request.raw_query, {k.lower(): v for k, v in request.headers.items()}, request.body)

    def pairs(self) -> list[tuple[str, str]]:
        """The decoded query parameters."""
        return parse_qsl(self.query, keep_blank_values=True)

    def header(self, name: str) -> Optional[str]:
        """A header value by case-insensitive name."""
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Verdict:
    """Whether a request passed, and why not."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


ACCEPTED = Verdict(True)


def _window(when: datetime, now: Optional[datetime], max_age: timedelta) -> Verdict:
    now = now or datetime.now(timezone.utc)
    if now - when > max_age:
        return Verdict(False, f"stale request: signed {now - when} ago")
    if when - now > max_age:
        return Verdict(False, f"request signed {when - now} in the future")
    return ACCEPTED


def _utc(text: Optional[str], form: str) -> Optional[datetime]:
    try:
        return datetime.strptime(text or "", form).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _body_digest(received: Received, header: str) -> Verdict:
    if received.header(header) != hashlib.sha256(received.body).hexdigest():
        return Verdict(False, f"{header} does not match the body")
    return ACCEPTED


# ---------------------------------------------------------------------------------------------------------------------
# Alibaba Cloud
# ---------------------------------------------------------------------------------------------------------------------

_ACS3 = re.compile(r"^ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]{64})$")


def verify_alibaba_v3(received: Received, access_key_id: str, access_key_secret: str, *, now: Optional[datetime] = None,
                      max_age: timedelta = DEFAULT_MAX_AGE) -> Verdict:
    """ACS3-HMAC-SHA256, recomputed by `alibabacloud_openapi_util.client.Client.get_authorization`."""
    from alibabacloud_openapi_util.client import Client as OpenApiUtil

    match = _ACS3.match(received.header("authorization") or "")
    if not match:
        return Verdict(False, "no ACS3-HMAC-SHA256 Authorization header")
    credential, signed_headers, signature = match.groups()
    if credential != access_key_id:
        return Verdict(False, "unknown AccessKey ID")
    names = signed_headers.split(";")
    required = {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"}
    unsigned = (required | {n for n in received.headers if n.startswith("x-acs-")}) - set(names)
    if unsigned:
        return Verdict(False, f"headers not signed: {sorted(unsigned)}")
    digest = _body_digest(received, "x-acs-content-sha256")
    if not digest:
        return digest
    when = _utc(received.header("x-acs-date"), "%Y-%m-%dT%H:%M:%SZ")
    if when is None:
        return Verdict(False, "bad x-acs-date")
    window = _window(when, now, max_age)
    if not window:
        return window
    request = SimpleNamespace(
        method=received.method, pathname=OpenApiUtil.get_encode_path(unquote(received.path or "/")),
        query=dict(received.pairs()), headers={name: received.header(name) for name in names},
    )
    expected = OpenApiUtil.get_authorization(request, "ACS3-HMAC-SHA256", received.header("x-acs-content-sha256"), access_key_id, access_key_secret)
    return ACCEPTED if _same(expected, received.header("authorization") or "") else Verdict(False, "signature mismatch")


def verify_alibaba_rpc(received: Received, access_key_id: str, access_key_secret: str, *, now: Optional[datetime] = None,
                       max_age: timedelta = DEFAULT_MAX_AGE) -> Verdict:
    """The RPC (HMAC-SHA1) signature, recomputed by `alibabacloud_openapi_util.client.Client.get_rpcsignature`."""
    from alibabacloud_openapi_util.client import Client as OpenApiUtil

    params = dict(received.pairs())
    signature = params.pop("Signature", None)
    if not signature:
        return Verdict(False, "no Signature parameter")
    if params.get("AccessKeyId") != access_key_id:
        return Verdict(False, "unknown AccessKey ID")
    if params.get("SignatureMethod") != "HMAC-SHA1" or params.get("SignatureVersion") != "1.0" or not params.get("SignatureNonce"):
        return Verdict(False, "missing or wrong SignatureMethod, SignatureVersion or SignatureNonce")
    when = _utc(params.get("Timestamp"), "%Y-%m-%dT%H:%M:%SZ")
    if when is None:
        return Verdict(False, "bad Timestamp")
    window = _window(when, now, max_age)
    if not window:
        return window
    expected = OpenApiUtil.get_rpcsignature(params, received.method, access_key_secret)
    return ACCEPTED if _same(expected, signature) else Verdict(False, "signature mismatch")


# ---------------------------------------------------------------------------------------------------------------------
# Huawei Cloud
# ---------------------------------------------------------------------------------------------------------------------

_SDK_HMAC = re.compile(r"^SDK-HMAC-SHA256 Access=([^,]+), SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$")


def verify_huawei(received: Received, access_key_id: str, secret_access_key: str, *, now: Optional[datetime] = None,
                  max_age: timedelta = DEFAULT_MAX_AGE) -> Verdict:
    """SDK-HMAC-SHA256, recomputed by `huaweicloudsdkcore.signer.signer.Signer`."""
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer

    match = _SDK_HMAC.match(received.header("authorization") or "")
    if not match:
        return Verdict(False, "no SDK-HMAC-SHA256 Authorization header")
    access, signed_headers, signature = match.groups()
    if access != access_key_id:
        return Verdict(False, "unknown access key")
    names = signed_headers.split(";")
    if not {"host", "x-sdk-date"} <= set(names):
        return Verdict(False, "host and x-sdk-date must be signed")
    when = _utc(received.header("x-sdk-date"), "%Y%m%dT%H%M%SZ")
    if when is None:
        return Verdict(False, "bad X-Sdk-Date")
    window = _window(when, now, max_age)
    if not window:
        return window
    request = SdkRequest(
        method=received.method, schema="http", host=received.header("host"), resource_path=received.path or "/",
        query_params=received.pairs(), header_params={name: received.header(name) for name in names}, body=received.body,
    )
    Signer(SimpleNamespace(ak=access_key_id, sk=secret_access_key)).sign(request)
    expected = _SDK_HMAC.match(request.header_params["Authorization"])
    return ACCEPTED if expected and _same(expected.group(3), signature) else Verdict(False, "signature mismatch")


# ---------------------------------------------------------------------------------------------------------------------
# Volcengine
# ---------------------------------------------------------------------------------------------------------------------

_VOLC = re.compile(r"^HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$")


def verify_volcengine(received: Received, access_key_id: str, secret_access_key: str, region: str, service: str, *,
                      now: Optional[datetime] = None, max_age: timedelta = DEFAULT_MAX_AGE) -> Verdict:
    """HMAC-SHA256 with a date/region/service scope, recomputed by `volcengine.auth.SignerV4.SignerV4.sign_only`."""
    from volcengine.Credentials import Credentials
    from volcengine.auth.SignParam import SignParam
    from volcengine.auth.SignerV4 import SignerV4

    match = _VOLC.match(received.header("authorization") or "")
    if not match:
        return Verdict(False, "no HMAC-SHA256 Authorization header")
    ak, day, got_region, got_service, signed_headers, signature = match.groups()
    if ak != access_key_id:
        return Verdict(False, "unknown access key")
    if (got_region, got_service) != (region, service):
        return Verdict(False, f"signed for {got_region}/{got_service}, not {region}/{service}")
    names = signed_headers.split(";")
    if not {"host", "x-date", "x-content-sha256"} <= set(names):
        return Verdict(False, "host, x-date and x-content-sha256 must be signed")
    digest = _body_digest(received, "x-content-sha256")
    if not digest:
        return digest
    when = _utc(received.header("x-date"), "%Y%m%dT%H%M%SZ")
    if when is None or when.strftime("%Y%m%d") != day:
        return Verdict(False, "bad X-Date")
    window = _window(when, now, max_age)
    if not window:
        return window
    param = SignParam()
    param.set_method(received.method)
    param.set_path(unquote(received.path or "/"))
    param.set_query(OrderedDict(received.pairs()))
    param.set_body(received.body)
    param.set_date(when.replace(tzinfo=None))
    # The SDK signs Host, Content-Type, Content-Md5 and X-* in their canonical spelling.
    param.set_header_list(OrderedDict(("-".join(p.capitalize() for p in n.split("-")), received.header(n)) for n in names if n != "x-security-token"))
    token = received.header("x-security-token") if "x-security-token" in names else ""
    result = SignerV4.sign_only(param, Credentials(access_key_id, secret_access_key, service, region, token or ""))
    return ACCEPTED if _same(result.xSignature, signature) else Verdict(False, "signature mismatch")


# ---------------------------------------------------------------------------------------------------------------------
# Baidu AI Cloud
# ---------------------------------------------------------------------------------------------------------------------

_BCE = re.compile(r"^bce-auth-v1/([^/]+)/([^/]+)/(\d+)/([^/]*)/([0-9a-f]{64})$")


def verify_baidu(received: Received, access_key_id: str, secret_access_key: str, *, now: Optional[datetime] = None,
                 max_age: timedelta = DEFAULT_MAX_AGE) -> Verdict:
    """bce-auth-v1, recomputed by `baidubce.auth.bce_v1_signer.sign`; the body must match `x-bce-content-sha256`."""
    from baidubce import utils
    from baidubce.auth.bce_credentials import BceCredentials
    from baidubce.auth.bce_v1_signer import sign

    authorization = received.header("authorization") or ""
    match = _BCE.match(authorization)
    if not match:
        return Verdict(False, "no bce-auth-v1 Authorization header")
    ak, timestamp, expiration, signed_headers, _ = match.groups()
    if ak != access_key_id:
        return Verdict(False, "unknown access key")
    names = signed_headers.split(";") if signed_headers else []
    if not {"host", "x-bce-content-sha256"} <= set(names):
        return Verdict(False, "host and x-bce-content-sha256 must be signed")
    digest = _body_digest(received, "x-bce-content-sha256")
    if not digest:
        return digest
    when = _utc(timestamp, "%Y-%m-%dT%H:%M:%SZ")
    if when is None:
        return Verdict(False, "bad timestamp")
    if (now or datetime.now(timezone.utc)) > when + timedelta(seconds=int(expiration)):
        return Verdict(False, "expired signature")
    window = _window(when, now, max_age)
    if not window:
        return window
    expected = sign(
        BceCredentials(access_key_id, secret_access_key), received.method.encode(),
        utils.normalize_string(unquote(received.path or "/"), False),
        {name.encode(): received.header(name).encode() for name in names}, dict(received.pairs()),
        timestamp=int(when.timestamp()), expiration_in_seconds=int(expiration), headers_to_sign=[n.encode() for n in names],
    )
    return ACCEPTED if _same(expected.decode(), authorization) else Verdict(False, "signature mismatch")


# ---------------------------------------------------------------------------------------------------------------------
# Loopback servers
# ---------------------------------------------------------------------------------------------------------------------


class VerifyingRoute:
    """A FakeAPI route that answers `reply` to a request its verifier accepts and 403 to any other; keeps the verdicts."""

    def __init__(self, verify, reply) -> None:  # type: ignore[no-untyped-def]
        self.verify, self.reply = verify, reply
        self.verdicts: list[Verdict] = []

    def __call__(self, request):  # type: ignore[no-untyped-def]
        from fakeapi import Reply

        verdict = self.verify(Received.of(request))
        self.verdicts.append(verdict)
        return self.reply if verdict else Reply({"error": verdict.reason}, status=403)
