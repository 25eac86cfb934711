"""The twin's S3 endpoint: moto's S3 and IAM behind each bucket's policy, evaluated here as S3
evaluates it, because moto cannot (lab/README.md, "S3 and IAM"). moto still checks every request
against the caller's identity policies and keeps each bucket's policy (PutBucketPolicy, as the
stack's BucketPolicy resource sets it; GetBucketPolicy reads it back); this front adds what the
policy does on AWS, and moto's own evaluation of it is switched off.

Only a policy's Deny statements are enforced: an explicit deny wins over any allow, so they hold
whatever the caller's identity allows, and the stack's buckets grant nothing by policy. Conditions
follow IAM's rules (AND across operators and keys, OR across a key's values, NOR for negated
operators; a key absent from the request makes a condition false, and true for a negated operator;
...IfExists and Null test presence). The request context has aws:SecureTransport ("true": this
endpoint speaks HTTPS only), aws:SourceIp, the encryption and ACL headers and the listing's
prefix. A PutBucketPolicy with an operator, qualifier, key or principal this module cannot
evaluate is refused (MalformedPolicy, naming it): a policy is never silently left unenforced.

Runs in the S3 container with moto's own Python (the twin mounts this file):

    python3 s3gate.py --tls-cert CRT --tls-key KEY [--host H] [--port P]
"""
from __future__ import annotations

import argparse
import io
import ipaddress
import json
import re
import sys
import urllib.parse
from xml.sax.saxutils import escape

# Context keys this front supplies (a condition on any other key cannot be evaluated here).
SECURE_TRANSPORT, SOURCE_IP = "aws:SecureTransport", "aws:SourceIp"
HEADER_KEYS = {"s3:x-amz-server-side-encryption": "HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION",
               "s3:x-amz-server-side-encryption-aws-kms-key-id": "HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION_AWS_KMS_KEY_ID",
               "s3:x-amz-server-side-encryption-customer-algorithm":
                   "HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION_CUSTOMER_ALGORITHM",
               "s3:x-amz-acl": "HTTP_X_AMZ_ACL"}
QUERY_KEYS = {"s3:prefix": "prefix", "s3:delimiter": "delimiter"}
# A DeleteObjects request names at most 1,000 keys of at most 1,024 bytes each.
MAX_DELETE_BODY = 2 * 1024 * 1024
# S3's limit for a bucket policy.
MAX_POLICY_BODY = 20 * 1024
KNOWN_KEYS = frozenset(k.lower() for k in (SECURE_TRANSPORT, SOURCE_IP, *HEADER_KEYS, *QUERY_KEYS))


class PolicyError(ValueError):
    """A bucket policy this front cannot evaluate faithfully."""


def glob_match(pattern: str, value: str, case: bool = True) -> bool:
    """IAM's wildcards (* any run of characters, ? one character; nothing else is special), matched
    in time linear in pattern x value: a regex of several stars backtracks (a stored policy and a
    long key would pin a core before any authentication)."""
    if not case:
        pattern, value = pattern.lower(), value.lower()
    p = v = 0
    star = mark = -1
    while v < len(value):
        if p < len(pattern) and pattern[p] == "*":
            star, mark, p = p, v, p + 1
        elif p < len(pattern) and pattern[p] in ("?", value[v]):
            p, v = p + 1, v + 1
        elif star >= 0:
            p, mark = star + 1, mark + 1
            v = mark
        else:
            return False
    return pattern[p:].strip("*") == ""


def _str_eq(value: str, wanted: str) -> bool:
    return value == wanted


def _str_like(value: str, wanted: str) -> bool:
    return glob_match(wanted, value)


def _bool(value: str, wanted: str) -> bool:
    return value.lower() == str(wanted).lower()


def _ip(value: str, wanted: str) -> bool:
    try:
        return ipaddress.ip_address(value) in ipaddress.ip_network(wanted, strict=False)
    except ValueError:
        return False


# operator -> (matches one value, negated)
OPERATORS = {"StringEquals": (_str_eq, False), "StringNotEquals": (_str_eq, True),
             "StringEqualsIgnoreCase": (lambda v, w: v.lower() == w.lower(), False),
             "StringNotEqualsIgnoreCase": (lambda v, w: v.lower() == w.lower(), True),
             "StringLike": (_str_like, False), "StringNotLike": (_str_like, True),
             "Bool": (_bool, False), "IpAddress": (_ip, False), "NotIpAddress": (_ip, True)}


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _operator(name: str) -> tuple[str, bool]:
    """(the base operator, whether ...IfExists) of a condition operator's name."""
    return (name[:-len("IfExists")], True) if name.endswith("IfExists") else (name, False)


def condition_holds(condition: dict, context: dict[str, str]) -> bool:
    """Whether a statement's Condition block holds for the request `context` (absent keys are
    missing from it)."""
    context = {k.lower(): v for k, v in context.items()}
    for operator, keys in condition.items():
        base, if_exists = _operator(operator)
        for key, wanted in keys.items():
            key = key.lower()           # condition key names are case-insensitive
            wanted = [str(w) for w in _as_list(wanted)]
            if base == "Null":      # "true": the key is absent; "false": it is present (values OR'ed)
                if not any((key not in context) == (w.lower() == "true") for w in wanted):
                    return False
                continue
            match, negated = OPERATORS[base]
            if key not in context:  # ...IfExists and a negated operator hold on an absent key
                if if_exists or negated:
                    continue
                return False
            if any(match(context[key], w) for w in wanted) == negated:
                return False
    return True


def _strings(value, scalars: tuple = (str,)) -> bool:
    """A policy element IAM takes as one value or a list of them (of the given types)."""
    return all(isinstance(v, scalars) for v in _as_list(value)) and not (isinstance(value, list) and not value)


def check_policy(policy: dict, bucket: str) -> None:
    """PolicyError naming what this front cannot evaluate in `bucket`'s policy (its Allow
    statements are never evaluated here: moto's identity policies decide what is allowed)."""
    if not isinstance(policy, dict) or not all(isinstance(st, dict) for st in _as_list(policy.get("Statement", []))):
        raise PolicyError(f"bucket {bucket}: the policy is not an object with a list of statement objects")
    for i, st in enumerate(_as_list(policy.get("Statement", []))):
        sid = st.get("Sid") or str(i)
        if st.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError(f"bucket {bucket}: statement {sid}: Effect {st.get('Effect')!r}")
        if st.get("Effect") == "Allow":
            continue
        for pair in (("Action", "NotAction"), ("Resource", "NotResource")):
            present = [k for k in pair if k in st]
            if len(present) != 1:
                raise PolicyError(f"bucket {bucket}: statement {sid}: exactly one of {' and '.join(pair)}")
            if not _strings(st[present[0]]):
                raise PolicyError(f"bucket {bucket}: statement {sid}: {present[0]} is not a string or a list "
                                  "of strings")
        if not isinstance(st.get("Condition") or {}, dict) or \
                not all(isinstance(keys, dict) for keys in (st.get("Condition") or {}).values()):
            raise PolicyError(f"bucket {bucket}: statement {sid}: Condition is not an object of objects")
        if st.get("Principal") not in ("*", {"AWS": "*"}):
            raise PolicyError(f"bucket {bucket}: statement {sid}: a Deny for principal {st.get('Principal')!r} "
                              "(only '*' is evaluated here)")
        for operator, keys in (st.get("Condition") or {}).items():
            base = _operator(operator)[0]
            if ":" in base or (base not in OPERATORS and base != "Null"):
                raise PolicyError(f"bucket {bucket}: statement {sid}: condition operator {operator!r}")
            for key, values in keys.items():
                if not _strings(values, scalars=(str, bool, int, float)):
                    raise PolicyError(f"bucket {bucket}: statement {sid}: {operator} {key}: not a value or a list "
                                      "of values")
                if key.lower() not in KNOWN_KEYS:
                    raise PolicyError(f"bucket {bucket}: statement {sid}: condition key {key!r} "
                                      f"(known: {', '.join(sorted(KNOWN_KEYS))})")


def parse_policy(text: bytes | str, bucket: str) -> dict:
    """A policy's text as S3 takes it (UTF-8 JSON), checked: PolicyError naming what is wrong, be it
    the encoding, the JSON (nesting past the parser too) or what this front cannot evaluate."""
    try:
        policy = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (ValueError, RecursionError) as exc:     # UTF-8's and JSON's own
        raise PolicyError(f"bucket {bucket}: not a policy in UTF-8 JSON: {str(exc)[:200]}") from None
    check_policy(policy, bucket)
    return policy


def _matches(patterns, value: str, case: bool) -> bool:
    return any(glob_match(p, value, case) for p in _as_list(patterns))


def denying_statement(policy: dict, action: str, resource: str, context: dict[str, str]) -> str | None:
    """The Sid (or index) of the first Deny statement that applies to the request, else None."""
    for i, st in enumerate(_as_list(policy.get("Statement", []))):
        if st.get("Effect") != "Deny":
            continue
        if "NotAction" in st:
            if _matches(st["NotAction"], action, case=False):
                continue
        elif not _matches(st.get("Action", []), action, case=False):
            continue
        if "NotResource" in st:
            if _matches(st["NotResource"], resource, case=True):
                continue
        elif not _matches(st.get("Resource", []), resource, case=True):
            continue
        if condition_holds(st.get("Condition") or {}, context):
            return st.get("Sid") or str(i)      # an empty Sid is a Sid too: never a falsy answer
    return None


# S3 actions by (object request?, method, the first subresource in the query that names one).
_OBJECT_ACTIONS = {
    "PUT": {"partNumber": "PutObject", "tagging": "PutObject{V}Tagging", "acl": "PutObject{V}Acl",
            "retention": "PutObjectRetention", "legal-hold": "PutObjectLegalHold", "": "PutObject"},
    "POST": {"uploads": "PutObject", "uploadId": "PutObject", "restore": "RestoreObject", "select": "GetObject",
             "": "PutObject"},
    "GET": {"uploadId": "ListMultipartUploadParts", "tagging": "GetObject{V}Tagging", "acl": "GetObject{V}Acl",
            "attributes": "GetObject{V}Attributes", "retention": "GetObjectRetention",
            "legal-hold": "GetObjectLegalHold", "versionId": "GetObjectVersion", "": "GetObject"},
    "HEAD": {"versionId": "GetObjectVersion", "": "GetObject"},
    "DELETE": {"uploadId": "AbortMultipartUpload", "tagging": "DeleteObject{V}Tagging",
               "versionId": "DeleteObjectVersion", "": "DeleteObject"},
}
# Bucket subresources by the action name each takes for GET, PUT and DELETE.
_BUCKET_CONFIG = {"cors": "BucketCORS", "website": "BucketWebsite", "logging": "BucketLogging",
                  "replication": "ReplicationConfiguration", "notification": "BucketNotification",
                  "object-lock": "BucketObjectLockConfiguration", "accelerate": "AccelerateConfiguration",
                  "requestPayment": "BucketRequestPayment", "analytics": "AnalyticsConfiguration",
                  "metrics": "MetricsConfiguration", "inventory": "InventoryConfiguration",
                  "intelligent-tiering": "IntelligentTieringConfiguration"}
_BUCKET_ACTIONS = {
    "GET": {"versions": "ListBucketVersions", "uploads": "ListBucketMultipartUploads", "policy": "GetBucketPolicy",
            "encryption": "GetEncryptionConfiguration", "versioning": "GetBucketVersioning",
            "lifecycle": "GetLifecycleConfiguration", "publicAccessBlock": "GetBucketPublicAccessBlock",
            "ownershipControls": "GetBucketOwnershipControls", "location": "GetBucketLocation", "acl": "GetBucketAcl",
            "tagging": "GetBucketTagging", "policyStatus": "GetBucketPolicyStatus",
            **{sub: f"Get{name}" for sub, name in _BUCKET_CONFIG.items()}, "": "ListBucket"},
    "HEAD": {"": "ListBucket"},
    "PUT": {"policy": "PutBucketPolicy", "encryption": "PutEncryptionConfiguration", "versioning": "PutBucketVersioning",
            "lifecycle": "PutLifecycleConfiguration", "publicAccessBlock": "PutBucketPublicAccessBlock",
            "ownershipControls": "PutBucketOwnershipControls", "acl": "PutBucketAcl", "tagging": "PutBucketTagging",
            **{sub: f"Put{name}" for sub, name in _BUCKET_CONFIG.items()}, "": "CreateBucket"},
    "DELETE": {"policy": "DeleteBucketPolicy", "encryption": "PutEncryptionConfiguration",
               "lifecycle": "PutLifecycleConfiguration", "publicAccessBlock": "PutBucketPublicAccessBlock",
               "ownershipControls": "PutBucketOwnershipControls", "tagging": "PutBucketTagging",
               **{sub: f"Put{name}" for sub, name in _BUCKET_CONFIG.items()}, "cors": "PutBucketCORS",
               "website": "DeleteBucketWebsite", "": "DeleteBucket"},
    "POST": {"delete": "DeleteObject", "": "PostObject"},
}


def s3_action(method: str, has_key: bool, query: dict[str, list[str]]) -> str:
    """The IAM action S3 authorises a request as (UploadPart, CreateMultipartUpload and
    CompleteMultipartUpload are s3:PutObject, as on AWS). An operation the table does not know
    gets a name no statement but a wildcard one (s3:*) matches."""
    table = (_OBJECT_ACTIONS if has_key else _BUCKET_ACTIONS).get(method, {})
    version = "Version" if "versionId" in query else ""
    for sub, action in table.items():
        if sub and sub in query:
            return f"s3:{action.format(V=version)}"
    return f"s3:{table.get('', f'Unknown{method.title()}')}"


def _delete_keys(body: bytes) -> list[tuple[str, bool]]:
    """The (key, a version named?) of each object a DeleteObjects request names (each is
    authorised on its own: s3:DeleteObject, or s3:DeleteObjectVersion with a VersionId)."""
    from xml.etree import ElementTree

    def tag(el) -> str:
        return el.tag.rsplit("}", 1)[-1]
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return []
    return [(next((c.text or "" for c in obj if tag(c) == "Key"), ""), any(tag(c) == "VersionId" for c in obj))
            for obj in root.iter() if tag(obj) == "Object"]


def request_checks(environ: dict) -> list[tuple[str, str, str, dict[str, str]]]:
    """(bucket, action, resource ARN, context) for each authorisation the request needs on a
    bucket (none: a call without one, such as ListBuckets or IAM's)."""
    # PATH_INFO is decoded already, UTF-8 carried as latin-1 (PEP 3333): the key as moto stores it.
    # Path-style only: the twin's moto takes no bucket from the Host (S3_IGNORE_SUBDOMAIN_BUCKETNAME).
    path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", errors="replace")
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket:
        return []
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    context = {SECURE_TRANSPORT: "true", SOURCE_IP: environ.get("REMOTE_ADDR", "")}
    context.update({k: environ[h] for k, h in HEADER_KEYS.items() if h in environ})
    context.update({k: query[q][0] for k, q in QUERY_KEYS.items() if q in query})
    method = environ.get("REQUEST_METHOD", "GET").upper()
    action = s3_action(method, bool(key), query)
    if not key and method == "POST" and "delete" in query:
        return [(bucket, "s3:DeleteObjectVersion" if versioned else action, f"arn:aws:s3:::{bucket}/{k}", context)
                for k, versioned in _delete_keys(environ["trustops.body"])]
    checks = [(bucket, action, f"arn:aws:s3:::{bucket}" + (f"/{key}" if key else ""), context)]
    source = environ.get("HTTP_X_AMZ_COPY_SOURCE")
    if source and key and method == "PUT":      # CopyObject, UploadPartCopy: reading the source too
        src, _, version = urllib.parse.unquote(source).lstrip("/").partition("?versionId=")
        src_bucket, _, src_key = src.partition("/")
        checks.append((src_bucket, "s3:GetObjectVersion" if version else "s3:GetObject",
                       f"arn:aws:s3:::{src_bucket}/{src_key}", context))
    return checks


def _drain(environ: dict) -> None:
    """Read what the client still sends (an 8 MB part; botocore sends bodies chunked): answered
    before its body is read, a client sees its connection cut, not the 403, and retries."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return
    chunked = environ.get("wsgi.input_terminated") and not environ.get("CONTENT_LENGTH")
    try:
        left = float("inf") if chunked else int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    while left > 0:
        chunk = stream.read(int(min(left, 1 << 16)))
        if not chunk:
            break
        left -= len(chunk)


def _s3_error(start_response, status: str, code: str, message: str, head: bool = False) -> list[bytes]:
    body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>"
            f"<Message>{escape(message)}</Message><RequestId>trustops-s3gate</RequestId></Error>").encode()
    start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
    return [] if head else [body]


def _access_denied(start_response, message: str, head: bool = False) -> list[bytes]:
    return _s3_error(start_response, "403 Forbidden", "AccessDenied", message, head)


def _read_body(environ: dict, limit: int) -> bytes | None:
    """The request's body (at most `limit` bytes; None past it or with a hostile length, the
    rest drained), put back for moto to read."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if not 0 <= length <= limit:
        _drain(environ)
        return None
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def moto_policy(bucket: str) -> bytes | None:
    """The policy moto holds for `bucket` (None: no such bucket, or no policy)."""
    from moto.s3.models import s3_backends

    owner = s3_backends.bucket_accounts.get(bucket)
    if owner is None:
        return None
    partition, account = owner
    found = s3_backends[account][partition].buckets.get(bucket)
    return found.policy if found is not None else None


def without_motos_own_evaluation() -> None:
    """moto applies a bucket's policy itself, wrongly (a Deny whose Condition fails still denies):
    this front evaluates it instead, so moto's evaluation answers 'no opinion'."""
    from moto.iam.access_control import PermissionResult
    from moto.s3.models import FakeBucket

    FakeBucket.get_permission = lambda self, action, resource: PermissionResult.NEUTRAL


# Bodies werkzeug parses as forms before moto reads them (moto then stores a form field).
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# Query parameters that each name an operation: moto and this front pick among several in
# different orders, so a request naming two is refused rather than authorised as either.
SUBRESOURCES = frozenset({*_BUCKET_CONFIG, "policy", "policyStatus", "encryption", "versioning", "lifecycle",
                          "publicAccessBlock", "ownershipControls", "acl", "tagging", "location", "versions",
                          "uploads", "delete", "restore", "select", "retention", "legal-hold", "attributes"})
# moto's own API (/moto-api/: every key, a reset, IAM off) is not AWS's: only its index page,
# the twin's readiness check, passes.
MOTO_API, MOTO_API_INDEX = "/moto-api", "/moto-api/"


def _refused_request(environ: dict, method: str) -> tuple[str, str, str] | None:
    """(status, code, message) for a request no AWS endpoint would serve this way, else None."""
    path = environ.get("PATH_INFO", "")
    if path.startswith(MOTO_API) and not (method in ("GET", "HEAD") and path == MOTO_API_INDEX):
        return "403 Forbidden", "AccessDenied", "moto's own API is not served by the twin's S3"
    host = environ.get("HTTP_HOST", "").strip().lower()
    name = host[1:host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        ipaddress.ip_address(name)
    except ValueError:
        if name and name != "localhost":    # an access point or a bucket named in the Host
            return "400 Bad Request", "InvalidRequest", (f"Host {host!r}: the twin's S3 is addressed by IP, "
                                                         "path-style only")
    named = {k for k in urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
             if k in SUBRESOURCES}
    if len(named) > 1:
        return "400 Bad Request", "InvalidRequest", f"one operation per request: {', '.join(sorted(named))}"
    return None


class BucketPolicyGate:
    """WSGI middleware: a request a bucket's policy denies gets S3's 403 AccessDenied, a policy
    this front could not enforce is refused before moto stores it; any other request goes on to
    moto. `policy_of(bucket)` gives the policy in force (moto's, in the twin)."""

    def __init__(self, app, policy_of=moto_policy):
        self.app, self.policy_of = app, policy_of
        self._parsed: dict[bytes, dict] = {}     # the policies moto holds, checked, by their bytes

    def policy(self, bucket: str) -> dict | None:
        """The policy in force for `bucket`, checked again as read (PolicyError: moto holds one this
        front cannot evaluate, which no put through it stores; the caller fails closed)."""
        raw = self.policy_of(bucket)
        if not raw:
            return None
        parsed = self._parsed.get(raw)
        if parsed is None:
            parsed = parse_policy(raw, bucket)
            if len(self._parsed) > 64:
                self._parsed.clear()
            self._parsed[raw] = parsed
        return parsed

    def _refuse_policy(self, environ, start_response, bucket: str) -> list[bytes] | None:
        """A PutBucketPolicy this front could not enforce: S3's MalformedPolicy, with the reason."""
        content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type in FORM_TYPES:      # moto would store a form field, not the body checked here
            _drain(environ)
            return _s3_error(start_response, "400 Bad Request", "MalformedPolicy",
                             f"a bucket policy sent as {content_type}: send it as the request's body")
        body = _read_body(environ, MAX_POLICY_BODY)
        if body is None:
            return _s3_error(start_response, "400 Bad Request", "MalformedPolicy",
                             f"a bucket policy is at most {MAX_POLICY_BODY} bytes")
        try:
            parse_policy(body, bucket)
        except PolicyError as exc:
            return _s3_error(start_response, "400 Bad Request", "MalformedPolicy",
                             f"the twin's S3 front cannot enforce this policy: {exc}")
        return None

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "").upper()
        query = environ.get("QUERY_STRING", "")
        refused = _refused_request(environ, method)
        if refused:
            _drain(environ)
            return _s3_error(start_response, *refused, head=method == "HEAD")
        if method == "POST" and "delete" in query:
            body = _read_body(environ, MAX_DELETE_BODY)
            if body is None:
                return _access_denied(start_response, f"DeleteObjects body of {environ.get('CONTENT_LENGTH')!r} "
                                                      f"bytes: 0 to {MAX_DELETE_BODY} here")
            environ["trustops.body"] = body
        for bucket, action, resource, context in request_checks(environ):
            try:
                policy = self.policy(bucket)
            except PolicyError as exc:      # fails closed; the policy itself may still be replaced
                if action in ("s3:PutBucketPolicy", "s3:DeleteBucketPolicy"):
                    policy = None
                else:
                    _drain(environ)
                    return _s3_error(start_response, "403 Forbidden", "AccessDenied",
                                     f"the stored policy cannot be enforced: {exc}", head=method == "HEAD")
            sid = denying_statement(policy, action, resource, context) if policy else None
            if sid is not None:
                print(f"s3gate: denied {action} on {resource} from {context[SOURCE_IP]} by bucket policy "
                      f"statement {sid}", file=sys.stderr, flush=True)
                _drain(environ)
                return _access_denied(start_response, f"Access Denied (bucket policy statement {sid})",
                                      head=method == "HEAD")
            if action == "s3:PutBucketPolicy":
                refused = self._refuse_policy(environ, start_response, bucket)
                if refused is not None:
                    return refused
        return self.app(environ, start_response)


# A client that stops sending (or never starts its TLS handshake) frees its thread after this.
CLIENT_TIMEOUT = 60


def tls_server(gate: BucketPolicyGate, host: str, port: int, cert: str, key: str):
    """A threaded server of moto behind `gate`, over TLS. The handshake runs in the connection's
    own thread: werkzeug's TLS wraps the listening socket, where a client that connects and sends
    nothing would hold up every other (S3 and IAM stalled for every host)."""
    import ssl

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    class Handler(MotoRequestHandler):
        timeout = CLIENT_TIMEOUT

    without_motos_own_evaluation()
    gate.app = DomainDispatcherApplication(create_backend_app)
    server = make_server(host, port, gate, threaded=True, request_handler=Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    server.ssl_context = tls
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=443)
    args = parser.parse_args(argv)
    import signal

    server = tls_server(BucketPolicyGate(None), args.host, args.port, args.tls_cert, args.tls_key)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))     # PID 1 in its container: `docker stop` at once
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
