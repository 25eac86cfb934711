"""Renders computed statuses: the public trust page (HTML and Markdown, grouped by area like the
security page), its JSON feed and OSCAL export, the internal report with the evidence behind
every status, and the closing summary of `make up`. The public page never says "Verified" unless
the engine computed passing from stored evidence; no status is typed here."""
from __future__ import annotations

import datetime as dt
import html
from collections import Counter
from pathlib import Path

from trustops.controls import describe, engine, feed, oscal
from trustops.controls.describe import CATEGORIES, category, how, label, last_full_check, refresh_words
from trustops.controls.engine import STATUSES, ControlStatus
from trustops.controls.evidence import ChainError, ChainReport, EvidenceStore

PAGE_HTML = "trust-page.html"
PAGE_MD = "trust-page.md"
INTERNAL = "internal-report.md"
FEED = "trust.json"
PUBLISHED = (PAGE_HTML, FEED, oscal.CATALOG_FILE, oscal.RESULTS_FILE)   # what the app host serves at /trust/
FULL_CHECK_ESTIMATE = "about 15 minutes"                                  # until this machine has measured it

public_label = label   # the name the tests and older callers use


def _areas(statuses: list[ControlStatus]) -> dict[str, list[ControlStatus]]:
    out: dict[str, list[ControlStatus]] = {}
    for s in statuses:
        out.setdefault(s.control.area, []).append(s)
    return out


def _when(t: dt.datetime | None) -> str:
    return f"{t:%Y-%m-%d %H:%M} UTC" if t else "never"


def _full_check_words(statuses: list[ControlStatus]) -> str:
    full, never = last_full_check(statuses)
    if full:
        return f"Last full check: every check has run since {_when(full)}."
    return f"No full check yet: {never} check{'s have' if never != 1 else ' has'} never run."


def public_markdown(statuses: list[ControlStatus], generated: dt.datetime, chain_head: str | None = None) -> str:
    counts = Counter(category(s) for s in statuses)
    lines = ["# Security and privacy", "",
             "Each commitment below is checked by automated evidence or a reviewed document; its status is "
             f"computed from that evidence, never typed. Generated {_when(generated)}. {_full_check_words(statuses)}",
             "", " · ".join(f"{cat}: {counts[cat]}" for cat in CATEGORIES), ""]
    for area, rows in _areas(statuses).items():
        lines += [f"## {area}", "", "| Control | Commitment | Status |", "|---|---|---|"]
        lines += [f"| {s.control.id} | {s.control.statement.replace('|', '/')} | {label(s)} |" for s in rows]
        lines.append("")
    if chain_head:
        lines += [f"Evidence chain head: `{chain_head}`", ""]
    return "\n".join(lines)


_CSS = """
:root{--fg:#1b1f24;--muted:#5b6470;--line:#d8dde3;--bg:#fff;--card:#f7f8fa;
--ok:#176f2c;--ok-bg:#e3f4e7;--doc:#1d4f91;--doc-bg:#e3ecf8;--part:#7a5400;--part-bg:#fbf0d6;
--plan:#4b4f56;--plan-bg:#eceef1;--no:#a1261b;--no-bg:#fbe4e1}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:64rem;margin:0 auto;padding:1rem}
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.25rem;margin:2rem 0 .5rem;border-bottom:2px solid var(--line)}
p.lead{color:var(--muted);margin:.25rem 0}
.summary{display:grid;grid-template-columns:repeat(auto-fit,minmax(9rem,1fr));gap:.5rem;margin:1rem 0;padding:0;list-style:none}
.summary li{border-radius:.5rem;padding:.6rem .8rem;background:var(--card)}
.summary b{display:block;font-size:1.6rem;line-height:1.1}
.control{border:1px solid var(--line);border-radius:.5rem;padding:.75rem 1rem;margin:.75rem 0;background:var(--bg)}
.control header{display:flex;flex-wrap:wrap;gap:.25rem .75rem;align-items:baseline;justify-content:space-between}
.control h3{font-size:1rem;margin:0;font-weight:600;flex:1 1 20rem}
.control h3 .id{color:var(--muted);font-weight:500;margin-right:.4rem}
.badge{display:inline-block;border-radius:1rem;padding:.05rem .6rem;font-size:.85rem;font-weight:600;white-space:nowrap}
.verified{color:var(--ok);background:var(--ok-bg)}.documented{color:var(--doc);background:var(--doc-bg)}
.partly-verified{color:var(--part);background:var(--part-bg)}.planned{color:var(--plan);background:var(--plan-bg)}
.not-verified{color:var(--no);background:var(--no-bg)}
.how{margin:.5rem 0 0;padding-left:1.1rem;font-size:.9rem}
.how li{margin:.2rem 0;overflow-wrap:anywhere}
.meta{color:var(--muted);font-size:.85rem}
.r-passing{color:var(--ok)}.r-failing{color:var(--no)}.r-unknown{color:var(--part)}.r-stale,.r-missing{color:var(--muted)}
.gap{font-size:.85rem;color:var(--part);margin:.4rem 0 0}
footer{color:var(--muted);font-size:.85rem;margin:2rem 0 1rem;overflow-wrap:anywhere}
code{font-size:.85em;overflow-wrap:anywhere}
@media (min-width:48rem){body{font-size:17px}main{padding:2rem}}
@media print{
 @page{margin:1.5cm}
 body{font-size:10.5pt;color:#000}main{max-width:none;padding:0}
 .summary li,.badge,.control{background:none!important;border:1px solid #777}
 .badge,.r-passing,.r-failing,.r-unknown,.meta,.gap{color:#000!important}
 .control{break-inside:avoid;page-break-inside:avoid}h2{break-after:avoid;page-break-after:avoid}
 a{color:#000;text-decoration:none}
}
"""


def _slug(text: str) -> str:
    return text.lower().replace(" ", "-")


def public_html(statuses: list[ControlStatus], generated: dt.datetime, chain_head: str | None = None) -> str:
    """A self-contained page: no script, no external asset (its own CSP forbids them), readable from
    375px up, with print styles."""
    e = html.escape
    counts = Counter(category(s) for s in statuses)
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">',
             '<meta name="referrer" content="no-referrer">',
             "<title>Security and privacy: trust page</title>", f"<style>{_CSS}</style></head><body><main>",
             "<h1>Security and privacy</h1>",
             '<p class="lead">Each commitment below is checked by automated evidence or a document reviewed by a '
             "person. A status is computed from that evidence, never typed: “Verified” means every check passed "
             "within its refresh period.</p>",
             f'<p class="lead" id="generated">Generated {_when(generated)}. '
             f'<span id="full-check">{e(_full_check_words(statuses))}</span></p>',
             '<ul class="summary" aria-label="Summary">']
    for cat in CATEGORIES:
        parts.append(f'<li class="{_slug(cat)}" data-category="{_slug(cat)}"><b>{counts[cat]}</b>{e(cat)}</li>')
    parts.append("</ul>")
    for area, rows in _areas(statuses).items():
        parts.append(f'<section aria-labelledby="area-{_slug(area)}"><h2 id="area-{_slug(area)}">{e(area)}</h2>')
        for s in rows:
            c = s.control
            cat = _slug(category(s))
            parts.append(f'<article class="control" id="{_slug(c.id)}" data-control="{e(c.id)}" '
                         f'data-category="{cat}" data-status="{e(s.status)}"><header>'
                         f'<h3><span class="id">{e(c.id)}</span>{e(c.statement)}</h3>'
                         f'<span class="badge {cat}">{e(label(s))}</span></header>')
            if s.evidence:
                parts.append(f'<p class="meta">How it is verified (re-checked {refresh_words(c.refresh)}):</p>'
                             '<ul class="how">')
                for check, ev, state in s.evidence:
                    when = f"last ran {_when(ev.started_at)}" if ev else "not run yet"
                    # the check's own summary stays in the internal report: it can name hosts and paths
                    parts.append(f'<li>{e(how(check))}. <span class="meta">{when}:</span> '
                                 f'<span class="r-{state}">{e(describe.STATE_WORDS[state])}</span></li>')
                parts.append("</ul>")
                if s.status in ("unknown", "failing"):
                    parts.append(f'<p class="meta">{e(s.public_reason[:1].upper() + s.public_reason[1:])}.</p>')
            else:
                parts.append('<p class="meta">No automated check proves this yet.</p>')
            if c.gaps:
                parts.append(f'<p class="gap">Not yet proven by any check: {e(c.gaps)}</p>')
            parts.append("</article>")
        parts.append("</section>")
    chain = (f"Evidence chain head (SHA-256 of the newest evidence record): <code>{e(chain_head)}</code>."
             if chain_head else "The evidence chain did not verify when this page was generated.")
    parts += [f'<footer><p id="chain">{chain}</p><p>Machine-readable: <a href="{FEED}">JSON feed</a> · '
              f'OSCAL <a href="{oscal.CATALOG_FILE}">catalog</a> and '
              f'<a href="{oscal.RESULTS_FILE}">assessment results</a>.</p></footer>', "</main></body></html>"]
    return "\n".join(parts) + "\n"


def _checks_by_state(statuses: list[ControlStatus], kinds: set[str] | None, states: set[str]
                     ) -> dict[str, list[str]]:
    """check key -> ids of the controls it holds back, for checks of these kinds in these states."""
    out: dict[str, list[str]] = {}
    for s in statuses:
        if s.status in ("passing", "manual"):
            continue
        for check, _, state in s.evidence:
            if state in states and (kinds is None or check.kind in kinds):
                out.setdefault(check.key, []).append(s.control.id)
    return out


def _ids(ids: list[str], limit: int = 12) -> str:
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def summary_lines(statuses: list[ControlStatus]) -> list[str]:
    """What a newcomer needs after `make up`, in this order: what is verified, what needs the full
    check (and how long it takes), what needs a person; then what fails or could not be checked."""
    counts = Counter(s.status for s in statuses)
    verified = [s.control.id for s in statuses if s.status == "passing"]
    documented = [s.control.id for s in statuses if s.status == "manual"]
    lines = [f"Controls of the security page: {len(statuses)} ("
             + ", ".join(f"{counts[k]} {k}" for k in STATUSES if counts[k]) + ")",
             f"  Verified now ({len(verified)}): {_ids(verified) or 'none yet'}"
             + (f"; documented and reviewed ({len(documented)}): {_ids(documented)}" if documented else "")]
    full = {s.control.id for s in statuses if s.status not in ("passing", "manual")
            and any(c.kind == "pytest" and st in ("missing", "stale") for c, _, st in s.evidence)}
    if full:
        measured = [ev.duration_s for s in statuses for c, ev, _ in s.evidence if ev and c.kind == "pytest"]
        took = f"about {max(measured) / 60:.0f} min, as last measured here" if measured else FULL_CHECK_ESTIMATE
        lines.append(f"  Need the full check ({len(full)}): their evidence comes from the test suite, which `make up` "
                     f"skips. Run `.venv/bin/trustops controls check` ({took}): "
                     f"{_ids(sorted(full, key=[s.control.id for s in statuses].index))}")
    people = _checks_by_state(statuses, {"manual"}, {"failing", "stale", "missing", "unknown"})
    if people:
        lines.append(f"  Need a person ({len(people)} document(s) to write or review, then set `reviewed:` in "
                     "controls/catalogue.yaml):")
        lines += [f"    {key.split(':', 1)[1]:46} for {', '.join(ids)}" for key, ids in people.items()]
    broken = next((s for s in statuses if s.why_public == engine.CHAIN_BROKEN), None)
    if broken:   # each check's own result means nothing until the file verifies: one line, not 100
        lines.append(f"  Nothing counts: {broken.reason[:300]}. Run `trustops controls verify` for the first "
                     "broken record; restore the file from a copy, or start a new one with `trustops controls check`")
        return lines
    failing = _checks_by_state(statuses, None, {"failing"})
    failing = {k: v for k, v in failing.items() if not k.startswith("manual:")}
    if failing:
        lines.append(f"  Failing: the evidence contradicts the page ({len(failing)} check(s)):")
        lines += [f"    {key[:60]:60} {_reason(statuses, key)[:100]}" for key in failing]
    unknown = _checks_by_state(statuses, None, {"unknown"})
    if unknown:
        lines.append(f"  Could not be checked ({len(unknown)}): not a failure, not verified either:")
        lines += [f"    {key[:60]:60} {_reason(statuses, key)[:100]}" for key in unknown]
    over = [s.control.id for s in statuses if s.overclaim]
    under = [s.control.id for s in statuses if s.underclaim]
    if over or under:
        lines.append("  The page " + "; ".join(
            ([f"claims more than the evidence shows for {len(over)} control(s)"] if over else []) +
            ([f"under-claims {', '.join(under)} (every check passes: ready to be promised)"] if under else []))
            + ": see the internal report")
    return lines


def _reason(statuses: list[ControlStatus], key: str) -> str:
    for s in statuses:
        for check, ev, _ in s.evidence:
            if check.key == key and ev:
                return ev.summary
    return ""


def internal_markdown(statuses: list[ControlStatus], generated: dt.datetime, chain_line: str = "") -> str:
    lines = ["# Controls: internal evidence report", "", f"Generated {generated:%Y-%m-%d %H:%M:%S} UTC.", "",
             f"Evidence chain: {chain_line or 'not verified'}", "",
             *["    " + l for l in summary_lines(statuses)], ""]
    over = [s for s in statuses if s.overclaim]
    lines += ["## Where the page claims more than the evidence shows", ""]
    lines += [f"- **{s.control.id}** ({s.control.owner}): {s.overclaim}. {s.reason}" for s in over] or ["- none"]
    lines.append("")
    under = [s for s in statuses if s.underclaim]
    lines += ["## Where the page claims less than the evidence shows", ""]
    lines += [f"- **{s.control.id}** ({s.control.owner}): {s.underclaim}." for s in under] or ["- none"]
    lines.append("")
    for area, rows in _areas(statuses).items():
        lines += [f"## {area}", ""]
        for s in rows:
            c = s.control
            lines += [f"### {c.id}: {s.status}", "", f"> {c.statement}", "",
                      f"Page says: {c.page_status} · owner: {c.owner} · refresh: {c.refresh} · {s.reason}", ""]
            if c.gaps:
                lines += [f"Not proven by any check: {c.gaps}", ""]
            for check, ev, state in s.evidence:
                if ev is None:
                    lines.append(f"- `{check.key}`: **{state}**, never run")
                else:
                    lines.append(f"- `{check.key}`: **{state}** at {ev.started} ({ev.duration_s}s): {ev.summary} "
                                 f"· ran `{ev.ran}` · output sha256 `{ev.output_sha256[:16]}`")
            lines.append("")
    return "\n".join(lines)


def published_head(out_dir: Path) -> str | None:
    """The chain head the last report in `out_dir` published (its trust.json), if there is one."""
    try:
        head = feed.Feed.model_validate_json((out_dir / FEED).read_text()).evidence_chain.head
    except (OSError, ValueError):
        return None
    return head


def _chain(store: EvidenceStore | None) -> tuple[ChainReport | None, str]:
    if store is None:
        return None, "no evidence store given"
    skipped = store.read()[1]
    note = f"; {skipped} record(s) skipped: not evidence (a field of the wrong type or form)" if skipped else ""
    try:
        rep = store.verify()
    except ChainError as exc:
        return None, f"BROKEN: {exc}{note}"
    return rep, rep.line(store.path) + note


def write(statuses: list[ControlStatus], out_dir: Path, generated: dt.datetime | None = None,
          store: EvidenceStore | None = None) -> list[Path]:
    """Writes every output (each atomically); returns [md, html, internal, feed, OSCAL catalog, results]."""
    generated = generated or dt.datetime.now(dt.timezone.utc)
    chain, chain_line = _chain(store)
    head = chain.head if chain else None
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {PAGE_MD: public_markdown(statuses, generated, head),
             PAGE_HTML: public_html(statuses, generated, head),
             INTERNAL: internal_markdown(statuses, generated, chain_line),
             FEED: feed.to_json(feed.build(statuses, generated, chain)),
             oscal.CATALOG_FILE: oscal.to_json(oscal.catalog(statuses, generated)),
             oscal.RESULTS_FILE: oscal.to_json(oscal.assessment_results(statuses, generated, head))}
    paths = []
    for name, text in files.items():
        tmp = out_dir / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out_dir / name)
        paths.append(out_dir / name)
    return paths
