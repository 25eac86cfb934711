"""The twin's bucket-policy front (trustops.lab.s3gate): IAM's condition rules, the actions S3
authorises requests as, and the stack's own policy on the real path (moto's S3 behind the front,
over TLS on loopback, with boto3's own multipart upload)."""
from __future__ import annotations

import io
import json
import threading
import uuid
from pathlib import Path

import pytest

from trustops.infra.storage import bucket_policy
from trustops.lab import s3gate, twin, webpki

ENC = "s3:x-amz-server-side-encryption"
TLS = {s3gate.SECURE_TRANSPORT: "true"}

# The stack's policy before 2026-12-05: refuses a put without the encryption header.
OLD_DENY_UNENCRYPTED = {"Sid": "DenyUnencryptedPuts", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
                        "Resource": "arn:aws:s3:::b/*", "Condition": {"StringNotEquals": {ENC: "AES256"}}}


@pytest.mark.parametrize("condition, context, holds", [
    ({"StringNotEquals": {ENC: "AES256"}}, {}, True),                 # negated, key absent: holds
    ({"StringNotEquals": {ENC: "AES256"}}, {ENC: "AES256"}, False),
    ({"StringNotEquals": {ENC: "AES256"}}, {ENC: "aws:kms"}, True),
    ({"StringEquals": {ENC: "AES256"}}, {}, False),                   # positive, key absent: fails
    ({"StringNotEqualsIfExists": {ENC: "AES256"}}, {}, True),
    ({"StringEqualsIfExists": {ENC: "AES256"}}, {ENC: "aws:kms"}, False),
    ({"Null": {ENC: "true"}}, {}, True),
    ({"Null": {ENC: "false"}}, {}, False),
    ({"Null": {ENC: ["true", "false"]}}, {}, True),                   # a key's values are OR'ed, Null's too
    ({"Bool": {"AWS:securetransport": "false"}}, {s3gate.SECURE_TRANSPORT: "false"}, True),   # key names: any case
    ({"Null": {ENC: "false"}, "StringNotEquals": {ENC: "AES256"}}, {ENC: "aws:kms"}, True),   # AND
    ({"Null": {ENC: "false"}, "StringNotEquals": {ENC: "AES256"}}, {}, False),
    ({"StringEquals": {ENC: ["AES256", "aws:kms"]}}, {ENC: "aws:kms"}, True),                # OR
    ({"StringNotEquals": {ENC: ["AES256", "aws:kms"]}}, {ENC: "aws:kms"}, False),            # NOR
    ({"Bool": {s3gate.SECURE_TRANSPORT: "false"}}, TLS, False),
    ({"Bool": {s3gate.SECURE_TRANSPORT: "false"}}, {s3gate.SECURE_TRANSPORT: "false"}, True),
    ({"StringLike": {"s3:prefix": ["postgres/*"]}}, {"s3:prefix": "postgres/db-1/"}, True),
    ({"StringLike": {"s3:prefix": ["postgres/*"]}}, {"s3:prefix": "receipts/"}, False),
    ({"NotIpAddress": {s3gate.SOURCE_IP: "172.30.0.0/24"}}, {s3gate.SOURCE_IP: "172.30.0.9"}, False),
    ({"NotIpAddress": {s3gate.SOURCE_IP: "172.30.0.0/24"}}, {s3gate.SOURCE_IP: "10.0.0.9"}, True),
])
def test_conditions_follow_iams_rules(condition, context, holds):
    assert s3gate.condition_holds(condition, context) is holds


@pytest.mark.parametrize("statement, message", [
    ({"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*",
      "Condition": {"ForAnyValue:StringEquals": {ENC: "x"}}}, "condition operator 'ForAnyValue:StringEquals'"),
    ({"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*",
      "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}}, "condition operator"),
    ({"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*",
      "Condition": {"StringEquals": {"aws:PrincipalArn": "x"}}}, "condition key 'aws:PrincipalArn'"),
    ({"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::1:user/x"}, "Action": "s3:*", "Resource": "*"},
     "a Deny for principal"),
    ("not a statement", "not an object with a list of statement objects"),
    ({"Effect": "Deny", "Principal": "*", "Action": 1, "Resource": "*"}, "Action is not a string or a list"),
    ({"Effect": "Deny", "Principal": "*", "Action": [None], "Resource": "*"}, "Action is not a string or a list"),
    ({"Effect": "Deny", "Principal": "*", "Action": "s3:*", "NotResource": True}, "NotResource is not a string"),
    ({"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": {"a": 1}}, "Resource is not a string"),
    ({"Effect": "Deny", "Principal": "*", "Action": "s3:*", "NotAction": "s3:Get*", "Resource": "*"},
     "exactly one of Action and NotAction"),
    ({"Effect": "Deny", "Principal": "*", "Action": "s3:*"}, "exactly one of Resource and NotResource"),
    ({"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*",
      "Condition": {"StringEquals": {ENC: {"x": 1}}}}, "not a value or a list of values"),
    ({"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": "x"}},
     "Condition is not an object of objects"),
])
def test_a_policy_it_cannot_evaluate_is_named_in_one_line(statement, message):
    """(An Allow statement is never evaluated here, so it may use anything.)"""
    with pytest.raises(s3gate.PolicyError, match=message) as err:
        s3gate.check_policy({"Statement": [statement]}, "b")
    assert "\n" not in str(err.value) and "bucket b" in str(err.value)
    s3gate.check_policy({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:x"}, "Action": "*",
                                        "Resource": "*", "Condition": {"ForAnyValue:StringLike": {}}}]}, "b")


@pytest.mark.parametrize("method, key, query, action", [
    ("PUT", True, {}, "s3:PutObject"),
    ("PUT", True, {"partNumber": ["1"], "uploadId": ["u"]}, "s3:PutObject"),      # UploadPart
    ("POST", True, {"uploads": [""]}, "s3:PutObject"),                            # CreateMultipartUpload
    ("POST", True, {"uploadId": ["u"]}, "s3:PutObject"),                          # CompleteMultipartUpload
    ("DELETE", True, {"uploadId": ["u"]}, "s3:AbortMultipartUpload"),
    ("GET", True, {}, "s3:GetObject"),
    ("HEAD", True, {}, "s3:GetObject"),
    ("DELETE", True, {"versionId": ["v"]}, "s3:DeleteObjectVersion"),
    ("GET", False, {"list-type": ["2"], "prefix": ["p"]}, "s3:ListBucket"),
    ("GET", False, {"versions": [""]}, "s3:ListBucketVersions"),
    ("PUT", False, {"policy": [""]}, "s3:PutBucketPolicy"),
    ("PATCH", True, {}, "s3:UnknownPatch"),
    ("GET", True, {"tagging": [""], "versionId": ["v"]}, "s3:GetObjectVersionTagging"),
    ("PUT", True, {"acl": [""], "versionId": ["v"]}, "s3:PutObjectVersionAcl"),
    ("GET", False, {"cors": [""]}, "s3:GetBucketCORS"),
    ("PUT", False, {"object-lock": [""]}, "s3:PutBucketObjectLockConfiguration"),
    ("DELETE", False, {"replication": [""]}, "s3:PutReplicationConfiguration"),
    ("DELETE", False, {"website": [""]}, "s3:DeleteBucketWebsite"),
])
def test_requests_are_authorised_as_s3s_actions(method, key, query, action):
    assert s3gate.s3_action(method, key, query) == action


def test_a_delete_objects_request_is_checked_for_each_key():
    body = b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>a/1</Key></Object>' \
           b'<Object><Key>b/2</Key><VersionId>v1</VersionId></Object></Delete>'
    checks = s3gate.request_checks({"REQUEST_METHOD": "POST", "PATH_INFO": "/bkt", "QUERY_STRING": "delete",
                                    "REMOTE_ADDR": "172.30.0.5", "trustops.body": body})
    assert [(c[1], c[2]) for c in checks] == [("s3:DeleteObject", "arn:aws:s3:::bkt/a/1"),
                                              ("s3:DeleteObjectVersion", "arn:aws:s3:::bkt/b/2")]
    assert checks[0][3] == {s3gate.SECURE_TRANSPORT: "true", s3gate.SOURCE_IP: "172.30.0.5"}


def test_the_key_checked_is_the_key_moto_stores():
    """PATH_INFO arrives decoded, UTF-8 as latin-1: a key with '%70' or 'é' is checked as stored."""
    def resource(path: str) -> str:
        return s3gate.request_checks({"REQUEST_METHOD": "GET", "PATH_INFO": path})[0][2]
    assert resource("/b/%70ublic/x") == "arn:aws:s3:::b/%70ublic/x"
    assert resource("/b/café/x".encode().decode("latin-1")) == "arn:aws:s3:::b/café/x"


def test_a_copy_is_checked_on_its_source_too():
    checks = s3gate.request_checks({"REQUEST_METHOD": "PUT", "PATH_INFO": "/dst/k",
                                    "HTTP_X_AMZ_COPY_SOURCE": "/src/a%20b?versionId=3"})
    assert [(c[0], c[1], c[2]) for c in checks] == [("dst", "s3:PutObject", "arn:aws:s3:::dst/k"),
                                                    ("src", "s3:GetObjectVersion", "arn:aws:s3:::src/a b")]


def test_an_empty_sid_still_denies():
    deny_all = {"Statement": [{"Sid": "", "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*"}]}
    assert s3gate.denying_statement(deny_all, "s3:GetObject", "arn:aws:s3:::b/k", TLS) == "0"


def test_a_delete_objects_body_of_a_hostile_length_is_refused_without_reading():
    answered = []
    gate = s3gate.BucketPolicyGate(lambda e, sr: [b"moto"], lambda bucket: None)
    for length in ("-1", "junk", str(s3gate.MAX_DELETE_BODY + 1)):
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/b", "QUERY_STRING": "delete", "CONTENT_LENGTH": length,
                   "wsgi.input": io.BytesIO(b"")}
        body = gate(environ, lambda status, headers: answered.append(status))
        assert answered[-1].startswith("403") and b"DeleteObjects body" in b"".join(body)


def _put(policy: dict, action: str = "s3:PutObject", context: dict | None = None) -> str | None:
    return s3gate.denying_statement(policy, action, "arn:aws:s3:::b/postgres/x.dump", {**TLS, **(context or {})})


def test_the_stacks_policy_lets_a_multipart_upload_through_and_refuses_other_encryption():
    policy = json.loads(bucket_policy("b"))
    s3gate.check_policy(policy, "b")
    assert _put(policy, context={ENC: "AES256"}) is None                    # PutObject, CreateMultipartUpload
    assert _put(policy) is None                                              # UploadPart: no header (default SSE-S3)
    assert _put(policy, context={ENC: "aws:kms"}) == "DenyOtherEncryption"
    assert _put(policy, "s3:GetObject", {s3gate.SECURE_TRANSPORT: "false"}) == "DenyNonTLS"
    assert _put(policy, context={"s3:x-amz-server-side-encryption-customer-algorithm": "AES256"}) == "DenyCustomerKeys"
    # the policy it replaces refused every part of a multipart upload
    assert _put({"Statement": [OLD_DENY_UNENCRYPTED]}) == "DenyUnencryptedPuts"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    """moto's S3 behind the front over TLS on a loopback port, as the twin runs it (each bucket's
    policy put as the twin puts the stack's)."""
    state = tmp_path_factory.mktemp("s3gate")
    from moto.s3.models import FakeBucket

    crt, key = webpki.ensure_server_cert(state, state, "s3", "127.0.0.1")
    motos_own = FakeBucket.get_permission
    server = s3gate.tls_server(s3gate.BucketPolicyGate(None), "127.0.0.1", 0, str(crt), str(key))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_port}", str(webpki.root_file(state))
    server.shutdown()
    FakeBucket.get_permission = motos_own      # this process's other users of moto get it back


def _client(endpoint):
    import boto3

    url, ca = endpoint
    return boto3.client("s3", endpoint_url=url, verify=ca, region_name="eu-central-1",
                        aws_access_key_id="AKIATESTGATE", aws_secret_access_key=uuid.uuid4().hex)


def _bucket(endpoint, policy_of) -> tuple:
    s3 = _client(endpoint)
    name = f"gate-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    s3.put_bucket_policy(Bucket=name, Policy=policy_of(name))
    return s3, name


def _upload(s3, bucket: str, size: int) -> None:
    from boto3.s3.transfer import TransferConfig

    chunk = 8 * 1024 * 1024   # as trustops-pgbackup: each part 8 MB
    s3.upload_fileobj(io.BytesIO(b"\0" * size), bucket, "postgres/db-1/big.dump",
                      ExtraArgs={"ServerSideEncryption": "AES256"},
                      Config=TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk, use_threads=False))


def test_through_the_front_a_backup_sized_upload_passes_the_stacks_policy_and_other_encryption_is_refused(endpoint):
    from botocore.exceptions import ClientError

    s3, bucket = _bucket(endpoint, bucket_policy)
    _upload(s3, bucket, 20 * 1024 * 1024)
    head = s3.head_object(Bucket=bucket, Key="postgres/db-1/big.dump")
    assert head["ContentLength"] == 20 * 1024 * 1024 and head["ServerSideEncryption"] == "AES256"
    s3.put_object(Bucket=bucket, Key="receipts/1/a.pdf", Body=b"%PDF")       # no header: the default, SSE-S3
    assert s3.head_object(Bucket=bucket, Key="receipts/1/a.pdf")["ServerSideEncryption"] == "AES256"
    with pytest.raises(ClientError, match="AccessDenied") as err:
        s3.put_object(Bucket=bucket, Key="receipts/1/b.pdf", Body=b"%PDF", ServerSideEncryption="aws:kms")
    assert "DenyOtherEncryption" in err.value.response["Error"]["Message"]


def test_through_the_front_the_replaced_policy_refuses_a_multipart_upload_at_its_first_part(endpoint):
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import ClientError

    s3, bucket = _bucket(endpoint, lambda name: json.dumps(
        {"Statement": [{**OLD_DENY_UNENCRYPTED, "Resource": f"arn:aws:s3:::{name}/*"}]}))
    with pytest.raises((S3UploadFailedError, ClientError), match="UploadPart operation: Access Denied"):
        _upload(s3, bucket, 20 * 1024 * 1024)
    _upload(s3, bucket, 1024)    # one PutObject with the header: allowed


def test_the_policy_is_read_back_as_put_and_a_new_one_holds_at_once(endpoint):
    """moto keeps the policy (GetBucketPolicy answers as S3 does); the front enforces whatever
    policy moto holds now, so a changed policy needs no restart (and loses no object)."""
    from botocore.exceptions import ClientError

    s3, bucket = _bucket(endpoint, bucket_policy)
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(bucket_policy(bucket))
    s3.put_object(Bucket=bucket, Key="x/kept", Body=b"1")
    assert s3.get_object(Bucket=bucket, Key="x/kept")["Body"].read() == b"1"    # DenyNonTLS: its Condition fails
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [
        {"Sid": "NoReadsOfX", "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{bucket}/x/*"}]}))
    with pytest.raises(ClientError, match="NoReadsOfX"):
        s3.get_object(Bucket=bucket, Key="x/kept")
    s3.delete_bucket_policy(Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="x/kept")["Body"].read() == b"1"


@pytest.mark.parametrize("policy, reason", [
    ({"Statement": [{"Sid": "Odd", "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*",
                     "Condition": {"StringEquals": {"aws:userid": "x"}}}]}, "statement Odd: condition key 'aws:userid'"),
    ("{not json", "cannot enforce this policy"),
    ({"Statement": [{"Sid": "Big", "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                     "Resource": [f"arn:aws:s3:::b/{i:05}/*" for i in range(1000)]}]}, "at most 20480 bytes"),
])
def test_a_policy_the_front_cannot_enforce_is_refused_and_the_old_one_stays(endpoint, policy, reason):
    from botocore.exceptions import ClientError

    s3, bucket = _bucket(endpoint, bucket_policy)
    with pytest.raises(ClientError) as err:
        s3.put_bucket_policy(Bucket=bucket, Policy=policy if isinstance(policy, str) else json.dumps(policy))
    assert err.value.response["Error"]["Code"] == "MalformedPolicy", err.value.response
    message = err.value.response["Error"]["Message"]
    assert reason in message and "\n" not in message
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(bucket_policy(bucket))
    with pytest.raises(ClientError, match="DenyOtherEncryption"):
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms")


def test_a_client_that_connects_and_sends_nothing_holds_up_no_one(endpoint):
    """The TLS handshake runs in the connection's thread: an idle connection (a port scan, a
    stalled client) does not stall every other request."""
    import socket

    from botocore.config import Config

    url, ca = endpoint
    port = int(url.rsplit(":", 1)[1])
    idle = socket.create_connection(("127.0.0.1", port))
    try:
        import boto3

        s3 = boto3.client("s3", endpoint_url=url, verify=ca, region_name="eu-central-1", aws_access_key_id="A",
                          aws_secret_access_key="B", config=Config(connect_timeout=3, read_timeout=3,
                                                                   retries={"max_attempts": 1}))
        assert isinstance(s3.list_buckets()["Buckets"], list)
    finally:
        idle.close()


def test_a_refused_head_has_no_body():
    """Asked of the front itself: an HTTP client reads no body after a HEAD, whatever is sent, so
    one would not see a body sent in error (it is left in the connection, before the next answer)."""
    deny = json.dumps({"Statement": [{"Sid": "D", "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                                      "Resource": "arn:aws:s3:::b/*"}]}).encode()
    gate = s3gate.BucketPolicyGate(lambda e, sr: [b"moto"], lambda bucket: deny)
    answered = []
    body = gate({"REQUEST_METHOD": "HEAD", "PATH_INFO": "/b/k", "REMOTE_ADDR": "172.30.0.5",
                 "wsgi.input": io.BytesIO(b"")}, lambda status, headers: answered.append(status))
    assert answered == ["403 Forbidden"] and b"".join(body) == b""


def test_with_the_twins_moto_settings_a_bucket_named_in_the_host_is_not_another_buckets_request(endpoint,
                                                                                                  monkeypatch):
    """The front reads buckets from the path; the twin runs moto with S3_IGNORE_SUBDOMAIN_BUCKETNAME
    (lab/twin.py) so moto does too: a virtual-hosted put (the bucket in the Host, the key's first
    segment in the path) is not stored in the bucket past its policy."""
    import moto.s3.utils
    import moto.settings
    from botocore.exceptions import ClientError

    monkeypatch.setattr(moto.settings, "S3_IGNORE_SUBDOMAIN_BUCKETNAME", "true")
    monkeypatch.setattr(moto.s3.utils, "S3_IGNORE_SUBDOMAIN_BUCKETNAME", "true")
    assert "S3_IGNORE_SUBDOMAIN_BUCKETNAME=true" in Path(twin.__file__).read_text()
    s3, bucket = _bucket(endpoint, bucket_policy)

    def virtual_host(request, **_):
        request.headers["Host"] = f"{bucket}.s3.eu-central-1.amazonaws.com"
        request.url = request.url.replace(f"/{bucket}/", "/", 1)
    s3.meta.events.register("before-sign.s3.PutObject", virtual_host)
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="postgres/x", Body=b"x", ServerSideEncryption="aws:kms")
    assert err.value.response["Error"]["Code"] == "InvalidRequest", err.value.response     # refused at the Host
    s3.meta.events.unregister("before-sign.s3.PutObject", virtual_host)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_a_stack_policy_the_front_cannot_enforce_stops_lab_up_with_its_reason(tmp_path):
    """Checked by lab up before the container starts (inside it, the reason would reach only
    `docker logs`, and lab up would wait a minute for an S3 that never answers)."""
    import dataclasses

    from tests.test_lab_twin import _toy
    from trustops.lab import environment
    from trustops.lab.system import LabError

    odd = {"Statement": [{"Sid": "Odd", "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*",
                          "Condition": {"ForAllValues:StringEquals": {ENC: "AES256"}}}]}
    plan = dataclasses.replace(_toy([]), buckets={"b": {"resource": "b", "tags": {}, "settings": {
        "BucketPolicy": {"policy": json.dumps(odd)}}}})
    cfg = environment.LabConfig(name="gate-check", port_base=4100, state_dir=tmp_path / "state", kind="twin")
    with pytest.raises(LabError, match="cannot enforce the stack's bucket policy: bucket b: statement Odd: "
                                       "condition operator 'ForAllValues:StringEquals'"):
        twin._s3_args(cfg, plan, {"s3": "172.30.0.3"}, "image")
    assert not (tmp_path / "state").exists()       # refused before anything was made


def test_sigterm_stops_the_front_at_once(tmp_path):
    """PID 1 in its container: without its own handler `docker stop` waited 10 s for the kill."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    crt, key = webpki.ensure_server_cert(tmp_path, tmp_path, "s3", "127.0.0.1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, s3gate.__file__, "--tls-cert", str(crt), "--tls-key", str(key), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from trustops.wait import until
        until(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() is None, 30,
              "the front listening", interval=0.2, retry_on=(OSError,))
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0 and time.monotonic() - started < 5
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("pattern, value", [("a*b?c", "axxbyc"), ("*", ""), ("a*", "a"), ("*a*b", "xaybzb"),
                                            ("a?", "a"), ("b/*/*.tmp", "b/x/y.tmp"), ("A*", "ab")])
def test_wildcards_match_as_iam_matches_them(pattern, value):
    import re

    for case in (True, False):
        body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        want = bool(re.match(f"^{body}$", value, re.S | (0 if case else re.I)))
        assert s3gate.glob_match(pattern, value, case) is want, (pattern, value, case)


def test_wildcards_match_as_a_regex_would_on_any_input():
    """The matcher is linear (a regex of several stars backtracked on a long key, before any
    authentication); its answers are the regex's."""
    import re

    from hypothesis import given, settings, strategies as st

    @settings(max_examples=3000, deadline=None)
    @given(st.text("ab*?/", max_size=8), st.text("ab*?/", max_size=10), st.booleans())
    def same(pattern, value, case):
        body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        assert s3gate.glob_match(pattern, value, case) is bool(re.match(f"^{body}$", value, re.S | (0 if case else re.I)))
    same()


def _raw(endpoint, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, bytes]:
    import http.client
    import ssl

    url, ca = endpoint
    host, port = url.removeprefix("https://").split(":")
    conn = http.client.HTTPSConnection(host, int(port), context=ssl.create_default_context(cafile=ca), timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    answer = conn.getresponse()
    out = answer.status, answer.read()
    conn.close()
    return out


@pytest.mark.parametrize("headers, body", [
    # werkzeug reads a form body before moto does: moto stored b"" (or a form field named 'file')
    ({"Content-Type": "application/x-www-form-urlencoded"}, json.dumps({"Statement": []}).encode()),
    ({"Content-Type": "multipart/form-data; boundary=x"}, json.dumps({"Statement": []}).encode()),
    ({}, json.dumps({"Statement": []}).encode("utf-16")),          # S3 takes UTF-8 only
    ({}, b"[" * 5000 + b"]" * 5000),                                # nested past the parser's recursion
])
def test_a_policy_put_moto_would_not_store_as_checked_is_refused(endpoint, headers, body):
    s3, bucket = _bucket(endpoint, bucket_policy)
    status, answer = _raw(endpoint, "PUT", f"/{bucket}?policy", body, headers)
    assert status == 400 and b"MalformedPolicy" in answer, (status, answer[:300])
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(bucket_policy(bucket))


@pytest.mark.parametrize("method, query", [("DELETE", "policy&tagging"), ("PUT", "versioning&policy"),
                                           ("GET", "policy&versions"), ("PUT", "tagging&policy")])
def test_a_request_naming_two_operations_is_refused(endpoint, method, query):
    """moto and the front pick among several subresources in different orders: DELETE ?policy&tagging
    was authorised by moto as DeleteBucketTagging and deleted the policy."""
    s3, bucket = _bucket(endpoint, bucket_policy)
    body = b"<VersioningConfiguration><Status>Suspended</Status></VersioningConfiguration>" if method == "PUT" else b""
    status, answer = _raw(endpoint, method, f"/{bucket}?{query}", body)
    assert status == 400 and b"one operation per request" in answer, (status, answer[:300])
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(bucket_policy(bucket))


@pytest.mark.parametrize("method, path, status", [("GET", "/moto-api/data.json", 403),
                                                  ("POST", "/moto-api/reset-auth", 403),
                                                  ("POST", "/moto-api/reset", 403), ("GET", "/moto-api/", 200)])
def test_motos_own_api_is_not_served_but_its_index(endpoint, method, path, status):
    """/moto-api/ gave every secret key, switched IAM off, reset everything, to any VM."""
    s3, bucket = _bucket(endpoint, bucket_policy)
    assert _raw(endpoint, method, path, b"inf" if method == "POST" else b"")[0] == status
    assert s3.head_bucket(Bucket=bucket)       # nothing was reset


def test_an_access_point_in_the_host_is_refused(endpoint):
    """moto maps `<name>-<account>.s3-accesspoint...` to its bucket; the front read the path's."""
    s3, bucket = _bucket(endpoint, bucket_policy)
    status, answer = _raw(endpoint, "GET", "/apx-123456789012/k",
                          headers={"Host": "apx-123456789012.s3-accesspoint.eu-central-1.amazonaws.com"})
    assert status == 400 and b"addressed by IP" in answer


def test_a_stored_policy_the_front_cannot_enforce_fails_closed_and_can_be_replaced(endpoint):
    """(As a front before these checks could have let one in.) Every request but a new policy or
    its deletion is refused, naming why; a 500 on every request was the bucket lost."""
    from botocore.exceptions import ClientError
    from moto.s3.models import s3_backends

    s3, bucket = _bucket(endpoint, bucket_policy)
    s3.put_object(Bucket=bucket, Key="k", Body=b"1")
    partition, account = s3_backends.bucket_accounts[bucket]
    s3_backends[account][partition].buckets[bucket].policy = json.dumps(
        {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": 1, "Resource": "*"}]}).encode()
    with pytest.raises(ClientError, match="stored policy cannot be enforced.*Action is not a string"):
        s3.get_object(Bucket=bucket, Key="k")
    s3.put_bucket_policy(Bucket=bucket, Policy=bucket_policy(bucket))
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"1"


def test_lab_up_removes_a_policy_the_stack_no_longer_declares(endpoint, monkeypatch, tmp_path):
    """moto keeps a bucket's policy across lab ups now (no restart on a changed policy)."""
    import dataclasses

    from botocore.exceptions import ClientError
    from tests.test_lab_twin import _toy
    from trustops.lab import environment

    s3 = _client(endpoint)
    monkeypatch.setattr(environment, "s3_client", lambda cfg, *a, **k: s3)
    name = f"gate-{uuid.uuid4().hex[:12]}"
    declared = {"BucketPolicy": {"policy": bucket_policy(name)}}
    plan = dataclasses.replace(_toy([]), buckets={name: {"resource": name, "tags": {}, "settings": declared}})
    twin._ensure_buckets(None, plan)
    assert json.loads(s3.get_bucket_policy(Bucket=name)["Policy"]) == json.loads(bucket_policy(name))
    twin._ensure_buckets(None, dataclasses.replace(plan, buckets={name: {"resource": name, "tags": {}, "settings": {}}}))
    with pytest.raises(ClientError, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket=name)
