"""The anonymiser's fakes without a database: valid where production's values were valid (checked
with python-stdnum, not our own checks), the same within a run, different across runs, one fake
per original, never holding an original; and the search that proves it."""
from __future__ import annotations

import secrets
import struct
import zlib

import pytest
from faker import Faker
from stdnum import iban
from stdnum.fi import hetu
from stdnum.nl import bsn
from stdnum.se import personnummer

from trustops.anonymise import Fakes, Originals, fake_iban, fake_national_id, placeholder_png

IBAN_LOCALES = ("fi_FI", "de_DE", "nl_NL", "en_GB", "fr_FR", "es_ES", "it_IT", "pl_PL", "no_NO", "dk_DK")


@pytest.mark.parametrize("locale", IBAN_LOCALES)
def test_fake_ibans_keep_country_length_and_valid_check_digits(locale):
    faker = Faker(locale)
    faker.seed_instance(7)
    rng = Faker().random
    for _ in range(25):
        original = faker.iban()
        fake = fake_iban(rng, original)
        assert iban.is_valid(fake) and fake != original, (original, fake)
        assert fake[:2] == original[:2] and len(fake) == len(original)
    printed = iban.format(original)
    assert " " in fake_iban(rng, printed) and iban.is_valid(fake_iban(rng, printed))


@pytest.mark.parametrize("locale, valid", [("fi_FI", hetu.is_valid), ("sv_SE", personnummer.is_valid),
                                           ("nl_NL", bsn.is_valid)])
def test_fake_national_ids_stay_valid_of_their_kind(locale, valid):
    faker = Faker(locale)
    faker.seed_instance(11)
    rng = Faker().random
    for _ in range(50):
        original = faker.ssn()
        assert valid(original)
        fake = fake_national_id(rng, original)
        assert valid(fake) and fake != original and len(fake) == len(original), (original, fake)


def test_other_identifiers_keep_their_shape():
    fake = fake_national_id(Faker().random, "AB-123456/x")
    assert fake[:2].isalpha() and fake[:2].isupper() and fake[2] == "-" and fake[3:9].isdigit() and fake[9:] \
        in {f"/{c}" for c in "abcdefghijklmnopqrstuvwxyz"}


def test_deterministic_within_a_run_different_across_runs_and_one_fake_per_original():
    key = secrets.token_bytes(32)
    a, b, other = Fakes(key), Fakes(key), Fakes(secrets.token_bytes(32))
    names = [f"person-{i}" for i in range(200)]
    first = [a.fake("username", n) for n in names]
    assert first == [b.fake("username", n) for n in names]               # the same key: the same fakes
    assert len(set(first)) == len(names)                                  # unique stays unique
    assert sum(x != y for x, y in zip(first, (other.fake("username", n) for n in names))) > 190
    assert a.fake("person_name", "") == ""


def test_a_fake_never_holds_an_original():
    faker = Faker("fi_FI")
    faker.seed_instance(3)
    originals = Originals()
    firsts = {faker.first_name() for _ in range(300)}
    for name in firsts:
        originals.add(name, "auth.User.first_name")
    matcher = originals.matcher()
    fakes = Fakes(secrets.token_bytes(32), matcher)
    out = [fakes.fake(g, n) for n in sorted(firsts) for g in ("first_name", "person_name", "text")]
    assert all(matcher.find(f) is None for f in out)


def test_the_search_matches_long_values_inside_text_and_short_ones_whole():
    originals = Originals()
    originals.add("Virtanen", "auth.User.last_name")
    originals.add("Li", "auth.User.last_name")
    originals.add("aino@prod.fi", "auth.User.email")
    m = originals.matcher()
    assert m.find("Dear MS VIRTANEN,") == "auth.User.last_name"
    assert m.find('{"to": "Aino@Prod.fi"}') == "auth.User.email"
    assert m.find("li") == "auth.User.last_name" and m.find("Lisa Lind") is None
    for name in ("Essi", "Atte", "Repo"):            # Finnish names inside English words are not them
        originals.add(name, "auth.User.first_name")
    m = originals.matcher()
    assert m.find("Can add session") is m.find("Can add access attempt") is m.find("expense report") is None
    assert m.find("Hi Essi!") == m.find("mail atte.k@x") == "auth.User.first_name"


def test_the_placeholder_is_a_png_and_follows_its_original():
    fakes = Fakes(secrets.token_bytes(32))
    png = fakes.placeholder("a" * 64)
    assert png == fakes.placeholder("a" * 64) != fakes.placeholder("b" * 64)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pos, chunks = 8, {}
    while pos < len(png):
        (length,), kind = struct.unpack(">I", png[pos:pos + 4]), png[pos + 4:pos + 8]
        data = png[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + data)
        chunks[kind] = data
        pos += 12 + length
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    assert placeholder_png(b"\x00" * 32) != placeholder_png(b"\xff" * 32)


def test_an_id_valid_as_two_kinds_stays_valid_as_both():
    """050307-6093 is a HETU and a personnummer: a fake made as a HETU ('051107-707P') was no
    personnummer any more (found by the test above with an unseeded generator)."""
    original = "050307-6093"
    assert hetu.is_valid(original) and personnummer.is_valid(original)
    rng = Faker().random
    for seed in range(300):
        rng.seed(seed)
        fake = fake_national_id(rng, original)
        assert hetu.is_valid(fake) and personnummer.is_valid(fake) and len(fake) == len(original), (seed, fake)


@pytest.mark.parametrize("original", ["290101-0070", "010129-0385"])
def test_a_kept_29_never_makes_29_february_in_a_common_year(original):
    """A field kept from the original is 29 (the HETU's year, or the personnummer's year read as a
    HETU's day): with a random month and year it made 29.02.1903 and 1927-02-29 (a review)."""
    assert hetu.is_valid(original) or personnummer.is_valid(original)
    rng = Faker().random
    for seed in range(200):
        rng.seed(seed)
        fake = fake_national_id(rng, original)
        for kind in (hetu, personnummer):
            if kind.is_valid(original):
                assert kind.is_valid(fake), (seed, original, fake)
