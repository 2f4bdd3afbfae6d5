"""GET /_sandbox/: a page a person keeps open next to the console to watch doors open."""

from __future__ import annotations

from html import escape
from typing import Any

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 60rem;
       color: #1f2933; background: #f5f7fa; padding: 0 1rem; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
.muted { color: #616e7c; } code { background: #e4e7eb; padding: 0 .3em; border-radius: 3px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(13rem, 1fr)); gap: .8rem; }
.lock { background: #fff; border: 1px solid #d9e2ec; border-radius: 8px; padding: .8rem 1rem; }
.lock h3 { margin: 0 0 .3rem; font-size: 1rem; }
.lock.opened { border-color: #3ebd93; box-shadow: 0 0 0 2px #c6f7e2; }
.badge { display: inline-block; font-size: .75rem; padding: .05rem .45rem; border-radius: 99px; }
.on { background: #c6f7e2; color: #014d40; } .off { background: #ffe3e3; color: #610316; }
table { width: 100%; border-collapse: collapse; background: #fff; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #e4e7eb; }
th { background: #e4e7eb; font-weight: 600; }
"""


def _badge(online: bool) -> str:
    return '<span class="badge on">online</span>' if online else '<span class="badge off">offline</span>'


def render_page(summary: dict[str, Any]) -> str:
    site = summary["site"]
    iq_names = {iq["id"]: iq["name"] for iq in summary["iqs"]}
    last_open: dict[str, str] = {}
    for record in summary["opens"]:
        last_open[record["lock_id"]] = record["at"]

    cards = []
    for lock in summary["locks"]:
        opened = lock["id"] in last_open
        cards.append(
            f'<div class="lock{" opened" if opened else ""}" data-lock-id="{escape(lock["id"])}">'
            f"<h3>{escape(lock['name'])}</h3>"
            f"<div>{_badge(lock['online'] and lock['iq_online'])} "
            f'<span class="muted">{escape(iq_names.get(lock["iq_id"], ""))}</span></div>'
            f"<div>Opens: <strong>{lock['opens']}</strong></div>"
            f'<div class="muted">Last open: {escape(last_open.get(lock["id"], "never"))}</div>'
            "</div>"
        )

    rows = [
        f"<tr><td>{escape(o['at'])}</td><td>{escape(o['lock_name'])}</td><td>{escape(o['username'])}</td></tr>"
        for o in reversed(summary["opens"])
    ]
    opens_table = (
        "<table><thead><tr><th>When (UTC)</th><th>Lock</th><th>Account</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        if rows
        else '<p class="muted">No door opened yet.</p>'
    )
    iqs = "".join(
        f"<li>{escape(iq['name'])} <code>{escape(iq['id'])}</code> {_badge(iq['online'])}</li>" for iq in summary["iqs"]
    )
    mail = "".join(
        f"<li>{escape(m['at'])}: IQ PIN for {escape(m['to'])} at {escape(iq_names.get(m['iq_id'], m['iq_id']))}: "
        f"<code>{escape(m['pin'])}</code></li>"
        for m in summary["outbox"]
    )
    faults = "".join(f"<li><code>{escape(str(f))}</code></li>" for f in summary["faults"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="2">
<title>Salto KS sandbox: {escape(site["name"])}</title><style>{_CSS}</style></head>
<body>
<h1>Salto KS sandbox</h1>
<p class="muted">{escape(site["name"])}, Site UID <code>{escape(site["site_uid"])}</code>, site id
<code>{escape(site["id"])}</code>. This page refreshes every 2 seconds. Sandbox time {escape(summary["now"])}.</p>
<h2>Locks</h2>
<div class="grid">{"".join(cards)}</div>
<h2>Opens</h2>
{opens_table}
<h2>IQs</h2>
<ul>{iqs}</ul>
<h2>Mailed IQ PINs</h2>
{f"<ul>{mail}</ul>" if mail else '<p class="muted">None.</p>'}
<h2>Active faults</h2>
{f"<ul>{faults}</ul>" if faults else '<p class="muted">None.</p>'}
<p class="muted">Token requests: {summary["tokens"]["count"]}. JSON: <a href="state">state</a>,
<a href="opens">opens</a>, <a href="token-requests">token-requests</a>.</p>
</body></html>
"""
