"""Signature verifiers for loopback servers: recompute a received request's signature with the provider's OFFICIAL SDK.

None of these calls metrics-bridge's signers. Each takes what a server received (method, raw path, raw query,
headers, body) and the secret, checks what the provider's gateway checks (the credential, the signed headers,
the body digest, the timestamp window) and recomputes the signature with the SDK's own signing function:

- Alibaba Cloud V3: `alibabacloud_openapi_util` (the Tea SDK's `get_authorization`); RPC: its `get_rpcsignature`
  (and tests also compare with `aliyunsdkcore`'s RPC composer).
- Huawei Cloud: `huaweicloudsdkcore.signer.signer.Signer`.
- Volcengine: `volcengine.auth.SignerV4.sign_only` (it takes the date explicitly).
- Baidu AI Cloud: `baidubce.auth.bce_v1_signer.sign`.
- AWS Signature Version 4: botocore's `SigV4Auth`, re-signing the headers the signature names (`verify_sigv4`);
  `LoopbackSTS` answers AssumeRole to callers it verifies the same way.

And an OAuth2 token endpoint, `OAuth2TokenServer`: it checks the client credentials, issues tokens with a given
`expires_in`, counts requests, and makes API routes that accept only its live tokens.

The SDKs are test-only dependencies (the `test` extra), never needed by metrics-bridge itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Callable, Mapping, Optional
from urllib.parse import parse_qsl, unquote, unquote_plus

from fakeapi import FakeAPI, Reply, Request

Route = Callable[[Request], Reply]

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
# AWS Signature Version 4 — re-signed with botocore's SigV4Auth
# ---------------------------------------------------------------------------------------------------------------------

_SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<access_key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[a-z0-9;\-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


def sigv4_fields(headers: dict[str, str]) -> Optional[dict[str, str]]:
    """The parts of a SigV4 Authorization header (access_key, date, region, service, signed, signature), or None."""
    lowered = {k.lower(): v for k, v in headers.items()}
    match = _SIGV4.match(lowered.get("authorization", ""))
    return match.groupdict() if match else None


def verify_sigv4(method: str, url: str, headers: dict[str, str], body: bytes, secret_key: str, region: str, service: str) -> bool:
    """Whether botocore, signing the same request (the headers the signature names, at its X-Amz-Date), computes the
    same signature; a body whose hash differs from X-Amz-Content-Sha256 fails too."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    fields = sigv4_fields(headers)
    lowered = {k.lower(): v for k, v in headers.items()}
    amz_date = lowered.get("x-amz-date", "")
    if fields is None or (fields["region"], fields["service"]) != (region, service) or amz_date[:8] != fields["date"]:
        return False
    if "x-amz-content-sha256" in lowered and lowered["x-amz-content-sha256"] != hashlib.sha256(body).hexdigest():
        return False
    names = fields["signed"].split(";")
    if "host" not in names or any(name not in lowered for name in names):
        return False
    request = AWSRequest(method=method, url=url, headers={n: lowered[n] for n in names}, data=body)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(fields["access_key"], secret_key), service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    return hmac.compare_digest(expected, fields["signature"])


def request_url(request: Request) -> str:
    """The URL a loopback server was asked for, as the client sent it (host header, raw path and raw query)."""
    return f"http://{request.headers['host']}{request.path}" + (f"?{request.raw_query}" if request.raw_query else "")


def sigv4_route(
    keys: dict[str, str], region: str, service: str, reply: Reply, tokens: Optional[dict[str, str]] = None,
    max_skew: float = 300.0,
) -> Route:
    """A FakeAPI route answering `reply` only to requests signed with one of `keys` (access key → secret key), within
    `max_skew` of now, and (for keys in `tokens`) carrying that session token; otherwise 403 as AWS does."""

    def route(request: Request) -> Reply:
        fields = sigv4_fields(request.headers)
        if fields is None or fields["access_key"] not in keys:
            return Reply({"message": "The security token included in the request is invalid."}, status=403)
        if tokens and fields["access_key"] in tokens and request.headers.get("x-amz-security-token") != tokens[fields["access_key"]]:
            return Reply({"message": "The security token included in the request is invalid."}, status=403)
        signed_at = datetime.strptime(request.headers.get("x-amz-date", "19700101T000000Z"), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        if abs((datetime.now(timezone.utc) - signed_at).total_seconds()) > max_skew:
            return Reply({"message": "Signature expired"}, status=403)
        if not verify_sigv4(request.method, request_url(request), request.headers, request.body, keys[fields["access_key"]], region, service):
            return Reply({"message": "The request signature we calculated does not match the signature you provided."}, status=403)
        return reply

    return route


@dataclass
class LoopbackSTS:
    """AWS STS AssumeRole on loopback: checks the caller's SigV4 (service `sts`) with `base_keys`, then issues fresh
    temporary keys valid `duration` seconds; `issued` maps each temporary access key to (secret key, session token)."""

    base_keys: dict[str, str]
    region: str
    role_arn: str
    duration: float = 3600.0
    issued: dict[str, tuple[str, str]] = field(default_factory=dict)
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def route(self, request: Request) -> Reply:
        """The STS endpoint."""
        with self.lock:
            self.calls += 1
        deny = sigv4_route(self.base_keys, self.region, "sts", Reply(b""))(request)
        if deny.status != 200:
            return Reply(_sts_error("InvalidClientTokenId", "The security token included in the request is invalid."), status=403, headers=_XML)
        form = dict(parse_qsl(request.body.decode()))
        if form.get("Action") != "AssumeRole" or form.get("RoleArn") != self.role_arn:
            return Reply(_sts_error("AccessDenied", "not authorized to perform: sts:AssumeRole"), status=403, headers=_XML)
        access, secret, token = "ASIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30), secrets.token_urlsafe(60)
        with self.lock:
            self.issued[access] = (secret, token)
        expiration = (datetime.now(timezone.utc) + timedelta(seconds=self.duration)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return Reply(
            f'<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials>'
            f"<AccessKeyId>{access}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>"
            f"<SessionToken>{token}</SessionToken><Expiration>{expiration}</Expiration></Credentials>"
            f"</AssumeRoleResult></AssumeRoleResponse>",
            headers=_XML,
        )

    def temporary_keys(self) -> dict[str, str]:
        """Temporary access key → secret key, for `sigv4_route`."""
        return {access: secret for access, (secret, _) in self.issued.items()}

    def temporary_tokens(self) -> dict[str, str]:
        """Temporary access key → session token, for `sigv4_route`."""
        return {access: token for access, (_, token) in self.issued.items()}


_XML = {"Content-Type": "text/xml"}


def _sts_error(code: str, message: str) -> str:
    return f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error></ErrorResponse>"


# ---------------------------------------------------------------------------------------------------------------------
# OAuth2 client credentials — a token endpoint that checks the client and issues tokens
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class IssuedToken:
    """A token the server issued, and until when (server clock) it is valid."""

    value: str
    expires_at: float
    issued_at: float


class OAuth2TokenServer:
    """An OAuth2 token endpoint (RFC 6749 §4.4) on loopback: checks the client credentials (basic header or form, as
    `client_auth` allows), issues a new random token valid `expires_in` seconds on each request, and counts requests.
    `bearer_route` makes a loopback API that accepts only its live tokens."""

    def __init__(self, client_id: str, client_secret: str, expires_in: Optional[float] = 3600, client_auth: str = "any") -> None:
        self.client_id, self.client_secret, self.expires_in, self.client_auth = client_id, client_secret, expires_in, client_auth
        self.api = FakeAPI()
        self.api.routes["/token"] = self._token
        self.answer: Optional[Reply] = None  # set to override every answer (failures, hostile bodies)
        self.issued: list[IssuedToken] = []
        self.forms: list[dict[str, str]] = []
        self.lock = threading.Lock()

    @property
    def token_url(self) -> str:
        """The token endpoint."""
        return self.api.url("/token")

    @property
    def requests(self) -> int:
        """How many token requests arrived."""
        return len(self.api.requests)

    def start(self) -> "OAuth2TokenServer":
        """Serve on a background thread."""
        self.api.start()
        return self

    def close(self) -> None:
        """Stop serving."""
        self.api.close()

    def _client(self, request: Request, form: dict[str, str]) -> Optional[tuple[str, str]]:
        header = request.headers.get("authorization", "")
        if header.startswith("Basic ") and self.client_auth in ("any", "header"):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return unquote_plus(user), unquote_plus(password)
        if "client_id" in form and self.client_auth in ("any", "params"):
            return form["client_id"], form.get("client_secret", "")
        return None

    def _token(self, request: Request) -> Reply:
        form = dict(parse_qsl(request.body.decode()))
        with self.lock:
            self.forms.append(form)
        if self.answer is not None:
            return self.answer
        if form.get("grant_type") != "client_credentials":
            return Reply({"error": "unsupported_grant_type"}, status=400)
        if self._client(request, form) != (self.client_id, self.client_secret):
            return Reply({"error": "invalid_client", "error_description": "client authentication failed"}, status=401)
        now = time.monotonic()
        token = IssuedToken("at-" + secrets.token_urlsafe(24), now + (self.expires_in or float("inf")), now)
        with self.lock:
            self.issued.append(token)
        body = {"access_token": token.value, "token_type": "Bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return Reply(body)

    def accepts(self, authorization: str) -> bool:
        """Whether `authorization` is `Bearer <a token this server issued that has not expired>`."""
        scheme, _, value = authorization.partition(" ")
        now = time.monotonic()
        return scheme == "Bearer" and any(t.value == value and now < t.expires_at for t in self.issued)

    def bearer_route(self, reply: Reply) -> Route:
        """A FakeAPI route answering `reply` to requests with a live token, 401 otherwise."""

        def route(request: Request) -> Reply:
            if not self.accepts(request.headers.get("authorization", "")):
                return Reply({"error": "invalid_token"}, status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return reply

        return route


# ---------------------------------------------------------------------------------------------------------------------
# Loopback servers
# ---------------------------------------------------------------------------------------------------------------------


class VerifyingRoute:
    """A FakeAPI route that answers `reply` to a request its verifier accepts and 403 to any other; keeps the verdicts."""

    def __init__(self, verify, reply) -> None:  # type: ignore[no-untyped-def]
        self.verify, self.reply = verify, reply
        self.verdicts: list[Verdict] = []

    def __call__(self, request):  # type: ignore[no-untyped-def]
        verdict = self.verify(Received.of(request))
        self.verdicts.append(verdict)
        return self.reply if verdict else Reply({"error": verdict.reason}, status=403)
