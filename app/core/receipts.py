"""Receipts in S3: every put carries ServerSideEncryption=AES256 (SSE-S3), keys name the company
and a random id, and nothing is written to local disk (uploads are held in memory only). Only
JPEG, PNG and PDF are accepted, recognised by their first bytes; the type stored and served is the
one found here, never the one the browser claimed."""
from __future__ import annotations

import hashlib
import uuid

from django.conf import settings

SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"%PDF-", "application/pdf"))
ACCEPTED = "JPEG, PNG or PDF"


def content_type(content: bytes) -> str | None:
    """The receipt's type from its signature, or None when it is none of the accepted ones."""
    for magic, kind in SIGNATURES:
        if content.startswith(magic):
            return kind
    return None


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _client():
    import boto3

    return boto3.client("s3", region_name=settings.S3_REGION, endpoint_url=settings.S3_ENDPOINT_URL or None)


def put(company_id: int, content: bytes, kind: str, prefix: str = "receipts") -> str:
    key = f"{prefix}/{company_id}/{uuid.uuid4().hex}"
    _client().put_object(Bucket=settings.RECEIPTS_BUCKET, Key=key, Body=content, ContentType=kind,
                         ServerSideEncryption="AES256")
    return key


def get(key: str) -> bytes:
    return _client().get_object(Bucket=settings.RECEIPTS_BUCKET, Key=key)["Body"].read()


def delete(key: str) -> None:
    _client().delete_object(Bucket=settings.RECEIPTS_BUCKET, Key=key)
