"""Anonymisation rules and fakes for staging data (PROD-04). The rules live in the RoPA
(app/ropa.yaml, `anonymise:`): every field an activity lists has one, so a personal field cannot
reach staging without a decision (a field without a rule stops the build, as a model field without
a RoPA entry fails tests/app/test_security.py).

Fakes are realistic (Faker), deterministic within one run and different across runs: each comes
from HMAC(run key, generator, original), the run key is random and never stored, so the same
original gets the same fake wherever it appears (relations and duplicates survive) and nobody
can map a fake back. IBANs and national identifiers keep their format and check digits. A fake
never contains an original value (that is what the verification searches for).
"""
from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import string
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROPA = Path(__file__).resolve().parent.parent / "app" / "ropa.yaml"
RULES_KEY = "anonymise"
LOCALES = ("en_GB", "fi_FI", "sv_SE", "nl_NL", "de_DE")
# How an original is looked for: shorter than MIN_WORD, only as a whole value (a 2-letter name is in
# every text); a single word shorter than MIN_SUBSTRING, as a whole word (the names Essi, Atte and
# Repo are inside "session", "attempt" and "report"); anything else anywhere, case-insensitively.
MIN_WORD, MIN_SUBSTRING = 4, 8
ATTEMPTS = 50


class RuleError(ValueError):
    """The RoPA's anonymisation rules cannot be used; the message is one line naming the field."""


@dataclass(frozen=True)
class Rule:
    ref: str                                  # core.Employee.full_name
    generator: str | None                     # None: kept as it is
    reason: str = ""                          # why a text field is kept
    keys: dict[str, str] = field(default_factory=dict)   # json: key -> generator; other keys kept

    @property
    def label(self) -> str:
        return self.ref.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.ref.rpartition(".")[2]


# --- format-preserving identifiers ---------------------------------------------------------------

def _same_classes(rng, value: str) -> str:
    """Digits stay digits, letters letters (same case), everything else as it was."""
    out = []
    for c in value:
        if c.isdigit():
            out.append(rng.choice(string.digits))
        elif c.isalpha():
            out.append(rng.choice(string.ascii_uppercase if c.isupper() else string.ascii_lowercase))
        else:
            out.append(c)
    return "".join(out)


def fake_iban(rng, original: str) -> str:
    """Same country, length and character classes, valid check digits, and valid national check
    digits inside the BBAN where the country has them (Spain, France, Italy, Belgium, ...: python-
    stdnum's country checks, met by drawing again). Spacing is kept; an invalid original keeps its shape."""
    from stdnum import iban

    compact = original.replace(" ", "").upper()
    if not iban.is_valid(compact, check_country=False):
        return _same_classes(rng, original)
    strict = iban.is_valid(compact)
    for _ in range(ATTEMPTS * 100):     # a two-digit national check passes one draw in a hundred
        bban = _same_classes(rng, compact[4:])
        out = compact[:2] + iban.calc_check_digits(compact[:2] + "00" + bban) + bban
        if not strict or iban.is_valid(out):
            break
    if " " in original:   # printed form, groups of four
        out = " ".join(out[i:i + 4] for i in range(0, len(out), 4))
    return out


def luhn_digit(digits: str) -> str:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return str((10 - total % 10) % 10)


HETU_CHECK = string.digits + "".join(c for c in string.ascii_uppercase if c not in "GIOQZ")   # 31 check characters


def _date_ok(day: str, month: str, leap: bool = True) -> bool:
    """A day that month has: in a leap year (an original born on 29 February is one), or in a common
    year (leap=False: a fake's year is not checked against it, so it never gets 29 February)."""
    return 1 <= int(month) <= 12 and 1 <= int(day) <= calendar.monthrange(2000 if leap else 2001, int(month))[1]


def _hetu_ok(v: str, leap: bool = True) -> bool:
    m = re.fullmatch(r"(\d{6})[-+A-FU-Y](\d{3})([0-9A-Y])", v)
    return bool(m) and _date_ok(m[1][:2], m[1][2:4], leap) and 2 <= int(m[2]) <= 899 \
        and HETU_CHECK[int(m[1] + m[2]) % 31] == m[3]   # 900-999 are temporary numbers, not a person's


def _bsn_check(head: str) -> int:
    """The eleven-test's remainder of a BSN's first eight digits (the ninth must equal it)."""
    return sum(int(d) * w for d, w in zip(head, range(9, 1, -1))) % 11


def _bsn_ok(v: str, leap: bool = True) -> bool:   # noqa: ARG001 - no date in a BSN
    return bool(re.fullmatch(r"\d{9}", v)) and v != "000000000" and _bsn_check(v[:8]) == int(v[8])


def _personnummer_ok(v: str, leap: bool = True) -> bool:
    m = re.fullmatch(r"(\d{2})?(\d{6})([-+]?)(\d{4})", v)
    return bool(m) and _date_ok(m[2][4:6], m[2][2:4], leap) and luhn_digit(m[2] + m[4][:3]) == m[4][3]


def _fake_hetu(rng, original: str) -> str:
    head, sep = f"{rng.randint(1, 28):02d}{rng.randint(1, 12):02d}" + original[4:6], original[6]
    serial = f"{rng.randint(2, 899):03d}"
    return head + sep + serial + HETU_CHECK[int(head + serial) % 31]


def _fake_personnummer(rng, original: str) -> str:
    m = re.fullmatch(r"(\d{2})?(\d{2})\d{4}([-+]?)\d{4}", original)
    date = m[2] + f"{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    serial = f"{rng.randint(0, 999):03d}"
    return (m[1] or "") + date + m[3] + serial + luhn_digit(date + serial)


def _fake_bsn(rng, original: str) -> str:
    while True:
        head = "".join(rng.choice(string.digits) for _ in range(8))
        rest = _bsn_check(head)
        if rest < 10:
            return head + str(rest)


# (is it one, make one like it): the national identifiers a fake keeps valid, with their checksums
NATIONAL_IDS = ((_hetu_ok, _fake_hetu), (_personnummer_ok, _fake_personnummer), (_bsn_ok, _fake_bsn))


def fake_national_id(rng, original: str) -> str:
    """A Finnish HETU, Swedish personnummer or Dutch BSN stays one, with its checksum (and a plausible
    birth date); anything else keeps its shape (digits, letters, separators). A value that is two
    kinds at once (050307-6093 is a HETU and a personnummer; the column does not say which country)
    gets a fake that is both: made by either kind's generator until one passes every kind's check
    (one in about 31 tries). A field kept from the original (its year, or its day read the other
    way) can make 29 February in a year that has none: a fake never has that date."""
    kinds = [(ok, make) for ok, make in NATIONAL_IDS if ok(original)]
    if not kinds:
        return _same_classes(rng, original)
    for _ in range(100_000):
        for _, make in kinds:
            fake = make(rng, original)
            if all(ok(fake, leap=False) for ok, _ in kinds):
                return fake
    raise ValueError(f"no identifier valid as every kind {original!r} is")   # not reached for these three


# --- generators: (faker seeded for this value, original) -> fake ---------------------------------

def _text(fake, original: str) -> str:
    words = []
    while len(" ".join(words)) < max(len(original), 12):
        words.extend(fake.sentence().split())
    return " ".join(words)[:max(len(original), 12)].rstrip() or fake.word()


def _username(fake, original: str) -> str:
    if "@" in original:
        return fake.safe_email()
    return f"{fake.user_name()}{fake.random_int(10, 9999)}"


def _guid(fake, original: str) -> str:
    if re.fullmatch(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", original):
        value = fake.uuid4()
        return value.upper() if original.isupper() else value
    return _same_classes(fake.random, original)


def _secret(fake, original: str) -> str:
    return _same_classes(fake.random, original)


def _unusable_password(fake, original: str) -> str:
    """Django's unusable-password form: production passwords never reach staging, hashed or not."""
    return "!" + "".join(fake.random.choice(string.ascii_letters + string.digits) for _ in range(40))


GENERATORS = {
    "person_name": lambda f, o: f.name(),
    "first_name": lambda f, o: f.first_name(),
    "last_name": lambda f, o: f.last_name(),
    "email": lambda f, o: f.safe_email(),
    "username": _username,
    "iban": lambda f, o: fake_iban(f.random, o),
    "national_id": lambda f, o: fake_national_id(f.random, o),
    "guid": _guid,
    "text": _text,
    "company": lambda f, o: f.company(),
    "user_agent": lambda f, o: f.user_agent(),
    "ip": lambda f, o: f.ipv6() if ":" in o else f.ipv4_public(),
    "secret": _secret,
    "unusable_password": _unusable_password,
}
RECEIPT = "receipt"          # receipt_key, _type and _sha256 together: a generated placeholder image
JSON = "json"                # a JSON object: the keys named get their generator, the others are kept
KEEP = "keep"
KNOWN = sorted([*GENERATORS, RECEIPT, JSON, KEEP])


# --- the rules in the RoPA -----------------------------------------------------------------------

def _parse(ref: str, raw) -> Rule:
    if raw == KEEP:
        return Rule(ref, None)
    if isinstance(raw, str):
        if raw not in GENERATORS and raw != RECEIPT:
            raise RuleError(f"{ref}: unknown anonymisation rule {raw!r} (known: {', '.join(KNOWN)})")
        return Rule(ref, raw)
    if isinstance(raw, dict) and set(raw) == {KEEP} and isinstance(raw[KEEP], str) and raw[KEEP].strip():
        return Rule(ref, None, raw[KEEP].strip())
    if isinstance(raw, dict) and set(raw) == {JSON} and isinstance(raw[JSON], dict):
        bad = {k: g for k, g in raw[JSON].items() if g not in GENERATORS}
        if bad:
            k, g = next(iter(bad.items()))
            raise RuleError(f"{ref}: json key {k!r} has unknown rule {g!r} (known: {', '.join(sorted(GENERATORS))})")
        return Rule(ref, JSON, keys=dict(raw[JSON]))
    raise RuleError(f"{ref}: a rule is a generator name, `keep`, {{keep: <why>}} or {{json: {{key: generator}}}}; "
                    f"got {raw!r}")


def load_rules(path: Path = ROPA) -> dict[str, Rule]:
    """Every field the RoPA's activities list, with its rule. One-line errors: a personal field
    without a rule, a rule for a field no activity lists, an unknown rule."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise RuleError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise RuleError(f"{path}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("activities"), list):
        raise RuleError(f"{path}: expected `activities:` (a list)")
    personal = {f: a.get("name", "?") for a in doc["activities"] for f in (a.get("fields") or [])}
    raw = doc.get(RULES_KEY)
    if not isinstance(raw, dict):
        raise RuleError(f"{path}: no `{RULES_KEY}:` mapping (a rule for every field the activities list)")
    missing = [f for f in personal if f not in raw]
    if missing:
        raise RuleError(f"{path}: {missing[0]} is personal (activity {personal[missing[0]]!r}) but has no "
                        f"anonymisation rule under `{RULES_KEY}`" + (f" (and {len(missing) - 1} more)"
                                                                       if len(missing) > 1 else ""))
    extra = [f for f in raw if f not in personal]
    if extra:
        raise RuleError(f"{path}: `{RULES_KEY}` has a rule for {extra[0]}, which no activity lists")
    try:
        return {ref: _parse(ref, raw[ref]) for ref in personal}
    except RuleError as exc:
        raise RuleError(f"{path}: {exc}") from None


# --- finding originals ---------------------------------------------------------------------------

def _trie_pattern(words: set[str]) -> str:
    """One regex for many literals, shaped as a trie (Python's re tries alternatives in order)."""
    trie: dict = {}
    for w in words:
        node = trie
        for c in w:
            node = node.setdefault(c, {})
        node[""] = {}

    def walk(node: dict) -> str:
        ends = "" in node
        alts = [re.escape(c) + walk(child) for c, child in sorted(node.items()) if c]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if ends else body
    return walk(trie)


class Originals:
    """The production values that must not appear in staging: where each came from, never printed."""

    def __init__(self) -> None:
        self.source: dict[str, str] = {}       # casefolded value -> the RoPA field it came from

    def add(self, value, ref: str) -> None:
        if isinstance(value, str) and value.strip():
            self.source.setdefault(value.casefold(), ref)

    def __len__(self) -> int:
        return len(self.source)

    def matcher(self) -> "Matcher":
        return Matcher(self.source)


class Matcher:
    def __init__(self, source: dict[str, str]) -> None:
        self.source = source
        self.whole = {v for v in source if len(v) < MIN_WORD}
        words = {v for v in source if MIN_WORD <= len(v) < MIN_SUBSTRING and re.fullmatch(r"\w+", v)}
        anywhere = set(source) - self.whole - words
        self.regexes = ([re.compile(_trie_pattern(anywhere))] if anywhere else []) + \
            ([re.compile(r"(?<!\w)" + _trie_pattern(words) + r"(?!\w)")] if words else [])

    def find(self, text: str) -> str | None:
        """The RoPA field whose original `text` holds (see MIN_WORD), or None."""
        folded = text.casefold()
        if folded in self.whole:
            return self.source[folded]
        for regex in self.regexes:
            m = regex.search(folded)
            if m:
                return self.source[m.group(0)]
        return None


# --- the faker -----------------------------------------------------------------------------------

class Fakes:
    """Deterministic fakes for one run. `key` is the run's random key; drop the object to forget it."""

    def __init__(self, key: bytes, avoid: Matcher | None = None) -> None:
        from faker import Faker

        self._key = key
        self._fakers = [Faker(loc) for loc in LOCALES]
        self._avoid = avoid
        self._made: dict[tuple[str, str], str] = {}
        self._taken: dict[tuple[str, str], str] = {}   # (generator, fake) -> the original it stands for

    def digest(self, *parts: str) -> bytes:
        return hmac.new(self._key, "\0".join(parts).encode(), hashlib.sha256).digest()

    def fake(self, generator: str, original: str, max_length: int | None = None) -> str:
        """The fake standing for `original`; "" stays "" (there is nothing in it)."""
        if original == "":
            return original
        known = self._made.get((generator, original))
        if known is not None:
            return known
        for attempt in range(ATTEMPTS):
            seed = int.from_bytes(self.digest(generator, str(attempt), original)[:8], "big")
            faker = self._fakers[seed % len(self._fakers)]
            faker.seed_instance(seed)
            out = GENERATORS[generator](faker, original)[:max_length]
            if (generator, out) in self._taken or (self._avoid and self._avoid.find(out)):
                continue   # another original's fake (a unique column would break), or holds an original
            break
        else:
            raise RuntimeError(f"no fake for a {generator} value after {ATTEMPTS} attempts")
        self._made[(generator, original)] = out
        self._taken[(generator, out)] = original
        return out

    def json(self, rule: Rule, value, generator: str | None = None):
        """Every string under a key the rule names (a list of them too) gets a fake of that key's
        generator, at any depth; the rest is kept. `collect_json` collects the same strings."""
        if isinstance(value, dict):
            return {k: self.json(rule, v, rule.keys.get(k, generator)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(rule, v, generator) for v in value]
        if isinstance(value, str) and generator:
            return self.fake(generator, value)
        return value

    def placeholder(self, original_sha256: str) -> bytes:
        """A receipt-sized PNG: a generated pattern, the same for the same original (duplicates survive)."""
        seed = self.digest("receipt", original_sha256)
        return placeholder_png(seed)


def collect_json(rule: Rule, value, originals: Originals, named: bool = False) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            collect_json(rule, v, originals, named or k in rule.keys)
    elif isinstance(value, list):
        for v in value:
            collect_json(rule, v, originals, named)
    elif isinstance(value, str) and named:
        originals.add(value, rule.ref)


def placeholder_png(seed: bytes, width: int = 240, height: int = 320) -> bytes:
    """A paper-coloured image with grey 'lines of text' whose lengths come from the seed."""
    paper, ink = b"\xfa\xf7\xf0", b"\x90\x90\x90"
    blank = b"\x00" + paper * width
    rows = []
    for y in range(height):
        length = 40 + seed[(y // 12) % len(seed)] % (width - 60)
        inked = 4 <= y % 12 < 8 and 24 <= y < height - 24
        rows.append(b"\x00" + paper * 20 + ink * length + paper * (width - 20 - length) if inked else blank)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + \
        chunk(b"IEND", b"")
