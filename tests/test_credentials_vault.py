"""`trustops credentials` checks the hosts' keys wherever they live: the Bedrock invoker's key like
the writers' (control-node files in the flat lab, iam/ in the twin, Key Vault in the cloud)."""
import datetime as dt
import json
import os
import secrets
import stat

from trustops import cli, credentials


def _aged(path, days):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secrets.token_hex(16))
    when = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)).timestamp()
    os.utime(path, (when, when))


def test_every_purposes_key_file_is_aged_as_an_aws_key(tmp_path):
    for name, days in (("backup-writer.json", 10), ("files-writer.json", 20), ("bedrock-invoker.json", 95),
                       ("iam/trustops-bedrock-invoker.json", 30)):
        _aged(tmp_path / name, days)
    got = {c.name: (c.kind, c.status) for c in credentials.ages(tmp_path)}
    assert got == {"backup-writer.json": ("aws access key", "ok"), "files-writer.json": ("aws access key", "ok"),
                   "bedrock-invoker.json": ("aws access key", "overdue"),
                   "iam/trustops-bedrock-invoker.json": ("aws access key", "ok")}


def _listing(now, **ages):
    return [{"id": f"https://kv.vault.azure.net/secrets/{n}", "name": n,
             "attributes": {"enabled": True, "updated": (now - dt.timedelta(days=d)).isoformat()}}
            for n, d in ages.items()]


def test_key_vault_ages_treat_the_bedrock_key_as_the_writers(tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    listing = _listing(now, **{"backups-writer-access-key": 5, "files-writer-access-key": 80,
                               "bedrock-writer-access-key": 91, "field-key-1": 3})
    got = {c.name: (c.kind, c.status) for c in credentials.vault_ages(listing, now=now)}
    assert got == {"keyvault:backups-writer-access-key": ("aws access key", "ok"),
                   "keyvault:files-writer-access-key": ("aws access key", "due soon"),
                   "keyvault:bedrock-writer-access-key": ("aws access key", "overdue"),
                   "keyvault:field-key-1": ("field encryption key", "ok")}


def _fake_az(tmp_path, monkeypatch, script: str):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text("#!/bin/sh\n" + script)
    az.chmod(az.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


def test_the_command_reads_the_vault_and_fails_on_an_old_bedrock_key(tmp_path, monkeypatch, capsys):
    now = dt.datetime.now(dt.timezone.utc)
    listing = _listing(now, **{"backups-writer-access-key": 5, "bedrock-writer-access-key": 100})
    (tmp_path / "listing.json").write_text(json.dumps(listing))
    _fake_az(tmp_path, monkeypatch, f'[ "$4" = "--vault-name" ] && [ "$5" = kv ] && cat {tmp_path}/listing.json\n')
    assert cli.main(["credentials", "--key-vault", "kv"]) == 1
    out = capsys.readouterr().out
    assert "keyvault:bedrock-writer-access-key" in out and "1 overdue" in out
    assert "runbooks/credential-rotation.md" in out


def test_an_unreadable_vault_is_one_line(tmp_path, monkeypatch, capsys):
    _fake_az(tmp_path, monkeypatch, 'echo "ERROR: (Forbidden) Caller is not authorized" >&2; exit 1\n')
    assert cli.main(["credentials", "--key-vault", "kv"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Forbidden" in err and "--vault-name kv" in err
    _fake_az(tmp_path / "x", monkeypatch, 'echo "[{\\"name\\": \\"a\\"}]"\n') if (tmp_path / "x").mkdir() is None else None
    assert cli.main(["credentials", "--key-vault", "kv"]) == 1
    assert "without a name or attributes.updated" in capsys.readouterr().err
