"""What the deployed app mails, read from the lab's SMTP sink (trustops.lab.mailsink), and its
sign-in log's rotation on the app host: an HR user without an authenticator asks for the set-up
link, follows it from the mail, enrols, and gets the device-added notice; a forced logrotate loses
no sign-in event the monitor must read."""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.cookiejar
import re
import secrets
import ssl
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

from tests.playbooks import app_monitor_lines_read
from trustops.lab import mailsink
from trustops.wait import until


class Browser:
    """A cookie-keeping HTTPS client that sends Django's CSRF token back like a browser form."""

    def __init__(self, lab_config):
        self.base = f"https://127.0.0.1:{lab_config.ports('app')[443]}"
        ctx = ssl.create_default_context(cafile=str(lab_config.state_dir / "pki" / "ca.crt"))
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx),
                                                  urllib.request.HTTPCookieProcessor(self.jar))

    def _open(self, req) -> tuple[int, str, str]:
        try:
            with self.opener.open(req, timeout=30) as r:
                return r.status, r.read().decode(), r.geturl()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(), err.geturl()

    def get(self, path: str) -> tuple[int, str, str]:
        return self._open(urllib.request.Request(self.base + path))

    def post(self, path: str, form: dict[str, str]) -> tuple[int, str, str]:
        token = next(c.value for c in self.jar if c.name == "csrftoken")
        data = urllib.parse.urlencode({"csrfmiddlewaretoken": token, **form}).encode()
        return self._open(urllib.request.Request(self.base + path, data=data, headers={
            "Origin": self.base, "Referer": self.base + path}))


def manage_shell(lab_config, code: str) -> str:
    """Runs Python in the live app container's Django (on the app host)."""
    app = lab_config.container("app")
    names = subprocess.run(["docker", "exec", app, "docker", "ps", "--filter", "name=benefits-", "--format",
                            "{{.Names}}"], capture_output=True, text=True, check=True).stdout.split()
    assert names, "no benefits container runs on the app host"
    return subprocess.run(["docker", "exec", app, "docker", "exec", names[0], "python3", "manage.py", "shell", "-c",
                           code], capture_output=True, text=True, check=True, timeout=120).stdout


def totp(secret_b32: str, at: float | None = None) -> str:
    """RFC 6238 (SHA-1, 30 s, 6 digits), as django-otp's TOTPDevice checks it."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    digest = hmac.new(key, struct.pack(">Q", int((at or time.time()) // 30)), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return f"{(struct.unpack('>I', digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def mail_to(lab_config, address: str, subject: str):
    found = [m for m in mailsink.messages(lab_config.maildir)
             if m["To"] == address and m["Subject"] == subject]
    return found[-1] if found else None


def test_the_enrolment_link_and_the_device_notice_reach_the_mailbox(lab, lab_config, converged):
    user, password = f"hr-{secrets.token_hex(4)}", secrets.token_urlsafe(18)
    address = f"{user}@example.test"
    manage_shell(lab_config, "from django.contrib.auth.models import User; "
                             f"User.objects.create_user({user!r}, {address!r}, {password!r}, is_staff=True)")
    b = Browser(lab_config)
    b.get("/login/")
    status, _, url = b.post("/login/", {"username": user, "password": password})
    assert status == 200 and urllib.parse.urlparse(url).path == "/mfa/", (status, url)

    status, body, _ = b.post("/mfa/", {"action": "send-link"})
    assert status == 200, (status, body[:300])   # 503 when the relay cannot be reached
    link_mail = until(lambda: mail_to(lab_config, address, "Set up your authenticator"), 30,
                      "the set-up link in the lab's mail sink")
    link = re.search(r"https://\S+/mfa/enrol/\S+/", link_mail.get_content()).group(0)

    status, _, url = b.get(urllib.parse.urlparse(link).path)
    assert status == 200 and urllib.parse.urlparse(url).path == "/mfa/enrol/", (status, url)
    status, body, _ = b.post("/mfa/enrol/", {"action": "start"})
    secret = re.search(r'<code id="secret">([A-Z2-7]+)</code>', body).group(1)
    status, body, _ = b.post("/mfa/enrol/", {"action": "confirm", "token": totp(secret)})
    assert status == 200 and "recovery" in body.lower(), (status, body[:300])
    assert until(lambda: mail_to(lab_config, address, "An authenticator was added to your account"), 30,
                 "the device-added notice in the lab's mail sink")


def test_rotating_the_sign_in_log_loses_no_event(lab, lab_config, converged):
    """logrotate (the role's config, forced) renames the log; the app's next line starts a new
    file the monitor also reads, and the rotated file stays readable to it."""
    app = lab_config.container("app")

    def failed_sign_in() -> str:
        b, who = Browser(lab_config), f"rotated-{secrets.token_hex(4)}"
        b.get("/login/")
        b.post("/login/", {"username": who, "password": secrets.token_urlsafe(12)})
        return who

    before = failed_sign_in()
    until(lambda: app_monitor_lines_read(lab_config) >= 1, 60, "the monitor reading the sign-in log")
    read_before = app_monitor_lines_read(lab_config)
    rotate = subprocess.run(["docker", "exec", app, "logrotate", "-f", "/etc/logrotate.d/benefits-auth"],
                            capture_output=True, text=True)
    assert rotate.returncode == 0, rotate.stderr
    after = failed_sign_in()
    listing = subprocess.run(["docker", "exec", app, "sh", "-c", "cat /var/log/benefits/auth.log; echo ---; "
                              "cat /var/log/benefits/auth.log.1"], capture_output=True, text=True).stdout
    new, _, rotated = listing.partition("---")
    assert after in new and before not in new and before in rotated, listing
    until(lambda: app_monitor_lines_read(lab_config) >= read_before + 1, 60,
          "the monitor reading the new log after rotation")


def test_the_sign_in_log_is_kept_as_long_as_the_ropa_says():
    """One retention, said twice (the role's logrotate and the RoPA a privacy reviewer reads)."""
    import yaml

    from trustops.lab.environment import PROJECT_DIR

    keep = yaml.safe_load((PROJECT_DIR / "ansible/roles/app/defaults/main.yml").read_text())["app_auth_log_keep_days"]
    [activity] = [a for a in yaml.safe_load((PROJECT_DIR / "app/ropa.yaml").read_text())["activities"]
                  if a["name"] == "Sign-in event log"]
    assert activity["retention"].startswith(f"{keep} days"), (keep, activity["retention"])
    conf = (PROJECT_DIR / "ansible/roles/app/templates/auth-log.logrotate.j2").read_text()
    directives = [line.strip() for line in conf.splitlines() if line.strip() and not line.startswith("#")]
    assert "rotate {{ app_auth_log_keep_days }}" in directives and "copytruncate" not in directives
