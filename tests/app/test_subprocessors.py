"""HOST-03: Claude through Amazon Bedrock in the EU (the anthropic SDK's Bedrock client, SigV4-signed,
the EU inference profile) against a stand-in on loopback that speaks Bedrock's invoke API; the
direct API only when chosen by name; and `manage.py subprocessors`, which reads the effective
configuration and fails on any sub-processor endpoint outside the EU. No traffic leaves loopback."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.app.conftest import APP

ANSWER = {"decision": "approve", "confidence": 0.97, "reasoning": "A gym receipt.", "category": "Gym and fitness"}
SCAN = {"vendor": "City Gym", "date": "2026-11-01", "total": "45.00", "vat": "9.00", "currency": "EUR"}


class BedrockStandIn(ThreadingHTTPServer):
    """Bedrock runtime's InvokeModel for Anthropic models: POST /model/<id>/invoke with a Messages
    body (anthropic_version, no model key), answered with a Messages response. Records each call."""

    daemon_threads, block_on_close = True, False     # a stalled answer does not hold the teardown

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.calls: list[dict] = []
        self.stall = 0.0          # seconds to wait before answering (a slow provider)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        request = json.loads(body)
        self.server.calls.append({"path": self.path, "headers": dict(self.headers), "body": request})
        if self.server.stall:
            time.sleep(self.server.stall)
        answer = SCAN if "Read this receipt" in json.dumps(request) else ANSWER
        reply = json.dumps({"id": "msg_standin", "type": "message", "role": "assistant", "model": "standin",
                            "content": [{"type": "text", "text": json.dumps(answer)}], "stop_reason": "end_turn",
                            "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def bedrock(django_app, monkeypatch):
    """The app configured for Bedrock, pointed at the stand-in, with throwaway credentials."""
    from django.test import override_settings

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
    standin = BedrockStandIn()
    with override_settings(AI_PROVIDER="bedrock", BEDROCK_ENDPOINT_URL=standin.url):
        yield standin
    standin.shutdown()
    standin.server_close()


def test_bedrock_gets_a_signed_eu_request_with_nothing_personal(s3, bedrock):
    """An employee's expense, evaluated through the SDK's Bedrock client: the call is SigV4-signed
    for bedrock in eu-central-1, names the EU inference profile, and carries no name or email."""
    from core.models import ExpenseReport
    from tests.app.test_expenses import GOOD, company_with_ai, submit
    from tests.app.test_security import client, make

    company_with_ai("Bedrock SE", True)
    me, pw = make("Bedrock SE")
    assert submit(client(me, pw), GOOD).status_code == 302
    report = ExpenseReport.objects.get(employee=me)
    assert report.status == "approved" and report.ai_reasoning == ANSWER["reasoning"]
    assert len(bedrock.calls) == 2          # the scan, then the evaluation
    for call in bedrock.calls:
        _signed_eu_and_impersonal(call, me)


def _signed_eu_and_impersonal(call: dict, me) -> None:
    from django.conf import settings
    assert call["path"] == f"/model/{settings.BEDROCK_MODEL}/invoke" and settings.BEDROCK_MODEL.startswith("eu.")
    assert "/eu-central-1/bedrock/aws4_request" in call["headers"]["Authorization"]
    assert call["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert call["body"]["anthropic_version"] and "model" not in call["body"]   # Bedrock's body shape
    receipt = call["body"]["messages"][0]["content"][0]       # the test's receipt is a PDF
    assert receipt["type"] == "document" and receipt["source"]["media_type"] == "application/pdf"
    text = json.dumps(call["body"])
    for personal in (me.full_name, me.user.email, me.user.username):
        assert personal not in text


def test_a_slow_provider_means_a_human_decides_within_the_request(s3, bedrock, monkeypatch):
    """Bedrock answering after the call timeout: no retry, the expense goes to HR, and the request
    ends within the timeouts of its two calls at most, well inside gunicorn's worker timeout."""
    from core import ai
    from core.models import ExpenseReport
    from tests.app.test_expenses import GOOD, company_with_ai, submit
    from tests.app.test_security import client, make

    monkeypatch.setattr(ai, "CALL_TIMEOUT_SECONDS", 1)
    bedrock.stall = 30
    company_with_ai("Slow Provider KG", True)
    me, pw = make("Slow Provider KG")
    c = client(me, pw)
    started = time.monotonic()
    assert submit(c, GOOD).status_code == 302
    assert time.monotonic() - started < 2 * ai.CALL_TIMEOUT_SECONDS + 6      # not the 30 s stall, nor retries
    report = ExpenseReport.objects.get(employee=me)
    assert report.status == "needs_review" and "could not evaluate" in report.review_reason
    assert len(bedrock.calls) == 1          # the scan timed out once, no retry, no evaluation after it


def test_a_key_alone_sends_nothing_to_anthropic(django_app):
    """Only BENEFITS_AI_PROVIDER=anthropic reaches Anthropic's API; a key by itself does not."""
    from django.test import override_settings

    from core import ai
    with override_settings(ANTHROPIC_API_KEY=secrets.token_hex(8), AI_PROVIDER="local"):
        assert isinstance(ai.provider(), ai.LocalProvider)
    with override_settings(ANTHROPIC_API_KEY="", AI_PROVIDER="anthropic"), pytest.raises(ai.NotConfigured):
        ai.provider()


def _command(**overrides) -> tuple[dict, str]:
    from io import StringIO

    from django.core.management import CommandError, call_command
    from django.test import override_settings

    out = StringIO()
    with override_settings(**overrides):
        try:
            call_command("subprocessors", "--json", stdout=out)
            error = ""
        except CommandError as exc:
            error = str(exc)
    return json.loads(out.getvalue()), error


def test_the_eu_configurations_pass(django_app, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_BEDROCK_BASE_URL", raising=False)
    found, error = _command(AI_PROVIDER="bedrock", BEDROCK_ENDPOINT_URL="", POSTHOG_API_KEY=secrets.token_hex(8),
                            POSTHOG_HOST="https://eu.i.posthog.com", S3_ENDPOINT_URL="")
    assert error == "" and found["outside_eu"] == []
    where = {e["name"]: (e["endpoint"], e["region"]) for e in found["endpoints"]}
    assert where["Anthropic's Claude on Amazon Bedrock"] == ("https://bedrock-runtime.eu-central-1.amazonaws.com",
                                                            "eu-central-1")
    assert where["Amazon Web Services (S3)"] == ("https://s3.eu-central-1.amazonaws.com", "eu-central-1")
    assert where["PostHog"][1] == "EU"
    # the lab: local AI, S3 on the lab's own network, no PostHog
    found, error = _command(AI_PROVIDER="local", POSTHOG_API_KEY="", S3_ENDPOINT_URL="http://10.20.0.5:9000")
    assert error == "" and [e["region"] for e in found["endpoints"]] == ["this deployment"]


# A key for the cases that need one: made at run time, never written in the repository.
RUN_KEY = secrets.token_hex(8)


@pytest.mark.parametrize("overrides, named", [
    ({"AI_PROVIDER": "anthropic", "ANTHROPIC_API_KEY": RUN_KEY}, "BENEFITS_AI_PROVIDER=anthropic"),
    ({"AI_PROVIDER": "bedrock", "BEDROCK_REGION": "us-east-1", "BEDROCK_ENDPOINT_URL": ""}, "us-east-1"),
    ({"AI_PROVIDER": "bedrock", "BEDROCK_REGION": "eu-west-2", "BEDROCK_ENDPOINT_URL": ""}, "eu-west-2"),
    ({"AI_PROVIDER": "bedrock", "BEDROCK_MODEL": "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
      "BEDROCK_ENDPOINT_URL": ""}, "'global' inference profile"),
    ({"AI_PROVIDER": "bedrock", "BEDROCK_REGION": "us-west-2", "BEDROCK_ENDPOINT_URL": "http://127.0.0.1:9"},
     "us-west-2"),
    ({"POSTHOG_API_KEY": RUN_KEY, "POSTHOG_HOST": "https://us.i.posthog.com"}, "us.i.posthog.com"),
    ({"S3_ENDPOINT_URL": "https://s3.us-east-1.amazonaws.com"}, "us-east-1"),
    ({"S3_ENDPOINT_URL": "https://storage.example.com"}, "unknown"),
])
def test_an_endpoint_outside_the_eu_fails_the_check(django_app, monkeypatch, overrides, named):
    monkeypatch.delenv("ANTHROPIC_BEDROCK_BASE_URL", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    found, error = _command(**{"AI_PROVIDER": "local", "POSTHOG_API_KEY": "", "S3_ENDPOINT_URL": "", **overrides})
    assert error.startswith("1 sub-processor endpoint(s) outside the EU") and named in error, error
    assert len(found["outside_eu"]) == 1


def test_the_sdk_environment_override_is_what_the_check_reads(django_app, monkeypatch):
    """ANTHROPIC_BEDROCK_BASE_URL redirects the SDK: the check reads the client's own base URL."""
    monkeypatch.setenv("ANTHROPIC_BEDROCK_BASE_URL", "https://bedrock-runtime.us-east-1.amazonaws.com")
    found, error = _command(AI_PROVIDER="bedrock", BEDROCK_ENDPOINT_URL="", POSTHOG_API_KEY="", S3_ENDPOINT_URL="")
    assert "us-east-1" in error


def test_the_register_reports_the_direct_api_as_a_qualification(django_app):
    from django.test import Client, override_settings
    with override_settings(AI_PROVIDER="anthropic"):
        page = Client(HTTP_HOST="benefits.example").get("/subprocessors/", secure=True).content.decode()
    assert "qualification" in page and "outside the EU" in page
    page = Client(HTTP_HOST="benefits.example").get("/subprocessors/", secure=True).content.decode()
    assert "Amazon Bedrock" in page and "qualification" not in page


@pytest.mark.parametrize("setting, says", [
    ({"BENEFITS_AI_PROVIDER": "openai"}, "BENEFITS_AI_PROVIDER='openai': one of local, bedrock, anthropic"),
    ({"BENEFITS_POSTHOG_API_KEY": RUN_KEY, "BENEFITS_POSTHOG_HOST": "https://us.i.posthog.com"},
     "BENEFITS_POSTHOG_HOST='https://us.i.posthog.com': only PostHog's EU host"),
])
def test_a_setting_that_breaks_the_promise_stops_the_start(setting, says):
    env = dict(os.environ, BENEFITS_SECRET_KEY="x", BENEFITS_DB_HOST="127.0.0.1", BENEFITS_DB_PASSWORD="x",
               PYTHONPATH=str(APP), DJANGO_SETTINGS_MODULE="benefits.settings", **setting)
    proc = subprocess.run([sys.executable, "-c", "import benefits.settings"], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert says in proc.stderr.splitlines()[-1]
    env.update(BENEFITS_AI_PROVIDER="local", BENEFITS_POSTHOG_HOST="https://eu.i.posthog.com")
    assert subprocess.run([sys.executable, "-c", "import benefits.settings"], env=env).returncode == 0


def test_the_app_knows_the_same_eu_regions_as_the_stack():
    sys.path.insert(0, str(APP))
    from core.subprocessors import EU_AWS_REGIONS

    from trustops.infra.config import EU_AWS_REGIONS as STACK
    assert EU_AWS_REGIONS == STACK
