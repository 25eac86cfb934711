"""AI receipt scanning and expense evaluation, optional and off by default per company.

Data minimisation is enforced here, in the one place a request to a model is built: a provider
receives the receipt image and the benefit category names, and for evaluation the company's own
expense policy text (AI-02: the AI may read company policy documents), nothing else (no names,
emails, amounts typed by the employee, or ids). `minimised_request` builds that request and checks it;
every provider sends only what it returns. A decision below CONFIDENCE_FLOOR goes to a human.
"""
from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

CONFIDENCE_FLOOR = 0.85
POLICY_MAX_CHARS = 20_000
# One model call, at most, without retries: a submission makes two (scan, evaluate) inside one
# request, which must end well within gunicorn's 60 s worker timeout (gunicorn.conf.py), or the
# worker is killed and the submission rolled back. A slow provider means a human decides.
CALL_TIMEOUT_SECONDS = 20


@dataclass(frozen=True)
class ReceiptScan:
    vendor: str
    date: str
    amount: Decimal | None
    vat: Decimal | None
    currency: str = ""     # ISO 4217 code printed with the total, "" when the receipt shows none


@dataclass(frozen=True)
class Evaluation:
    decision: str          # approve | decline
    confidence: float      # 0..1
    reasoning: str
    category: str          # the category the model thinks the receipt is


REASONING_MAX_CHARS = 300


class OddAnswer(ValueError):
    """The model answered something that is not a usable decision (prose, NaN, a missing key)."""


def checked(decision: object, confidence: object, reasoning: object, category: object) -> Evaluation:
    """An Evaluation only from a well-formed answer: approve|decline, a finite confidence in [0, 1]
    (NaN would pass every comparison the wrong way), reasoning cut to what the pages hold."""
    if decision not in ("approve", "decline"):
        raise OddAnswer(f"decision {decision!r} is neither approve nor decline")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise OddAnswer(f"confidence {confidence!r} is not a number")
    if not math.isfinite(confidence) or not 0 <= confidence <= 1:
        raise OddAnswer(f"confidence {confidence!r} is not between 0 and 1")
    return Evaluation(decision, float(confidence), str(reasoning or "")[:REASONING_MAX_CHARS], str(category or "")[:100])


_MONEY = re.compile(r"^(?:([A-Z]{3})\s*)?([0-9]+(?:[.,][0-9]{1,2})?)\s*([A-Z]{3})?$")


def money(text: str | None) -> tuple[Decimal | None, str]:
    """ "EUR 45.00", "45,00 EUR" or "45.00" -> (Decimal("45.00"), "EUR" or "")."""
    m = _MONEY.match((text or "").strip())
    if not m:
        return None, ""
    try:
        return Decimal(m.group(2).replace(",", ".")), (m.group(1) or m.group(3) or "")
    except InvalidOperation:
        return None, ""


def minimised_request(image: bytes, categories: list[str], policy: str = "") -> dict:
    """The only data a model ever sees: the image, the category names and the company's policy."""
    if not isinstance(image, (bytes, bytearray)) or not image:
        raise ValueError("a receipt image is required")
    if not all(isinstance(c, str) and len(c) < 100 for c in categories):
        raise ValueError("categories must be short names")
    if not isinstance(policy, str) or len(policy) > POLICY_MAX_CHARS:
        raise ValueError(f"the policy must be text of at most {POLICY_MAX_CHARS} characters")
    request = {"image": bytes(image), "categories": list(categories)}
    if policy.strip():
        request["policy"] = policy.strip()
    return request


def excluded_by_policy(policy: str) -> set[str]:
    """Categories a policy excludes in so many words ("Not reimbursed: Gym and fitness"), the rule
    the local provider applies; a real model reads the whole text."""
    return {c.strip() for line in re.findall(r"^\s*not reimbursed:\s*(.+)$", policy, re.I | re.M)
            for c in line.split(",")}


class LocalProvider:
    """Deterministic stand-in for the lab and tests. Reads receipts written as text lines
    ("Vendor: ...", "Date: ...", "Total: ...", "VAT: ...", "Category: ..."); anything it cannot
    read gets low confidence, so a human decides."""

    name = "local"

    def _fields(self, request: dict) -> dict[str, str]:
        text = request["image"].decode("utf-8", "replace")
        return {k.lower(): v.strip() for k, v in re.findall(r"^(\w+):\s*(.+)$", text, re.M)}

    def scan_receipt(self, request: dict) -> ReceiptScan:
        f = self._fields(request)
        total, currency = money(f.get("total"))
        return ReceiptScan(f.get("vendor", ""), f.get("date", ""), total, money(f.get("vat"))[0],
                           f.get("currency", currency).upper()[:3])

    def evaluate(self, request: dict) -> Evaluation:
        f = self._fields(request)
        category = f.get("category", "")
        if not f.get("total") or not f.get("vendor"):
            return Evaluation("decline", 0.4, "The receipt is not readable enough to decide.", category)
        if category in excluded_by_policy(request.get("policy", "")):
            return Evaluation("decline", 0.92, f"The company's policy does not reimburse {category}.", category)
        if category in request["categories"]:
            return Evaluation("approve", 0.93, f"A {category} receipt from {f['vendor']}.", category)
        return Evaluation("decline", 0.9, f"{f['vendor']} is not in a wellness category.", category)


def receipt_block(image: bytes) -> dict:
    """The receipt as the Messages API takes it, typed by its bytes: a PDF is a document block, a
    PNG an image/png one (the API refuses a type that does not match the data); else image/jpeg."""
    from core.receipts import content_type

    kind = content_type(image) or "image/jpeg"
    source = {"type": "base64", "media_type": kind, "data": base64.b64encode(image).decode()}
    return {"type": "document" if kind == "application/pdf" else "image", "source": source}


class AnthropicProvider:
    """Claude through the anthropic SDK: on Amazon Bedrock in the EU (`bedrock`, for the cloud) or
    Anthropic's own API (`anthropic`, only when set explicitly: it leaves the EU)."""

    MODEL = "claude-sonnet-4-5"

    def __init__(self, client, model: str = MODEL, name: str = "anthropic") -> None:
        self.client = client          # anthropic.AnthropicBedrock / anthropic.Anthropic, or a test double
        self.model, self.name = model, name

    @classmethod
    def from_key(cls, api_key: str) -> "AnthropicProvider":
        import anthropic
        return cls(anthropic.Anthropic(api_key=api_key, max_retries=0, timeout=CALL_TIMEOUT_SECONDS))

    @classmethod
    def on_bedrock(cls, region: str, model: str, endpoint_url: str = "", access_key_id: str = "",
                   secret_access_key: str = "") -> "AnthropicProvider":
        """The SDK's Bedrock client: SigV4-signed invoke calls to the region's bedrock-runtime (boto3
        and botocore, which the app pins, are all its `bedrock` extra adds)."""
        import anthropic
        return cls(anthropic.AnthropicBedrock(aws_region=region, base_url=endpoint_url or None,
                                              aws_access_key=access_key_id or None,
                                              aws_secret_key=secret_access_key or None,
                                              max_retries=0, timeout=CALL_TIMEOUT_SECONDS), model, "bedrock")

    def _ask(self, request: dict, instruction: str) -> dict:
        message = self.client.messages.create(model=self.model, max_tokens=400, messages=[{"role": "user", "content": [
            receipt_block(request["image"]),
            {"type": "text", "text": instruction + "\nBenefit categories: " + ", ".join(request["categories"])
             + (f"\nThe company's expense policy:\n{request['policy']}" if request.get("policy") else "")
             + "\nAnswer with one JSON object only."}]}])
        try:
            answer = json.loads(message.content[0].text)
        except (ValueError, IndexError, AttributeError, TypeError) as exc:
            raise OddAnswer("the model did not answer with JSON") from exc
        if not isinstance(answer, dict):
            raise OddAnswer("the model's JSON is not an object")
        return answer

    def scan_receipt(self, request: dict) -> ReceiptScan:
        d = self._ask(request, "Read this receipt: vendor, date (YYYY-MM-DD), total amount, VAT amount and the "
                               "ISO 4217 currency code of the total, as JSON keys vendor, date, total, vat, currency.")

        def number(v) -> Decimal | None:
            try:
                n = Decimal(str(v)) if v is not None else None
            except InvalidOperation:
                return None
            return n if n is not None and n.is_finite() else None
        return ReceiptScan(str(d.get("vendor", ""))[:200], str(d.get("date", ""))[:20], number(d.get("total")),
                           number(d.get("vat")), str(d.get("currency") or "").upper()[:3])

    def evaluate(self, request: dict) -> Evaluation:
        d = self._ask(request, "Is this receipt a wellness expense in one of the categories that the company's policy "
                               "(if given) reimburses? JSON keys: decision "
                               "(approve or decline), confidence (0 to 1), reasoning (one sentence), category.")
        return checked(d.get("decision"), d.get("confidence"), d.get("reasoning"), d.get("category"))


PROVIDERS = ("local", "bedrock", "anthropic")


class NotConfigured(ValueError):
    """The settings name an AI provider that cannot be built (one line naming the setting)."""


def provider():
    """The provider the settings choose (BENEFITS_AI_PROVIDER): Bedrock in the EU, Anthropic's
    API only when chosen by name (a key alone no longer sends anything out of the EU), else local."""
    from django.conf import settings
    choice = getattr(settings, "AI_PROVIDER", "local")
    if choice == "bedrock":
        return AnthropicProvider.on_bedrock(settings.BEDROCK_REGION, settings.BEDROCK_MODEL,
                                            settings.BEDROCK_ENDPOINT_URL, settings.BEDROCK_ACCESS_KEY_ID,
                                            settings.BEDROCK_SECRET_ACCESS_KEY)
    if choice == "anthropic":
        if not settings.ANTHROPIC_API_KEY:
            raise NotConfigured("BENEFITS_AI_PROVIDER=anthropic needs BENEFITS_ANTHROPIC_API_KEY")
        return AnthropicProvider.from_key(settings.ANTHROPIC_API_KEY)
    if choice != "local":
        raise NotConfigured(f"BENEFITS_AI_PROVIDER={choice!r}: one of {', '.join(PROVIDERS)}")
    return LocalProvider()
