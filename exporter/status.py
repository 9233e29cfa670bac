"""Status: every target's schedule, outcome and recent polls, as data for `/api/v1/targets`, as the overview page at
`/` and as one page per target at `/targets/<name>`.

The pages are server-rendered HTML with inline CSS and SVG (and a few lines of inline script for the filter box,
which also works without it): no framework, fonts or assets from anywhere, so they work air-gapped and behind basic
auth and TLS. URLs and error messages are redacted before they reach them.
"""

from __future__ import annotations

import html
import time
from datetime import datetime, timezone
from typing import Any, Optional
from urllib.parse import quote

from . import __version__
from .bridge import Bridge
from .history import HISTORY_LENGTH, PollRecord
from .poller import Poller

__all__ = ["target_statuses", "render_status_page", "render_target_page", "relative_time"]

SERIES_PREVIEW_LINES = 40  # lines of a target's exposition shown on its page
SERIES_PREVIEW_BYTES = 64 * 1024  # at most this much of each family's lines is read for them
ERROR_PREVIEW_CHARS = 160  # characters of the last error shown in the overview (the target page shows all of it)


def _iso(ts: Optional[float]) -> Optional[str]:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def relative_time(ts: Optional[float], now: float) -> str:
    """`12 s ago`, `in 3 s`, `4 min ago`, `2 h ago`, `3 d ago`; `—` for never."""
    if ts is None:
        return "—"
    delta = now - ts
    ahead = delta < 0
    seconds = abs(delta)
    if seconds < 1:
        text = "now" if not ahead else "in <1 s"
        return text
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            amount = f"{int(seconds // size)} {unit}"
            break
    else:
        amount = f"{int(seconds)} s"
    return f"in {amount}" if ahead else f"{amount} ago"


def _outcome(record: PollRecord) -> str:
    return "success" if record.reason is None else f"failure ({record.reason})"


def target_statuses(bridge: Bridge) -> list[dict[str, Any]]:
    """One record per polled target, in name order; nothing secret in it."""
    return [_target_record(bridge, name, poller) for name, poller in sorted(bridge.pollers.items())]


def _target_record(bridge: Bridge, name: str, poller: Poller) -> dict[str, Any]:
    status = poller.status
    next_run = bridge.scheduler.next_run(name) if bridge.scheduler.running else None
    history = poller.history
    return {
        "name": name,
        "url": poller.client.redactor.url(),
        "interval_seconds": poller.target.interval,
        "last_poll_start": _iso(status.last_start),
        "last_poll_duration_seconds": None if status.last_duration is None else round(status.last_duration, 6),
        "outcome": status.last_outcome,
        "healthy": status.last_outcome == "success",
        "last_error": status.last_error,
        "last_success": _iso(status.last_success),
        "series": status.series,
        "polls": status.polls,
        "poll_successes": history.successes,
        "poll_failures": history.failures,
        "recent_polls": [
            {"start": _iso(r.start), "duration_seconds": round(r.duration, 6), "outcome": _outcome(r), "series": r.series}
            for r in history.records()
        ],
        "next_poll": _iso(next_run.timestamp()) if next_run else None,
    }


_CSS = """
:root{--ok:#1a7f37;--ok-bg:#dafbe1;--bad:#cf222e;--bad-bg:#ffebe9;--wait:#9a6700;--wait-bg:#fff8c5;--line:#d0d7de;
--muted:#57606a;--head:#f6f8fa}
*{box-sizing:border-box} body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2328;
background:#fff} header{padding:.8em 1.5em;border-bottom:1px solid var(--line);display:flex;gap:1.5em;align-items:baseline;
flex-wrap:wrap} header h1{font-size:1.2em;margin:0} header nav a{margin-right:1em;color:#0969da;text-decoration:none}
main{padding:1em 1.5em} .muted{color:var(--muted)} .cards{display:flex;gap:1em;flex-wrap:wrap;margin-bottom:1em}
.card{border:1px solid var(--line);border-radius:6px;padding:.5em 1em;min-width:9em} .card b{display:block;font-size:1.5em}
.card.bad b{color:var(--bad)} .card.ok b{color:var(--ok)}
.tools{display:flex;gap:1em;align-items:center;margin-bottom:.8em;flex-wrap:wrap}
.tools input{font:inherit;padding:.35em .6em;border:1px solid var(--line);border-radius:6px;width:22em}
.tools a{color:#0969da}
table{border-collapse:collapse;width:100%} th,td{border-bottom:1px solid var(--line);padding:.4em .6em;text-align:left;
font-size:.88em;vertical-align:middle;white-space:nowrap} th{background:var(--head);position:sticky;top:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums} td.error{white-space:normal;max-width:28em;
color:var(--bad);font-size:.82em;word-break:break-word} td.target a{color:#0969da;text-decoration:none;font-weight:600}
.badge{display:inline-block;border-radius:2em;padding:.1em .6em;font-size:.85em;font-weight:600}
.badge.success{color:var(--ok);background:var(--ok-bg)} .badge.failure{color:var(--bad);background:var(--bad-bg)}
.badge.pending,.badge.running{color:var(--wait);background:var(--wait-bg)}
svg.spark rect.empty{fill:#f6f8fa} svg.spark rect.success{fill:#2da44e} svg.spark rect.failure{fill:#cf222e} svg.spark polyline{fill:none;stroke:#0969da;
stroke-width:1} pre{background:var(--head);border:1px solid var(--line);border-radius:6px;padding:.8em;overflow-x:auto;
font-size:.82em} pre.error{white-space:pre-wrap;word-break:break-word;color:var(--bad)} dl{display:grid;
grid-template-columns:max-content 1fr;gap:.3em 1.2em} dt{color:var(--muted)} dd{margin:0} code{word-break:break-all}
h2{font-size:1.05em;margin-top:1.4em}
"""

_FILTER_SCRIPT = """<script>
(function(){var box=document.getElementById('filter');if(!box)return;var rows=document.querySelectorAll('#targets tbody tr');
var shown=document.getElementById('shown');function apply(){var q=box.value.toLowerCase().trim(),n=0;
rows.forEach(function(r){var hit=!q||r.getAttribute('data-search').indexOf(q)>=0;r.hidden=!hit;if(hit)n++;});
if(shown)shown.textContent=n;var u=new URL(location.href);if(q)u.searchParams.set('q',box.value);else u.searchParams.delete('q');
history.replaceState(null,'',u);}box.addEventListener('input',apply);})();
</script>"""


def _css_class(outcome: str) -> str:
    return "success" if outcome == "success" else "failure" if outcome.startswith("failure") else outcome


def _sparkline(records: list[PollRecord], bar: int = 3, height: int = 22) -> str:
    """The last polls as inline SVG, newest on the right: a bar each (height: duration, colour: outcome), the series
    count as a line, and empty slots for polls not made yet, so every row's chart has the same scale of time."""
    if not records:
        return '<span class="muted">no polls yet</span>'
    slots = max(HISTORY_LENGTH, len(records))
    width = slots * bar
    offset = (slots - len(records)) * bar
    longest = max(r.duration for r in records) or 1.0
    most = max(r.series for r in records) or 1
    bars = [f'<rect class="empty" x="0" y="0" width="{width}" height="{height}"/>']
    points = []
    for i, r in enumerate(records):
        h = max(2.0, (height - 2) * r.duration / longest)
        x = offset + i * bar
        tip = f"{_iso(r.start)} {_outcome(r)}, {r.duration * 1000:.0f} ms, {r.series} series"
        bars.append(
            f'<rect class="{"success" if r.reason is None else "failure"}" x="{x}" y="{height - h:.1f}" '
            f'width="{max(1, bar - 1)}" height="{h:.1f}"><title>{html.escape(tip)}</title></rect>'
        )
        points.append(f"{x + bar / 2:.1f},{height - 1 - (height - 4) * r.series / most:.1f}")
    line = f'<polyline points="{" ".join(points)}"/>' if len(points) > 1 else ""
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="last {len(records)} polls">{"".join(bars)}{line}</svg>'
    )


def _page(title: str, body: str, root: str = "", refresh: bool = True) -> str:
    meta = '<meta http-equiv="refresh" content="10">' if refresh else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{meta}<meta name="viewport" content="width=device-width">
<title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body><header><h1><a href="{root or "./"}" style="color:inherit;text-decoration:none">metrics-bridge</a>
<span class="muted">{html.escape(__version__)}</span></h1>
<nav><a href="{root}metrics">/metrics</a><a href="{root}api/v1/targets">/api/v1/targets</a><a href="{root}healthz">/healthz</a><a href="{root}readyz">/readyz</a></nav>
</header><main>{body}</main></body></html>
"""


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def render_status_page(bridge: Bridge, query: str = "", state: str = "") -> str:
    """The overview: counts, a filter box, and one row per target with its recent polls drawn as a small chart.

    `query` keeps only targets whose name, URL or outcome contains it; `state=failing` keeps only failing targets.
    """
    now = time.time()
    records = target_statuses(bridge)
    failing = [r for r in records if r["outcome"].startswith("failure")]
    needle = query.lower().strip()
    rows = []
    shown = 0
    for record in records:
        outcome = record["outcome"]
        search = f'{record["name"]} {record["url"]} {outcome}'.lower()
        visible = (not needle or needle in search) and (state != "failing" or outcome.startswith("failure"))
        shown += visible
        error = record["last_error"]
        short = error if len(error) <= ERROR_PREVIEW_CHARS else error[:ERROR_PREVIEW_CHARS] + "…"
        name = record["name"]
        poller = bridge.pollers.get(name)
        start = poller.status.last_start if poller else None
        next_ts = _parse_iso(record["next_poll"])
        cells = [
            f'<td class="target"><a href="targets/{quote(name, safe="")}">{html.escape(name)}</a></td>',
            f'<td class="outcome"><span class="badge {_css_class(outcome)}">{html.escape(outcome)}</span></td>',
            f'<td class="start" title="{html.escape(record["last_poll_start"] or "")}">{relative_time(start, now)}</td>',
            f'<td class="duration num">{_duration(record["last_poll_duration_seconds"])}</td>',
            f'<td class="series num">{record["series"]}</td>',
            f'<td class="counts num"><span class="ok">{record["poll_successes"]}</span> / '
            f'<span class="failed">{record["poll_failures"]}</span></td>',
            f'<td class="history">{_sparkline(poller.history.records() if poller else [])}</td>',
            f'<td class="next" title="{html.escape(record["next_poll"] or "")}">{relative_time(next_ts, now)}</td>',
            f'<td class="error" title="{html.escape(error)}">{html.escape(short)}</td>',
        ]
        hidden = "" if visible else " hidden"
        rows.append(f'<tr data-target="{html.escape(name)}" data-search="{html.escape(search)}"{hidden}>' + "".join(cells) + "</tr>")
    series = sum(r["series"] for r in records)
    shard = f'<div class="card"><span class="muted">shard</span><b>{bridge.shard + 1}/{bridge.total_shards}</b></div>' if bridge.total_shards > 1 else ""
    body = f"""<div class="cards">
<div class="card" data-card="targets"><span class="muted">targets</span><b>{len(records)}</b></div>
<div class="card ok" data-card="up"><span class="muted">up</span><b>{sum(1 for r in records if r["healthy"])}</b></div>
<div class="card{" bad" if failing else ""}" data-card="failing"><span class="muted">failing</span><b>{len(failing)}</b></div>
<div class="card" data-card="series"><span class="muted">series served</span><b>{series}</b></div>{shard}
</div>
<form class="tools" method="get" action="./"><input id="filter" name="q" type="search" value="{html.escape(query)}"
placeholder="Filter by target, URL or outcome" autocomplete="off" aria-label="filter targets">
<span class="muted"><span id="shown">{shown}</span> shown</span>
<a href="./">all</a><a href="./?state=failing">failing ({len(failing)})</a>
<span class="muted">updated {_iso(now)}, refreshes every 10 s</span></form>
<table id="targets"><thead><tr><th>Target</th><th>State</th><th>Last poll</th><th class="num">Duration</th>
<th class="num">Series</th><th class="num">OK / failed</th><th>Recent polls</th><th>Next poll</th><th>Last error</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
{_FILTER_SCRIPT}"""
    return _page("metrics-bridge", body)


def _parse_iso(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _series_preview(bridge: Bridge, name: str, limit: int = SERIES_PREVIEW_LINES) -> tuple[str, int]:
    """The first `limit` lines of the exposition a target serves now, and how many series it serves in all."""
    snapshot = bridge.store.current().get(name)
    if snapshot is None:
        return "", 0
    lines: list[str] = []
    for index, header in enumerate(snapshot.headers):
        if len(lines) >= limit:
            break
        lines.extend(header.text.decode().splitlines())
        head = snapshot.head(index, SERIES_PREVIEW_BYTES)  # the text may have been dropped: inflate only the start
        if len(head) == SERIES_PREVIEW_BYTES:
            head = head[: head.rfind(b"\n") + 1]  # only whole lines (none, if the first is longer than the preview)
        lines.extend(head.decode(errors="replace").splitlines()[: max(0, limit - len(lines))])
    return "\n".join(lines[:limit]), snapshot.series


def render_target_page(bridge: Bridge, name: str) -> Optional[str]:
    """One target's page: its settings, its last error in full, its poll history and the first series it exports."""
    poller = bridge.pollers.get(name)
    if poller is None:
        return None
    now = time.time()
    record = _target_record(bridge, name, poller)
    outcome = record["outcome"]
    polls = poller.history.records()
    rows = "".join(
        f'<tr><td title="{html.escape(_iso(r.start) or "")}">{relative_time(r.start, now)}</td>'
        f'<td><span class="badge {_css_class(_outcome(r))}">{html.escape(_outcome(r))}</span></td>'
        f'<td class="num">{_duration(r.duration)}</td><td class="num">{r.series}</td></tr>'
        for r in reversed(polls)
    )
    preview, series = _series_preview(bridge, name)
    error = record["last_error"]
    error_block = (
        f'<h2>Last error</h2><pre class="error" id="last-error">{html.escape(error)}</pre>' if error else ""
    )
    more = f'<p class="muted">first {SERIES_PREVIEW_LINES} lines of {series} series; all of them on <a href="../metrics">/metrics</a></p>'
    body = f"""<p><a href="../">← all targets</a></p>
<h2 style="margin-top:0">{html.escape(name)} <span class="badge {_css_class(outcome)}">{html.escape(outcome)}</span></h2>
<dl><dt>URL</dt><dd><code>{html.escape(record["url"])}</code></dd>
<dt>Interval</dt><dd>{record["interval_seconds"]:g} s (timeout {poller.target.timeout:g} s)</dd>
<dt>Last poll</dt><dd title="{html.escape(record["last_poll_start"] or "")}">{relative_time(poller.status.last_start, now)}, {_duration(record["last_poll_duration_seconds"])}</dd>
<dt>Last success</dt><dd title="{html.escape(record["last_success"] or "")}">{relative_time(poller.status.last_success, now)}</dd>
<dt>Next poll</dt><dd>{relative_time(_parse_iso(record["next_poll"]), now)}</dd>
<dt>Polls</dt><dd><span class="ok">{record["poll_successes"]} succeeded</span>, <span class="failed">{record["poll_failures"]} failed</span></dd>
<dt>Series served</dt><dd>{record["series"]}</dd></dl>
{error_block}
<h2>Recent polls</h2>{_sparkline(polls, bar=8, height=48)}
<table id="polls"><thead><tr><th>Started</th><th>Outcome</th><th class="num">Duration</th><th class="num">Series</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>Series it exports</h2>{('<pre id="series">' + html.escape(preview) + "</pre>" + more) if preview else '<p class="muted">nothing served yet</p>'}"""
    return _page(f"{name} · metrics-bridge", body, root="../")
