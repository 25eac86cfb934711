"""Company Files (AI-02): policy documents an admin uploads for the AI evaluation to read. Only PDF
and DOCX, recognised by their bytes (never the name or the browser's type), at most MAX_BYTES,
stored in S3 with SSE-S3 beside the receipts. Their text is extracted once, at upload, in a child
process with CPU, memory and time limits, and with caps on pages, archive size and characters; the
AI request carries that text (with the policy typed on the AI settings page) and never the file. A document that cannot be read is refused with one line
saying so, whatever is wrong inside it."""
from __future__ import annotations

import io
import itertools
import json
import logging
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

from core import ai

MAX_BYTES = 5 * 1024 * 1024
MAX_FILES = 20                      # per company: the AI reads at most ai.POLICY_MAX_CHARS in all
MAX_PDF_PAGES = 200
# A DOCX is a zip: its members may declare at most this much in all once inflated, and no member
# may inflate more than MAX_RATIO times (zip bombs); zipfile never inflates past the declared size.
MAX_DOCX_INFLATED = 30 * 1024 * 1024
MAX_RATIO = 200
MAX_DOCX_MEMBERS = 500
PDF, DOCX = "pdf", "docx"
EXTRACT_SECONDS = 10                # CPU seconds for reading one document (a child process)
EXTRACT_MEMORY = 768 * 2**20        # its address space
APP_DIR = Path(__file__).resolve().parent.parent    # where the child imports core from
# The reader gets none of the app's environment (secret key, database password, AWS keys): a
# parser bug a hostile document reaches finds nothing there to take.
CHILD_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
CONTENT_TYPES = {PDF: "application/pdf",
                 DOCX: "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}
ACCEPTED = f"a PDF or Word (.docx) file of at most {MAX_BYTES // (1024 * 1024)} MB"


class BadDocument(ValueError):
    """The upload is not a document the AI may read; the message is shown to the admin."""


def kind(content: bytes) -> str | None:
    """PDF by its header; DOCX by the zip signature and a Word main part (not any zip, not a .doc)."""
    if content.startswith(b"%PDF-"):
        return PDF
    if content.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as z:
                names = set(z.namelist())
        except Exception:  # noqa: BLE001 - BadZipFile, NotImplementedError (a mangled version), ...: not Word
            return None
        if {"[Content_Types].xml", "word/document.xml"} <= names:
            return DOCX
    return None


def _capped(parts, limit: int) -> str:
    """Joins text parts until `limit` characters (stops reading the document there)."""
    out, size = [], 0
    for part in parts:
        part = (part or "").strip()
        if part:
            out.append(part)
            size += len(part) + 1
            if size >= limit:
                break
    return "\n".join(out)[:limit]


def _pdf_text(content: bytes, limit: int) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(content))
    if reader.is_encrypted:
        raise BadDocument("the PDF is encrypted; upload it without a password")
    if len(reader.pages) > MAX_PDF_PAGES:
        raise BadDocument(f"the PDF has {len(reader.pages)} pages; at most {MAX_PDF_PAGES} are read")
    return _capped((page.extract_text() for page in reader.pages), limit)


def _docx_text(content: bytes, limit: int) -> str:
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        members = z.infolist()
        if len(members) > MAX_DOCX_MEMBERS:
            raise BadDocument(f"the Word file holds {len(members)} parts; at most {MAX_DOCX_MEMBERS}")
        inflated = sum(m.file_size for m in members)
        if inflated > MAX_DOCX_INFLATED or any(m.file_size > MAX_RATIO * max(m.compress_size, 1) for m in members):
            raise BadDocument("the Word file inflates far beyond its size (a zip bomb?)")
    import docx   # python-docx parses with entity resolution off (no XML entity expansion)

    document = docx.Document(io.BytesIO(content))
    paragraphs = (p.text for p in document.paragraphs)
    cells = (cell.text for table in document.tables for row in table.rows for cell in row.cells)
    return _capped(itertools.chain(paragraphs, cells), limit)


def read_text(content: bytes, found: str, limit: int) -> str:
    """The text of a document whose kind is known; BadDocument for anything wrong inside it."""
    try:
        return (_pdf_text if found == PDF else _docx_text)(content, limit)
    except BadDocument:
        raise
    except Exception as exc:  # noqa: BLE001 - a hostile or broken document: refused, never a crash
        raise BadDocument(f"the {found.upper()} could not be read ({type(exc).__name__}); "
                          f"save it again from its editor and upload it") from None


def _child() -> None:
    """The reader process: limits itself first, then the document on stdin, {"text"} or {"error"}
    as JSON on stdout."""
    found, limit, seconds, memory = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    logging.disable(logging.CRITICAL)      # pypdf warns per broken object; only the answer matters
    try:
        answer = {"text": read_text(sys.stdin.buffer.read(), found, limit)}
    except BadDocument as exc:
        answer = {"error": str(exc)}
    sys.stdout.write(json.dumps(answer))


def extract(content: bytes, limit: int = ai.POLICY_MAX_CHARS) -> tuple[str, str]:
    """(kind, text) of an upload, or BadDocument naming what is wrong. The parsing runs in a child
    process with CPU, memory and wall-clock limits: a small document can still ask for minutes of
    work (one content stream drawn on every page), which must not hold a web worker."""
    if not content:
        raise BadDocument(f"the file is empty; upload {ACCEPTED}")
    if len(content) > MAX_BYTES:
        raise BadDocument(f"the file is {len(content)} bytes; upload {ACCEPTED}")
    found = kind(content)
    if found is None:
        raise BadDocument(f"the file is neither a PDF nor a Word (.docx) document; upload {ACCEPTED}")
    argv = [sys.executable, "-c", "from core.company_files import _child; _child()", found, str(limit),
            str(EXTRACT_SECONDS), str(EXTRACT_MEMORY)]
    try:
        proc = subprocess.run(argv, input=content, capture_output=True, timeout=EXTRACT_SECONDS + 5, cwd=APP_DIR,
                              env=CHILD_ENV)
        answer = json.loads(proc.stdout)
    except (subprocess.TimeoutExpired, ValueError):    # out of time, or killed by its CPU limit: no answer
        answer = {}
    if "error" in answer:
        raise BadDocument(answer["error"])
    if "text" not in answer:
        raise BadDocument(f"reading the {found.upper()} needed more than {EXTRACT_SECONDS} s of work or "
                          f"{EXTRACT_MEMORY // 2**20} MB of memory; save it again from its editor and upload it")
    text = answer["text"]
    if not text.strip():
        raise BadDocument(f"no text could be read from the {found.upper()} (a scan? upload a document with text)")
    return found, text[:limit]


def policy_text(company) -> str:
    """What the AI evaluation reads: the policy typed on the AI settings page, then each file's
    text, cut as a whole to ai.POLICY_MAX_CHARS."""
    parts = [company.ai_policy.strip()] if company.ai_policy.strip() else []
    parts += [f"[{f.name}]\n{f.text}" for f in company.files.order_by("uploaded_at", "pk")]
    return "\n\n".join(parts)[:ai.POLICY_MAX_CHARS].strip()


# --- the admin pages ----------------------------------------------------------------------------

def _file_name(name: str) -> str:
    """The upload's own name, without a path or control characters, as admins see it."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in base if ch.isprintable()).strip()[:200] or "document"


def _admin(request):
    from django.core.exceptions import PermissionDenied

    from core.models import Employee
    from core.views import _employee
    me = _employee(request)
    if me.role != Employee.ADMIN:
        raise PermissionDenied
    return me


def _store(request, company, upload) -> str:
    """Checks, extracts and stores one upload; the error shown to the admin, or ""."""
    from django.db import IntegrityError, transaction

    from core import receipts
    from core.models import CompanyFile, audit

    try:
        if upload is None:     # none sent, or over FILE_UPLOAD_MAX_MEMORY_SIZE (only the memory handler runs)
            raise BadDocument(f"no file arrived; upload {ACCEPTED}")
        content = upload.read(MAX_BYTES + 1)
        if company.files.count() >= MAX_FILES:
            raise BadDocument(f"the company already has {MAX_FILES} files; delete one first")
        found, text = extract(content)
        digest = receipts.sha256(content)
        if company.files.filter(sha256=digest).exists():
            raise BadDocument("this document is already uploaded")
    except BadDocument as exc:
        audit(request, "company_file.refused", target=f"company:{company.pk}", reason=str(exc)[:200])
        return f"Not uploaded: {exc}."
    key = receipts.put(company.pk, content, CONTENT_TYPES[found], prefix="company-files")
    try:
        with transaction.atomic():     # the same document uploaded twice at once: one wins
            f = CompanyFile.objects.create(company=company, name=_file_name(upload.name), kind=found,
                                           size=len(content), sha256=digest, s3_key=key, text=text)
    except IntegrityError:
        receipts.delete(key)
        return "Not uploaded: this document is already uploaded."
    audit(request, "company_file.uploaded", target=f"company_file:{f.pk}", kind=found, chars=len(text))
    return ""


def files_page(request):
    """The company's policy documents (admins): upload, list, and what the AI reads of them."""
    from django.shortcuts import redirect, render

    me = _admin(request)
    company = me.company
    error = ""
    if request.method == "POST":
        error = _store(request, company, request.FILES.get("document"))
        if not error:
            return redirect("/settings/files/")
    return render(request, "core/company_files.html",
                  {"company": company, "files": company.files.order_by("-uploaded_at", "-pk"), "error": error,
                   "accepted": ACCEPTED, "max_chars": ai.POLICY_MAX_CHARS, "reads": len(policy_text(company))},
                  status=400 if error else 200)


def file_text(request, pk: int):
    """One file's extracted text: exactly what the AI may read of it."""
    from django.shortcuts import get_object_or_404, render

    from core.models import CompanyFile
    me = _admin(request)
    f = get_object_or_404(CompanyFile, pk=pk, company=me.company)     # another company's file: 404
    return render(request, "core/company_file.html", {"file": f})


def delete_file(request, pk: int):
    from django.http import HttpResponseNotAllowed
    from django.shortcuts import get_object_or_404, redirect

    from core import receipts
    from core.models import CompanyFile, audit
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    me = _admin(request)
    f = get_object_or_404(CompanyFile, pk=pk, company=me.company)
    receipts.delete(f.s3_key)
    audit(request, "company_file.deleted", target=f"company_file:{f.pk}", kind=f.kind)
    f.delete()
    return redirect("/settings/files/")
