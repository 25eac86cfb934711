"""`trustops staging build|check`: staging data made from production without personal data in it
(PROD-04). Dev gets generated data instead (trustops/seed.py), never a copy.

build  1. restore the newest complete production backup (trustops-pgbackup's, checksum checked
          against its manifest) into a scratch database, on a Postgres inside production (one that
          is also staging's server is refused); one build at a time per staging database;
       2. read every value the RoPA's anonymisation rules replace (decrypting the encrypted fields
          with production's keys), then replace them with fakes (trustops/anonymise.py) under a
          per-run key that is never stored; encrypted fields are sealed again under staging's
          keys; receipts become generated placeholder images in staging's bucket; sessions go;
       3. search the whole scratch database (staging's encrypted fields decrypted) for every
          original value: one found stops the run, naming the column and row, never the value;
       4. load it into a new database on staging's server and swap it in with one transaction of
          renames, so a run killed at any point leaves staging as it was (the next run removes
          what a killed one left).
check  the probe: staging's database holds none of the values of the newest production backup.

Connection strings carry no password (libpq's PGPASSFILE or ~/.pgpass, or PGPASSWORD).
"""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trustops.anonymise import JSON, RECEIPT, ROPA, Fakes, Matcher, Originals, Rule, RuleError, collect_json, \
    load_rules
from trustops.lab.system import Progress

APP = Path(__file__).resolve().parent.parent / "app"
SCRATCH_PREFIX = "trustops_scratch_"
BUILD_SUFFIX, OLD_SUFFIX = "__build_", "__old_"
# the `receipt` rule's columns (core.ExpenseReport's), replaced together by a placeholder image
RECEIPT_KEY, RECEIPT_TYPE, RECEIPT_SHA256 = "receipt_key", "receipt_type", "receipt_sha256"
EMPTIED = ("django_session",)     # not in the RoPA's models, yet it holds who is signed in: never copied
BATCH = 500
UPLOADS = 8                       # placeholder receipts put in parallel (one request each)

MAX_PROBLEMS = 20


class StagingError(RuntimeError):
    """The build or check cannot go on; one line naming what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Keys(_Strict):
    """Field keys: a key directory (benefits/crypto.py FileKeyProvider) or a Key Vault."""
    dir: Path | None = None
    vault_url: str | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.dir is None) == (self.vault_url is None):
            raise ValueError("name exactly one of dir, vault_url")
        return self


def _no_password(dsn: str) -> str:
    if re.search(r"(^|\s)password\s*=", dsn) or re.match(r"postgres(ql)?://[^/@]*:[^/@]*@", dsn):
        raise ValueError("holds a password: use PGPASSFILE or ~/.pgpass")
    return dsn


class StagingConfig(_Strict):
    backup_config: Path = Path("/etc/trustops/backup.json")   # production's backups (trustops-pgbackup's config)
    database: str = "benefits"          # whose backup
    app_schema: str = "benefits"        # the app's schema in it
    scratch_dsn: str = Field(min_length=1)      # an admin connection inside production: scratch databases hold its data
    staging_dsn: str = Field(min_length=1)      # an admin connection to staging's server
    staging_database: str = "benefits"
    staging_owner: str = "benefits_app"
    source_keys: Keys
    target_keys: Keys
    receipts_bucket: str = Field(min_length=1)  # staging's
    receipts_endpoint_url: str | None = None
    receipts_region: str = "eu-central-1"

    _dsns = field_validator("scratch_dsn", "staging_dsn")(lambda cls, v: _no_password(v))

    @model_validator(mode="after")
    def _checks(self):
        for name in (self.database, self.staging_database, self.staging_owner, self.app_schema):
            if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", name):
                raise ValueError(f"{name!r} is not a plain lower-case identifier")
        if self.source_keys == self.target_keys:
            raise ValueError("source_keys and target_keys are the same: staging needs its own keys")
        return self


def load_config(path: Path) -> StagingConfig:
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as exc:
        raise StagingError(f"cannot read config {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise StagingError(f"config {path}: not JSON ({exc})") from None
    try:
        return StagingConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"])) or "(top level)"
        raise StagingError(f"config {path}: {where}: {err['msg']}") from None


# --- the app's models, for tables and columns ----------------------------------------------------

def app_models():
    """Django's app registry for the benefits app (metadata only: nothing connects through it)."""
    if str(APP) not in sys.path:
        sys.path.insert(0, str(APP))
    import django
    from django.apps import apps
    if not apps.ready:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benefits.settings")
        for name in ("BENEFITS_SECRET_KEY", "BENEFITS_DB_HOST", "BENEFITS_DB_PASSWORD"):
            os.environ.setdefault(name, "metadata-only")   # settings demand them; no connection is made
        django.setup()
    return apps


@dataclass(frozen=True)
class Column:
    rule: Rule
    table: str
    column: str
    pk: str
    max_length: int | None
    encrypted: bool = False
    context: str = ""           # core.fields: the associated data is f"{context}:{row key}"
    row_key: str = ""           # the column holding the row key


TEXT_TYPES = ("CharField", "TextField", "JSONField", "EmailField", "GenericIPAddressField", "SlugField")


def resolve(rules: dict[str, Rule]) -> list[Column]:
    """The columns the rules replace; a rule naming a model or field the app lacks is an error,
    and so is a text field kept without saying why."""
    from django.core.exceptions import FieldDoesNotExist

    apps = app_models()
    from core.fields import EncryptedTextField
    out = []
    for ref, rule in rules.items():
        try:
            model = apps.get_model(rule.label)
        except (LookupError, ValueError):
            raise RuleError(f"{ROPA}: {ref}: the app has no model {rule.label}") from None
        try:
            f = model._meta.get_field(rule.name)
        except FieldDoesNotExist:
            raise RuleError(f"{ROPA}: {ref}: {rule.label} has no field {rule.name}") from None
        if rule.generator is None:
            if not rule.reason and type(f).__name__ in TEXT_TYPES + ("EncryptedTextField",):
                raise RuleError(f"{ROPA}: {ref} is text and kept: say why ({{keep: <why>}}) or give it a generator")
            continue
        encrypted = isinstance(f, EncryptedTextField)
        row_attr = getattr(model, "ENCRYPTION_ROW_KEY", "pk")
        row_key = model._meta.pk.column if row_attr == "pk" else \
            next(x.column for x in model._meta.concrete_fields if x.attname == row_attr)
        out.append(Column(rule, model._meta.db_table, f.column, model._meta.pk.column, getattr(f, "max_length", None),
                          encrypted, getattr(f, "context", ""), row_key))
    return out


def cipher(keys: Keys, which: str):
    """A FieldCipher over the keys, checked now: a missing key is one line before any work."""
    if str(APP) not in sys.path:
        sys.path.insert(0, str(APP))
    from benefits.crypto import FieldCipher, FileKeyProvider, KeyError_, KeyVaultKeyProvider

    provider = _Remembering(FileKeyProvider(keys.dir) if keys.dir else KeyVaultKeyProvider(keys.vault_url))
    try:
        provider.key(provider.current_version())
    except KeyError_ as exc:
        raise StagingError(f"{which} keys: {exc}") from None
    return FieldCipher(provider)


class _Remembering:
    """A key provider read once per run (the file provider reads its files on every value)."""

    def __init__(self, provider) -> None:
        self.provider, self._current, self._keys = provider, None, {}

    def current_version(self) -> str:
        if self._current is None:
            self._current = self.provider.current_version()
        return self._current

    def key(self, version: str) -> bytes:
        if version not in self._keys:
            self._keys[version] = self.provider.key(version)
        return self._keys[version]


def ciphers(cfg: StagingConfig) -> tuple:
    """(production's, staging's) field ciphers, both checked before any work."""
    return cipher(cfg.source_keys, "production (source_keys)"), cipher(cfg.target_keys, "staging (target_keys)")


# --- databases -----------------------------------------------------------------------------------

def _connect(dsn: str, dbname: str | None = None, schema: str | None = None, autocommit: bool = False):
    import psycopg
    kw = {"dbname": dbname} if dbname else {}
    if schema:
        kw["options"] = f"-c search_path={schema}"
    try:
        return psycopg.connect(dsn, autocommit=autocommit, **kw)
    except psycopg.OperationalError as exc:
        raise StagingError(f"cannot connect to {dbname or 'the server'} ({' '.join(str(exc).split())[:200]})") \
            from None


def _dsn_for(dsn: str, dbname: str) -> str:
    import psycopg.conninfo
    return psycopg.conninfo.make_conninfo(dsn, dbname=dbname)


def lock_key(database: str) -> int:
    """The advisory lock one build of this staging database holds on staging's server."""
    return int.from_bytes(hashlib.sha256(f"trustops staging build {database}".encode()).digest()[:7], "big")


def _drop(admin, name: str) -> None:
    admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def _drop_leftovers(admin, pattern: str, progress: Progress) -> None:
    rows = admin.execute("select datname from pg_database where datname like %s", [pattern]).fetchall()
    for (name,) in rows:
        progress.step(f"removing {name}, left by a run that did not finish")
        _drop(admin, name)


def _stamp() -> str:
    return f"{dt.datetime.now(dt.timezone.utc):%Y%m%d%H%M%S}_{secrets.token_hex(3)}"


def restore_latest(cfg: StagingConfig, admin, dbname: str, progress: Progress) -> str:
    """The newest complete production backup, restored into `dbname` (made here); its key."""
    from trustops.backups import config as backup_config
    from trustops.backups import pgbackup

    try:
        bcfg = backup_config.load(cfg.backup_config)
    except backup_config.ConfigError as exc:
        raise StagingError(str(exc)) from None
    s3 = pgbackup.s3_client(bcfg)
    complete = [b for b in pgbackup.backups(bcfg, s3, cfg.database) if b["complete"]]
    if not complete:
        raise StagingError(f"no complete backup of {cfg.database} under s3://{bcfg.bucket}/{bcfg.prefix}")
    key = complete[0]["key"]
    manifest = json.loads(s3.get_object(Bucket=bcfg.bucket, Key=key + ".manifest.json")["Body"].read())
    progress.step(f"restoring s3://{bcfg.bucket}/{key} ({complete[0]['size']} bytes, "
                  f"{complete[0]['when']:%Y-%m-%d %H:%M}Z) into scratch database {dbname}")
    admin.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    admin.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(dbname)))   # production's data
    problems = pgbackup.restore(s3, bcfg.bucket, key, manifest, _dsn_for(cfg.scratch_dsn, dbname))
    if problems:
        raise StagingError(f"backup {key} cannot be used: {problems[0]}")
    return key


# --- reading originals, replacing them -----------------------------------------------------------

def _by_table(columns: list[Column]) -> dict[str, list[Column]]:
    out: dict[str, list[Column]] = {}
    for c in columns:
        out.setdefault(c.table, []).append(c)
    return out


def _rows(conn, table: str, cols: list[Column]):
    names = {c.pk for c in cols} | {c.row_key for c in cols if c.encrypted} | {c.column for c in cols}
    order = sorted(names)
    with conn.cursor(name=f"read_{table}") as cur:
        cur.itersize = BATCH
        cur.execute(sql.SQL("select {} from {} order by {}").format(
            sql.SQL(", ").join(map(sql.Identifier, order)), sql.Identifier(table), sql.Identifier(cols[0].pk)))
        for row in cur:
            yield dict(zip(order, row))


def _decrypt(c: Column, row: dict, source) -> str | None:
    try:
        return source.decrypt(row[c.column], f"{c.context}:{row[c.row_key]}")
    except Exception:  # noqa: BLE001 - a value sealed under a key that is gone: it is replaced all the same
        return None


def collect(conn, columns: list[Column], source) -> tuple[Originals, int]:
    """Every value the rules replace, as production holds it (decrypted), plus the ciphertexts."""
    originals, undecryptable = Originals(), 0
    for table, cols in _by_table(columns).items():
        for row in _rows(conn, table, cols):
            for c in cols:
                value = row[c.column]
                if value is None or value == "":
                    continue
                if c.rule.generator == RECEIPT:
                    if c.column != RECEIPT_TYPE:      # three types: nothing about anyone
                        originals.add(value, c.rule.ref)
                elif c.rule.generator == JSON:
                    collect_json(c.rule, value, originals)
                elif c.encrypted:
                    originals.add(value, c.rule.ref)
                    plain = _decrypt(c, row, source)
                    undecryptable += plain is None
                    originals.add(plain, c.rule.ref)
                else:
                    originals.add(str(value), c.rule.ref)
    return originals, undecryptable


def _receipts(cfg: StagingConfig):
    import boto3
    return boto3.client("s3", region_name=cfg.receipts_region, endpoint_url=cfg.receipts_endpoint_url or None)


def replace(conn, columns: list[Column], fakes: Fakes, source, target, put_receipt, progress: Progress) -> None:
    from psycopg.types.json import Jsonb

    for table, cols in _by_table(columns).items():
        updates = []
        for row in _rows(conn, table, cols):
            new = {}
            if any(c.rule.generator == RECEIPT for c in cols) and row.get(RECEIPT_KEY):
                image = fakes.placeholder(row.get(RECEIPT_SHA256) or row[RECEIPT_KEY])   # one image per receipt
                folder = row[RECEIPT_KEY].rpartition("/")[0]                              # receipts/<company>
                key = f"{folder}/{fakes.digest('receipt-key', row[RECEIPT_KEY]).hex()[:32]}"
                put_receipt(key, image)
                new.update({RECEIPT_KEY: key, RECEIPT_TYPE: "image/png",
                            RECEIPT_SHA256: hashlib.sha256(image).hexdigest()})
            for c in cols:
                value = row[c.column]
                if c.rule.generator == RECEIPT or value is None or value == "":
                    continue
                if c.rule.generator == JSON:
                    new[c.column] = Jsonb(fakes.json(c.rule, value))
                elif c.encrypted:
                    plain = _decrypt(c, row, source)
                    fake = fakes.fake(c.rule.generator, plain if plain is not None else value)
                    new[c.column] = target.encrypt(fake, f"{c.context}:{row[c.row_key]}")
                else:
                    new[c.column] = fakes.fake(c.rule.generator, str(value), c.max_length)
            if new:
                updates.append((new, row[cols[0].pk]))
        for names in {tuple(sorted(n)) for n, _ in updates}:
            batch = [[n[k] for k in names] + [pk] for n, pk in updates if tuple(sorted(n)) == names]
            with conn.cursor() as cur:
                assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in names)
                cur.executemany(sql.SQL("update {} set {} where {} = %s").format(
                    sql.Identifier(table), assignments, sql.Identifier(cols[0].pk)), batch)
        progress.step(f"anonymised {table}: {len(updates)} rows ({', '.join(c.column for c in cols)})")
    for table in EMPTIED:
        if conn.execute("select to_regclass(%s)", [table]).fetchone()[0]:
            conn.execute(sql.SQL("truncate {}").format(sql.Identifier(table)))


def _cell(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).decode("latin-1")
    return str(value)


def search(conn, matcher: Matcher, columns: list[Column], target) -> tuple[list[str], int]:
    """Where an original value is found: every column of every table in every schema but Postgres'
    own, and staging's encrypted fields decrypted. Names column and row, never the value."""
    problems: list[str] = []
    encrypted = {(c.table, c.column): c for c in columns if c.encrypted}
    tables = conn.execute("""select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
                             where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema')
                             and n.nspname not like 'pg_toast%' order by 1, 2""").fetchall()
    cells = 0
    for schema, table in tables:
        with conn.cursor(name=f"search_{table}") as cur:
            cur.itersize = BATCH
            cur.execute(sql.SQL("select * from {}").format(sql.Identifier(schema, table)))
            for row in cur:
                names = [d.name for d in cur.description]
                record = dict(zip(names, row))
                for name, value in record.items():
                    if value is None:
                        continue
                    cells += 1
                    texts = [_cell(value)]
                    c = encrypted.get((table, name))
                    if c is not None and value:
                        plain = _decrypt(c, record, target)
                        texts.append(plain if plain is not None else "")
                    for text in texts:
                        ref = matcher.find(text)
                        if ref and len(problems) < MAX_PROBLEMS:
                            problems.append(f"{schema}.{table}.{name} (row {row[0]}) holds a production value of {ref}")
    return problems, cells


# --- the commands --------------------------------------------------------------------------------

def _same_server(a, b) -> bool:
    """Whether two admin connections reach one Postgres cluster: its system identifier where the role
    may read it, else the address."""
    import psycopg

    def ident(conn):
        try:
            return conn.execute("select system_identifier from pg_control_system()").fetchone()[0]
        except psycopg.Error:
            return None
    ids = ident(a), ident(b)
    if None not in ids:
        return ids[0] == ids[1]
    return (a.info.host, a.info.port) == (b.info.host, b.info.port)


def _owner_role_exists(admin, role: str) -> None:
    if not admin.execute("select 1 from pg_roles where rolname = %s", [role]).fetchone():
        raise StagingError(f"staging's server has no role {role} (staging_owner): converge staging first")


def build(cfg: StagingConfig, progress: Progress | None = None, ropa: Path = ROPA) -> dict:
    progress = progress or Progress()
    rules = load_rules(ropa)
    columns = resolve(rules)
    source, target = ciphers(cfg)
    s3 = _receipts(cfg)
    try:
        s3.head_bucket(Bucket=cfg.receipts_bucket)
    except Exception as exc:  # noqa: BLE001 - missing, forbidden or unreachable: the same one line
        raise StagingError(f"staging's receipts bucket {cfg.receipts_bucket} cannot be written: "
                           f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
    scratch = SCRATCH_PREFIX + _stamp()
    with _connect(cfg.scratch_dsn, autocommit=True) as admin, \
            _connect(cfg.staging_dsn, autocommit=True) as staging_admin:
        if _same_server(admin, staging_admin):
            raise StagingError("scratch_dsn and staging_dsn reach the same Postgres: production's data would sit on "
                               "staging's server during the run; make the scratch database inside production")
        _owner_role_exists(staging_admin, cfg.staging_owner)
        # one build at a time (the next would drop this one's databases as leftovers); held by this
        # session, so a killed run lets go of it
        if not staging_admin.execute("select pg_try_advisory_lock(%s)", [lock_key(cfg.staging_database)]).fetchone()[0]:
            raise StagingError(f"another staging build of {cfg.staging_database} is running on staging's server")
        _drop_leftovers(admin, SCRATCH_PREFIX + "%", progress)
        _drop_leftovers(staging_admin, cfg.staging_database + BUILD_SUFFIX + "%", progress)
        _drop_leftovers(staging_admin, cfg.staging_database + OLD_SUFFIX + "%", progress)
        try:
            key = restore_latest(cfg, admin, scratch, progress)
            with _connect(cfg.scratch_dsn, scratch, cfg.app_schema) as conn:
                progress.step(f"reading the production values of {len(columns)} personal fields")
                originals, undecryptable = collect(conn, columns, source)
                matcher = originals.matcher()
                fakes = Fakes(secrets.token_bytes(32), matcher)      # the run's key lives only in here
                placed: set[str] = set()
                with concurrent.futures.ThreadPoolExecutor(UPLOADS) as pool:
                    uploads = []

                    def put_receipt(k: str, image: bytes) -> None:
                        if k not in placed:
                            placed.add(k)
                            uploads.append(pool.submit(s3.put_object, Bucket=cfg.receipts_bucket, Key=k, Body=image,
                                                       ContentType="image/png", ServerSideEncryption="AES256"))
                    replace(conn, columns, fakes, source, target, put_receipt, progress)
                    for upload in uploads:
                        upload.result()                      # the first failed upload stops the run
                progress.step(f"placed {len(placed)} placeholder receipts in s3://{cfg.receipts_bucket}")
                conn.commit()
                del fakes                                            # and is forgotten with it
                progress.step(f"searching the result for {len(originals)} production values")
                problems, cells = search(conn, matcher, columns, target)
            if problems:
                raise StagingError(f"{len(problems)}{'+' if len(problems) == MAX_PROBLEMS else ''} production "
                                   f"values remain; first: {problems[0]} (nothing was loaded into staging)")
            progress.step(f"verified: none of {len(originals)} production values in {cells} cells")
            load(cfg, staging_admin, scratch, progress)
        finally:
            _drop(admin, scratch)
    return {"backup": key, "originals": len(originals), "cells": cells, "receipts": len(placed),
            "undecryptable": undecryptable, "database": cfg.staging_database}


def load(cfg: StagingConfig, admin, scratch: str, progress: Progress) -> None:
    """pg_dump of the scratch database into a new database, then one transaction renames it in."""
    new = cfg.staging_database + BUILD_SUFFIX + _stamp()
    old = cfg.staging_database + OLD_SUFFIX + _stamp()
    progress.step(f"loading into {new} on staging's server (owner {cfg.staging_owner})")
    admin.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(new), sql.Identifier(cfg.staging_owner)))
    dump = subprocess.Popen(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", "--dbname",
                             _dsn_for(cfg.scratch_dsn, scratch)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    restore = subprocess.run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
                              f"--role={cfg.staging_owner}", "--dbname", _dsn_for(cfg.staging_dsn, new)],
                             stdin=dump.stdout, capture_output=True, text=True)
    dump.stdout.close()
    dump_err = dump.stderr.read().decode(errors="replace")
    if dump.wait() != 0 or restore.returncode != 0:
        _drop(admin, new)
        raise StagingError(f"loading failed: {(dump_err or restore.stderr).strip()[-300:]} (staging is unchanged)")
    progress.step(f"swapping {new} in as {cfg.staging_database}")
    exists = admin.execute("select 1 from pg_database where datname = %s", [cfg.staging_database]).fetchone()
    rename = sql.SQL("alter database {} rename to {}")
    for attempt in range(5):
        admin.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s "
                      "and pid <> pg_backend_pid()", [cfg.staging_database])
        try:
            with admin.transaction():
                if exists:
                    admin.execute(rename.format(sql.Identifier(cfg.staging_database), sql.Identifier(old)))
                admin.execute(rename.format(sql.Identifier(new), sql.Identifier(cfg.staging_database)))
            break
        except Exception as exc:  # noqa: BLE001 - the app reconnected in between: try again
            if attempt == 4:
                raise StagingError(f"could not swap in the new staging database: {exc}") from None
    if exists:
        _drop(admin, old)


def check(cfg: StagingConfig, progress: Progress | None = None, ropa: Path = ROPA) -> tuple[list[str], int, int]:
    """The probe: (problems, production values searched, cells searched) of staging's database. A
    finding can also be a given name or surname that a fake shares with someone added to production
    since the build (the build's fakes avoid only the values production held then). Either way a
    rebuild replaces staging whole, verified against production as it is now."""
    progress = progress or Progress()
    columns = resolve(load_rules(ropa))
    source, target = ciphers(cfg)
    scratch = SCRATCH_PREFIX + _stamp()
    with _connect(cfg.scratch_dsn, autocommit=True) as admin:
        try:
            restore_latest(cfg, admin, scratch, progress)
            with _connect(cfg.scratch_dsn, scratch, cfg.app_schema) as conn:
                originals, _ = collect(conn, columns, source)
        finally:
            _drop(admin, scratch)
    progress.step(f"searching staging's {cfg.staging_database} for {len(originals)} production values")
    with _connect(cfg.staging_dsn, cfg.staging_database, cfg.app_schema) as conn:
        problems, cells = search(conn, originals.matcher(), columns, target)
    return problems, len(originals), cells
