"""The replay report: one self-contained HTML page with plots (embedded PNG) and a summary table.

    write_report(Path("out/case/report.html"), summary, series, timeline, done_at, started, config)
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from pipeline.stages.alerts.rules import build_rules

SPAN_COLOURS = {"high": "#e60000", "medium": "#ffd700", "low": "#b4b4b4"}


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _alert_spans(timeline: list[dict], end_s: float) -> list[tuple[float, float, str, str]]:
    """(start, end, priority, rule) of each alert, from its raise to its clear (or the video's end)."""
    spans, open_alerts = [], {}
    for event in timeline:
        if event["state"] == "raised":
            open_alerts[event["alert_id"]] = event
        elif event["state"] == "cleared" and event["alert_id"] in open_alerts:
            start = open_alerts.pop(event["alert_id"])
            spans.append((start["t_s"], event["t_s"], event["priority"], event["rule"]))
    spans += [(e["t_s"], end_s, e["priority"], e["rule"]) for e in open_alerts.values()]
    return spans


def _cell(value) -> str:
    """A summary value as a person reads it: no Python literals."""
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, dict):
        return "<br>".join(f"{html.escape(str(k))}: {_cell(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return " &times; ".join(_cell(v) for v in value)
    return html.escape(str(value))


def write_report(path: Path, summary: dict, series: dict, timeline: list[dict], done_at: list[float],
                 started: float, config, thumbnails: dict[str, tuple[float, bytes]] | None = None) -> None:
    t = series["t_s"]
    end_s = t[-1] if t else 0.0
    presence, axis = plt.subplots(figsize=(10, 2.6))
    axis.plot(t, [100 * v for v in series["instrument"]], color="#00aaff", label="instrument")
    axis.plot(t, [100 * v for v in series["vessel"]], color="#d4b000", label="vessel")
    axis.set(xlabel="video time (s)", ylabel="% of frame", title="Instrument and vessel presence",
             xlim=(0, max(end_s, 1e-3)))
    axis.legend(loc="upper right")

    distance, axis = plt.subplots(figsize=(10, 2.6))
    axis.plot(t, [d if d is not None else float("nan") for d in series["distance_px"]], color="black", lw=1,
              label="min instrument-vessel distance")
    proximity = build_rules(("vessel_proximity",), config.alerts)[0]
    axis.axhline(proximity.advisory_px, color=SPAN_COLOURS["medium"], ls="--", label="advisory threshold")
    axis.axhline(proximity.warning_px, color=SPAN_COLOURS["high"], ls="--", label="warning threshold")
    for start, end, priority, _ in _alert_spans(timeline, end_s):
        axis.axvspan(start, max(end, start + 1e-3), color=SPAN_COLOURS[priority], alpha=0.25)
    axis.set(xlabel="video time (s)", ylabel="pixels", title="Minimum distance and alerts (shaded)",
             xlim=(0, max(end_s, 1e-3)))
    axis.legend(loc="upper right", fontsize=8)

    throughput, axis = plt.subplots(figsize=(10, 2.2))
    if len(done_at) > 1:
        wall = [d - started for d in done_at]
        window = max(1, len(wall) // 50)
        rates = [window / max(wall[i] - wall[i - window], 1e-9) for i in range(window, len(wall))]
        axis.plot(wall[window:], rates, color="#444444")
    axis.set(xlabel="wall time (s)", ylabel="frames/s", title="Throughput")

    rows = "".join(f"<tr><th>{html.escape(k.replace('_', ' '))}</th><td>{_cell(v)}</td></tr>"
                   for k, v in summary.items())
    figures = "".join(f'<figure><img alt="{html.escape(caption)}" src="data:image/jpeg;base64,'
                      f'{base64.b64encode(jpeg).decode()}"><figcaption>{html.escape(caption)}, {t:.2f} s</figcaption>'
                      f"</figure>" for caption, (t, jpeg) in (thumbnails or {}).items()) or "<p>none</p>"
    alerts = "".join(f"<tr><td>{s:.2f}</td><td>{e:.2f}</td><td>{html.escape(r)}</td><td>{p}</td></tr>"
                     for s, e, p, r in _alert_spans(timeline, end_s)) or "<tr><td colspan=4>none</td></tr>"
    banner = ('<p class="partial">PARTIAL RESULT: ' + html.escape(summary["error"]) + "</p>") if summary["partial"] else ""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>orsight replay: {html.escape(Path(summary['video']).name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse}}
th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left}} img{{max-width:100%}}
.partial{{background:#e60000;color:white;padding:8px;font-weight:bold}}
.thumbs{{display:flex;flex-wrap:wrap;gap:8px}} figure{{margin:0}} figcaption{{font-size:90%}}</style></head>
<body><h1>orsight replay: {html.escape(Path(summary['video']).name)}</h1>{banner}
<p class="tiers">Vessel alerts: {html.escape(summary.get("vessel_alerts", ""))}. HIGH (red) only at the validated
point; "possible vessel" (amber) is advisory.</p>
<video src="annotated.mp4" controls muted width="640"></video>
<img alt="presence" src="data:image/png;base64,{_png(presence)}">
<img alt="distance" src="data:image/png;base64,{_png(distance)}">
<img alt="throughput" src="data:image/png;base64,{_png(throughput)}">
<h2>Alerts</h2><table><tr><th>start (s)</th><th>end (s)</th><th>rule</th><th>priority</th></tr>{alerts}</table>
<h2>Closest approach and alerts</h2><div class="thumbs">{figures}</div>
<h2>Summary</h2><table>{rows}</table></body></html>
"""
    path.write_text(page)
