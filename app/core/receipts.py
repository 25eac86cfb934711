"""Receipts in S3: every put carries ServerSideEncryption=AES256 (SSE-S3), keys name the company
and a random id, and nothing is written to local disk (uploads are held in memory only)."""
from __future__ import annotations

import uuid

from django.conf import settings


def _client():
    import boto3

    return boto3.client("s3", region_name=settings.S3_REGION, endpoint_url=settings.S3_ENDPOINT_URL or None)


def put(company_id: int, content: bytes, content_type: str) -> str:
    key = f"receipts/{company_id}/{uuid.uuid4().hex}"
    _client().put_object(Bucket=settings.RECEIPTS_BUCKET, Key=key, Body=content, ContentType=content_type,
                         ServerSideEncryption="AES256")
    return key


def get(key: str) -> bytes:
    return _client().get_object(Bucket=settings.RECEIPTS_BUCKET, Key=key)["Body"].read()


def delete(key: str) -> None:
    _client().delete_object(Bucket=settings.RECEIPTS_BUCKET, Key=key)
