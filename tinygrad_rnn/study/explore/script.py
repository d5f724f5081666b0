"""The page's script: reads the embedded JSON and draws every panel as inline SVG or canvas.

Written for the page alone (no library): small helpers for scales, axes, line plots,
heatmaps and the graph and tree views. Every panel is drawn inside a try block; an
error is written into the page (``#explore-status``, and ``data-explore="error"`` on
the body), so a headless browser's DOM tells whether every panel rendered.
"""

SCRIPT = r"""
"use strict";
const DATA = JSON.parse(document.getElementById("explore-data").textContent);
const ERRORS = [];
const RENDERED = [];
window.addEventListener("error", e => { ERRORS.push("script: " + e.message); report(); });
const QUERY = new URLSearchParams(location.search);   // ?run=1&open=0,5&play: what to show first
let current = 0, timer = null;

// ---------------------------------------------------------------- small helpers
function esc(s) { return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;"); }
function fmt(v) {
  if (v === null || v === undefined) return "none";
  if (typeof v !== "number") return String(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  return (a >= 1e4 || a < 1e-3) ? v.toExponential(2) : v.toPrecision(4).replace(/\.?0+$/, "");
}
function finite(v) { return typeof v === "number" && isFinite(v); }
function range(n) { return Array.from({length: n}, (_, i) => i); }
function extent(values, positive) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (finite(v) && (!positive || v > 0)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (lo === Infinity) return positive ? [1e-3, 1] : [0, 1];
  if (lo === hi) { if (positive) { lo /= 2; hi *= 2; } else { lo -= 0.5; hi += 0.5; } }
  return [lo, hi];
}
function scale(d0, d1, r0, r1, log) {
  const f = log ? Math.log10 : (v => v);
  const a = f(d0), b = f(d1);
  const s = v => r0 + (f(v) - a) / ((b - a) || 1) * (r1 - r0);
  s.domain = [d0, d1]; s.log = log;
  return s;
}
function ticks(d0, d1, log, count) {
  if (log) {
    const lo = Math.floor(Math.log10(d0)), hi = Math.ceil(Math.log10(d1));
    const every = Math.max(1, Math.ceil((hi - lo) / (count || 6)));
    const out = [];
    for (let e = lo; e <= hi; e += every) { const v = Math.pow(10, e); if (v >= d0 * 0.999 && v <= d1 * 1.001) out.push(v); }
    if (out.length < 3) {           // less than two decades: 1, 2, 5 times each power of ten
      out.length = 0;
      for (let e = lo - 1; e <= hi; e++) for (const m of [1, 2, 5]) {
        const v = m * Math.pow(10, e);
        if (v >= d0 * 0.999 && v <= d1 * 1.001) out.push(v);
      }
    }
    return out.length ? out : [d0, d1];
  }
  const span = d1 - d0, raw = span / (count || 6), mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => span / s <= (count || 6)) || mag * 10;
  const out = [];
  for (let v = Math.ceil(d0 / step) * step; v <= d1 + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}
function tickText(v, log) {
  if (!log) return fmt(v);
  const e = Math.floor(Math.log10(v) + 1e-9), m = Math.round(v / Math.pow(10, e));
  return (e >= -2 && e <= 3) ? fmt(v) : (m === 1 ? "" : m + "\u00d7") + "1e" + e;
}
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
function heat(where) {            // 0 -> blue, 1 -> red (as study.graph's DOT colours)
  const h = 0.66 * (1 - Math.max(0, Math.min(1, where)));
  return hsv(h, 0.85, 0.85);
}
function hsv(h, s, v) {
  const i = Math.floor(h * 6), f = h * 6 - i, p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
  const [r, g, b] = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][i % 6];
  return "rgb(" + [r, g, b].map(c => Math.round(c * 255)).join(",") + ")";
}
const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
                 [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
function viridis(where) {
  if (!finite(where)) return [235, 235, 235];
  const x = Math.max(0, Math.min(1, where)) * (VIRIDIS.length - 1), i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
  return VIRIDIS[i].map((c, k) => Math.round(c + f * (VIRIDIS[i + 1][k] - c)));
}
function diverging(where) {       // -1 blue, 0 white, 1 red
  if (!finite(where)) return [235, 235, 235];
  const w = Math.max(-1, Math.min(1, where));
  return w < 0 ? [Math.round(255 + w * 200), Math.round(255 + w * 140), 255] : [255, Math.round(255 - w * 170), Math.round(255 - w * 200)];
}
const tooltip = document.getElementById("tooltip");
function showTip(ev, text) { tooltip.textContent = text; tooltip.style.display = "block"; tooltip.style.left = (ev.clientX + 12) + "px"; tooltip.style.top = (ev.clientY + 12) + "px"; }
function hideTip() { tooltip.style.display = "none"; }
function leftOut(body, what) {
  if (what && what.left_out) { body.insertAdjacentHTML("beforeend", '<p class="left-out">Left out of this page: ' + esc(what.left_out) + "</p>"); return true; }
  return false;
}

// ---------------------------------------------------------------- line plots (SVG markup)
// series: [{name, x: [], y: [], color, dash, width, opacity, band: [lo[], hi[]]}]
function linePlot(body, series, o) {
  const W = o.width || 520, H = o.height || 260, m = {l: 62, r: 14, t: 22, b: 40};
  const xs = series.flatMap(s => s.x), ys = series.flatMap(s => s.y.concat(s.band ? s.band[0].concat(s.band[1]) : []));
  const xd = o.xDomain || extent(xs, o.logX), yd = o.yDomain || extent(ys.concat(o.yExtra || []), o.logY);
  if (o.logY && !o.yDomain) { yd[0] = Math.max(yd[0], yd[1] * 1e-30); }
  const x = scale(xd[0], xd[1], m.l, W - m.r, o.logX), y = scale(yd[0], yd[1], H - m.b, m.t, o.logY);
  let svg = '<svg width="' + W + '" height="' + H + '" class="plot">';
  for (const v of ticks(yd[0], yd[1], o.logY, 5)) svg += '<line class="grid" x1="' + m.l + '" x2="' + (W - m.r) + '" y1="' + y(v) + '" y2="' + y(v) + '"/>' +
    '<text x="' + (m.l - 5) + '" y="' + (y(v) + 4) + '" text-anchor="end">' + tickText(v, o.logY) + "</text>";
  for (const v of ticks(xd[0], xd[1], o.logX, 8)) svg += '<line class="grid" y1="' + m.t + '" y2="' + (H - m.b) + '" x1="' + x(v) + '" x2="' + x(v) + '"/>' +
    '<text x="' + x(v) + '" y="' + (H - m.b + 14) + '" text-anchor="middle">' + tickText(v, o.logX) + "</text>";
  svg += '<g class="axis"><line x1="' + m.l + '" x2="' + (W - m.r) + '" y1="' + (H - m.b) + '" y2="' + (H - m.b) + '"/>' +
    '<line x1="' + m.l + '" x2="' + m.l + '" y1="' + m.t + '" y2="' + (H - m.b) + '"/></g>';
  svg += '<text x="' + ((m.l + W - m.r) / 2) + '" y="' + (H - 6) + '" text-anchor="middle">' + esc(o.xLabel || "") + "</text>";
  svg += '<text transform="translate(14,' + ((m.t + H - m.b) / 2) + ') rotate(-90)" text-anchor="middle">' + esc(o.yLabel || "") + "</text>";
  if (o.title) svg += '<text x="' + m.l + '" y="13" font-weight="600">' + esc(o.title) + "</text>";
  for (const v of (o.vlines || [])) svg += '<line class="cut" stroke="' + (v.color || "#d62728") + '" x1="' + x(v.x) + '" x2="' + x(v.x) + '" y1="' + m.t + '" y2="' + (H - m.b) + '"/>';
  for (const v of (o.hlines || [])) if (v >= yd[0] && v <= yd[1]) svg += '<line stroke="#333" stroke-dasharray="2 3" x1="' + m.l + '" x2="' + (W - m.r) + '" y1="' + y(v) + '" y2="' + y(v) + '"/>';
  const ok = (vx, vy) => finite(vx) && finite(vy) && (!o.logY || vy > 0) && (!o.logX || vx > 0);
  series.forEach((s, si) => {
    if (s.band) {
      const up = [], down = [];
      s.x.forEach((vx, i) => { if (ok(vx, s.band[1][i]) && ok(vx, s.band[0][i])) { up.push(x(vx) + "," + y(Math.min(yd[1], s.band[1][i]))); down.unshift(x(vx) + "," + y(Math.max(yd[0], s.band[0][i]))); } });
      if (up.length) svg += '<polygon points="' + up.concat(down).join(" ") + '" fill="' + s.color + '" opacity="0.15"/>';
    }
    let d = "", pen = false;
    s.x.forEach((vx, i) => { const vy = s.y[i]; if (ok(vx, vy)) { d += (pen ? "L" : "M") + x(vx).toFixed(1) + "," + y(Math.max(yd[0], Math.min(yd[1], vy))).toFixed(1); pen = true; } else pen = false; });
    svg += '<path d="' + d + '" fill="none" stroke="' + s.color + '" stroke-width="' + (s.width || 1.8) + '" opacity="' + (s.opacity || 1) +
      '"' + (s.dash ? ' stroke-dasharray="' + s.dash + '"' : "") + ' data-series="' + si + '"><title>' + esc(s.name) + "</title></path>";
    if (s.marks) s.x.forEach((vx, i) => { if (ok(vx, s.y[i])) svg += '<circle cx="' + x(vx) + '" cy="' + y(s.y[i]) + '" r="2.2" fill="' + s.color + '"/>'; });
  });
  const shown = series.filter(s => s.name && !s.hideLegend);
  shown.forEach((s, i) => {
    const ly = m.t + 4 + i * 14;
    svg += '<line x1="' + (W - m.r - 150) + '" x2="' + (W - m.r - 130) + '" y1="' + ly + '" y2="' + ly + '" stroke="' + s.color + '" stroke-width="2"' +
      (s.dash ? ' stroke-dasharray="' + s.dash + '"' : "") + ' opacity="' + (s.opacity || 1) + '"/>' +
      '<text x="' + (W - m.r - 126) + '" y="' + (ly + 4) + '">' + esc(s.name.length > 26 ? s.name.slice(0, 25) + "..." : s.name) + "</text>";
  });
  svg += '<g class="overlay"></g></svg>';
  const holder = document.createElement("div");
  holder.innerHTML = svg;
  body.appendChild(holder);
  return {svg: holder.firstChild, x, y, m, W, H};
}

// ---------------------------------------------------------------- heatmaps (canvas)
// matrix[row][col]; o: {cell, log, kind: "seq" | "div", vmin, vmax, rowLabels, colLabels, xLabel, yLabel, title}
function heatmap(body, matrix, o) {
  const rows = matrix.length, cols = rows ? matrix[0].length : 0;
  const cw = o.cellW || Math.max(2, Math.min(16, Math.floor(600 / Math.max(cols, 1))));
  const ch = o.cellH || Math.max(2, Math.min(16, Math.floor(320 / Math.max(rows, 1))));
  const m = {l: o.rowLabels ? 60 : 46, t: o.title ? 20 : 8, b: o.colLabels ? 60 : 34, r: 80};
  const W = m.l + cols * cw + m.r, H = m.t + rows * ch + m.b;
  const canvas = document.createElement("canvas");
  canvas.width = W; canvas.height = H;
  body.appendChild(canvas);
  const ctx = canvas.getContext("2d");
  const flat = matrix.flat().filter(v => finite(v) && (!o.log || v > 0));
  let lo = o.vmin !== undefined ? o.vmin : Math.min(...flat), hi = o.vmax !== undefined ? o.vmax : Math.max(...flat);
  if (!flat.length) { lo = 0; hi = 1; }
  if (o.log) { lo = Math.max(lo, hi * 1e-12); }
  const f = o.log ? Math.log10 : (v => v), a = f(lo), b = f(hi);
  const where = v => (!finite(v) || (o.log && v <= 0)) ? NaN : (f(v) - a) / ((b - a) || 1);
  const colour = o.kind === "div" ? (v => diverging(v)) : (v => viridis(where(v)));
  const image = ctx.createImageData(cols * cw, rows * ch);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
    const rgb = colour(matrix[r][c]);
    for (let dy = 0; dy < ch; dy++) for (let dx = 0; dx < cw; dx++) {
      const p = ((r * ch + dy) * cols * cw + c * cw + dx) * 4;
      image.data[p] = rgb[0]; image.data[p + 1] = rgb[1]; image.data[p + 2] = rgb[2]; image.data[p + 3] = 255;
    }
  }
  ctx.putImageData(image, m.l, m.t);
  ctx.fillStyle = "#222"; ctx.font = "11px sans-serif";
  if (o.title) ctx.fillText(o.title, m.l, 13);
  ctx.textAlign = "right";
  const rowEvery = Math.max(1, Math.ceil(12 / ch)), colEvery = Math.max(1, Math.ceil(14 / cw));
  for (let r = 0; r < rows; r += rowEvery) ctx.fillText(o.rowLabels ? o.rowLabels[r] : String(r), m.l - 4, m.t + r * ch + ch / 2 + 4);
  ctx.textAlign = "center";
  for (let c = 0; c < cols; c += (o.colLabels ? 1 : Math.max(colEvery, 5))) {
    const cx = m.l + c * cw + cw / 2, cy = m.t + rows * ch + 12;
    if (o.colLabels) { ctx.save(); ctx.translate(cx, cy); ctx.rotate(-Math.PI / 3); ctx.textAlign = "right"; ctx.fillText(o.colLabels[c], 4, 4); ctx.restore(); }
    else ctx.fillText(String(c), cx, cy);
  }
  if (o.xLabel) ctx.fillText(o.xLabel, m.l + cols * cw / 2, H - 6);
  if (o.yLabel) { ctx.save(); ctx.translate(12, m.t + rows * ch / 2); ctx.rotate(-Math.PI / 2); ctx.fillText(o.yLabel, 0, 0); ctx.restore(); }
  const bx = m.l + cols * cw + 14, bh = Math.max(rows * ch, 60);      // colour bar
  for (let i = 0; i < bh; i++) {
    const w = 1 - i / bh, v = o.kind === "div" ? lo + w * (hi - lo) : (o.log ? Math.pow(10, a + w * (b - a)) : lo + w * (hi - lo));
    const rgb = o.kind === "div" ? diverging(v) : viridis(w);
    ctx.fillStyle = "rgb(" + rgb.join(",") + ")"; ctx.fillRect(bx, m.t + i, 12, 1);
  }
  ctx.fillStyle = "#222"; ctx.textAlign = "left";
  ctx.fillText(fmt(hi), bx + 15, m.t + 9); ctx.fillText(fmt(lo), bx + 15, m.t + bh);
  canvas.addEventListener("mousemove", ev => {
    const rect = canvas.getBoundingClientRect();
    const c = Math.floor((ev.clientX - rect.left - m.l) / cw), r = Math.floor((ev.clientY - rect.top - m.t) / ch);
    if (r >= 0 && r < rows && c >= 0 && c < cols) showTip(ev, (o.tip ? o.tip(r, c) : ("row " + r + ", column " + c)) + ": " + fmt(matrix[r][c]));
    else hideTip();
  });
  canvas.addEventListener("mouseleave", hideTip);
  return canvas;
}

// ---------------------------------------------------------------- the unrolled graph
const STEP_W = 30, STEP_GAP = 12, LEVEL_W = 86, OP_H = 24, OP_W = 74, BUS_GAP = 17, FIRST_X = 150;
function graphPanel(body, run) {
  const g = run.graph;
  if (!g) { leftOut(body, {left_out: "the graph panel was turned off (graph=False)"}); return; }
  const T = run.steps, K = run.layers.length;
  const open = new Set((QUERY.get("open") || "").split(",").filter(v => v !== "" && Number(v) < T).map(v => "0:" + Number(v)));
  const holder = document.createElement("div");
  const controls = document.createElement("div");
  controls.className = "controls";
  controls.innerHTML = '<button data-act="first">open step 0</button><button data-act="last">open the last step</button>' +
    '<button data-act="close">close all</button> <span class="note">' + g.nodes.length + " ops, " + g.leaves.length + " leaves, " + g.edges.length +
    " edges; hover a box, an op or an edge for its numbers</span>";
  body.appendChild(controls); body.appendChild(holder);
  const norms = g.edges.map(e => e[2]).concat(g.leaves.map(l => l[5])).filter(v => finite(v) && v > 0);
  const lo = Math.log10(Math.min(...norms, 1e300)), hi = Math.log10(Math.max(...norms, 1e-300));
  const colourOf = n => (!finite(n) || n <= 0) ? "#bbb" : heat(hi === lo ? 0.5 : (Math.log10(n) - lo) / (hi - lo));
  const key = (k, t) => k + ":" + t;
  const members = {};
  g.nodes.forEach((n, i) => { const kk = key(n[3], n[4]); (members[kk] = members[kk] || []).push(i); });
  g.leaves.forEach((l, j) => { if (l[3] >= 0) { const kk = key(l[3], l[4]); (members[kk] = members[kk] || []).push(-1 - j); } });
  const clusterOf = end => end >= 0 ? key(g.nodes[end][3], g.nodes[end][4]) : (g.leaves[-1 - end][2] ? "param:" + (-1 - end) : key(g.leaves[-1 - end][3], g.leaves[-1 - end][4]));
  const inputsOf = {};
  g.edges.forEach(e => { (inputsOf[e[1]] = inputsOf[e[1]] || []).push(e[0]); });
  function levels(kk) {                 // longest path from the cluster's entries: its ops' columns
    const ids = members[kk] || [], inside = new Set(ids), level = {};
    const order = ids.slice().sort((a, b) => a - b);
    let changed = true, guard = 0;
    order.forEach(i => level[i] = 0);
    while (changed && guard++ < 200) {
      changed = false;
      for (const i of order) if (i >= 0) for (const s of (inputsOf[i] || [])) if (inside.has(s) && level[s] + 1 > level[i]) { level[i] = level[s] + 1; changed = true; }
    }
    return level;
  }
  function draw() {
    const params = g.leaves.map((l, j) => [l, j]).filter(([l]) => l[2]);
    const top = 40 + params.length * BUS_GAP + 24, rowH = {}, rowY = {};
    const colX = {}, colW = {}, lv = {};
    let x = FIRST_X;
    for (let t = 0; t < T; t++) {
      colX[t] = x;
      let width = STEP_W;
      for (let k = 0; k < K; k++) if (open.has(key(k, t))) {
        lv[key(k, t)] = levels(key(k, t));
        const depth = Math.max(0, ...Object.values(lv[key(k, t)])) + 1;
        width = Math.max(width, depth * LEVEL_W + 10);
      }
      colW[t] = width; x += width + STEP_GAP;
    }
    const outsideKey = key(-1, -1), outsideOpen = open.has(outsideKey);
    if (outsideOpen) lv[outsideKey] = levels(outsideKey);
    const outsideX = x + 20, outsideW = outsideOpen ? (Math.max(0, ...Object.values(lv[outsideKey])) + 1) * LEVEL_W + 10 : 60;
    let y = top;
    for (let k = 0; k < K; k++) {
      let height = 46;
      for (let t = 0; t < T; t++) if (open.has(key(k, t))) {
        const counts = {};
        Object.values(lv[key(k, t)]).forEach(l => counts[l] = (counts[l] || 0) + 1);
        height = Math.max(height, Math.max(...Object.values(counts)) * (OP_H + 6) + 20);
      }
      rowY[k] = y; rowH[k] = height; y += height + 30;
    }
    const outsideY = top, outsideH = Math.max(y - top - 30, 46);
    if (outsideOpen) {
      const counts = {};
      Object.values(lv[outsideKey]).forEach(l => counts[l] = (counts[l] || 0) + 1);
      const need = Math.max(...Object.values(counts), 1) * (OP_H + 6) + 20;
      if (need > outsideH) { y += need - outsideH; }
    }
    const W = outsideX + outsideW + 30, H = Math.max(y, top + Math.max(outsideH, 0) + 30) + 10;
    const pos = {};                         // node or leaf index -> [x, y] when it is drawn on its own
    function place(kk, bx, by, bw, bh) {
      const level = lv[kk], slots = {};
      for (const i of (members[kk] || []).slice().sort((a, b) => a - b)) {
        const l = level[i] || 0, s = slots[l] = (slots[l] || 0) + 1;
        pos[i] = [bx + 8 + l * LEVEL_W + OP_W / 2, by + 10 + (s - 1) * (OP_H + 6) + OP_H / 2];
      }
    }
    const box = {};
    for (let k = 0; k < K; k++) for (let t = 0; t < T; t++) {
      const kk = key(k, t), isOpen = open.has(kk);
      box[kk] = [colX[t], rowY[k], isOpen ? colW[t] : STEP_W, rowH[k]];
      if (isOpen) place(kk, colX[t], rowY[k], colW[t], rowH[k]);
    }
    box[outsideKey] = [outsideX, outsideY, outsideW, outsideOpen ? H - outsideY - 20 : outsideH];
    if (outsideOpen) place(outsideKey, outsideX, outsideY);
    const busOf = {};                 // parameter leaf -> its row: drawn once, with a bus along the steps
    params.forEach(([l, j], i) => { busOf[j] = i; pos[-1 - j] = [74, 30 + i * BUS_GAP]; });
    const anchor = origin => {         // where an edge from a node or leaf leaves
      if (pos[origin]) return origin >= 0 ? [pos[origin][0] + OP_W / 2, pos[origin][1]] : pos[origin];
      const kk = clusterOf(origin), b = box[kk];
      return b ? [b[0] + b[2], b[1] + b[3] / 2] : [0, 0];
    };
    const target = (i) => {
      if (pos[i]) return [pos[i][0] - OP_W / 2, pos[i][1]];
      const b = box[clusterOf(i)];
      return b ? [b[0], b[1] + b[3] / 2] : [0, 0];
    };
    let svg = '<svg width="' + W + '" height="' + H + '">';
    svg += '<text x="8" y="' + (top - 6) + '" font-weight="600">t =</text>';
    for (let t = 0; t < T; t++) if (T <= 60 || t % 5 === 0 || open.has(key(0, t))) svg += '<text x="' + (colX[t] + 4) + '" y="' + (top - 6) + '">' + t + "</text>";
    for (let k = 0; k < K; k++) svg += '<text x="8" y="' + (rowY[k] + rowH[k] / 2 + 4) + '">' + esc(run.layers[k]) + "</text>";
    const marks = run.marks || {};
    [["truncate", "#d62728", "BPTT cut"], ["checkpoint", "#2ca02c", "checkpoint"]].forEach(([name, colour, text]) => {
      for (const t of (marks[name] || [])) {
        const mx = colX[t] - STEP_GAP / 2;
        svg += '<line class="cut" stroke="' + colour + '" x1="' + mx + '" x2="' + mx + '" y1="' + (top - 18) + '" y2="' + (H - 6) + '"><title>' + text + " before step " + t + "</title></line>";
      }
    });
    // edges, grouped by what is drawn at their ends
    const groups = {};
    g.edges.forEach(([s, d, n]) => {
      const a = pos[s] ? "o" + s : "c" + clusterOf(s), b = pos[d] ? "o" + d : "c" + clusterOf(d);
      if (a === b) return;
      const gk = a + "|" + b;
      const grp = groups[gk] = groups[gk] || {s, d, n: null, count: 0};
      grp.count++;
      if (finite(n) && (grp.n === null || n > grp.n)) grp.n = n;
    });
    let edges = "";
    const busEnd = {};
    for (const grp of Object.values(groups)) {
      const [x1, y1] = anchor(grp.s), [x2, y2] = target(grp.d);
      const fromParam = grp.s < 0 && g.leaves[-1 - grp.s][2];
      const mx = (x1 + x2) / 2;
      let path = "M" + x1 + "," + y1 + " C" + mx + "," + y1 + " " + mx + "," + y2 + " " + x2 + "," + y2;
      if (fromParam) {                  // a drop from the parameter's bus into the step (or op) that uses it
        const i = busOf[-1 - grp.s], b = box[clusterOf(grp.d)];
        const dx = pos[grp.d] ? pos[grp.d][0] : b[0] + 3 + i * (b[2] - 6) / Math.max(1, params.length - 1);
        path = "M" + dx + "," + y1 + " L" + dx + "," + (pos[grp.d] ? y2 - OP_H / 2 : b[1]);
        busEnd[i] = Math.max(busEnd[i] || 0, dx);
      }
      const crossing = !fromParam && grp.s >= 0 && crossesCut(grp.s, grp.d);
      edges += '<path d="' + path + '" fill="none" stroke="' + colourOf(grp.n) + '" stroke-width="' + (fromParam ? 0.9 : 1.6) + '" opacity="' + (fromParam ? 0.55 : 0.9) + '"' +
        (crossing ? ' stroke-dasharray="4 3"' : "") + "><title>" + (grp.count > 1 ? grp.count + " edges, largest " : "") + "||dL/dv|| = " + fmt(grp.n) + (crossing ? " (cut by truncation)" : "") + "</title></path>";
    }
    function crossesCut(s, d) {
      const cuts = (marks.truncate || []);
      const ts = g.nodes[s][4], td = d >= 0 ? g.nodes[d][4] : -1;
      return ts >= 0 && td >= 0 && cuts.some(c => ts < c && td >= c);
    }
    for (let k = 0; k < K; k++) for (let t = 0; t < T; t++) {
      const kk = key(k, t), b = box[kk], isOpen = open.has(kk), n = (members[kk] || []).length;
      svg += '<rect class="step' + (isOpen ? " open" : "") + '" data-key="' + kk + '" data-t="' + t + '" x="' + b[0] + '" y="' + b[1] + '" width="' + b[2] + '" height="' + b[3] + '" rx="4"><title>' +
        esc(run.layers[k]) + ", step " + t + ": " + n + " ops (click to " + (isOpen ? "close" : "open") + ")</title></rect>";
    }
    const ob = box[outsideKey];
    svg += '<rect class="step' + (outsideOpen ? " open" : "") + '" data-key="' + outsideKey + '" x="' + ob[0] + '" y="' + ob[1] + '" width="' + ob[2] + '" height="' + ob[3] + '" rx="4"><title>outside the steps: ' +
      (members[outsideKey] || []).length + " ops (loss, readout, stacking)</title></rect>" +
      '<text x="' + (ob[0] + 4) + '" y="' + (ob[1] - 4) + '">loss</text>';
    params.forEach(([l, j], i) => {
      const y = 30 + i * BUS_GAP;
      svg += '<line x1="140" x2="' + (busEnd[i] || 140) + '" y1="' + y + '" y2="' + y + '" stroke="#c9b871" stroke-width="1"/>';
    });
    svg += edges;                       // over the boxes, under the ops
    for (const [i, p] of Object.entries(pos)) {
      const idx = Number(i);
      if (idx >= 0) {
        const n = g.nodes[idx], full = n[1] ? n[0] + " " + n[1] : n[0];
        const label = n[1] ? (n[0] === "Identity" ? n[1] : n[0].replace("Sigmoid", "\u03c3") + " " + n[1]) : n[0];
        const root = g.roots.includes(idx);
        svg += '<g><rect class="op" x="' + (p[0] - OP_W / 2) + '" y="' + (p[1] - OP_H / 2) + '" width="' + OP_W + '" height="' + OP_H + '" rx="3"' + (root ? ' stroke-width="2.5"' : "") + "/>" +
          '<text x="' + p[0] + '" y="' + (p[1] + 4) + '" text-anchor="middle">' + esc(label.length > 13 ? label.slice(0, 12) + "." : label) + "</text><title>" +
          esc(full + "\nshape " + JSON.stringify(n[2])) + "</title></g>";
      } else {
        const l = g.leaves[-1 - idx];
        const cls = l[2] ? "param" : "input";
        svg += '<g><ellipse class="' + cls + '" cx="' + p[0] + '" cy="' + p[1] + '" rx="' + (l[2] ? 66 : 32) + '" ry="' + (l[2] ? 8 : 11) + '"/><text x="' + p[0] + '" y="' + (p[1] + 4) + '" text-anchor="middle">' +
          esc(l[0].length > 20 ? l[0].slice(0, 19) + "." : l[0]) + "</text><title>" + esc(l[0] + " " + JSON.stringify(l[1]) + (l[2] ? "\n||dL/dθ|| = " + fmt(l[5]) : "")) + "</title></g>";
      }
    }
    svg += "</svg>";
    holder.innerHTML = svg;
    holder.querySelectorAll("rect.step").forEach(r => r.addEventListener("click", () => {
      const kk = r.getAttribute("data-key");
      if (open.has(kk)) open.delete(kk); else open.add(kk);
      draw();
    }));
  }
  controls.addEventListener("click", ev => {
    const act = ev.target.getAttribute && ev.target.getAttribute("data-act");
    if (act === "first") open.add(key(0, 0));
    if (act === "last") open.add(key(0, T - 1));
    if (act === "close") open.clear();
    if (act) draw();
  });
  draw();
  graphPanel.highlight = t => holder.querySelectorAll("rect.step").forEach(r => r.classList.toggle("now", Number(r.getAttribute("data-t")) === t && r.hasAttribute("data-t")));
}

// ---------------------------------------------------------------- the other panels
function gradientsPanel(body, run) {
  const gr = run.gradients, T = run.steps, t = range(T);
  const series = [];
  DATA.runs.forEach((other, ri) => {
    if (ri === current || other.kind !== "recurrent" || !other.gradients) return;
    other.gradients.norms.forEach((layer, k) => series.push({name: other.name + (other.layers.length > 1 ? " " + other.layers[k] : "") + " h",
      x: range(other.steps), y: layer.h || Object.values(layer)[0], color: PALETTE[ri % PALETTE.length], opacity: 0.35, width: 1.2}));
  });
  gr.norms.forEach((layer, k) => gr.parts[k].forEach((part, pi) => series.push({
    name: run.name + (run.layers.length > 1 ? " " + run.layers[k] : "") + ": ||dL/d" + part + "_t||", x: t, y: layer[part],
    color: PALETTE[(current + k) % PALETTE.length], dash: pi ? "6 3" : null, width: 2.2})));
  const cuts = (run.marks.truncate || []).map(v => ({x: v - 0.5, color: "#d62728"})).concat((run.marks.checkpoint || []).map(v => ({x: v - 0.5, color: "#2ca02c"})));
  const controls = document.createElement("div");
  controls.className = "controls";
  controls.innerHTML = '<button data-act="play">&#9654; play the backward pass</button><button data-act="all">show all</button> <span class="note" data-role="where"></span>';
  body.appendChild(controls);
  const plot = linePlot(body, series, {width: 860, height: 300, logY: true, xLabel: "time step t", yLabel: "gradient norm", vlines: cuts, xDomain: [0, Math.max(T - 1, 1)]});
  const own = Array.from(plot.svg.querySelectorAll("path[data-series]")).slice(series.length - gr.parts.flat().length);
  const where = controls.querySelector('[data-role="where"]');
  const overlay = plot.svg.querySelector("g.overlay");
  function reveal(upTo) {           // show the steps >= upTo: the backward pass has reached step upTo
    const w = plot.W;
    own.forEach(p => p.style.clipPath = "inset(0 0 0 " + Math.max(0, plot.x(upTo) - 1) + "px)");
    overlay.innerHTML = '<line x1="' + plot.x(upTo) + '" x2="' + plot.x(upTo) + '" y1="' + plot.m.t + '" y2="' + (plot.H - plot.m.b) + '" stroke="#d2282e" stroke-width="1.5"/>';
    const values = gr.norms.map((layer, k) => gr.parts[k].map(p => p + "=" + fmt(layer[p][upTo])).join(", ")).join("; ");
    where.textContent = "backward pass at step " + upTo + ": " + values;
    if (graphPanel.highlight) graphPanel.highlight(upTo);
    void w;
  }
  controls.addEventListener("click", ev => {
    const act = ev.target.getAttribute && ev.target.getAttribute("data-act");
    if (timer) { clearInterval(timer); timer = null; }
    if (act === "play") {
      let s = T - 1;
      reveal(s);
      timer = setInterval(() => { s -= 1; if (s < 0) { clearInterval(timer); timer = null; return; } reveal(s); }, Math.max(25, 2500 / T));
    }
    if (act === "all") { own.forEach(p => p.style.clipPath = ""); overlay.innerHTML = ""; where.textContent = ""; if (graphPanel.highlight) graphPanel.highlight(-1); }
  });
  if (QUERY.get("play") !== null) controls.querySelector('[data-act="play"]').click();
  const contrib = Object.entries(gr.contributions).map(([name, y], i) => ({name, x: t, y, color: PALETTE[(i + 2) % PALETTE.length], width: 1.4}));
  if (contrib.length) linePlot(body, contrib, {width: 860, height: 230, logY: true, xLabel: "time step t", yLabel: "||dL/dθ_t||", title: "each step's share of each parameter's gradient", xDomain: [0, Math.max(T - 1, 1)]});
}

function connectivityPanel(body, run) {
  if (leftOut(body, run.connectivity)) return;
  const c = run.connectivity;
  heatmap(body, c.matrix, {log: true, xLabel: "input step s", yLabel: "output step t", tip: (r, col) => "t = " + r + ", s = " + col, title: "||∂y_t/∂x_s|| over the first " + c.rows + " example(s)"});
}

function jacobiansPanel(body, run) {
  const row = document.createElement("div");
  row.className = "row";
  body.appendChild(row);
  run.jacobians.forEach((j, k) => {
    const box = document.createElement("div");
    row.appendChild(box);
    const mean = j.log_norms, std = j.log_norms_std;
    const series = [{name: "measured (mean)", x: j.windows, y: mean, color: "#1f77b4", marks: true,
      band: [mean.map((v, i) => finite(v) && finite(std[i]) ? v - std[i] : null), mean.map((v, i) => finite(v) && finite(std[i]) ? v + std[i] : null)]}];
    if (j.log_bound) series.push({name: "bound w log η, η = " + fmt(j.eta), x: j.windows, y: j.log_bound, color: "#d62728", dash: "6 3"});
    linePlot(box, series, {width: 460, height: 270, xLabel: "window length w", yLabel: "log ||J_t ... J_t-w+1||", hlines: [0], title: run.layers[k] + " (" + run.cells[k] + ")"});
    const sv = j.singular_values, T = sv.length;
    const controls = document.createElement("div");
    controls.className = "controls";
    controls.innerHTML = 'step t: <input type="range" min="1" max="' + T + '" value="' + T + '"> <span></span>';
    box.appendChild(controls);
    const plotHolder = document.createElement("div");
    box.appendChild(plotHolder);
    const all = sv.flat().filter(v => finite(v) && v > 0);
    const yDomain = [Math.min(...all, 0.5) * 0.8, Math.max(...all, 1.5) * 1.2];
    const slider = controls.querySelector("input"), label = controls.querySelector("span");
    function show(t) {
      plotHolder.innerHTML = "";
      const values = sv[t - 1];
      linePlot(plotHolder, [{name: "σ_i(J_" + t + ")", x: range(values.length).map(i => i + 1), y: values, color: "#9467bd", marks: true}],
        {width: 460, height: 240, logY: true, yDomain, xLabel: "index i (largest first)", yLabel: "singular value", hlines: [1]});
      label.textContent = "σ_max = " + fmt(values[0]) + ", σ_min = " + fmt(values[values.length - 1]) + " (mean over " + j.rows + " example(s))";
    }
    slider.addEventListener("input", () => show(Number(slider.value)));
    show(T);
  });
}

function gatesPanel(body, run) {
  let any = false;
  run.gates.forEach((layer, k) => {
    const names = Object.keys(layer);
    if (!names.length) return;
    any = true;
    const row = document.createElement("div");
    row.className = "row";
    body.appendChild(row);
    names.forEach(name => {
      const gate = layer[name];
      const box = document.createElement("div");
      row.appendChild(box);
      heatmap(box, gate.values, {kind: gate.kind === "tanh" ? "div" : "seq", vmin: gate.kind === "tanh" ? -1 : 0, vmax: 1,
        cellW: Math.max(2, Math.min(8, Math.floor(420 / run.steps))), cellH: Math.max(2, Math.min(8, Math.floor(160 / gate.values.length))),
        xLabel: "step t", yLabel: "unit", title: run.layers[k] + ": " + name + " (" + gate.kind + ")", tip: (r, c) => "unit " + r + ", t = " + c});
    });
    const t = range(run.steps);
    const series = names.flatMap((name, i) => [
      {name: name + " saturated", x: t, y: layer[name].saturation, color: PALETTE[i % PALETTE.length], width: 2},
      {name: name + " mean", x: t, y: layer[name].mean, color: PALETTE[i % PALETTE.length], dash: "2 3", width: 1.2}]);
    linePlot(body, series, {width: 860, height: 240, yDomain: [-0.02, 1.02], xLabel: "time step t", yLabel: "fraction / value", title: run.layers[k] + ": saturated fraction (solid) and mean value (dotted)"});
  });
  if (!any) leftOut(body, {left_out: "this cell names no gates (a plain RNN has none; a cell names its own with nn.named or a GateLayout)"});
}

function truncationPanel(body, run) {
  const row = document.createElement("div");
  row.className = "row";
  body.appendChild(row);
  const runs = DATA.runs.map((r, i) => [r, i]).filter(([r]) => r.kind === "recurrent" && r.truncation && !r.truncation.left_out);
  const style = (r, i) => ({color: PALETTE[i % PALETTE.length], opacity: i === current ? 1 : 0.4, width: i === current ? 2.2 : 1.2});
  const mark = run.marks.truncate ? [{x: run.marks.truncate[0], color: "#d62728"}] : [];
  linePlot(row, runs.map(([r, i]) => ({name: r.name, x: r.truncation.ks, y: r.truncation.cosine, ...style(r, i)})),
    {width: 380, height: 260, logX: true, xLabel: "truncation length k", yLabel: "cosine with full BPTT", vlines: mark});
  linePlot(row, runs.map(([r, i]) => ({name: r.name, x: r.truncation.ks, y: r.truncation.relative_error, ...style(r, i)})),
    {width: 380, height: 260, logX: true, logY: true, xLabel: "truncation length k", yLabel: "||g_k - g|| / ||g||", vlines: mark});
  linePlot(row, runs.map(([r, i]) => ({name: r.name, x: range(r.truncation.lag_norms.length), y: r.truncation.lag_norms, ...style(r, i)})),
    {width: 380, height: 260, logY: true, xLabel: "lag (steps back)", yLabel: "||D_lag||"});
}

function rtrlPanel(body, run) {
  if (leftOut(body, run.rtrl)) return;
  const r = run.rtrl;
  let rows = "";
  for (const p of r.params) rows += "<tr><td>" + esc(p.name) + "</td><td>" + p.size + "</td><td>" + fmt(p.bptt_norm) + "</td><td>" + fmt(p.rtrl_norm) +
    "</td><td>" + fmt(p.max_difference) + "</td><td>" + fmt(p.relative_difference) + "</td></tr>";
  body.insertAdjacentHTML("beforeend", '<table class="numbers"><tr><th>parameter</th><th>size</th><th>||g|| BPTT</th><th>||g|| RTRL</th><th>max |difference|</th><th>relative</th></tr>' + rows + "</table>" +
    '<p class="note">on the first ' + r.rows + " example(s), " + r.parameters + " parameters: loss " + fmt(r.loss_bptt) + " (BPTT) and " + fmt(r.loss_rtrl) +
    " (RTRL); BPTT took " + fmt(r.seconds_bptt) + " s, RTRL " + fmt(r.seconds_rtrl) + " s.</p>");
  const rel = r.params.map(p => p.relative_difference);
  const W = 620, H = 30 + 22 * r.params.length;
  const positive = rel.filter(v => finite(v) && v > 0);
  const lo = Math.min(...positive, 1e-16), x = scale(Math.min(lo, 1e-17), 1, 150, W - 20, true);
  let svg = '<svg width="' + W + '" height="' + H + '"><text x="150" y="12">largest |RTRL - BPTT| / largest |BPTT|, per parameter (log scale)</text>';
  r.params.forEach((p, i) => {
    const v = finite(p.relative_difference) && p.relative_difference > 0 ? p.relative_difference : x.domain[0];
    svg += '<text x="145" y="' + (36 + i * 22) + '" text-anchor="end">' + esc(p.name) + '</text><rect x="150" y="' + (24 + i * 22) + '" height="16" width="' + Math.max(1, x(v) - 150) + '" fill="#9467bd"><title>' + fmt(p.relative_difference) + "</title></rect>";
  });
  for (const v of ticks(x.domain[0], 1, true, 6)) svg += '<text x="' + x(v) + '" y="' + (H - 2) + '" text-anchor="middle">' + tickText(v, true) + "</text>";
  body.insertAdjacentHTML("beforeend", svg + "</svg>");
}

function attentionPanel(body, run) {
  const row = document.createElement("div");
  row.className = "row";
  body.appendChild(row);
  run.examples.forEach((e, i) => {
    for (const [which, tokens, amap] of [["greedy", e.greedy, e.greedy_attention], ["beam " + run.beam_size, e.beam, e.beam_attention]]) {
      const box = document.createElement("div");
      row.appendChild(box);
      if (!tokens.length || !amap.length) { box.innerHTML = '<p class="note">example ' + i + " (" + which + "): nothing written</p>"; continue; }
      heatmap(box, amap, {vmin: 0, vmax: 1, cellW: 16, cellH: 16, rowLabels: tokens, colLabels: e.source, title: "example " + i + ", " + which + ": " + e.source.join("").slice(0, 40),
        tip: (r, c) => "writing " + tokens[r] + ", looking at " + e.source[c]});
    }
  });
}

function beamPanel(body, run) {
  run.examples.forEach((e, ei) => {
    const nodes = e.tree.nodes, steps = e.tree.steps;
    const children = nodes.map(() => []);
    nodes.forEach((n, i) => { if (n[1] >= 0) children[n[1]].push(i); });
    const yOf = {};
    let leafRow = 0;
    (function order(i) {                                 // depth-first, leaves in order: an iterative walk
      const stack = [[i, false]];
      while (stack.length) {
        const [n, done] = stack.pop();
        if (done) { const ys = children[n].map(c => yOf[c]); yOf[n] = ys.length ? (Math.min(...ys) + Math.max(...ys)) / 2 : leafRow++; continue; }
        stack.push([n, true]);
        for (let c = children[n].length - 1; c >= 0; c--) stack.push([children[n][c], false]);
      }
    })(0);
    const W = 120 + (steps + 1) * 70, H = 40 + leafRow * 22;
    const X = t => 40 + (t + 1) * 70, Y = i => 30 + yOf[i] * 22;
    let svg = '<svg width="' + W + '" height="' + H + '"><text x="4" y="14" font-weight="600">example ' + ei + ": " + esc(e.source.join("").slice(0, 60)) + " &#8594; " + esc(e.beam.join("")) + "</text>";
    nodes.forEach((n, i) => { if (n[1] >= 0) svg += '<line x1="' + X(nodes[n[1]][2]) + '" y1="' + Y(n[1]) + '" x2="' + X(n[2]) + '" y2="' + Y(i) + '" stroke="' + (n[5] ? "#d62728" : "#99a") + '" stroke-width="' + (n[5] ? 2.5 : 1) + '"/>'; });
    nodes.forEach((n, i) => {
      const shape = n[4] === "ended" ? '<rect x="' + (X(n[2]) - 9) + '" y="' + (Y(i) - 9) + '" width="18" height="18"' : '<circle cx="' + X(n[2]) + '" cy="' + Y(i) + '" r="9"';
      svg += "<g>" + shape + ' fill="' + (n[5] ? "#fde0dd" : "#fff") + '" stroke="' + (n[5] ? "#d62728" : "#667") + '"/><text x="' + X(n[2]) + '" y="' + (Y(i) + 4) + '" text-anchor="middle">' + esc(n[0].length > 4 ? n[0].slice(0, 3) + "." : n[0]) +
        "</text><title>" + esc(n[0] + " at step " + n[2] + ": log p = " + fmt(n[3]) + " (" + n[4] + ")") + "</title></g>";
    });
    body.insertAdjacentHTML("beforeend", svg + "</svg>");
  });
}

// ---------------------------------------------------------------- the page
const PANELS = {graph: graphPanel, gradients: gradientsPanel, connectivity: connectivityPanel, jacobians: jacobiansPanel,
                gates: gatesPanel, truncation: truncationPanel, rtrl: rtrlPanel, attention: attentionPanel, beam: beamPanel};
const RECURRENT = ["graph", "gradients", "connectivity", "jacobians", "gates", "truncation", "rtrl"], SEQ2SEQ = ["attention", "beam"];

function report() {
  const status = document.getElementById("explore-status");
  document.body.setAttribute("data-explore", ERRORS.length ? "error" : "ok");
  document.body.setAttribute("data-rendered", RENDERED.join(" "));
  status.textContent = (ERRORS.length ? "errors:\n" + ERRORS.join("\n") + "\n" : "") + "rendered panels: " + RENDERED.join(", ");
}

function show(index) {
  if (timer) { clearInterval(timer); timer = null; }
  current = index;
  graphPanel.highlight = null;
  const run = DATA.runs[index];
  document.querySelectorAll("#runs button").forEach((b, i) => b.classList.toggle("on", i === index));
  document.getElementById("summary").textContent = run.kind === "recurrent"
    ? run.model + " | T = " + run.steps + ", B = " + run.batch + ", loss = " + fmt(run.loss)
    : run.model + " | " + run.examples.length + " example(s), beam " + run.beam_size;
  const wanted = run.kind === "recurrent" ? RECURRENT : SEQ2SEQ;
  RENDERED.length = 0;
  for (const [key, draw] of Object.entries(PANELS)) {
    const section = document.getElementById("panel-" + key), body = section.querySelector(".body");
    body.innerHTML = "";
    section.style.display = wanted.includes(key) ? "" : "none";
    if (!wanted.includes(key)) continue;
    try { draw(body, run); RENDERED.push(key); }
    catch (err) { ERRORS.push(key + ": " + (err && err.stack ? err.stack.split("\n").slice(0, 3).join(" | ") : err)); body.insertAdjacentHTML("beforeend", '<p class="left-out">This panel failed to draw: ' + esc(String(err)) + "</p>"); }
  }
  report();
}

(function start() {
  const runs = document.getElementById("runs");
  DATA.runs.forEach((run, i) => {
    const b = document.createElement("button");
    b.textContent = run.name;
    b.addEventListener("click", () => show(i));
    runs.appendChild(b);
  });
  if (!DATA.runs.length) { ERRORS.push("the page holds no run"); report(); return; }
  const wanted = QUERY.get("run");
  show(wanted !== null && DATA.runs[Number(wanted)] ? Number(wanted) : 0);
})();
"""
