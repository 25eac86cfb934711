"""The benefits app against a real Postgres 15 that accepts TLS only, reached with
sslmode=verify-full against a CA made for this run; field keys generated at run time."""
from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

APP = Path(__file__).resolve().parents[2] / "app"


@pytest.fixture(scope="session")
def django_app(tmp_path_factory):
    from tests.services import Postgres

    pg = Postgres(tls=True).start()
    app_password = secrets.token_urlsafe(24)
    import psycopg
    with psycopg.connect(pg.dsn() + f" sslmode=verify-full sslrootcert={pg.ca_file}", autocommit=True) as c:
        c.execute(f"create role benefits_app login password '{app_password}'")
        c.execute("create database benefits owner benefits_app")
    dsn = pg.dsn(user="benefits_app", password=app_password).replace("dbname=postgres", "dbname=benefits")
    with psycopg.connect(dsn + f" sslmode=verify-full sslrootcert={pg.ca_file}", autocommit=True) as c:
        c.execute("create schema benefits authorization benefits_app")
    keys = tmp_path_factory.mktemp("field-keys")
    sys.path.insert(0, str(APP))
    from benefits.crypto import FileKeyProvider
    FileKeyProvider(keys).add_version("v1")
    os.environ.update(DJANGO_SETTINGS_MODULE="benefits.settings", BENEFITS_SECRET_KEY=secrets.token_urlsafe(50),
                      BENEFITS_ALLOWED_HOSTS="benefits.example", BENEFITS_DB_HOST="127.0.0.1",
                      BENEFITS_DB_PORT=str(pg.port), BENEFITS_DB_PASSWORD=app_password,
                      BENEFITS_DB_SSLROOTCERT=str(pg.ca_file), BENEFITS_FIELD_KEYS_DIR=str(keys),
                      BENEFITS_EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
    import django
    django.setup()
    from django.core.management import call_command
    call_command("migrate", verbosity=0)
    yield {"pg": pg, "keys": keys, "app_password": app_password}
    from django.db import connections
    connections.close_all()
    pg.stop()


# --- shared by the expense and privacy tests -------------------------------------------------

@pytest.fixture
def s3(django_app, monkeypatch, settings_override):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        c = boto3.client("s3", region_name="eu-central-1")
        c.create_bucket(Bucket="benefits-receipts", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        yield c


@pytest.fixture
def settings_override(django_app):
    from django.conf import settings
    old = settings.RECEIPTS_BUCKET
    settings.RECEIPTS_BUCKET = "benefits-receipts"
    yield
    settings.RECEIPTS_BUCKET = old


@pytest.fixture
def spy(monkeypatch):
    """Records every request that reaches the AI provider (the local one underneath)."""
    from core import ai
    seen = []

    class Spy(ai.LocalProvider):
        def evaluate(self, request):
            seen.append(request)
            return super().evaluate(request)
    monkeypatch.setattr(ai, "provider", lambda: Spy())
    return seen


@pytest.fixture(autouse=True)
def no_lockouts_from_earlier_tests(request):
    """Every test client comes from 127.0.0.1: sign-in failures of one test must not lock out the
    next (django-axes counts per source address too). Tests without the app skip this."""
    if "django_app" not in request.fixturenames:
        yield
        return
    from django.apps import apps
    if apps.is_installed("axes"):
        from axes.models import AccessAttempt
        AccessAttempt.objects.all().delete()
    yield
