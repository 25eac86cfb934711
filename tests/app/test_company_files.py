"""AI-02: Company Files. Admins upload policy documents (PDF, DOCX by signature, size-limited) to S3
(moto, SSE-S3); their text, capped, is what the AI evaluation reads beside the receipt and the
category names, and nothing about the employee. Hostile documents (malformed, encrypted, zip bombs,
entity bombs, mutated bytes) are refused with one line, never a crash; other companies get 404."""
from __future__ import annotations

import base64
import io
import json
import random
import sys
import tomllib
import zipfile
import zlib

import pytest

from tests.app.conftest import APP
from tests.app.test_expenses import company_with_ai, receipt_pdf, submit
from tests.app.test_security import client, make, verify_mfa
from tests.app.test_subprocessors import bedrock  # noqa: F401 - the Bedrock stand-in fixture

if str(APP) not in sys.path:      # the extraction tests need no database, so no django_app fixture
    sys.path.insert(0, str(APP))
POLICY_LINE = "Not reimbursed: Gym and fitness"


def pdf(text: str = POLICY_LINE, pages: int = 1) -> bytes:
    """A small, valid PDF whose pages show `text` in Helvetica."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    return pdf_of_pages([b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"], pages)


def pdf_of_pages(contents: list[bytes], pages: int) -> bytes:
    """A PDF of `pages` pages that all draw the one content stream object given (offsets computed,
    so readers agree)."""
    stream_ref = 4 + pages
    kids = " ".join(f"{4 + i} 0 R" for i in range(pages))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    objects += [f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                f"/Contents {stream_ref} 0 R >>".encode()] * pages
    objects += contents
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def docx(*paragraphs: str, table: list[list[str]] | None = None) -> bytes:
    import docx as python_docx
    document = python_docx.Document()
    for p in paragraphs or (POLICY_LINE,):
        document.add_paragraph(p)
    if table:
        t = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                t.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def with_member(document: bytes, name: str, content: bytes, replace: bool = False) -> bytes:
    """The DOCX with one more part (or one part replaced), deflated."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(document)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if not (replace and item.filename == name):
                dst.writestr(item, src.read(item))
        dst.writestr(name, content)
    return out.getvalue()


def busy_pdf(pages: int = 200, operators: int = 100_000) -> bytes:
    """30 KB that ask for minutes of parsing: every page draws one long content stream of
    graphics-state operators (and one character of text, so the text cap never stops it)."""
    stream = b"BT /F1 12 Tf (x) Tj ET " + b"q Q " * operators
    body = zlib.compress(stream, 9)
    return pdf_of_pages([b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(body) + body + b"\nendstream"],
                        pages)


def encrypted_pdf() -> bytes:
    from pypdf import PdfReader, PdfWriter
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf())))
    writer.encrypt("a-password")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


ENTITY_BOMB = (b'<?xml version="1.0"?><!DOCTYPE w [<!ENTITY a "aaaaaaaaaa">'
               + b"".join(b'<!ENTITY %c "%s">' % (98 + i, (b"&%c;" % (97 + i)) * 10) for i in range(8))
               + b']><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p>'
               b"<w:r><w:t>&i;</w:t></w:r></w:p></w:body></w:document>")

HOSTILE = {
    "empty": b"",
    "not a document": b"MZ\x90\x00 an executable named policy.pdf",
    "an old .doc": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600,
    "a zip that is not Word": b"",          # filled below
    "malformed PDF": b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >> garbage \x00\xff",
    "truncated PDF": b"",                   # filled below
    "encrypted PDF": b"",
    "PDF with no text": b"",
    "zip bomb DOCX": b"",
    "entity bomb DOCX": b"",
    "PDF that asks for minutes of work": b"",
    "too large": b"%PDF-1.4\n" + b"0" * (5 * 1024 * 1024),
}


def _fill_hostile() -> None:
    plain_zip = io.BytesIO()
    with zipfile.ZipFile(plain_zip, "w") as z:
        z.writestr("notes.txt", POLICY_LINE)
    good = pdf()
    HOSTILE.update({
        "a zip that is not Word": plain_zip.getvalue(),
        "truncated PDF": good[: len(good) // 2],
        "encrypted PDF": encrypted_pdf(),
        "PDF with no text": pdf(text=""),
        "zip bomb DOCX": with_member(docx(), "word/media/bomb.bin", b"\x00" * (60 * 1024 * 1024)),
        "entity bomb DOCX": with_member(docx(), "word/document.xml", ENTITY_BOMB, replace=True),
        "PDF that asks for minutes of work": busy_pdf()})


@pytest.fixture(scope="module", autouse=True)
def hostile_documents():
    _fill_hostile()


# --- extraction, no database ----------------------------------------------------------------

def _extract(content: bytes):
    from core import company_files
    return company_files.extract(content)


def test_pdf_and_docx_text_is_read_and_capped():
    assert _extract(pdf()) == ("pdf", POLICY_LINE)
    kind, text = _extract(docx("Wellness policy", POLICY_LINE, table=[["Category", "Limit"], ["Yoga", "300 EUR"]]))
    assert kind == "docx" and text.splitlines() == ["Wellness policy", POLICY_LINE, "Category", "Limit", "Yoga",
                                                    "300 EUR"]
    from core import ai
    long_text = ("Rule " * 2000).strip()
    kind, text = _extract(docx(*[long_text] * 5))
    assert ai.POLICY_MAX_CHARS - 5 <= len(text) <= ai.POLICY_MAX_CHARS


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_document_is_refused_in_one_line(name, monkeypatch):
    """Each refused with one line, in bounded time: the reader process has 2 CPU seconds here."""
    import time

    from core import company_files
    monkeypatch.setattr(company_files, "EXTRACT_SECONDS", 2)
    started = time.monotonic()
    with pytest.raises(company_files.BadDocument) as caught:
        _extract(HOSTILE[name])
    message = str(caught.value)
    assert message and "\n" not in message and "Traceback" not in message, message
    assert time.monotonic() - started < company_files.EXTRACT_SECONDS + 6


def test_the_reader_process_gets_none_of_the_apps_secrets(monkeypatch):
    """The child that parses documents starts with a bare environment: the app's secret key and
    AWS keys are not there for a parser bug to find."""
    import subprocess

    from core import company_files
    monkeypatch.setenv("BENEFITS_SECRET_KEY", "not-for-the-reader")
    seen = {}
    real_run = subprocess.run

    def run(argv, **kwargs):
        probe = real_run([sys.executable, "-c", "import os, json; print(json.dumps(dict(os.environ)))"],
                         capture_output=True, text=True, env=kwargs.get("env"))
        seen.update(json.loads(probe.stdout))
        return real_run(argv, **kwargs)
    monkeypatch.setattr(company_files.subprocess, "run", run)
    assert company_files.extract(pdf()) == ("pdf", POLICY_LINE)
    assert seen and not any(k.startswith(("BENEFITS_", "AWS_")) for k in seen), sorted(seen)


def test_mutated_documents_are_read_or_refused_never_a_crash():
    """Bytes flipped, cut and repeated in valid PDFs and DOCX files: each is either read or refused
    as a BadDocument."""
    from core.company_files import BadDocument, kind, read_text
    rng = random.Random(22)
    seeds = [pdf(pages=3), docx("A", POLICY_LINE, table=[["x", "y"]])]
    for _ in range(150):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(8, len(data))
            op = rng.random()
            if op < 0.6:
                data[i] = rng.randrange(256)
            elif op < 0.8:
                del data[i:i + rng.randint(1, 200)]
            else:
                data[i:i] = data[i:i + rng.randint(1, 64)] * rng.randint(2, 50)
        found = kind(bytes(data))      # in this process (the reader process's code), for speed
        try:
            if found:
                read_text(bytes(data), found, 20_000)
        except BadDocument:
            pass


def test_the_pins_match_the_tested_ones():
    pins = dict(line.split("==") for line in (APP / "requirements.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    meta = tomllib.loads((APP.parent / "pyproject.toml").read_text())["project"]
    tested = dict(d.split("==") for d in meta["optional-dependencies"]["test"])
    for name in ("pypdf", "python-docx", "anthropic"):
        assert pins[name] == tested[name].split()[0], name


# --- the pages and the AI request -----------------------------------------------------------

def admin_client(company: str):
    admin, pw = make(company, "admin")
    c = client(admin, pw)
    verify_mfa(c, admin)
    return admin, c


def upload(c, content: bytes, name: str = "policy.pdf"):
    from django.core.files.uploadedfile import SimpleUploadedFile
    return c.post("/settings/files/", {"document": SimpleUploadedFile(name, content, "application/pdf")}, secure=True)


def test_admins_upload_pdf_and_docx_to_s3_with_sse(s3):
    from core.models import AuditEvent, CompanyFile
    admin, c = admin_client("Files AB")
    assert upload(c, pdf(), "../../etc/Wellness\x00 policy.pdf").status_code == 302
    assert upload(c, docx("Yoga is reimbursed"), "rules.docx").status_code == 302
    files = {f.kind: f for f in CompanyFile.objects.filter(company=admin.company)}
    assert files["pdf"].name == "Wellness policy.pdf" and files["pdf"].text == POLICY_LINE
    for f in files.values():
        assert f.s3_key.startswith(f"company-files/{admin.company.pk}/")
        head = s3.head_object(Bucket="benefits-receipts", Key=f.s3_key)
        assert head["ServerSideEncryption"] == "AES256" and head["ContentLength"] == f.size
    page = c.get("/settings/files/", secure=True).content.decode()
    assert "Wellness policy.pdf" in page and "rules.docx" in page
    assert POLICY_LINE in c.get(f"/settings/files/{files['pdf'].pk}/", secure=True).content.decode()
    # the same document twice, and a hostile one: refused, said in one line, audited
    again = upload(c, pdf(), "copy.pdf")
    assert again.status_code == 400 and "already uploaded" in again.content.decode()
    bomb = upload(c, HOSTILE["zip bomb DOCX"], "bomb.docx")
    assert bomb.status_code == 400 and "zip bomb" in bomb.content.decode()
    over = upload(c, b"%PDF-1.4\n" + b"0" * (11 * 1024 * 1024), "huge.pdf")     # past the upload limit itself
    assert over.status_code == 400 and "no file arrived" in over.content.decode()
    assert AuditEvent.objects.filter(action="company_file.refused", actor=admin.user).count() == 3
    assert c.post(f"/settings/files/{files['pdf'].pk}/delete", secure=True).status_code == 302
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket="benefits-receipts", Key=files["pdf"].s3_key)
    assert not CompanyFile.objects.filter(pk=files["pdf"].pk).exists()


def test_the_same_document_twice_at_once_stores_one(s3, monkeypatch):
    """Two uploads of one document racing past the duplicate check: the database keeps one row and
    the loser's S3 object is removed (no orphan)."""
    from core import receipts
    from core.models import CompanyFile
    admin, c = admin_client("Race AS")
    document = pdf("Race policy")
    real_put, raced = receipts.put, []

    def lose_the_race_then_put(*args, **kwargs):     # after this request's duplicate check
        if not raced:
            raced.append(True)
            upload(other, document, "first.pdf")     # the other request lands first
        return real_put(*args, **kwargs)
    other = admin_client("Race AS")[1]
    monkeypatch.setattr(receipts, "put", lose_the_race_then_put)
    response = upload(c, document, "second.pdf")
    assert response.status_code == 400 and "already uploaded" in response.content.decode()
    (kept,) = CompanyFile.objects.filter(company=admin.company)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="benefits-receipts",
                                                 Prefix=f"company-files/{admin.company.pk}/").get("Contents", [])]
    assert keys == [kept.s3_key]


def test_only_admins_and_only_their_own_company(s3):
    from core.models import CompanyFile
    admin, c = admin_client("Owner Oy")
    upload(c, pdf())
    (f,) = CompanyFile.objects.filter(company=admin.company)
    hr, hpw = make("Owner Oy", "hr")
    h = client(hr, hpw)
    verify_mfa(h, hr)
    employee, epw = make("Owner Oy")
    for other in (h, client(employee, epw)):
        assert other.get("/settings/files/", secure=True).status_code == 403
        assert other.get(f"/settings/files/{f.pk}/", secure=True).status_code == 403
        assert upload(other, pdf("Everything is reimbursed")).status_code == 403
    _, stranger = admin_client("Stranger GmbH")
    assert stranger.get(f"/settings/files/{f.pk}/", secure=True).status_code == 404
    assert stranger.post(f"/settings/files/{f.pk}/delete", secure=True).status_code == 404
    assert POLICY_LINE not in stranger.get("/settings/files/", secure=True).content.decode()
    assert CompanyFile.objects.filter(pk=f.pk).exists()
    s3.head_object(Bucket="benefits-receipts", Key=f.s3_key)


def test_the_ai_reads_the_files_text_and_nothing_about_the_employee(s3, spy):
    """The policy in a company file decides: the gym receipt is declined; the request holds the
    image, the category names and the company's text only."""
    from core.models import ExpenseReport
    company_with_ai("Policy Files SA", True)
    _, c = admin_client("Policy Files SA")
    upload(c, docx("Wellness rules of Policy Files SA", POLICY_LINE), "rules.docx")
    me, pw = make("Policy Files SA", bank_account="NL91ABNA0417164300", national_id="123456782")
    submit(client(me, pw), receipt_pdf(category="Gym and fitness"))
    (request,) = spy
    assert set(request) == {"image", "categories", "policy"}
    assert request["policy"] == f"[rules.docx]\nWellness rules of Policy Files SA\n{POLICY_LINE}"
    text = json.dumps({k: v for k, v in request.items() if k != "image"})
    for personal in (me.full_name, me.user.email, me.user.username, "NL91ABNA0417164300", "123456782"):
        assert personal not in text
    assert ExpenseReport.objects.get(employee=me).status == "declined"


def test_through_bedrock_only_the_files_text_goes_with_the_receipt(s3, bedrock):
    """The same, on the wire: the Bedrock stand-in receives the file's text, no file bytes, and
    nothing personal."""
    company_with_ai("Wire Files NV", True)
    _, c = admin_client("Wire Files NV")
    document = pdf("Yoga is reimbursed up to 300 EUR a year")
    upload(c, document, "yoga.pdf")
    me, pw = make("Wire Files NV")
    submit(client(me, pw), receipt_pdf())
    evaluation = bedrock.calls[-1]["body"]
    text = json.dumps(evaluation)
    assert "Yoga is reimbursed up to 300 EUR a year" in text
    assert base64.b64encode(document).decode()[:40] not in text
    for personal in (me.full_name, me.user.email, me.user.username):
        assert personal not in text
