"""Renders computed statuses: the public trust page (Markdown and HTML, grouped by area like the
security page) and the internal report with the evidence behind every status. The public page
never says "verified" unless the engine computed passing from stored evidence."""
from __future__ import annotations

import datetime as dt
import html
from collections import Counter
from pathlib import Path

from trustops.controls.engine import STATUSES, ControlStatus


def public_label(s: ControlStatus) -> str:
    date = s.last_checked.date().isoformat() if s.last_checked else ""
    if s.status == "passing":
        return f"Verified {date}"
    if s.status == "manual":
        reviewed = max(c.reviewed for c in s.control.checks if c.reviewed)
        return f"Documented, reviewed {reviewed}"
    if s.control.page_status in ("Planned", "In progress"):
        return s.control.page_status
    if s.status == "partial":
        return f"Partly verified {date}"
    return "Not yet verified"


def _areas(statuses: list[ControlStatus]) -> dict[str, list[ControlStatus]]:
    out: dict[str, list[ControlStatus]] = {}
    for s in statuses:
        out.setdefault(s.control.area, []).append(s)
    return out


def public_markdown(statuses: list[ControlStatus], generated: dt.datetime) -> str:
    lines = ["# Security and privacy", "",
             f"Every line below is checked by automated evidence; the status is computed, never typed. "
             f"Generated {generated:%Y-%m-%d %H:%M} UTC.", ""]
    for area, rows in _areas(statuses).items():
        lines += [f"## {area}", "", "| Control | Commitment | Status |", "|---|---|---|"]
        lines += [f"| {s.control.id} | {s.control.statement.replace('|', '/')} | {public_label(s)} |" for s in rows]
        lines.append("")
    return "\n".join(lines)


def public_html(statuses: list[ControlStatus], generated: dt.datetime) -> str:
    e = html.escape
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>Security and privacy</title>",
             "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
             "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.4rem;"
             "text-align:left;vertical-align:top}.s{white-space:nowrap}.passing{color:#176f2c}"
             ".manual{color:#1d4f91}.other{color:#6b6b6b}</style></head><body>",
             "<h1>Security and privacy</h1>",
             f"<p>Every line below is checked by automated evidence; the status is computed, never typed. "
             f"Generated {generated:%Y-%m-%d %H:%M} UTC.</p>"]
    for area, rows in _areas(statuses).items():
        parts += [f"<h2>{e(area)}</h2>", "<table><tr><th>Control</th><th>Commitment</th><th>Status</th></tr>"]
        for s in rows:
            cls = s.status if s.status in ("passing", "manual") else "other"
            parts.append(f'<tr><td>{e(s.control.id)}</td><td>{e(s.control.statement)}</td>'
                         f'<td class="s {cls}">{e(public_label(s))}</td></tr>')
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def summary_lines(statuses: list[ControlStatus]) -> list[str]:
    counts = Counter(s.status for s in statuses)
    lines = ["controls: " + ", ".join(f"{counts[k]} {k}" for k in STATUSES if counts[k]) +
             f" (of {len(statuses)})"]
    for s in statuses:
        if s.status not in ("passing", "manual"):
            lines.append(f"  {s.control.id:11} {s.status:15} {s.reason[:110]}")
    over = [s.control.id for s in statuses if s.overclaim]
    if over:
        lines.append(f"  the page states {len(over)} of these without qualification: the internal report flags them")
    return lines


def internal_markdown(statuses: list[ControlStatus], generated: dt.datetime) -> str:
    lines = ["# Controls: internal evidence report", "", f"Generated {generated:%Y-%m-%d %H:%M:%S} UTC.", "",
             *["    " + l for l in summary_lines(statuses)], ""]
    over = [s for s in statuses if s.overclaim]
    lines += ["## Where the page claims more than the evidence shows", ""]
    lines += [f"- **{s.control.id}** ({s.control.owner}): {s.overclaim}. {s.reason}" for s in over] or ["- none"]
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


def write(statuses: list[ControlStatus], out_dir: Path, generated: dt.datetime | None = None) -> list[Path]:
    generated = generated or dt.datetime.now(dt.timezone.utc)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"trust-page.md": public_markdown(statuses, generated),
             "trust-page.html": public_html(statuses, generated),
             "internal-report.md": internal_markdown(statuses, generated)}
    paths = []
    for name, text in files.items():
        tmp = out_dir / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out_dir / name)
        paths.append(out_dir / name)
    return paths
