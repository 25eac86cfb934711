"""Settings of the benefits application. Everything secret or environment-specific comes from
environment variables (the security page: secrets injected as environment variables, never in
code); a missing required variable stops the start with its name."""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from benefits.entra import oidc_settings
from core.ai import PROVIDERS as AI_PROVIDERS
from core.subprocessors import POSTHOG_EU_HOSTS

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"environment variable {name} is required")
    return value


DEBUG = env("BENEFITS_DEBUG", "false").lower() == "true"
SECRET_KEY = env("BENEFITS_SECRET_KEY")
ALLOWED_HOSTS = [h for h in env("BENEFITS_ALLOWED_HOSTS", "").split(",") if h] + ["127.0.0.1"]  # + the healthcheck
CSRF_TRUSTED_ORIGINS = [o for o in env("BENEFITS_CSRF_TRUSTED_ORIGINS", "").split(",") if o] or \
    [f"https://{h}" for h in ALLOWED_HOSTS]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",      # recovery codes
    "mozilla_django_oidc",
    "axes",
    "core",
]

MIDDLEWARE = [
    "core.metrics.CountRequests",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "core.middleware.PermissionsPolicy",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.middleware.IdleTimeout",
    "django_otp.middleware.OTPMiddleware",
    "core.middleware.StaffMustUseMFA",
    "core.errors.ReportErrors",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",           # last: answers a locked-out sign-in with 429
]

ROOT_URLCONF = "benefits.urls"
WSGI_APPLICATION = "benefits.wsgi.application"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [BASE_DIR / "templates"],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                       "django.contrib.auth.context_processors.auth",
                                       "django.contrib.messages.context_processors.messages"]},
}]

# Postgres over TLS with full verification (TRANSIT-02): the server's certificate must chain to
# the platform CA and name the host we connect to.
DATABASES = {"default": {
    "ENGINE": "django.db.backends.postgresql",
    "HOST": env("BENEFITS_DB_HOST"),
    "PORT": env("BENEFITS_DB_PORT", "5432"),
    "NAME": env("BENEFITS_DB_NAME", "benefits"),
    "USER": env("BENEFITS_DB_USER", "benefits_app"),
    "PASSWORD": env("BENEFITS_DB_PASSWORD"),
    "OPTIONS": {"sslmode": env("BENEFITS_DB_SSLMODE", "verify-full"),
                "sslrootcert": env("BENEFITS_DB_SSLROOTCERT", "/etc/trustops/postgres-ca.crt"),
                # the app's own schema (the platform grants nothing in public)
                "options": f"-c search_path={env('BENEFITS_DB_SCHEMA', 'benefits')}"},
    "CONN_MAX_AGE": 60,
    "ATOMIC_REQUESTS": True,     # a request that fails half-way leaves nothing behind
}}
if DATABASES["default"]["OPTIONS"]["sslmode"] != "verify-full" and not DEBUG:
    raise ImproperlyConfigured("BENEFITS_DB_SSLMODE must be verify-full outside DEBUG (the page promises it)")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    # Microsoft Entra ID's policy for cloud accounts: at least 8 characters, not common (AUTH-02)
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# HTTPS only (TRANSIT-03) and cookies HttpOnly + Secure + SameSite=Strict (TRANSIT-04).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")   # nginx in front terminates TLS
SECURE_SSL_REDIRECT = not DEBUG
SECURE_HSTS_SECONDS = 63072000
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]   # probe and Prometheus, on the private network only
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Strict"
SESSION_COOKIE_AGE = 8 * 3600           # absolute: a session ends 8 hours after sign-in at the latest
SESSION_IDLE_SECONDS = int(env("BENEFITS_SESSION_IDLE_SECONDS", "1800"))   # and after 30 idle minutes
REAUTH_SECONDS = 300                     # the export and closing a deletion want a sign-in this recent
CSRF_COOKIE_SECURE = True
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Strict"
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp 4): our own scripts-free pages, our one stylesheet, nothing
# inline, no framing; Permissions-Policy turns off the browser features the app never uses.
CONTENT_SECURITY_POLICY = {"DIRECTIVES": {
    "default-src": ["'none'"], "style-src": ["'self'"], "img-src": ["'self'", "data:"],
    "form-action": ["'self'", "https://login.microsoftonline.com"], "frame-ancestors": ["'none'"],
    "base-uri": ["'none'"], "connect-src": ["'self'"]}}
PERMISSIONS_POLICY = ("accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), "
                      "payment=(), usb=(), interest-cohort=()")

# Sign-in lockout and throttling (django-axes, database handler: shared by all gunicorn workers):
# 5 failures lock the account, and separately the source address, for 15 minutes. The source is
# the address nginx puts in X-Forwarded-For (core.clientip), never one the client chose.
AXES_FAILURE_LIMIT = int(env("BENEFITS_SIGNIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = dt.timedelta(minutes=int(env("BENEFITS_SIGNIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "core.clientip.client_ip"
AXES_USERNAME_CALLABLE = "core.clientip.typed_username"
AXES_LOCKOUT_CALLABLE = "core.authlog.locked_out_response"
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True            # the auth log (below) records sign-ins; no second copy
AXES_VERBOSE = False
AXES_HTTP_RESPONSE_CODE = 429
# Every sign-in failure, success and lockout, one JSON object a line, for the monitors (unset: none).
AUTH_LOG = env("BENEFITS_AUTH_LOG", "")
# /metrics answers these client addresses only (the ops host; nginx also keeps it off the front).
METRICS_ALLOWED = [a for a in env("BENEFITS_METRICS_ALLOWED", "127.0.0.1,::1").split(",") if a]

# Mail (MFA device notices, password reset): SMTP to a local relay or the lab's sink.
EMAIL_BACKEND = env("BENEFITS_EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env("BENEFITS_EMAIL_HOST", "localhost")
EMAIL_PORT = int(env("BENEFITS_EMAIL_PORT", "25"))
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env("BENEFITS_EMAIL_FROM", "benefits@localhost")
PASSWORD_RESET_TIMEOUT = 3600

# Staff sign-in through Microsoft Entra ID (AUTH-02), on when BENEFITS_OIDC_TENANT_ID is set
# (benefits/entra.py); password sign-in stays for accounts Entra does not hold.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
_oidc = oidc_settings(os.environ)
globals().update(_oidc)
OIDC_ENABLED = bool(_oidc)
if OIDC_ENABLED:
    AUTHENTICATION_BACKENDS.append("core.oidc.EntraIDBackend")

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
MFA_URL = "/mfa/"
OTP_TOTP_ISSUER = "Benefits"

# Field encryption keys (REST-03): Key Vault in the cloud, a key directory in the lab.
FIELD_KEYS = {"provider": env("BENEFITS_FIELD_KEYS_PROVIDER", "file"),
              "dir": env("BENEFITS_FIELD_KEYS_DIR", "/run/secrets/field-keys"),
              "vault_url": env("BENEFITS_KEY_VAULT_URL", "")}

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "/static/"     # one stylesheet, served by core.views.stylesheet
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "handlers": {"console": {"class": "logging.StreamHandler"}},
           "root": {"handlers": ["console"], "level": "INFO"}}

# Receipts: S3 with SSE-S3 (HOST-02), the lab's endpoint in the lab; uploads stay in memory (never
# on local disk) and are limited to 10 MB.
RECEIPTS_BUCKET = env("BENEFITS_RECEIPTS_BUCKET", "")
S3_ENDPOINT_URL = env("BENEFITS_S3_ENDPOINT_URL", "")
S3_REGION = env("BENEFITS_S3_REGION", "eu-central-1")
FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.MemoryFileUploadHandler"]
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# AI (optional, per company), HOST-03: BENEFITS_AI_PROVIDER=bedrock (what a cloud deployment sets)
# runs Claude on Amazon Bedrock in an EU region through the EU inference profile, signed with the
# stack's IAM identity for it (infra/bedrock.py; unset keys: the default AWS chain). Anthropic's own
# API (in the US) only when BENEFITS_AI_PROVIDER=anthropic is set explicitly; the sub-processor
# register and `manage.py subprocessors` then report it. Unset: the local provider (lab, tests).
AI_PROVIDER = env("BENEFITS_AI_PROVIDER", "local")
BEDROCK_REGION = env("BENEFITS_BEDROCK_REGION", "eu-central-1")
BEDROCK_MODEL = env("BENEFITS_BEDROCK_MODEL", "eu.anthropic.claude-sonnet-4-5-20250929-v1:0")
BEDROCK_ENDPOINT_URL = env("BENEFITS_BEDROCK_ENDPOINT_URL", "")     # a stand-in (tests); AWS's by default
BEDROCK_ACCESS_KEY_ID = env("BENEFITS_BEDROCK_AWS_ACCESS_KEY_ID", "")
BEDROCK_SECRET_ACCESS_KEY = env("BENEFITS_BEDROCK_AWS_SECRET_ACCESS_KEY", "")
ANTHROPIC_API_KEY = env("BENEFITS_ANTHROPIC_API_KEY", "")
if AI_PROVIDER not in AI_PROVIDERS:
    raise ImproperlyConfigured(f"BENEFITS_AI_PROVIDER={AI_PROVIDER!r}: one of {', '.join(AI_PROVIDERS)}")

# Error reporting (OPS-04): PostHog only when a project key is set; pseudonymous, no personal data.
POSTHOG_API_KEY = env("BENEFITS_POSTHOG_API_KEY", "")
POSTHOG_HOST = env("BENEFITS_POSTHOG_HOST", "https://eu.i.posthog.com")
if POSTHOG_API_KEY and urlsplit(POSTHOG_HOST).hostname not in POSTHOG_EU_HOSTS:   # HOST-03
    raise ImproperlyConfigured(f"BENEFITS_POSTHOG_HOST={POSTHOG_HOST!r}: only PostHog's EU host "
                               f"(https://{sorted(POSTHOG_EU_HOSTS)[0]}) keeps the data in the EU")
