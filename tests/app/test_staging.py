"""Staging data from production (PROD-04), against the app tests' Postgres 15 (verify-full TLS, real
migrations): production rows made through the app's models, backed up by trustops-pgbackup into
S3 (moto's server, so a killed subprocess reaches it too), rebuilt into a staging database under
its own keys, and searched for every production value."""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys

import boto3
import psycopg
import pytest
import yaml
from stdnum import iban as stdnum_iban
from stdnum.fi import hetu

from tests.app.conftest import APP
from tests.services import free_port
from trustops import anonymise, staging
from trustops.lab.system import Progress

ROOT = APP.parent
BACKUPS, RECEIPTS = "prod-backups", "staging-receipts"
STAGING_DB, STAGING_OWNER = "staging_benefits", "staging_app"
SERVERS: dict[str, dict] = {}         # production (the app tests' Postgres, where scratch databases go) and staging
IBAN = "FI2112345600000785"          # shared by two employees: a duplicate that must survive
HETU = "131052-308T"


@pytest.fixture(scope="module")
def moto_server():
    from moto.server import ThreadedMotoServer

    from tests.services import free_port
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def world(django_app, moto_server, tmp_path_factory):
    """Production rows, their backup in S3, staging's keys, role and bucket, and the build's config."""
    from django.contrib.auth.models import User
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from core.models import AuditEvent, Company, DataSubjectRequest, Employee, ExpenseReport, Notification
    pg, tmp = django_app["pg"], tmp_path_factory.mktemp("staging")
    from tests.services import Postgres
    staging_pg = Postgres(tls=True).start()          # staging's own server; the app tests' one is production
    SERVERS.update(production={"port": pg.port}, staging={"port": staging_pg.port,
                                                          "sslrootcert": str(staging_pg.ca_file)})
    pgpass = tmp / "pgpass"            # libpq's password file, as the README asks of operators
    pgpass.write_text("".join(f"127.0.0.1:{p.port}:*:postgres:{p.password}\n" for p in (pg, staging_pg)))
    pgpass.chmod(0o600)
    env = pytest.MonkeyPatch()         # module-wide: libpq (psycopg, pg_dump, pg_restore) and boto3 read these
    for name, value in {"PGHOST": "127.0.0.1", "PGPORT": str(pg.port), "PGUSER": "postgres",
                        "PGPASSFILE": str(pgpass), "PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(pg.ca_file)}.items():
        env.setenv(name, value)
    env.setenv("AWS_ACCESS_KEY_ID", "testing")
    env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    company = Company.objects.create(name="Prod Staging Oy")
    people = []
    for i, (first, last) in enumerate([("Aino", "Virtanen"), ("Bengt", "Lindqvist"), ("Carla", "Jansen")]):
        user = User.objects.create_user(f"{first.lower()}.{last.lower()}{i}", f"{first}.{last}@prod-mail.fi",
                                        secrets.token_urlsafe(16), first_name=first, last_name=last)
        people.append(Employee.objects.create(user=user, company=company, full_name=f"{first} {last}",
                                              bank_account=IBAN if i < 2 else "DE89370400440532013000",
                                              national_id=HETU if i == 0 else f"X{9000000 + i}",
                                              entra_tid="3f2504e0-4f89-11d3-9a0c-0305e82c3301",
                                              entra_oid=f"9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6{i}"))
        TOTPDevice.objects.create(user=user, name=f"{first}'s phone", confirmed=True)
    aino = people[0]
    for n, sha in enumerate(["a" * 64, "a" * 64, "b" * 64]):     # the first two: one receipt claimed twice
        ExpenseReport.objects.create(employee=aino, amount="42.00", spent_on="2026-11-02", category="gym",
                                     receipt_key=f"receipts/{company.pk}/{n:032x}", receipt_type="image/jpeg",
                                     receipt_sha256=sha, ai_scan={"vendor": "Aino Virtanen Hieronta", "total": "42.00"},
                                     ai_reasoning="A gym receipt from Aino Virtanen Hieronta.")
    Notification.objects.create(employee=aino, message="Aino, your claim was declined")
    DataSubjectRequest.objects.create(employee=aino, kind="access", details="Please send all data on Aino Virtanen")
    AuditEvent.objects.create(action="login.failed", detail={"method": "password", "username": aino.user.username})
    blocker = "the claim (42.00 EUR) is not the receipt's total (40.00 EUR)"    # the audit trail repeats it
    ExpenseReport.objects.filter(employee=aino).update(review_reason=blocker)
    AuditEvent.objects.create(action="expense.ai_evaluated", detail={"decision": "approve", "blockers": [blocker]})
    from axes.models import AccessAttempt
    AccessAttempt.objects.create(username=aino.user.username, ip_address="203.0.113.77", user_agent="Mozilla/5.0 Aino",
                                 http_accept="*/*", path_info="/login/", get_data="", post_data="username=aino",
                                 failures_since_start=1)

    from trustops.backups import pgbackup
    from trustops.backups.config import BackupConfig
    s3 = boto3.client("s3", region_name="eu-central-1", endpoint_url=moto_server)
    for bucket in (BACKUPS, RECEIPTS):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    bcfg = BackupConfig(databases=["benefits"], bucket=BACKUPS, prefix="postgres/db", region="eu-central-1",
                        endpoint_url=moto_server)
    (tmp / "backup.json").write_text(bcfg.model_dump_json())
    pgbackup.backup_one(bcfg, s3, "benefits")
    from benefits.crypto import FileKeyProvider
    FileKeyProvider(tmp / "staging-keys").add_version("s1")
    with psycopg.connect(**SERVERS["staging"], dbname="postgres", autocommit=True) as c:
        c.execute(f"create role {STAGING_OWNER} login")
    dsn = "host=127.0.0.1 user=postgres dbname=postgres port={}"
    cfg = {"backup_config": str(tmp / "backup.json"), "scratch_dsn": dsn.format(pg.port),
           "staging_dsn": dsn.format(staging_pg.port) + f" sslrootcert={staging_pg.ca_file}",
           "staging_database": STAGING_DB, "staging_owner": STAGING_OWNER,
           "source_keys": {"dir": str(django_app["keys"])}, "target_keys": {"dir": str(tmp / "staging-keys")},
           "receipts_bucket": RECEIPTS, "receipts_endpoint_url": moto_server}
    (tmp / "staging.json").write_text(json.dumps(cfg))
    yield {"cfg": staging.StagingConfig.model_validate(cfg), "file": tmp / "staging.json", "tmp": tmp, "s3": s3,
           "people": people, "company": company, "bcfg": bcfg, "moto": moto_server}
    env.undo()
    staging_pg.stop()


def quiet() -> Progress:
    return Progress(quiet=True)


def on_staging(dbname: str = STAGING_DB, **kw):
    return psycopg.connect(**SERVERS["staging"], dbname=dbname, options="-c search_path=benefits", **kw)


def staging_rows(sql: str, params=()) -> list[tuple]:
    with on_staging() as c:
        return c.execute(sql, params).fetchall()


def databases(prefix: str, server: str = "production") -> list[str]:
    with psycopg.connect(**SERVERS[server], dbname="postgres") as c:
        return [r[0] for r in c.execute("select datname from pg_database where datname like %s", [prefix + "%"])]


@pytest.fixture(scope="module")
def built(world):
    """One successful build; the tests after it check what it made and that failures leave it alone."""
    return staging.build(world["cfg"], quiet())


def test_every_ropa_field_has_an_anonymisation_rule_the_app_can_apply(django_app):
    rules = anonymise.load_rules()
    ropa = yaml.safe_load((APP / "ropa.yaml").read_text())
    assert set(rules) == {f for a in ropa["activities"] for f in a["fields"]}
    assert staging.resolve(rules), "no column is anonymised at all"


@pytest.mark.parametrize("change, says", [
    (lambda r: r["anonymise"].pop("core.Employee.full_name"),
     "core.Employee.full_name is personal (activity 'Wellness benefit administration') but has no anonymisation rule"),
    (lambda r: r["anonymise"].update({"core.Employee.full_name": "scramble"}),
     "core.Employee.full_name: unknown anonymisation rule 'scramble'"),
    (lambda r: r["anonymise"].update({"core.Employee.nickname": "first_name"}),
     "`anonymise` has a rule for core.Employee.nickname, which no activity lists"),
    (lambda r: r["anonymise"].pop("anything", None) or r.pop("anonymise"), "no `anonymise:` mapping"),
])
def test_a_ropa_field_without_a_usable_rule_stops_the_build(world, tmp_path, change, says):
    ropa = yaml.safe_load((APP / "ropa.yaml").read_text())
    change(ropa)
    path = tmp_path / "ropa.yaml"
    path.write_text(yaml.safe_dump(ropa))
    with pytest.raises(anonymise.RuleError) as exc:
        staging.build(world["cfg"], quiet(), ropa=path)
    assert says in str(exc.value) and "\n" not in str(exc.value)


def test_a_ropa_field_the_app_does_not_have_stops_the_build(world, tmp_path):
    ropa = yaml.safe_load((APP / "ropa.yaml").read_text())
    ropa["activities"][0]["fields"].append("core.Employee.nickname")
    ropa["anonymise"]["core.Employee.nickname"] = "first_name"
    ropa["activities"][0]["fields"].append("core.Pet.name")
    ropa["anonymise"]["core.Pet.name"] = "first_name"
    path = tmp_path / "ropa.yaml"
    path.write_text(yaml.safe_dump(ropa))
    with pytest.raises(anonymise.RuleError, match="core.Employee.nickname: core.Employee has no field nickname"):
        staging.build(world["cfg"], quiet(), ropa=path)
    ropa["anonymise"]["core.Employee.full_name"] = "keep"
    path.write_text(yaml.safe_dump(ropa))
    with pytest.raises(anonymise.RuleError, match="core.Employee.full_name is text and kept: say why"):
        staging.resolve(anonymise.load_rules(path))


def test_the_build_replaces_every_personal_value_and_keeps_relations(world, built):
    from core.models import Employee
    assert built["originals"] > 30 and built["receipts"] >= 3       # with other tests' receipts in a whole run
    prod = {e.user_id: e for e in Employee.objects.filter(company=world["company"])}
    rows = staging_rows("select e.user_id, e.full_name, e.bank_account, e.national_id, e.entra_tid, u.username, "
                        "u.email, u.first_name, u.password from core_employee e join auth_user u on u.id = e.user_id "
                        "where e.user_id = any(%s) order by e.user_id", [list(prod)])
    from benefits.crypto import FieldCipher, FileKeyProvider
    target = FieldCipher(FileKeyProvider(world["tmp"] / "staging-keys"))
    ibans = {}
    for user_id, name, bank, nid, tid, username, email, first, password in rows:
        p = prod[user_id]
        assert name != p.full_name and username != p.user.username and first != p.user.first_name
        assert email.endswith(("@example.com", "@example.org", "@example.net")), email
        assert password.startswith("!")                       # no production password, hashed or not
        assert bank.startswith("gcm2:s1:")                    # sealed under staging's key
        plain = target.decrypt(bank, f"core.Employee.bank_account:{user_id}")
        assert plain != p.bank_account and stdnum_iban.is_valid(plain) and plain[:2] == p.bank_account[:2]
        ibans[user_id] = plain
        nid_plain = target.decrypt(nid, f"core.Employee.national_id:{user_id}")
        if p.national_id == HETU:
            assert hetu.is_valid(nid_plain) and nid_plain != HETU
        else:
            assert len(nid_plain) == len(p.national_id) and nid_plain[0].isalpha() and nid_plain[1:].isdigit()
        assert tid != p.entra_tid
    a, b, c = sorted(prod)
    assert ibans[a] == ibans[b] != ibans[c]                   # a duplicate stays a duplicate
    assert len({r[4] for r in rows}) == 1                     # one tenant stays one tenant
    # the username in the sign-in records and the audit trail follows the user's new one
    aino_username = next(r[5] for r in rows if r[0] == a)
    assert staging_rows("select username from axes_accessattempt where username = %s", [aino_username])
    assert staging_rows("select 1 from core_auditevent where detail->>'username' = %s", [aino_username])
    assert staging_rows("select count(*) from django_session") == [(0,)]
    (detail,) = staging_rows("select detail from core_auditevent where action = 'expense.ai_evaluated' "
                             "and detail->>'decision' = 'approve' and jsonb_array_length(detail->'blockers') = 1")[0]
    assert "42.00" not in detail["blockers"][0]              # the list under a named key is faked, the rest kept


def test_receipts_are_placeholders_in_staging_bucket_and_duplicates_survive(world, built):
    rows = staging_rows("select receipt_key, receipt_type, receipt_sha256, ai_scan from core_expensereport "
                        "where employee_id = %s order by id", [world["people"][0].pk])
    assert [r[1] for r in rows] == ["image/png"] * 3
    assert rows[0][2] == rows[1][2] != rows[2][2]             # the receipt claimed twice is still one receipt
    import hashlib
    for key, _, sha, scan in rows:
        assert key.startswith(f"receipts/{world['company'].pk}/")
        obj = world["s3"].get_object(Bucket=RECEIPTS, Key=key)
        body = obj["Body"].read()
        assert body.startswith(b"\x89PNG\r\n\x1a\n") and hashlib.sha256(body).hexdigest() == sha
        assert obj["ServerSideEncryption"] == "AES256"
        assert scan["total"] == "42.00" and "Virtanen" not in scan["vendor"]


def test_the_check_finds_no_production_value_in_staging(world, built, capsys):
    problems, searched, cells = staging.check(world["cfg"], quiet())
    assert problems == [] and searched == built["originals"] and cells > 100
    from trustops import cli
    assert cli.main(["staging", "check", "--config", str(world["file"])]) == 0
    assert "staging check: 0 production values found" in capsys.readouterr().out


def _fingerprint() -> list[tuple]:
    return staging_rows("select id, full_name, bank_account from core_employee order by id")


def test_a_value_left_unanonymised_fails_the_run_and_staging_is_unchanged(world, built, monkeypatch):
    before = _fingerprint()
    replace = staging.replace      # a defect that skips one field: the search must catch what it left
    monkeypatch.setattr(staging, "replace", lambda conn, columns, *rest: replace(
        conn, [c for c in columns if c.rule.ref != "core.Employee.full_name"], *rest))
    with pytest.raises(staging.StagingError, match=r"production values remain; first: benefits\.core_employee\."
                                                   r"full_name \(row \d+\) holds a production value of "
                                                   r"core\.Employee\.full_name \(nothing was loaded"):
        staging.build(world["cfg"], quiet())
    assert _fingerprint() == before and databases(staging.SCRATCH_PREFIX) == []


def test_the_check_fails_when_staging_holds_a_production_value(world, built):
    aino = world["people"][0]
    sql = "update core_datasubjectrequest set resolution = %s where employee_id = %s"
    with on_staging() as c:
        c.execute(sql, [f"sent to {aino.user.email}", aino.pk])
    try:
        problems, _, _ = staging.check(world["cfg"], quiet())
    finally:       # the other tests find staging as the build left it, in any order
        with on_staging() as c:
            c.execute(sql, ["", aino.pk])
    (only,) = problems
    assert re.fullmatch(r"benefits\.core_datasubjectrequest\.resolution \(row \d+\) holds a production value of "
                        r"auth\.User\.email", only), only
    assert aino.user.email not in " ".join(problems)         # the report never repeats the value


def test_a_corrupt_or_truncated_backup_is_refused_and_staging_is_unchanged(world, built):
    import datetime as dt
    s3, bcfg = world["s3"], world["bcfg"]
    from trustops.backups import pgbackup
    good = pgbackup.backups(bcfg, s3, "benefits")[0]["key"]
    body = s3.get_object(Bucket=BACKUPS, Key=good)["Body"].read()
    manifest = s3.get_object(Bucket=BACKUPS, Key=good + ".manifest.json")["Body"].read()
    before = _fingerprint()
    for n, bad in enumerate([body[: len(body) // 2], body[:100] + b"\x00" * 64 + body[164:]]):
        key = pgbackup.key_for(bcfg, "benefits", dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=n + 1))
        s3.put_object(Bucket=BACKUPS, Key=key, Body=bad)
        s3.put_object(Bucket=BACKUPS, Key=key + ".manifest.json", Body=manifest)
        try:
            with pytest.raises(staging.StagingError, match=f"backup {key} cannot be used: checksum mismatch"):
                staging.build(world["cfg"], quiet())
        finally:
            s3.delete_object(Bucket=BACKUPS, Key=key)
            s3.delete_object(Bucket=BACKUPS, Key=key + ".manifest.json")
    assert _fingerprint() == before and databases(staging.SCRATCH_PREFIX) == []


def test_bad_config_missing_keys_and_unreachable_services_are_one_line(world, built, tmp_path, capsys):
    from trustops import cli
    cfg = json.loads(world["file"].read_text())
    cases = [({"target_keys": {"dir": str(tmp_path / "none")}}, "staging (target_keys) keys: no current key version"),
             ({"source_keys": {"dir": str(tmp_path / "none")}}, "production (source_keys) keys: no current key"),
             ({"target_keys": cfg["source_keys"]}, "source_keys and target_keys are the same"),
             ({"staging_dsn": "host=x password=hunter2"}, "staging_dsn: Value error, holds a password"),
             ({"receipts_bucket": ""}, "receipts_bucket: String should have at least 1 character"),
             ({"staging_dsn": f"host=127.0.0.1 port={free_port()} user=postgres dbname=postgres"},
              "cannot connect to the server"),
             ({"receipts_bucket": "no-such-bucket"}, "staging's receipts bucket no-such-bucket cannot be written"),
             ({"staging_dsn": cfg["scratch_dsn"]}, "scratch_dsn and staging_dsn reach the same Postgres")]
    before = _fingerprint()
    for change, says in cases:
        path = tmp_path / "staging.json"
        path.write_text(json.dumps({**cfg, **change}))
        assert cli.main(["staging", "build", "--config", str(path)]) == 1
        err = capsys.readouterr().err
        (line,) = [l for l in err.splitlines() if not l.startswith("[")]     # progress lines start with [time]
        assert line.startswith("trustops staging: error: ") and says in line, err
    assert databases(staging.SCRATCH_PREFIX) == [] and _fingerprint() == before


def test_one_build_at_a_time(world, built):
    before = _fingerprint()
    with on_staging("postgres", autocommit=True) as other:
        other.execute("select pg_advisory_lock(%s)", [staging.lock_key(STAGING_DB)])
        with pytest.raises(staging.StagingError, match=f"another staging build of {STAGING_DB} is running"):
            staging.build(world["cfg"], quiet())
    assert _fingerprint() == before and databases(staging.SCRATCH_PREFIX) == []


def test_a_run_killed_midway_leaves_staging_as_it_was_and_the_next_run_cleans_up(world, built):
    before = _fingerprint()
    for moment in ("anonymised core_employee", "loading into"):
        proc = subprocess.Popen([sys.executable, "-m", "trustops.cli", "staging", "build", "--config",
                                 str(world["file"])], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ))
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if moment in line:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(60)
        assert proc.returncode == -signal.SIGKILL, "".join(seen)
        assert _fingerprint() == before
    left = databases(staging.SCRATCH_PREFIX) + databases(STAGING_DB + staging.BUILD_SUFFIX, "staging")
    assert left, "the kills left nothing behind: they came too late to test anything"
    proc = subprocess.run([sys.executable, "-m", "trustops.cli", "staging", "build", "--config", str(world["file"])],
                          cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert all(f"removing {name}" in proc.stderr for name in left)
    assert databases(staging.SCRATCH_PREFIX) == [] and databases(STAGING_DB + "__", "staging") == []
    assert _fingerprint() != before                          # a new run: new fakes, as the run key is new


def test_dev_gets_generated_seed_data_only(world, capsys):
    """`trustops seed` fills an empty dev database through the app's models: valid, generated, and
    holding none of production's values; it refuses a database that already has people in it."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections
    from stdnum.fi import hetu as fi
    from stdnum.nl import bsn
    from stdnum.se import personnummer

    from benefits.crypto import FieldCipher, FileKeyProvider
    from trustops import cli, seed
    with psycopg.connect(dbname="postgres", autocommit=True) as c:
        c.execute("create database dev_seed owner benefits_app")
    with psycopg.connect(dbname="dev_seed", autocommit=True) as c:
        c.execute("create schema benefits authorization benefits_app")
    world["s3"].create_bucket(Bucket="dev-receipts", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    conn = connections["default"]
    saved = conn.settings_dict["NAME"], settings.RECEIPTS_BUCKET, settings.S3_ENDPOINT_URL
    conn.close()
    conn.settings_dict["NAME"], settings.RECEIPTS_BUCKET, settings.S3_ENDPOINT_URL = "dev_seed", "dev-receipts", \
        world["moto"]
    try:
        call_command("migrate", verbosity=0)
        made = seed.seed(companies=2, employees=3, expenses=2, progress=quiet())
        from core.models import Employee, ExpenseReport
        people = list(Employee.objects.select_related("user"))
        assert made == {"companies": 2, "employees": 6, "expenses": 8} and len(people) == 6
        for p in people:
            assert stdnum_iban.is_valid(p.bank_account)
            assert fi.is_valid(p.national_id) or personnummer.is_valid(p.national_id) or bsn.is_valid(p.national_id)
            assert not p.user.has_usable_password() and p.user.email.endswith((".com", ".org", ".net"))
        for r in ExpenseReport.objects.all():
            assert world["s3"].get_object(Bucket="dev-receipts", Key=r.receipt_key)["Body"].read()[:4] == b"\x89PNG"
        assert cli.main(["seed"]) == 1
        err = capsys.readouterr().err
        assert "already holds employees" in err and len(err.strip().splitlines()) == 1
    finally:
        conn.close()
        conn.settings_dict["NAME"], settings.RECEIPTS_BUCKET, settings.S3_ENDPOINT_URL = saved
    keys = FieldCipher(FileKeyProvider(settings.FIELD_KEYS["dir"]))
    columns = staging.resolve(anonymise.load_rules())
    with psycopg.connect(dbname="benefits", options="-c search_path=benefits") as prod:
        originals, _ = staging.collect(prod, columns, keys)
    # a given name or surname alone recurs in any generated data (Faker's Aino is production's Aino
    # by chance); every other production value must be absent
    for value, ref in list(originals.source.items()):
        if ref in ("auth.User.first_name", "auth.User.last_name"):
            del originals.source[value]
    with psycopg.connect(dbname="dev_seed", options="-c search_path=benefits") as dev:
        problems, cells = staging.search(dev, originals.matcher(), columns, keys)
    assert problems == [] and cells > 50
