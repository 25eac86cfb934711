"""`trustops credentials` reads the age of each generated credential and fails past 90 days."""
import datetime as dt
import os
import secrets

from trustops import cli, credentials


def make(tmp_path, name: str, age_days: float) -> None:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secrets.token_hex(16))          # generated now; nothing secret is committed
    when = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=age_days)).timestamp()
    os.utime(path, (when, when))


def test_ages_and_statuses(tmp_path):
    make(tmp_path, "db-benefits_app-password", 10)
    make(tmp_path, "deploy_ed25519", 80)
    make(tmp_path, "pki/ca.key", 120)
    make(tmp_path, "inventory.yml", 500)            # not a credential
    got = {c.name: (c.kind, c.age_days, c.status) for c in credentials.ages(tmp_path)}
    assert got == {"db-benefits_app-password": ("postgres password", 10, "ok"),
                   "deploy_ed25519": ("ssh key", 80, "due soon"),
                   "pki/ca.key": ("ca key", 120, "overdue")}


def test_the_command_fails_past_90_days_and_says_what_to_do(tmp_path, capsys):
    make(tmp_path, "db-benefits_app-password", 30)
    assert cli.main(["credentials", "--secrets-dir", str(tmp_path)]) == 0
    make(tmp_path, "s3-credentials.json", 91)
    assert cli.main(["credentials", "--secrets-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "s3-credentials.json" in out and "1 overdue" in out and "runbooks/credential-rotation.md" in out


def test_a_wrong_directory_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["credentials", "--secrets-dir", str(tmp_path / "nope")]) == 1
    assert "no secrets directory" in capsys.readouterr().err
    assert cli.main(["credentials", "--secrets-dir", str(tmp_path)]) == 1
    assert "no credentials found" in capsys.readouterr().err
