"""Status: every target's schedule and last outcome, as data for `/api/v1/targets` and as the HTML page at `/`.

The page is plain server-rendered HTML with inline CSS: no scripts, fonts or assets from anywhere, so it works
air-gapped. URLs and error messages are redacted before they reach it.
"""

from __future__ import annotations

import html
import time
from datetime import datetime, timezone
from typing import Any, Optional

from . import __version__
from .bridge import Bridge

__all__ = ["target_statuses", "render_status_page"]


def _iso(ts: Optional[float]) -> Optional[str]:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def target_statuses(bridge: Bridge) -> list[dict[str, Any]]:
    """One record per polled target, in name order; nothing secret in it."""
    records = []
    for name, poller in sorted(bridge.pollers.items()):
        status = poller.status
        next_run = bridge.scheduler.next_run(name) if bridge.scheduler.running else None
        records.append(
            {
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
                "next_poll": _iso(next_run.timestamp()) if next_run else None,
            }
        )
    return records


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#1f2328}
h1{font-size:1.4em} table{border-collapse:collapse;width:100%} th,td{border:1px solid #d0d7de;padding:.35em .6em;
text-align:left;font-size:.9em;vertical-align:top} th{background:#f6f8fa} td.num{text-align:right}
.success{color:#1a7f37;font-weight:600} .failure{color:#cf222e;font-weight:600} .pending,.running{color:#9a6700}
code{word-break:break-all} nav a{margin-right:1em}
"""


def render_status_page(bridge: Bridge) -> str:
    """The status page: a table of every target."""
    rows = []
    for record in target_statuses(bridge):
        outcome = record["outcome"]
        css = "success" if outcome == "success" else "failure" if outcome.startswith("failure") else outcome
        duration = record["last_poll_duration_seconds"]
        cells = [
            f'<td class="target">{html.escape(record["name"])}</td>',
            f'<td class="url"><code>{html.escape(record["url"])}</code></td>',
            f'<td class="interval num">{record["interval_seconds"]:g}s</td>',
            f'<td class="start">{html.escape(record["last_poll_start"] or "—")}</td>',
            f'<td class="duration num">{"—" if duration is None else f"{duration * 1000:.1f} ms"}</td>',
            f'<td class="outcome {css}">{html.escape(outcome)}</td>',
            f'<td class="error">{html.escape(record["last_error"])}</td>',
            f'<td class="series num">{record["series"]}</td>',
            f'<td class="next">{html.escape(record["next_poll"] or "—")}</td>',
        ]
        rows.append(f'<tr data-target="{html.escape(record["name"])}">' + "".join(cells) + "</tr>")
    shard = f" · shard {bridge.shard} of {bridge.total_shards}" if bridge.total_shards > 1 else ""
    now = _iso(time.time())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>metrics-bridge</title><style>{_CSS}</style></head>
<body><h1>metrics-bridge {html.escape(__version__)}</h1>
<nav><a href="/metrics">/metrics</a><a href="/api/v1/targets">/api/v1/targets</a><a href="/healthz">/healthz</a><a href="/readyz">/readyz</a></nav>
<p>{len(rows)} target(s){shard} · page rendered {now}</p>
<table id="targets"><thead><tr><th>Target</th><th>URL</th><th>Interval</th><th>Last poll start</th><th>Duration</th>
<th>Outcome</th><th>Last error</th><th>Series</th><th>Next poll</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
