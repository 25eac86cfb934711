"""The sub-processors this deployment sends customer data to, read from its effective configuration
(HOST-03: no customer data leaves the EU/EEA): each endpoint the app would call, and where it is.
`manage.py subprocessors` prints them and fails on any outside the EU; the public register
(views.subprocessors) shows the AI row from the same reading, with the qualification when the
direct API was chosen."""
from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

# AWS regions in the EU/EEA (not London, not Zurich): the list infra/config.py refuses stacks
# outside of (the app image does not carry the infra package; a test keeps the two equal).
EU_AWS_REGIONS = frozenset({"eu-central-1", "eu-west-1", "eu-west-3", "eu-south-1", "eu-south-2", "eu-north-1"})
# Bedrock inference profiles by the prefix of the model id: "eu." routes within EU regions only; a
# bare model id runs in the client's region; "us.", "apac.", "global." and others route elsewhere.
EU_INFERENCE_PROFILE = "eu"
POSTHOG_EU_HOSTS = frozenset({"eu.i.posthog.com", "eu.posthog.com"})
THIS_DEPLOYMENT = "this deployment"      # a stand-in on a private or loopback address (lab, tests)
AI_PURPOSE = ("Optional AI receipt scanning and expense evaluation (receipt image, category names and the "
              "company's expense policy text only)")


@dataclass(frozen=True)
class Endpoint:
    name: str
    purpose: str
    endpoint: str        # the URL the app sends to
    region: str          # an AWS region, "EU", "US", THIS_DEPLOYMENT or "unknown"
    in_eu: bool
    qualification: str = ""   # why data may leave the EU (an explicit setting chose it)

    def as_dict(self) -> dict:
        return asdict(self)


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _private(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or "." not in host or host.endswith((".internal", ".local", ".lan"))
    return ip.is_private or ip.is_loopback


def aws_region(url: str) -> str:
    """The region an AWS endpoint is in (`<service>.<region>.amazonaws.com`), THIS_DEPLOYMENT for a
    private stand-in, "unknown" for anything else."""
    host = _host(url)
    if _private(host):
        return THIS_DEPLOYMENT
    parts = host.split(".")
    if host.endswith(".amazonaws.com") and len(parts) >= 4:
        return parts[-3]
    return "unknown"


def _aws_endpoint(name: str, purpose: str, url: str, why_not: str = "") -> Endpoint:
    region = aws_region(url)
    in_eu = (region in EU_AWS_REGIONS or region == THIS_DEPLOYMENT) and not why_not
    return Endpoint(name, purpose, url, region, in_eu, why_not)


def _ai(settings) -> Endpoint | None:
    from core import ai

    if settings.AI_PROVIDER == "local":
        return None
    client = ai.provider().client
    url = str(client.base_url).rstrip("/")
    if settings.AI_PROVIDER == "anthropic":
        return Endpoint("Anthropic", AI_PURPOSE, url, "US", False,
                        "BENEFITS_AI_PROVIDER=anthropic: AI requests go to Anthropic's own API, outside the EU")
    profile = settings.BEDROCK_MODEL.split(".", 1)[0]
    why_not = "" if profile in (EU_INFERENCE_PROFILE, "anthropic") else \
        f"model {settings.BEDROCK_MODEL!r} uses the {profile!r} inference profile, which routes outside the EU"
    found = _aws_endpoint("Anthropic's Claude on Amazon Bedrock", AI_PURPOSE, url, why_not)
    if found.region == THIS_DEPLOYMENT and settings.BEDROCK_REGION not in EU_AWS_REGIONS:
        found = Endpoint(found.name, found.purpose, url, settings.BEDROCK_REGION, False, why_not)
    return found


def endpoints(settings) -> list[Endpoint]:
    """Every sub-processor endpoint the app is configured to send customer data to."""
    found = [_aws_endpoint("Amazon Web Services (S3)", "Receipts and company files",
                           settings.S3_ENDPOINT_URL or f"https://s3.{settings.S3_REGION}.amazonaws.com")]
    ai_endpoint = _ai(settings)
    if ai_endpoint is not None:
        found.append(ai_endpoint)
    if settings.POSTHOG_API_KEY:
        host = _host(settings.POSTHOG_HOST)
        eu = host in POSTHOG_EU_HOSTS
        found.append(Endpoint("PostHog", "Error reporting (pseudonymous id, no personal data)", settings.POSTHOG_HOST,
                              "EU" if eu else "unknown", eu))
    return found


def outside_eu(found: list[Endpoint]) -> list[str]:
    """One line per endpoint outside the EU, naming it and why."""
    return [f"{e.name} at {e.endpoint} ({e.region})" + (f": {e.qualification}" if e.qualification else "")
            for e in found if not e.in_eu]


def register_ai_row(settings) -> list[str]:
    """The public register's AI row: what this deployment actually uses for AI."""
    if settings.AI_PROVIDER == "anthropic":
        return ["Anthropic", AI_PURPOSE, "US — qualification: this deployment sends AI requests to Anthropic's "
                                         "own API, outside the EU, by an explicit setting"]
    return ["Anthropic's Claude on Amazon Bedrock (AWS)", AI_PURPOSE,
            f"EU ({settings.BEDROCK_REGION}, EU inference profile)"]
