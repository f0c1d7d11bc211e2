"""The audit report (:func:`zonefan.audit.build_report`) as JSON, one self-contained HTML
file, or a short text summary. Each renders the report object alone, so the three show
the same data and a new section appears in all of them."""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape
from typing import Any

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #111; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #999; }
h3 { margin-top: 1.5em; font-size: 1.1em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #bbb; padding: 2px 6px; vertical-align: top; text-align: left; }
th { background: #eee; } td.n { text-align: right; }
ul { margin: 0; padding-left: 1.2em; } .none { color: #666; font-style: italic; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0 1em; }
dt { font-weight: bold; } dd { margin: 0; }
"""


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def _cell(value: Any) -> str:
    """A value as HTML: every text escaped; lists and objects nested."""
    if value is None:
        return '<span class="none">none</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        if not value:
            return '<span class="none">none</span>'
        return "<ul>" + "".join(f"<li>{_cell(v)}</li>" for v in value) + "</ul>"
    if isinstance(value, dict):
        items = "".join(f"<dt>{escape(str(k))}</dt><dd>{_cell(v)}</dd>" for k, v in value.items())
        return f"<dl>{items}</dl>"
    return escape(str(value))


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="none">nothing in this period</p>'
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{_cell(r.get(c))}</td>'
            if isinstance(r.get(c), int | float) and not isinstance(r.get(c), bool)
            else f"<td>{_cell(r.get(c))}</td>"
            for c in columns
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: dict[str, Any]) -> str:
    """One HTML file: inline CSS, no script, no external resource."""
    period = report["period"]
    title = f"zonefan audit report {period['since']} to {period['until']}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        _cell(
            {
                "schema": f"{report['schema']} {report['version']}",
                "generated at": report["generated_at"],
                "period": f"{period['since']} (included) to {period['until']} (excluded)",
                **{f"source: {k}": v for k, v in report["sources"].items()},
            }
        ),
        "<h2>Summary</h2>",
        _cell(report["summary"]),
    ]
    for zone in report["zones"]:
        parts.append(f"<h2>Zone {escape(zone['zone'])}, serial {escape(str(zone['serial']))}</h2>")
        parts.append(_cell({"coverage": zone["coverage"], "summary": zone["summary"]}))
        for section in report["sections"]:
            parts.append(f"<h3>{escape(section['title'])}</h3>")
            parts.append(_table(zone.get(section["key"], [])))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def render_text(report: dict[str, Any]) -> str:
    """A short summary for a terminal: per zone, each section's figures."""
    period = report["period"]
    lines = [
        f"audit report {period['since']} to {period['until']} (generated {report['generated_at']})",
    ]
    titles = {s["key"]: s["title"] for s in report["sections"]}
    for zone in report["zones"]:
        lines.append(f"{zone['zone']} (serial {zone['serial']}):")
        coverage = zone["coverage"]
        if not coverage["journal_complete"] and (coverage["journal_from"] or "") > period["since"]:
            lines.append(
                f"  the journal was compacted: it starts at {coverage['journal_from']}, the "
                "changes before are not in this report"
            )
        for key, figures in zone["summary"].items():
            lines.append(f"  {titles.get(key, key)}: {_figures(figures)}")
    totals = report["summary"]
    lines.append(
        f"total: {totals['changes']} change(s), {totals['key_events']} key event(s), "
        f"{totals['transfers']} transfer(s), {totals['sync_failures']} sync failure(s), "
        f"{totals['sync_pending']} serial(s) not yet converged at a target"
    )
    return "\n".join(lines) + "\n"


def _figures(value: Any) -> str:
    if isinstance(value, dict):
        if not value:
            return "none"
        return "; ".join(f"{k} {_figures(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return "-" if value is None else str(value)


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "json": render_json,
    "html": render_html,
    "text": render_text,
}
