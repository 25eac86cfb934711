"""The app's identity for Claude on Amazon Bedrock (HOST-03): one IAM user that may invoke one
Anthropic model, only through the EU inference profile from the stack's EU region, and only in EU
regions wherever the profile routes; its access key goes to Key Vault for the app host alone
(vault.py), as the bucket writers' keys do. The app's default model id (app/benefits/settings.py
BENEFITS_BEDROCK_MODEL) is EU_PROFILE; a test keeps them equal."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from trustops.infra.config import EU_AWS_REGIONS, StackConfig
from trustops.infra.storage import credentials_json

PURPOSE = "bedrock"                      # the Key Vault secret is access_key_secret(PURPOSE)
MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
EU_PROFILE = f"eu.{MODEL}"


def profile_arn(region: str, account_id: str) -> str:
    return f"arn:aws:bedrock:{region}:{account_id}:inference-profile/{EU_PROFILE}"


def invoker_policy(region: str, account_id: str) -> str:
    """Invoke (no streaming, no management) on the EU profile, and on the model in EU regions only
    when the call comes through that profile; every Bedrock call outside the EU regions denied."""
    profile = profile_arn(region, account_id)
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "InvokeTheEuProfile", "Effect": "Allow", "Action": "bedrock:InvokeModel", "Resource": profile},
        {"Sid": "TheModelInEuRegionsThroughTheProfile", "Effect": "Allow", "Action": "bedrock:InvokeModel",
         "Resource": [f"arn:aws:bedrock:{r}::foundation-model/{MODEL}" for r in sorted(EU_AWS_REGIONS)],
         "Condition": {"StringEquals": {"bedrock:InferenceProfileArn": profile}}},
        {"Sid": "NothingOutsideTheEu", "Effect": "Deny", "Action": "bedrock:*", "Resource": "*",
         "Condition": {"StringNotEquals": {"aws:RequestedRegion": sorted(EU_AWS_REGIONS)}}},
    ]})


@dataclass
class BedrockInvokerArgs:
    cfg: StackConfig
    provider: aws.Provider


class BedrockInvoker(pulumi.ComponentResource):
    def __init__(self, name: str, args: BedrockInvokerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("trustops:infra:BedrockInvoker", name, None, opts)
        cfg = args.cfg
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(provider=args.provider))
        self.user = aws.iam.User(f"{name}-{PURPOSE}-invoker", path="/trustops/",
                                 tags={**cfg.tags, "purpose": PURPOSE}, opts=child)
        aws.iam.UserPolicy(f"{name}-{PURPOSE}-invoker-policy", user=self.user.name,
                           policy=account.account_id.apply(lambda a: invoker_policy(cfg.aws_region, a)), opts=child)
        # The secret half is a Pulumi secret; it goes to Key Vault and nowhere else (vault.py).
        self.access_key = aws.iam.AccessKey(
            f"{name}-{PURPOSE}-invoker-key", user=self.user.name,
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, additional_secret_outputs=["secret"]))
        self.register_outputs({})

    def credentials_json(self) -> pulumi.Output[str]:
        return credentials_json(self.access_key)
