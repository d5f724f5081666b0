"""The page's script: reads the embedded JSON and draws every panel as inline SVG or canvas.

Written for the page alone (no library): small helpers for scales, axes, line plots and
heatmaps, then one function per panel. SVG is written as markup (the HTML parser puts it
in the SVG namespace, so the file names no namespace address). Every panel is drawn
inside a try block; an error is written into the page (``#explore-status``, and
``data-explore="error"`` on the body), so a headless browser's DOM tells whether every
panel rendered. The query string picks what is shown first: ``?run=1&open=0,5&play``
shows the second run with steps 0 and 5 of the graph open and the backward pass playing.
"""

SCRIPT = r"""
"use strict";
const DATA = JSON.parse(document.getElementById("explore-data").textContent);
const QUERY = new URLSearchParams(location.search);
const ERRORS = [], RENDERED = [];
window.addEventListener("error", e => { ERRORS.push("script: " + e.message); report(); });
let current = 0, timer = null;

// ---------------------------------------------------------------- numbers and scales
function esc(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}
function finite(v) { return typeof v === "number" && isFinite(v); }
function range(n) { return Array.from({length: n}, (_, i) => i); }
function fmt(v) {
  if (v === null || v === undefined) return "none";
  if (typeof v !== "number") return String(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  return (a >= 1e4 || a < 1e-3) ? v.toExponential(2) : v.toPrecision(4).replace(/\.?0+$/, "");
}
function short(text, n) { return text.length > n ? text.slice(0, n - 1) + "." : text; }
function extent(values, positive) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (finite(v) && (!positive || v > 0)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (lo === Infinity) return positive ? [1e-3, 1] : [0, 1];
  if (lo === hi) return positive ? [lo / 2, hi * 2] : [lo - 0.5, hi + 0.5];
  return [lo, hi];
}
function scale(d0, d1, r0, r1, log) {
  const f = log ? Math.log10 : (v => v), a = f(d0), b = f(d1);
  const s = v => r0 + (f(v) - a) / ((b - a) || 1) * (r1 - r0);
  s.domain = [d0, d1];
  return s;
}
function ticks(d0, d1, log, count) {
  const inside = v => v >= d0 * (1 - 1e-9) - 1e-300 && v <= d1 * (1 + 1e-9) + 1e-300;
  const out = [];
  if (log) {
    const lo = Math.floor(Math.log10(d0)), hi = Math.ceil(Math.log10(d1));
    const every = Math.max(1, Math.ceil((hi - lo) / count));
    for (let e = lo; e <= hi; e += every) if (inside(Math.pow(10, e))) out.push(Math.pow(10, e));
    if (out.length < 3) {             // less than two decades: 1, 2 and 5 times each power of ten
      out.length = 0;
      for (let e = lo - 1; e <= hi; e++) {
        for (const m of [1, 2, 5]) if (inside(m * Math.pow(10, e))) out.push(m * Math.pow(10, e));
      }
    }
    return out.length ? out : [d0, d1];
  }
  const span = d1 - d0, mag = Math.pow(10, Math.floor(Math.log10(span / count || 1)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => span / s <= count) || mag * 10;
  for (let v = Math.ceil(d0 / step) * step; v <= d1 + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}
function tickText(v, log) {
  if (!log) return fmt(v);
  const e = Math.floor(Math.log10(v) + 1e-9), m = Math.round(v / Math.pow(10, e));
  return (e >= -2 && e <= 3) ? fmt(v) : (m === 1 ? "" : m + "\u00d7") + "1e" + e;
}

// ---------------------------------------------------------------- colours
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"];
const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
                 [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
function hsv(h, s, v) {
  const i = Math.floor(h * 6), f = h * 6 - i, p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
  const rgb = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][i % 6];
  return `rgb(${rgb.map(c => Math.round(c * 255)).join(",")})`;
}
function heat(where) {              // 0: blue, 1: red, as study.graph colours its DOT edges
  return hsv(0.66 * (1 - Math.max(0, Math.min(1, where))), 0.85, 0.85);
}
function viridis(where) {
  if (!finite(where)) return [235, 235, 235];
  const x = Math.max(0, Math.min(1, where)) * (VIRIDIS.length - 1), i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  return VIRIDIS[i].map((c, k) => Math.round(c + (x - i) * (VIRIDIS[i + 1][k] - c)));
}
function diverging(v) {             // -1: blue, 0: white, 1: red
  if (!finite(v)) return [235, 235, 235];
  const w = Math.max(-1, Math.min(1, v));
  return w < 0 ? [Math.round(255 + w * 200), Math.round(255 + w * 140), 255]
               : [255, Math.round(255 - w * 170), Math.round(255 - w * 200)];
}

// ---------------------------------------------------------------- page helpers
const tooltip = document.getElementById("tooltip");
function showTip(ev, text) {
  tooltip.textContent = text;
  Object.assign(tooltip.style, {display: "block", left: (ev.clientX + 12) + "px", top: (ev.clientY + 12) + "px"});
}
function hideTip() { tooltip.style.display = "none"; }
function leftOut(body, what) {
  if (!what || !what.left_out) return false;
  body.insertAdjacentHTML("beforeend", `<p class="left-out">Left out of this page: ${esc(what.left_out)}</p>`);
  return true;
}
function element(parent, tag, className, html) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (html) e.innerHTML = html;
  parent.appendChild(e);
  return e;
}
function buttonAction(ev) { return ev.target.getAttribute ? ev.target.getAttribute("data-act") : null; }

// ---------------------------------------------------------------- line plots (SVG)
// series: [{name, x, y, color, dash, width, opacity, marks, band: [low, high], hideLegend}]
// o: {width, height, logX, logY, xDomain, yDomain, xLabel, yLabel, title, vlines: [{x, color}], hlines: [y]}
function linePlot(body, series, o) {
  const W = o.width || 520, H = o.height || 260, m = {l: 62, r: 14, t: 22, b: 40};
  const xs = series.flatMap(s => s.x);
  const ys = series.flatMap(s => s.band ? s.y.concat(s.band[0], s.band[1]) : s.y);
  const xd = o.xDomain || extent(xs, o.logX), yd = o.yDomain || extent(ys, o.logY);
  const x = scale(xd[0], xd[1], m.l, W - m.r, o.logX), y = scale(yd[0], yd[1], H - m.b, m.t, o.logY);
  const ok = (vx, vy) => finite(vx) && finite(vy) && (!o.logY || vy > 0) && (!o.logX || vx > 0);
  const clampY = v => y(Math.max(yd[0], Math.min(yd[1], v))).toFixed(1);
  let svg = `<svg width="${W}" height="${H}" class="plot">`;
  for (const v of ticks(yd[0], yd[1], o.logY, 5)) {
    svg += `<line class="grid" x1="${m.l}" x2="${W - m.r}" y1="${y(v)}" y2="${y(v)}"/>` +
           `<text x="${m.l - 5}" y="${y(v) + 4}" text-anchor="end">${tickText(v, o.logY)}</text>`;
  }
  for (const v of ticks(xd[0], xd[1], o.logX, 8)) {
    svg += `<line class="grid" y1="${m.t}" y2="${H - m.b}" x1="${x(v)}" x2="${x(v)}"/>` +
           `<text x="${x(v)}" y="${H - m.b + 14}" text-anchor="middle">${tickText(v, o.logX)}</text>`;
  }
  svg += `<g class="axis"><line x1="${m.l}" x2="${W - m.r}" y1="${H - m.b}" y2="${H - m.b}"/>` +
         `<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${H - m.b}"/></g>` +
         `<text x="${(m.l + W - m.r) / 2}" y="${H - 6}" text-anchor="middle">${esc(o.xLabel || "")}</text>` +
         `<text transform="translate(14,${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">` +
         `${esc(o.yLabel || "")}</text>`;
  if (o.title) svg += `<text x="${m.l}" y="13" font-weight="600">${esc(o.title)}</text>`;
  for (const v of o.vlines || []) {
    svg += `<line class="cut" stroke="${v.color}" x1="${x(v.x)}" x2="${x(v.x)}" y1="${m.t}" y2="${H - m.b}"/>`;
  }
  for (const v of o.hlines || []) {
    if (v >= yd[0] && v <= yd[1]) {
      svg += `<line stroke="#333" stroke-dasharray="2 3" x1="${m.l}" x2="${W - m.r}" y1="${y(v)}" y2="${y(v)}"/>`;
    }
  }
  series.forEach((s, si) => {
    if (s.band) {
      const up = [], down = [];
      s.x.forEach((vx, i) => {
        if (ok(vx, s.band[0][i]) && ok(vx, s.band[1][i])) {
          up.push(`${x(vx)},${clampY(s.band[1][i])}`);
          down.unshift(`${x(vx)},${clampY(s.band[0][i])}`);
        }
      });
      if (up.length) svg += `<polygon points="${up.concat(down).join(" ")}" fill="${s.color}" opacity="0.15"/>`;
    }
    let d = "", pen = false;
    s.x.forEach((vx, i) => {          // a gap where a value is missing
      if (ok(vx, s.y[i])) d += `${pen ? "L" : "M"}${x(vx).toFixed(1)},${clampY(s.y[i])}`;
      pen = ok(vx, s.y[i]);
    });
    const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : "";
    svg += `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.width || 1.8}" ` +
           `opacity="${s.opacity || 1}"${dash} data-series="${si}"><title>${esc(s.name)}</title></path>`;
    if (s.marks) {
      s.x.forEach((vx, i) => {
        if (ok(vx, s.y[i])) svg += `<circle cx="${x(vx)}" cy="${y(s.y[i])}" r="2.2" fill="${s.color}"/>`;
      });
    }
  });
  series.filter(s => s.name && !s.hideLegend).forEach((s, i) => {
    const ly = m.t + 4 + i * 14, lx = W - m.r - 150, dash = s.dash ? ` stroke-dasharray="${s.dash}"` : "";
    svg += `<line x1="${lx}" x2="${lx + 20}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"${dash} ` +
           `opacity="${s.opacity || 1}"/><text x="${lx + 24}" y="${ly + 4}">${esc(short(s.name, 26))}</text>`;
  });
  const holder = element(body, "div", null, svg + '<g class="overlay"></g></svg>');
  return {svg: holder.firstChild, x, m, W, H};
}

// ---------------------------------------------------------------- heatmaps (canvas)
// matrix[row][col]; o: {cellW, cellH, log, kind: "div" for -1..1, vmin, vmax, rowLabels, colLabels,
//                       xLabel, yLabel, title, tip(row, col)}
function heatmap(body, matrix, o) {
  const rows = matrix.length, cols = rows ? matrix[0].length : 0;
  const cw = o.cellW || Math.max(2, Math.min(16, Math.floor(600 / Math.max(cols, 1))));
  const ch = o.cellH || Math.max(2, Math.min(16, Math.floor(320 / Math.max(rows, 1))));
  const m = {l: o.rowLabels ? 60 : 46, t: o.title ? 20 : 8, b: o.colLabels ? 60 : 34, r: 80};
  const canvas = element(body, "canvas");
  canvas.width = m.l + cols * cw + m.r;
  canvas.height = m.t + rows * ch + m.b;
  const ctx = canvas.getContext("2d");
  const values = matrix.flat().filter(v => finite(v) && (!o.log || v > 0));
  let lo = o.vmin !== undefined ? o.vmin : Math.min(...values);
  let hi = o.vmax !== undefined ? o.vmax : Math.max(...values);
  if (!values.length) { lo = 0; hi = 1; }
  if (o.log) lo = Math.max(lo, hi * 1e-12);
  const f = o.log ? Math.log10 : (v => v), a = f(lo), b = f(hi);
  const where = v => (!finite(v) || (o.log && v <= 0)) ? NaN : (f(v) - a) / ((b - a) || 1);
  const colour = o.kind === "div" ? diverging : (v => viridis(where(v)));
  const image = ctx.createImageData(cols * cw, rows * ch);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const rgb = colour(matrix[r][c]);
      for (let dy = 0; dy < ch; dy++) {
        for (let dx = 0; dx < cw; dx++) {
          const p = ((r * ch + dy) * cols * cw + c * cw + dx) * 4;
          image.data.set([rgb[0], rgb[1], rgb[2], 255], p);
        }
      }
    }
  }
  ctx.putImageData(image, m.l, m.t);
  ctx.fillStyle = "#222";
  ctx.font = "11px sans-serif";
  if (o.title) ctx.fillText(o.title, m.l, 13);
  ctx.textAlign = "right";
  for (let r = 0; r < rows; r += Math.max(1, Math.ceil(12 / ch))) {
    ctx.fillText(o.rowLabels ? o.rowLabels[r] : String(r), m.l - 4, m.t + r * ch + ch / 2 + 4);
  }
  ctx.textAlign = "center";
  for (let c = 0; c < cols; c += o.colLabels ? 1 : Math.max(5, Math.ceil(14 / cw))) {
    const cx = m.l + c * cw + cw / 2, cy = m.t + rows * ch + 12;
    if (!o.colLabels) { ctx.fillText(String(c), cx, cy); continue; }
    ctx.save(); ctx.translate(cx, cy); ctx.rotate(-Math.PI / 3); ctx.textAlign = "right";
    ctx.fillText(o.colLabels[c], 4, 4); ctx.restore();
  }
  if (o.xLabel) ctx.fillText(o.xLabel, m.l + cols * cw / 2, canvas.height - 6);
  if (o.yLabel) {
    ctx.save(); ctx.translate(12, m.t + rows * ch / 2); ctx.rotate(-Math.PI / 2);
    ctx.fillText(o.yLabel, 0, 0); ctx.restore();
  }
  const bx = m.l + cols * cw + 14, bh = Math.max(rows * ch, 60);         // the colour bar
  for (let i = 0; i < bh; i++) {
    const w = 1 - i / bh;
    ctx.fillStyle = `rgb(${(o.kind === "div" ? diverging(lo + w * (hi - lo)) : viridis(w)).join(",")})`;
    ctx.fillRect(bx, m.t + i, 12, 1);
  }
  ctx.fillStyle = "#222";
  ctx.textAlign = "left";
  ctx.fillText(fmt(hi), bx + 15, m.t + 9);
  ctx.fillText(fmt(lo), bx + 15, m.t + bh);
  canvas.addEventListener("mousemove", ev => {
    const rect = canvas.getBoundingClientRect();
    const c = Math.floor((ev.clientX - rect.left - m.l) / cw), r = Math.floor((ev.clientY - rect.top - m.t) / ch);
    if (r < 0 || r >= rows || c < 0 || c >= cols) return hideTip();
    showTip(ev, `${o.tip ? o.tip(r, c) : `row ${r}, column ${c}`}: ${fmt(matrix[r][c])}`);
  });
  canvas.addEventListener("mouseleave", hideTip);
  return canvas;
}

// ---------------------------------------------------------------- the unrolled graph
// graph: nodes [op, label, shape, k, t], leaves [name, shape, is parameter, k, t, grad norm],
// edges [source (node i, or leaf -i-1), target node, norm], roots; k = t = -1: outside the steps
const STEP_W = 30, STEP_GAP = 12, LEVEL_W = 86, OP_H = 24, OP_W = 74, BUS_GAP = 17, FIRST_X = 150;
const OUTSIDE = "-1:-1";
function clusterKey(k, t) { return k + ":" + t; }

function graphModel(g) {
  const members = {}, inputsOf = {};
  const add = (key, i) => (members[key] = members[key] || []).push(i);
  g.nodes.forEach((n, i) => add(clusterKey(n[3], n[4]), i));
  g.leaves.forEach((l, j) => { if (!l[2]) add(clusterKey(l[3], l[4]), -1 - j); });
  g.edges.forEach(e => (inputsOf[e[1]] = inputsOf[e[1]] || []).push(e[0]));
  const clusterOf = end => end >= 0 ? clusterKey(g.nodes[end][3], g.nodes[end][4])
                                    : clusterKey(g.leaves[-1 - end][3], g.leaves[-1 - end][4]);
  const params = g.leaves.map((l, j) => [l, j]).filter(([l]) => l[2]);
  return {members, inputsOf, clusterOf, params};
}

function columnsOf(model, key) {    // an open cluster's ops by column: the longest path from its entries
  const ids = model.members[key] || [], inside = new Set(ids), level = {};
  ids.forEach(i => (level[i] = 0));
  for (let changed = true, pass = 0; changed && pass < 500; pass++) {
    changed = false;
    for (const i of ids) {
      for (const s of (i >= 0 && model.inputsOf[i]) || []) {
        if (inside.has(s) && level[s] + 1 > level[i]) { level[i] = level[s] + 1; changed = true; }
      }
    }
  }
  return level;
}

function graphLayout(run, model, open) {
  const T = run.steps, K = run.layers.length, columns = {}, box = {}, pos = {};
  const widthOf = key => (Math.max(0, ...Object.values(columns[key])) + 1) * LEVEL_W + 10;
  const heightOf = key => {
    const counts = {};
    Object.values(columns[key]).forEach(c => (counts[c] = (counts[c] || 0) + 1));
    return Math.max(1, ...Object.values(counts)) * (OP_H + 6) + 20;
  };
  for (const key of open) columns[key] = columnsOf(model, key);
  const top = 64 + model.params.length * BUS_GAP, colX = [], colW = [], rowY = [], rowH = [];
  let x = FIRST_X, y = top;
  for (let t = 0; t < T; t++) {
    colX[t] = x;
    colW[t] = Math.max(STEP_W, ...range(K).filter(k => open.has(clusterKey(k, t))).map(k => widthOf(clusterKey(k, t))));
    x += colW[t] + STEP_GAP;
  }
  for (let k = 0; k < K; k++) {
    rowY[k] = y;
    rowH[k] = Math.max(46, ...range(T).filter(t => open.has(clusterKey(k, t))).map(t => heightOf(clusterKey(k, t))));
    y += rowH[k] + 30;
  }
  const place = (key, bx, by) => {
    const used = {};
    for (const i of model.members[key] || []) {
      const c = columns[key][i] || 0, slot = used[c] = (used[c] || 0) + 1;
      pos[i] = [bx + 8 + c * LEVEL_W + OP_W / 2, by + 10 + (slot - 1) * (OP_H + 6) + OP_H / 2];
    }
  };
  for (let k = 0; k < K; k++) {
    for (let t = 0; t < T; t++) {
      const key = clusterKey(k, t);
      box[key] = [colX[t], rowY[k], open.has(key) ? colW[t] : STEP_W, rowH[k]];
      if (open.has(key)) place(key, colX[t], rowY[k]);
    }
  }
  const outsideOpen = open.has(OUTSIDE);
  const outsideH = Math.max(y - top - 30, 46, outsideOpen ? heightOf(OUTSIDE) : 0);
  box[OUTSIDE] = [x + 20, top, outsideOpen ? widthOf(OUTSIDE) : 60, outsideH];
  if (outsideOpen) place(OUTSIDE, x + 20, top);
  model.params.forEach(([l, j], i) => (pos[-1 - j] = [74, 30 + i * BUS_GAP]));
  const W = box[OUTSIDE][0] + box[OUTSIDE][2] + 30, H = Math.max(y, top + outsideH + 30) + 10;
  return {T, K, top, colX, rowY, rowH, box, pos, W, H};
}

function graphEdges(run, model, layout, colourOf) {
  const g = run.graph, {box, pos} = layout, groups = {}, cuts = run.marks.truncate || [];
  const busOf = {};
  model.params.forEach(([l, j], i) => (busOf[j] = i));
  const end = i => (pos[i] ? "o" : "c" + model.clusterOf(i) + ":") + (pos[i] ? i : "");
  g.edges.forEach(([s, d, n]) => {   // edges between the same drawn things are one, with the largest norm
    const from = g.leaves[-1 - s] && g.leaves[-1 - s][2] ? "p" + s : end(s), to = end(d);
    if (from === to) return;
    const group = groups[from + "|" + to] = groups[from + "|" + to] || {s, d, n: null, count: 0};
    group.count++;
    if (finite(n) && (group.n === null || n > group.n)) group.n = n;
  });
  const out = i => pos[i] ? [pos[i][0] + OP_W / 2, pos[i][1]]
                            : [box[model.clusterOf(i)][0] + box[model.clusterOf(i)][2], mid(model.clusterOf(i))];
  const into = i => pos[i] ? [pos[i][0] - OP_W / 2, pos[i][1]] : [box[model.clusterOf(i)][0], mid(model.clusterOf(i))];
  const mid = key => box[key][1] + box[key][3] / 2;
  const crossesCut = (s, d) => s >= 0 && d >= 0 && cuts.some(c => g.nodes[s][4] >= 0 && g.nodes[s][4] < c &&
                                                                  g.nodes[d][4] >= c);
  let svg = "";
  const busEnd = {};
  for (const group of Object.values(groups)) {
    const fromParam = group.s < 0 && g.leaves[-1 - group.s][2];
    let path, title = `${group.count > 1 ? group.count + " edges, largest " : ""}||dL/dv|| = ${fmt(group.n)}`;
    if (fromParam) {                // a drop from the parameter's bus into the step (or op) that reads it
      const i = busOf[-1 - group.s], b = box[model.clusterOf(group.d)];
      const dx = pos[group.d] ? pos[group.d][0] : b[0] + 3 + i * (b[2] - 6) / Math.max(1, model.params.length - 1);
      path = `M${dx},${30 + i * BUS_GAP} L${dx},${pos[group.d] ? pos[group.d][1] - OP_H / 2 : b[1]}`;
      busEnd[i] = Math.max(busEnd[i] || 0, dx);
      title = `step's share ||dL/dθ_t|| = ${fmt(group.n)}`;
    } else {
      const [x1, y1] = out(group.s), [x2, y2] = into(group.d), mx = (x1 + x2) / 2;
      path = `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`;
    }
    const cut = !fromParam && crossesCut(group.s, group.d);
    svg += `<path d="${path}" fill="none" stroke="${colourOf(group.n)}" stroke-width="${fromParam ? 1 : 1.6}" ` +
           `opacity="0.9"${cut ? ' stroke-dasharray="4 3"' : ""}><title>${esc(title)}` +
           `${cut ? " (cut by truncated BPTT)" : ""}</title></path>`;
  }
  const buses = model.params.map(([l, j], i) => `<line x1="140" x2="${busEnd[i] || 140}" y1="${30 + i * BUS_GAP}" ` +
                                                `y2="${30 + i * BUS_GAP}" stroke="#c9b871"/>`);
  return buses.join("") + svg;
}

function graphNodes(run, model, layout) {
  const g = run.graph;
  let svg = "";
  for (const [index, p] of Object.entries(layout.pos)) {
    const i = Number(index);
    if (i >= 0) {
      const [op, name, shape] = g.nodes[i], full = name ? `${op} ${name}` : op;
      const label = !name ? op : op === "Identity" ? name : `${op.replace("Sigmoid", "\u03c3")} ${name}`;
      svg += `<g><rect class="op" x="${p[0] - OP_W / 2}" y="${p[1] - OP_H / 2}" width="${OP_W}" height="${OP_H}" ` +
             `rx="3"${g.roots.includes(i) ? ' stroke-width="2.5"' : ""}/><text x="${p[0]}" y="${p[1] + 4}" ` +
             `text-anchor="middle">${esc(short(label, 13))}</text><title>${esc(full)}\nshape ` +
             `${JSON.stringify(shape)}</title></g>`;
    } else {
      const [name, shape, param, , , norm] = g.leaves[-1 - i];
      svg += `<g><ellipse class="${param ? "param" : "input"}" cx="${p[0]}" cy="${p[1]}" rx="${param ? 66 : 32}" ` +
             `ry="${param ? 8 : 11}"/><text x="${p[0]}" y="${p[1] + 4}" text-anchor="middle">${esc(short(name, 20))}` +
             `</text><title>${esc(name + " " + JSON.stringify(shape) + (param ? "\n||dL/dθ|| = " + fmt(norm) : ""))}` +
             `</title></g>`;
    }
  }
  return svg;
}

function graphBoxes(run, model, layout, open) {
  const {T, K, box, top, colX, rowY, rowH, H} = layout;
  let svg = `<text x="8" y="${top - 6}" font-weight="600">t =</text>`;
  for (let t = 0; t < T; t++) {
    if (T > 60 && t % 5 !== 0 && !open.has(clusterKey(0, t))) continue;      // a label every 5 steps of many
    svg += `<text x="${colX[t] + 4}" y="${top - 6}">${t}</text>`;
  }
  for (let k = 0; k < K; k++) svg += `<text x="8" y="${rowY[k] + rowH[k] / 2 + 4}">${esc(run.layers[k])}</text>`;
  for (const [mark, colour, text] of [["truncate", "#d62728", "BPTT cut"], ["checkpoint", "#2ca02c", "checkpoint"]]) {
    for (const t of run.marks[mark] || []) {
      const x = colX[t] - STEP_GAP / 2;
      svg += `<line class="cut" stroke="${colour}" x1="${x}" x2="${x}" y1="${top - 18}" y2="${H - 6}">` +
             `<title>${text} before step ${t}</title></line>`;
    }
  }
  for (let k = 0; k < K; k++) {
    for (let t = 0; t < T; t++) {
      const key = clusterKey(k, t), b = box[key], count = (model.members[key] || []).length;
      svg += `<rect class="step${open.has(key) ? " open" : ""}" data-key="${key}" data-t="${t}" x="${b[0]}" ` +
             `y="${b[1]}" width="${b[2]}" height="${b[3]}" rx="4"><title>${esc(run.layers[k])}, step ${t}: ` +
             `${count} ops and inputs (click to ${open.has(key) ? "close" : "open"})</title></rect>`;
    }
  }
  const b = box[OUTSIDE];
  return svg + `<rect class="step${open.has(OUTSIDE) ? " open" : ""}" data-key="${OUTSIDE}" x="${b[0]}" y="${b[1]}" ` +
         `width="${b[2]}" height="${b[3]}" rx="4"><title>outside the steps: the loss, the readout, stacking ` +
         `(click to ${open.has(OUTSIDE) ? "close" : "open"})</title></rect>` +
         `<text x="${b[0] + 4}" y="${b[1] - 4}">loss</text>`;
}

function graphPanel(body, run) {
  const g = run.graph;
  if (leftOut(body, g)) return;
  const model = graphModel(g);
  const steps = (QUERY.get("open") || "").split(",").filter(v => v !== "" && Number(v) < run.steps);
  const open = new Set(steps.map(v => clusterKey(0, Number(v))));
  const controls = element(body, "div", "controls",
    '<button data-act="first">open step 0</button><button data-act="last">open the last step</button>' +
    `<button data-act="close">close all</button> <span class="note">${g.nodes.length} ops, ${g.leaves.length} ` +
    `leaves, ${g.edges.length} edges; hover a box, an op or an edge for its numbers</span>`);
  const holder = element(body, "div");
  const norms = g.edges.map(e => e[2]).concat(g.leaves.map(l => l[5])).filter(v => finite(v) && v > 0);
  const lo = Math.log10(Math.min(...norms, 1e300)), hi = Math.log10(Math.max(...norms, 1e-300));
  const colourOf = n => (!finite(n) || n <= 0) ? "#bbb" : heat(hi === lo ? 0.5 : (Math.log10(n) - lo) / (hi - lo));
  function draw() {
    const layout = graphLayout(run, model, open);
    holder.innerHTML = `<svg width="${layout.W}" height="${layout.H}">` + graphBoxes(run, model, layout, open) +
                       graphEdges(run, model, layout, colourOf) + graphNodes(run, model, layout) + "</svg>";
    holder.querySelectorAll("rect.step").forEach(r => r.addEventListener("click", () => {
      const key = r.getAttribute("data-key");
      if (!open.delete(key)) open.add(key);
      draw();
    }));
  }
  controls.addEventListener("click", ev => {
    const act = buttonAction(ev);
    if (act === "first") open.add(clusterKey(0, 0));
    if (act === "last") open.add(clusterKey(0, run.steps - 1));
    if (act === "close") open.clear();
    if (act) draw();
  });
  draw();
  graphPanel.highlight = t => holder.querySelectorAll("rect.step[data-t]").forEach(
    r => r.classList.toggle("now", Number(r.getAttribute("data-t")) === t));
}

// ---------------------------------------------------------------- gradients through time
function gradientsPanel(body, run) {
  const gr = run.gradients, T = run.steps, t = range(T), series = [];
  DATA.runs.forEach((other, ri) => {
    if (ri === current || other.kind !== "recurrent") return;
    other.gradients.norms.forEach((layer, k) => series.push({
      name: `${other.name}${other.layers.length > 1 ? " " + other.layers[k] : ""} h`, x: range(other.steps),
      y: layer.h || Object.values(layer)[0], color: PALETTE[ri % PALETTE.length], opacity: 0.35, width: 1.2}));
  });
  const first = series.length;
  gr.norms.forEach((layer, k) => gr.parts[k].forEach((part, pi) => series.push({
    name: `${run.name}${run.layers.length > 1 ? " " + run.layers[k] : ""}: ||dL/d${part}_t||`, x: t, y: layer[part],
    color: PALETTE[(current + k) % PALETTE.length], dash: pi ? "6 3" : null, width: 2.2})));
  const cuts = (run.marks.truncate || []).map(v => ({x: v - 0.5, color: "#d62728"}))
    .concat((run.marks.checkpoint || []).map(v => ({x: v - 0.5, color: "#2ca02c"})));
  const controls = element(body, "div", "controls", '<button data-act="play">&#9654; play the backward pass</button>' +
                           '<button data-act="all">show all</button> <span class="note" data-role="where"></span>');
  const plot = linePlot(body, series, {width: 860, height: 300, logY: true, xLabel: "time step t",
                                       yLabel: "gradient norm", vlines: cuts, xDomain: [0, Math.max(T - 1, 1)]});
  const own = Array.from(plot.svg.querySelectorAll("path[data-series]")).filter(p => p.dataset.series >= first);
  const where = controls.querySelector('[data-role="where"]'), overlay = plot.svg.querySelector("g.overlay");
  function reveal(step) {           // the backward pass has reached ``step``: show the steps from there on
    own.forEach(p => (p.style.clipPath = `inset(0 0 0 ${Math.max(0, plot.x(step) - 1)}px)`));
    overlay.innerHTML = `<line x1="${plot.x(step)}" x2="${plot.x(step)}" y1="${plot.m.t}" y2="${plot.H - plot.m.b}" ` +
                        'stroke="#d2282e" stroke-width="1.5"/>';
    const values = gr.norms.map((layer, k) => gr.parts[k].map(p => `${p} = ${fmt(layer[p][step])}`).join(", "));
    where.textContent = `backward pass at step ${step}: ${values.join("; ")}`;
    if (graphPanel.highlight) graphPanel.highlight(step);
  }
  controls.addEventListener("click", ev => {
    const act = buttonAction(ev);
    if (timer) { clearInterval(timer); timer = null; }
    if (act === "play") {
      let step = T - 1;
      reveal(step);
      timer = setInterval(() => {
        if (--step < 0) { clearInterval(timer); timer = null; } else reveal(step);
      }, Math.max(25, 2500 / T));
    }
    if (act === "all") {
      own.forEach(p => (p.style.clipPath = ""));
      overlay.innerHTML = where.textContent = "";
      if (graphPanel.highlight) graphPanel.highlight(-1);
    }
  });
  if (QUERY.get("play") !== null) controls.querySelector('[data-act="play"]').click();
  const shares = Object.entries(gr.contributions).map(([name, y], i) => ({name, x: t, y, width: 1.4,
                                                                          color: PALETTE[(i + 2) % PALETTE.length]}));
  if (shares.length) {
    linePlot(body, shares, {width: 860, height: 230, logY: true, xLabel: "time step t", yLabel: "||dL/dθ_t||",
                            title: "each step's share of each parameter's gradient", xDomain: [0, Math.max(T - 1, 1)]});
  }
}

// ---------------------------------------------------------------- the other panels of a recurrent run
function connectivityPanel(body, run) {
  if (leftOut(body, run.connectivity)) return;
  const c = run.connectivity;
  heatmap(body, c.matrix, {log: true, xLabel: "input step s", yLabel: "output step t",
                           title: `||∂y_t/∂x_s|| over the first ${c.rows} example(s)`,
                           tip: (r, s) => `t = ${r}, s = ${s}`});
}

function jacobiansPanel(body, run) {
  const row = element(body, "div", "row");
  run.jacobians.forEach((j, k) => {
    const box = element(row, "div"), mean = j.log_norms, std = j.log_norms_std;
    const band = sign => mean.map((v, i) => finite(v) && finite(std[i]) ? v + sign * std[i] : null);
    const series = [{name: "measured (mean)", x: j.windows, y: mean, color: "#1f77b4", marks: true,
                     band: [band(-1), band(1)]}];
    if (j.log_bound) {
      series.push({name: `bound w log η, η = ${fmt(j.eta)}`, x: j.windows, y: j.log_bound, color: "#d62728",
                   dash: "6 3"});
    }
    linePlot(box, series, {width: 460, height: 270, xLabel: "window length w", yLabel: "log ||J_t ... J_t-w+1||",
                           hlines: [0], title: `${run.layers[k]} (${run.cells[k]})`});
    const sv = j.singular_values, T = sv.length;
    const controls = element(box, "div", "controls", `step t: <input type="range" min="1" max="${T}" value="${T}"> ` +
                             "<span></span>");
    const plotHolder = element(box, "div");
    const all = sv.flat().filter(v => finite(v) && v > 0);
    const yDomain = [Math.min(...all, 0.5) * 0.8, Math.max(...all, 1.5) * 1.2];
    const slider = controls.querySelector("input"), label = controls.querySelector("span");
    const show = t => {
      const values = sv[t - 1];
      plotHolder.innerHTML = "";
      linePlot(plotHolder, [{name: `σ_i(J_${t})`, x: range(values.length).map(i => i + 1), y: values, color: "#9467bd",
                             marks: true}], {width: 460, height: 240, logY: true, yDomain, hlines: [1],
                                             xLabel: "index i (largest first)", yLabel: "singular value"});
      label.textContent = `σ_max = ${fmt(values[0])}, σ_min = ${fmt(values[values.length - 1])} ` +
                          `(mean over ${j.rows} example(s))`;
    };
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
    const row = element(body, "div", "row");
    for (const name of names) {
      const gate = layer[name], tanh = gate.kind === "tanh";
      heatmap(element(row, "div"), gate.values, {
        kind: tanh ? "div" : "seq", vmin: tanh ? -1 : 0, vmax: 1, xLabel: "step t", yLabel: "unit",
        cellW: Math.max(2, Math.min(8, Math.floor(420 / run.steps))),
        cellH: Math.max(2, Math.min(8, Math.floor(160 / gate.values.length))),
        title: `${run.layers[k]}: ${name} (${gate.kind})`, tip: (r, c) => `unit ${r}, t = ${c}`});
    }
    const t = range(run.steps);
    const series = names.flatMap((name, i) => [
      {name, x: t, y: layer[name].saturation, color: PALETTE[i % PALETTE.length], width: 2},
      {name: `${name} mean`, x: t, y: layer[name].mean, color: PALETTE[i % PALETTE.length], dash: "2 3", width: 1.2,
       hideLegend: true}]);
    linePlot(body, series, {width: 860, height: 240, yDomain: [-0.02, 1.02], xLabel: "time step t",
                            yLabel: "fraction / value",
                            title: `${run.layers[k]}: saturated fraction (solid) and mean value (dotted)`});
  });
  if (!any) {
    leftOut(body, {left_out: "this cell names no gates (a cell names its own with nn.named or a GateLayout)"});
  }
}

function truncationPanel(body, run) {
  const row = element(body, "div", "row");
  const runs = DATA.runs.map((r, i) => [r, i]).filter(([r]) => r.kind === "recurrent");
  const style = i => ({color: PALETTE[i % PALETTE.length], opacity: i === current ? 1 : 0.4,
                       width: i === current ? 2.2 : 1.2});
  const mark = run.marks.truncate ? [{x: run.marks.truncate[0], color: "#d62728"}] : [];
  const plot = (pick, o) => linePlot(row, runs.map(([r, i]) => ({name: r.name, ...pick(r.truncation), ...style(i)})),
                                     {width: 380, height: 260, ...o});
  plot(tr => ({x: tr.ks, y: tr.cosine}), {logX: true, xLabel: "truncation length k", yLabel: "cosine with full BPTT",
                                          vlines: mark});
  plot(tr => ({x: tr.ks, y: tr.relative_error}), {logX: true, logY: true, xLabel: "truncation length k",
                                                  yLabel: "||g_k - g|| / ||g||", vlines: mark});
  plot(tr => ({x: range(tr.lag_norms.length), y: tr.lag_norms}), {logY: true, xLabel: "lag (steps back)",
                                                                  yLabel: "||D_lag||"});
}

function rtrlPanel(body, run) {
  if (leftOut(body, run.rtrl)) return;
  const r = run.rtrl;
  const rows = r.params.map(p => `<tr><td>${esc(p.name)}</td><td>${p.size}</td><td>${fmt(p.bptt_norm)}</td>` +
                                 `<td>${fmt(p.rtrl_norm)}</td><td>${fmt(p.max_difference)}</td>` +
                                 `<td>${fmt(p.relative_difference)}</td></tr>`);
  body.insertAdjacentHTML("beforeend", '<table class="numbers"><tr><th>parameter</th><th>size</th>' +
    "<th>||g|| BPTT</th><th>||g|| RTRL</th><th>max |difference|</th><th>relative</th></tr>" + rows.join("") +
    `</table><p class="note">On the first ${r.rows} example(s), ${r.parameters} parameters: loss ` +
    `${fmt(r.loss_bptt)} (BPTT) and ${fmt(r.loss_rtrl)} (RTRL); BPTT took ${fmt(r.seconds_bptt)} s, ` +
    `RTRL ${fmt(r.seconds_rtrl)} s.</p>`);
  const W = 620, H = 30 + 22 * r.params.length;
  const positive = r.params.map(p => p.relative_difference).filter(v => finite(v) && v > 0);
  const x = scale(Math.min(...positive, 1e-17), 1, 150, W - 20, true);
  let svg = `<svg width="${W}" height="${H}"><text x="150" y="12">largest |RTRL - BPTT| / largest |BPTT|, ` +
            "per parameter (log scale)</text>";
  r.params.forEach((p, i) => {
    const v = finite(p.relative_difference) && p.relative_difference > 0 ? p.relative_difference : x.domain[0];
    svg += `<text x="145" y="${36 + i * 22}" text-anchor="end">${esc(p.name)}</text><rect x="150" ` +
           `y="${24 + i * 22}" height="16" width="${Math.max(1, x(v) - 150)}" fill="#9467bd">` +
           `<title>${fmt(p.relative_difference)}</title></rect>`;
  });
  for (const v of ticks(x.domain[0], 1, true, 6)) {
    svg += `<text x="${x(v)}" y="${H - 2}" text-anchor="middle">${tickText(v, true)}</text>`;
  }
  body.insertAdjacentHTML("beforeend", svg + "</svg>");
}

// ---------------------------------------------------------------- Seq2Seq
function attentionPanel(body, run) {
  const row = element(body, "div", "row");
  run.examples.forEach((e, i) => {
    for (const [which, tokens, map] of [["greedy", e.greedy, e.greedy_attention],
                                        [`beam ${run.beam_size}`, e.beam, e.beam_attention]]) {
      const box = element(row, "div");
      if (!tokens.length || !map.length) {
        box.innerHTML = `<p class="note">example ${i} (${which}): nothing written</p>`;
        continue;
      }
      heatmap(box, map, {vmin: 0, vmax: 1, cellW: 16, cellH: 16, rowLabels: tokens, colLabels: e.source,
                         title: `example ${i}, ${which}: ${short(e.source.join(""), 40)}`,
                         tip: (r, c) => `writing ${tokens[r]}, looking at ${e.source[c]}`});
    }
  });
}

function beamPanel(body, run) {
  run.examples.forEach((e, ei) => {
    const nodes = e.tree.nodes, children = nodes.map(() => []), rowOf = {};
    nodes.forEach((n, i) => { if (n[1] >= 0) children[n[1]].push(i); });
    let leaves = 0;
    const stack = [[0, false]];      // depth first without recursion: leaves in order, a parent between its children
    while (stack.length) {
      const [n, done] = stack.pop();
      if (done) {
        const ys = children[n].map(c => rowOf[c]);
        rowOf[n] = ys.length ? (Math.min(...ys) + Math.max(...ys)) / 2 : leaves++;
        continue;
      }
      stack.push([n, true]);
      for (let c = children[n].length - 1; c >= 0; c--) stack.push([children[n][c], false]);
    }
    const X = t => 40 + (t + 1) * 70, Y = i => 30 + rowOf[i] * 22;
    let svg = `<svg width="${120 + (e.tree.steps + 1) * 70}" height="${40 + leaves * 22}"><text x="4" y="14" ` +
              `font-weight="600">example ${ei}: ${esc(short(e.source.join(""), 60))} &#8594; ` +
              `${esc(e.beam.join(""))}</text>`;
    nodes.forEach((n, i) => {
      if (n[1] < 0) return;
      svg += `<line x1="${X(nodes[n[1]][2])}" y1="${Y(n[1])}" x2="${X(n[2])}" y2="${Y(i)}" ` +
             `stroke="${n[5] ? "#d62728" : "#99a"}" stroke-width="${n[5] ? 2.5 : 1}"/>`;
    });
    nodes.forEach(([token, , t, logp, state, chosen], i) => {
      const shape = state === "ended" ? `<rect x="${X(t) - 9}" y="${Y(i) - 9}" width="18" height="18"`
                                      : `<circle cx="${X(t)}" cy="${Y(i)}" r="9"`;
      svg += `<g>${shape} fill="${chosen ? "#fde0dd" : "#fff"}" stroke="${chosen ? "#d62728" : "#667"}"/>` +
             `<text x="${X(t)}" y="${Y(i) + 4}" text-anchor="middle">${esc(short(token, 4))}</text>` +
             `<title>${esc(`${token} at step ${t}: log p = ${fmt(logp)} (${state})`)}</title></g>`;
    });
    body.insertAdjacentHTML("beforeend", svg + "</svg>");
  });
}

// ---------------------------------------------------------------- the page
const PANELS = {graph: graphPanel, gradients: gradientsPanel, connectivity: connectivityPanel,
                jacobians: jacobiansPanel, gates: gatesPanel, truncation: truncationPanel, rtrl: rtrlPanel,
                attention: attentionPanel, beam: beamPanel};
const SHOWN = {recurrent: ["graph", "gradients", "connectivity", "jacobians", "gates", "truncation", "rtrl"],
               seq2seq: ["attention", "beam"]};

function report() {
  document.body.setAttribute("data-explore", ERRORS.length ? "error" : "ok");
  document.body.setAttribute("data-rendered", RENDERED.join(" "));
  document.getElementById("explore-status").textContent =
    (ERRORS.length ? `errors:\n${ERRORS.join("\n")}\n` : "") + `rendered panels: ${RENDERED.join(", ")}`;
}

function show(index) {
  if (timer) { clearInterval(timer); timer = null; }
  current = index;
  graphPanel.highlight = null;
  const run = DATA.runs[index], wanted = SHOWN[run.kind];
  document.querySelectorAll("#runs button").forEach((b, i) => b.classList.toggle("on", i === index));
  document.getElementById("summary").textContent = run.kind === "recurrent"
    ? `${run.model} | T = ${run.steps}, B = ${run.batch}, loss = ${fmt(run.loss)}`
    : `${run.model} | ${run.examples.length} example(s), beam ${run.beam_size}`;
  RENDERED.length = 0;
  for (const [key, draw] of Object.entries(PANELS)) {
    const section = document.getElementById("panel-" + key), body = section.querySelector(".body");
    body.innerHTML = "";
    section.style.display = wanted.includes(key) ? "" : "none";
    if (!wanted.includes(key)) continue;
    try {
      draw(body, run);
      RENDERED.push(key);
    } catch (err) {
      ERRORS.push(`${key}: ${err && err.stack ? err.stack.split("\n").slice(0, 3).join(" | ") : err}`);
      body.insertAdjacentHTML("beforeend", `<p class="left-out">This panel failed to draw: ${esc(String(err))}</p>`);
    }
  }
  report();
}

(function start() {
  const runs = document.getElementById("runs");
  DATA.runs.forEach((run, i) => element(runs, "button", null, esc(run.name)).addEventListener("click", () => show(i)));
  if (!DATA.runs.length) { ERRORS.push("the page holds no run"); report(); return; }
  const asked = Number(QUERY.get("run"));
  show(QUERY.get("run") !== null && DATA.runs[asked] ? asked : 0);
})();
"""
