"""HOST-03: the app's Bedrock identity may invoke one model through the EU inference profile only,
in EU regions only; nothing else. Read from the program's resources under Pulumi mocks."""
from __future__ import annotations

import json
import re
from pathlib import Path

from trustops import mockrun as harness
from trustops.infra.bedrock import EU_PROFILE, MODEL
from trustops.infra.config import EU_AWS_REGIONS

ROOT = Path(__file__).resolve().parents[2]


def _policy(stack_run, stack: str) -> list[dict]:
    resources, _ = stack_run(stack)
    (policy,) = [r for r in resources if r.type == "aws:iam/userPolicy:UserPolicy"
                 and r.name == "trustops-bedrock-invoker-policy"]
    assert policy.inputs["user"] == "trustops-bedrock-invoker"
    return json.loads(policy.inputs["policy"])["Statement"]


def test_the_invoker_may_call_the_eu_profile_and_nothing_else(stack_run):
    region = harness.stack_config("prod")["trustops:awsRegion"]
    profile = f"arn:aws:bedrock:{region}:{harness.MOCK_ACCOUNT_ID}:inference-profile/{EU_PROFILE}"
    statements = _policy(stack_run, "prod")
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert {s["Action"] for s in allows} == {"bedrock:InvokeModel"}      # no streaming, no management
    resources = {r for s in allows for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])}
    assert profile in resources and "*" not in resources
    models = resources - {profile}
    assert {re.match(r"arn:aws:bedrock:([a-z0-9-]+)::foundation-model/(.+)$", m).groups() for m in models} == \
        {(r, MODEL) for r in EU_AWS_REGIONS}
    (through,) = [s for s in allows if s["Resource"] != profile]
    assert through["Condition"] == {"StringEquals": {"bedrock:InferenceProfileArn": profile}}
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Condition"]["StringNotEquals"]["aws:RequestedRegion"] == sorted(EU_AWS_REGIONS)


def test_the_app_defaults_to_the_profile_the_stack_grants():
    settings = (ROOT / "app" / "benefits" / "settings.py").read_text()
    assert f'"BENEFITS_BEDROCK_MODEL", "{EU_PROFILE}"' in settings
