"""The live view's page (`runtime.serve`): one HTML document, no external resources. It listens to the
server-sent events at /events, reloads /frame.jpg when a new frame is announced (one request at a time),
draws the score trace with the threshold line on a canvas, and shows the recent anomalous frames. The state at
the time of the request is written into the page (`page_with_state`), so the first paint already shows it."""
from __future__ import annotations

from runtime import strict_json
from typing import Any, Dict

PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edge-inspect live</title>
<style>
 body{margin:0;background:#14171c;color:#e6e8eb;font:14px/1.35 system-ui,sans-serif}
 header{display:flex;gap:16px;align-items:center;padding:10px 18px;background:#1d2129;border-bottom:1px solid #2c323c}
 header h1{font-size:17px;margin:0;font-weight:600} .dim{color:#8b94a3} .mono{font-family:ui-monospace,monospace}
 #status{margin-left:auto;padding:2px 10px;border-radius:10px;background:#2c323c}
 main{display:grid;grid-template-columns:520px 1fr;gap:16px;padding:16px 18px}
 .card{background:#1d2129;border:1px solid #2c323c;border-radius:8px;padding:12px}
 #framebox{position:relative;width:496px;height:496px;background:#000;border-radius:4px;overflow:hidden}
 #frame{width:496px;height:496px;object-fit:contain;image-rendering:pixelated;display:block}
 #verdict{position:absolute;left:10px;top:10px;padding:4px 14px;border-radius:6px;font-weight:700;font-size:18px}
 .ok{background:#1f8a4c} .anomalous{background:#c62e2e} .unknown{background:#59606b}
 #meta{margin-top:8px}
 .stats{display:grid;grid-template-columns:repeat(4,1fr);gap:10px}
 .stat{background:#242933;border-radius:6px;padding:8px 10px} .stat b{display:block;font-size:22px}
 .stat span{color:#8b94a3;font-size:12px}
 canvas{width:100%;height:210px;display:block;margin-top:6px}
 h2{font-size:13px;font-weight:600;color:#8b94a3;margin:14px 0 6px;text-transform:uppercase;letter-spacing:.04em}
 #thumbs{display:flex;gap:8px;flex-wrap:wrap;min-height:110px}
 #thumbs figure{margin:0;width:104px} #thumbs img{width:104px;height:104px;object-fit:cover;border:2px solid #c62e2e;border-radius:4px;image-rendering:pixelated}
 #thumbs figcaption{font-size:11px;color:#8b94a3}
 #events{font-size:12px;max-height:90px;overflow:auto;margin:0;padding-left:16px}
 #edit{display:none;gap:8px;margin-bottom:6px} #edit input{background:#242933;color:#e6e8eb;border:1px solid #39404c;border-radius:4px;padding:3px 6px}
 #thumbs button{font-size:11px;margin:2px 2px 0 0;background:#2c323c;color:#e6e8eb;border:0;border-radius:4px;padding:2px 6px;cursor:pointer}
</style></head>
<body>
<header><h1>edge-inspect &middot; live</h1><span class="dim">source <span id="source" class="mono"></span></span>
<span class="dim">backend <span id="backend" class="mono"></span></span><span id="status">connecting</span></header>
<main>
 <section class="card">
  <div id="framebox"><img id="frame" alt="current frame with heat map"><div id="verdict" class="unknown">&ndash;</div></div>
  <div id="meta" class="mono dim">no frame yet</div>
 </section>
 <section class="card">
  <div class="stats">
   <div class="stat"><b id="c_ok">0</b><span>ok</span></div>
   <div class="stat"><b id="c_anomalous">0</b><span>anomalous</span></div>
   <div class="stat"><b id="c_skipped">0</b><span>skipped (bad input)</span></div>
   <div class="stat"><b id="c_dropped">0</b><span>dropped (behind camera)</span></div>
   <div class="stat"><b id="fps">0</b><span>frames / s</span></div>
   <div class="stat"><b id="p50">&ndash;</b><span>latency p50 (ms)</span></div>
   <div class="stat"><b id="p99">&ndash;</b><span>latency p99 (ms)</span></div>
   <div class="stat"><b id="thr">&ndash;</b><span>threshold</span></div>
  </div>
  <h2>score trace <span id="tracecount" class="dim"></span></h2>
  <canvas id="trace" width="1200" height="420"></canvas>
  <h2>drift: rolling q10 / median / q90, green: where a good line keeps its median <span id="driftinfo" class="dim"></span></h2>
  <canvas id="drift" width="1200" height="300"></canvas>
  <h2>last anomalous frames</h2>
  <div id="edit"><input id="who" placeholder="your name"><input id="token" type="password" placeholder="edit token"><span id="editmsg" class="dim"></span></div>
  <div id="thumbs"><span class="dim">none yet</span></div>
  <h2>events</h2>
  <ul id="events"><li class="dim">none</li></ul>
 </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let loading = false, wanted = -1, shownThumbs = "";
const frame = $("frame");
frame.onload = frame.onerror = () => { loading = false; if (wanted >= 0) { const v = wanted; wanted = -1; load(v); } };
function load(v) { if (loading) { wanted = v; return; } loading = true; frame.src = "/frame.jpg?v=" + v; }
function fmt(x, d) { return x === null || x === undefined ? "\u2013" : Number(x).toFixed(d); }
function drawTrace(trace, thr) {
  const c = $("trace"), g = c.getContext("2d"), W = c.width, H = c.height, pad = 46;
  g.clearRect(0, 0, W, H);
  g.fillStyle = "#242933"; g.fillRect(0, 0, W, H);
  if (!trace.length) return;
  const ys = trace.map(p => p[1]); if (thr !== null) ys.push(thr);
  let lo = Math.min(...ys), hi = Math.max(...ys); const m = (hi - lo) * 0.1 || 1; lo -= m; hi += m;
  const x0 = trace[0][0], x1 = Math.max(trace[trace.length - 1][0], x0 + 1);
  const X = i => pad + (W - pad - 12) * (i - x0) / (x1 - x0), Y = s => H - 28 - (H - 40) * (s - lo) / (hi - lo);
  g.strokeStyle = "#39404c"; g.fillStyle = "#8b94a3"; g.font = "20px sans-serif"; g.lineWidth = 1;
  for (let k = 0; k <= 4; k++) { const s = lo + (hi - lo) * k / 4; g.beginPath(); g.moveTo(pad, Y(s)); g.lineTo(W - 12, Y(s)); g.stroke(); g.fillText(s.toPrecision(3), 2, Y(s) + 6); }
  g.fillText("frame " + x0, pad, H - 4); g.fillText("frame " + trace[trace.length - 1][0], W - 150, H - 4);
  g.strokeStyle = "#4aa3ff"; g.lineWidth = 3; g.beginPath();
  trace.forEach((p, k) => k ? g.lineTo(X(p[0]), Y(p[1])) : g.moveTo(X(p[0]), Y(p[1]))); g.stroke();
  if (thr !== null) {
    g.strokeStyle = "#ff5a5a"; g.setLineDash([12, 8]); g.lineWidth = 2.5; g.beginPath(); g.moveTo(pad, Y(thr)); g.lineTo(W - 12, Y(thr)); g.stroke(); g.setLineDash([]);
    g.fillStyle = "#ff5a5a"; g.fillText("threshold " + thr.toPrecision(4), W - 230, Y(thr) - 8);
    trace.forEach(p => { if (p[1] >= thr) { g.beginPath(); g.arc(X(p[0]), Y(p[1]), 5, 0, 7); g.fill(); } });
  }
}
function drawDrift(d) {
  const c = $("drift"), g = c.getContext("2d"), W = c.width, H = c.height, pad = 46;
  g.clearRect(0, 0, W, H); g.fillStyle = "#242933"; g.fillRect(0, 0, W, H);
  if (!d) { $("driftinfo").textContent = ""; return; }
  const b = d.band, t = d.trace;
  const lo0 = b.median_low, hi0 = b.median_high, known = lo0 !== undefined;
  $("driftinfo").textContent = !known ? "(no band: " + b.source + ")" :
    (d.drifting ? "DRIFT" : "in band") + " \u00b7 window " + d.window + " \u00b7 drift events " + d.drift_events +
    " \u00b7 blank " + (d.alerts.blank || 0) + " \u00b7 out-of-range " + (d.alerts["out-of-range"] || 0);
  if (!t.length || !known) return;
  const ys = t.flatMap(p => [p[1], p[3]]).concat([lo0, hi0]);
  let lo = Math.min(...ys), hi = Math.max(...ys); const m = (hi - lo) * 0.1 || 1; lo -= m; hi += m;
  const x0 = t[0][0], x1 = Math.max(t[t.length - 1][0], x0 + 1);
  const X = i => pad + (W - pad - 12) * (i - x0) / (x1 - x0), Y = s => H - 20 - (H - 30) * (s - lo) / (hi - lo);
  g.fillStyle = "rgba(31,138,76,0.25)"; g.fillRect(pad, Y(hi0), W - pad - 12, Y(lo0) - Y(hi0));
  g.fillStyle = "#8b94a3"; g.font = "20px sans-serif"; g.fillText(hi0.toPrecision(3), 2, Y(hi0) + 6); g.fillText(lo0.toPrecision(3), 2, Y(lo0) + 6);
  [[1, "#4aa3ff", 1.5], [2, d.drifting ? "#ff5a5a" : "#e6e8eb", 3], [3, "#4aa3ff", 1.5]].forEach(([k, col, w]) => {
    g.strokeStyle = col; g.lineWidth = w; g.beginPath(); t.forEach((p, j) => j ? g.lineTo(X(p[0]), Y(p[k])) : g.moveTo(X(p[0]), Y(p[k]))); g.stroke(); });
}
async function correct(index, label) {
  const r = await fetch("/feedback", {method: "POST", headers: {"Content-Type": "application/json", "Authorization": "Bearer " + $("token").value},
    body: JSON.stringify({frame: index, label: label, who: $("who").value})});
  const a = await r.json(); $("editmsg").textContent = r.ok ? "frame " + index + " marked " + label : a.error;
}
function render(s) {
  $("source").textContent = s.source; $("backend").textContent = s.backend; $("status").textContent = s.status;
  for (const k of ["ok", "anomalous", "skipped", "dropped"]) $("c_" + k).textContent = s.counts[k];
  $("fps").textContent = fmt(s.fps, 1); $("p50").textContent = fmt(s.p50_ms, 2); $("p99").textContent = fmt(s.p99_ms, 2);
  $("thr").textContent = s.threshold === null ? "none" : Number(s.threshold).toPrecision(4);
  if (s.frame) {
    const v = $("verdict"); v.className = s.frame.verdict; v.textContent = s.frame.verdict === "anomalous" ? "ANOMALY" : (s.frame.verdict === "good" ? "OK" : "no threshold");
    if (s.frame.verdict === "good") v.className = "ok";
    $("meta").textContent = "frame " + s.frame.index + "  score " + s.frame.score.toPrecision(5) + (s.frame.name ? "  " + s.frame.name.split("/").pop() : "");
    load(s.version);
  }
  $("tracecount").textContent = "(last " + s.trace.length + " frames)";
  drawTrace(s.trace, s.threshold); drawDrift(s.drift);
  $("edit").style.display = s.editable ? "flex" : "none";
  const key = s.thumbs.map(t => t.index).join(",");
  if (key !== shownThumbs) {
    shownThumbs = key; const box = $("thumbs"); box.textContent = "";
    if (!s.thumbs.length) box.innerHTML = '<span class="dim">none yet</span>';
    s.thumbs.slice().reverse().forEach(t => { const f = document.createElement("figure"); const i = document.createElement("img");
      i.src = "/thumb/" + t.index + ".jpg"; const c = document.createElement("figcaption"); c.textContent = "#" + t.index + "  " + t.score.toPrecision(4);
      f.append(i, c);
      if (s.editable) ["good", "defect"].forEach(l => { const b = document.createElement("button"); b.textContent = l === "good" ? "mark good" : "confirm defect"; b.onclick = () => correct(t.index, l); f.append(b); });
      box.append(f); });
  }
  const ev = $("events"); ev.textContent = "";
  if (!s.events.length) ev.innerHTML = '<li class="dim">none</li>';
  s.events.slice().reverse().forEach(e => { const li = document.createElement("li"); li.textContent = new Date(e.time * 1000).toLocaleTimeString() + "  " + e.event + ": " + e.message; ev.append(li); });
}
const INITIAL = /*INITIAL*/null;
if (INITIAL) render(INITIAL);  // before the load event: a screenshot or print shows the frame and thumbnails
const es = new EventSource("/events");
es.onmessage = m => render(JSON.parse(m.data));
es.onerror = () => { $("status").textContent = "disconnected (retrying)"; };
</script>
</body></html>
"""

def page_with_state(state: Dict[str, Any]) -> str:
    """The page with `state` rendered on load; every '<' escaped so no text in it can close the script."""
    return PAGE.replace("/*INITIAL*/null", strict_json.dumps(state).replace("<", "\\u003c"))


__all__ = ["PAGE", "page_with_state"]
