"""The page: one HTML file holding the data (JSON), the style and the drawing code.

Nothing is loaded from outside the file: the script draws inline SVG (written as
markup, so no namespace address is needed) and canvas, with the browser's own
fonts. :func:`render` fills the skeleton below; the script is in :mod:`.script`.
"""
import html

from .script import SCRIPT

# id -> (heading, caption: what the panel shows and what to look for)
PANELS = {
    "graph": ("The unrolled graph", (
        "Backpropagation through time is the ordinary backward pass over this graph. Each box is one time step "
        "of one layer (click it to open it into its ops, click again to close); time runs left to right (a "
        "reverse direction's step t reads position T-1-t). Each "
        "parameter is drawn once, above, with an edge to every step that uses it: the edge's colour is "
        "||dL/d&theta;<sub>t</sub>||, that step's share of the parameter's gradient. Every other edge is "
        "coloured by ||dL/dv|| of the value v it carries, from blue (smallest) to red (largest), on a log "
        "scale; grey carries no gradient. Dashed lines mark truncation (red) and checkpoint (green) "
        "boundaries: truncated BPTT cuts the state edges that cross a red line.")),
    "gradients": ("Gradient through time", (
        "||dL/dh<sub>t</sub>|| (solid) and, for a cell with a memory, ||dL/dc<sub>t</sub>|| (dashed) at each "
        "step, on a log scale: the gradient that reaches step t from the loss. A line falling to the left is "
        "a vanishing gradient (Bengio, Simard &amp; Frasconi 1994), a rising one an exploding gradient. "
        "Press play to watch the backward pass walk from the last step to the first; below, each step's "
        "share ||dL/d&theta;<sub>t</sub>|| of every parameter's gradient. Other runs on this page are drawn "
        "faint for comparison.")),
    "connectivity": ("Connectivity", (
        "||&part;y<sub>t</sub>/&part;x<sub>s</sub>||: how strongly the output at step t (row) depends on the "
        "input at step s (column), from one forward-mode pass (as in Madsen 2019, \"Visualizing memorization "
        "in RNNs\"). A one-directional model fills only s &le; t; a band hugging the diagonal is a short "
        "memory, colour reaching far left of the diagonal a long one. Log colour scale.")),
    "jacobians": ("Jacobian products", (
        "Left: the mean log ||J<sub>t</sub> &hellip; J<sub>t-w+1</sub>||<sub>2</sub> of the state Jacobians "
        "J<sub>t</sub> = dh<sub>t</sub>/dh<sub>t-1</sub> over windows of w steps (band: one standard "
        "deviation), against the bound w log &eta; of Pascanu, Mikolov &amp; Bengio (2013), &eta; = "
        "||W<sub>hh</sub>||<sub>2</sub>, where it applies (Elman cells). A slope below 0 vanishes, above 0 "
        "explodes. Right: the singular values of J<sub>t</sub> at the step the slider picks (dotted: 1); "
        "those above 1 stretch the gradient, those below shrink it.")),
    "gates": ("Gates", (
        "Each named gate's value for every unit (row) and step (column) of the first example, and below the "
        "fraction of units that is saturated (sigmoid &lt; 0.1 or &gt; 0.9, |tanh| &gt; 0.9), where the "
        "gate's derivative is small and little gradient passes. A forget gate near 1 keeps the memory and "
        "carries its gradient back unchanged: the constant error carousel of Hochreiter &amp; Schmidhuber "
        "(1997).")),
    "truncation": ("Truncated BPTT", (
        "BPTT(k) (Williams &amp; Peng 1990) lets each loss term's gradient flow back k steps only. Left: the "
        "cosine between the truncated and the full gradient against k (1: same direction); middle: their "
        "relative error ||g<sub>k</sub> - g||/||g||; right: ||D<sub>lag</sub>||, the gradient that travels "
        "exactly lag steps back. What truncation drops is the long-range part, the bias Tallec &amp; "
        "Ollivier (2017) discuss: where gradients vanish a short k loses little.")),
    "rtrl": ("BPTT against RTRL", (
        "Real-time recurrent learning (Williams &amp; Zipser 1989) carries ds<sub>t</sub>/d&theta; forward "
        "with the state, instead of carrying dL/ds<sub>t</sub> backward: the same gradient, at O(P<sup>2"
        "</sup>) cost per step for P parameters but with memory that does not grow with T. Per parameter: "
        "both gradients' norms and their largest difference (rounding only).")),
    "attention": ("Attention", (
        "Where the decoder looks (columns: source tokens) while writing each output token (rows), for the "
        "greedy and the beam-search output. Rows sum to 1; padded source positions get exactly zero.")),
    "beam": ("Beam search", (
        "The hypotheses the beam search kept at each step (left to right), each labelled with its token; "
        "hover for the cumulative log-probability. Ended hypotheses are drawn square; the returned one is "
        "the bold path. Branches that stop early were pushed out of the beam by better ones.")),
}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d232b; background: #fafafa; }
header { padding: 14px 24px 8px; background: #fff; border-bottom: 1px solid #ddd; position: sticky; top: 0;
  z-index: 5; }
header h1 { font-size: 20px; margin: 0 0 6px; }
#runs button, .controls button { margin: 2px 4px 2px 0; padding: 3px 10px; border: 1px solid #99a; border-radius: 4px;
  background: #f3f4f7; cursor: pointer; font-size: 13px; }
#runs button.on { background: #2f5fa7; color: #fff; border-color: #2f5fa7; }
#summary { font-size: 13px; color: #444; margin-top: 4px; }
main { padding: 8px 24px 40px; }
section.panel { background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: 14px 0; padding: 10px 16px 14px; }
section.panel h2 { font-size: 16px; margin: 4px 0; }
p.caption { font-size: 13px; color: #333; max-width: 1100px; margin: 2px 0 8px; line-height: 1.4; }
.body { overflow-x: auto; }
.row { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.note { font-size: 12px; color: #666; }
.left-out { font-size: 13px; color: #8a5a00; background: #fff7e6; padding: 6px 10px; border-radius: 4px; }
.controls { font-size: 13px; margin: 4px 0 6px; }
.controls input[type=range] { vertical-align: middle; width: 320px; }
svg text { font-size: 11px; fill: #222; }
svg .axis line, svg .axis path { stroke: #555; }
svg .grid { stroke: #e6e6e6; }
svg .step { fill: #eef2f8; stroke: #8795ad; cursor: pointer; }
svg .step.open { fill: #fdfbf0; stroke: #b59a3a; }
svg .step.now { stroke: #d2282e; stroke-width: 2.5; }
svg .op { fill: #fff; stroke: #6b7890; }
svg .param { fill: #fff2b3; stroke: #a08c3c; }
svg .input { fill: #fff; stroke: #999; stroke-dasharray: 3 2; }
svg .cut { stroke-width: 1.5; stroke-dasharray: 6 4; }
table.numbers { border-collapse: collapse; font-size: 13px; }
table.numbers td, table.numbers th { border-bottom: 1px solid #e3e3e3; padding: 3px 10px; text-align: right; }
table.numbers td:first-child, table.numbers th:first-child { text-align: left; }
#tooltip { position: fixed; pointer-events: none; background: #222; color: #fff; font-size: 12px; padding: 3px 7px;
  border-radius: 3px; display: none; z-index: 10; white-space: pre; }
#explore-status { font-size: 11px; color: #777; padding: 0 24px 20px; white-space: pre-wrap; }
"""


def render(title, data_json):
    """The page for ``data_json`` (the report's JSON text) under ``title``, as a str."""
    safe_json = data_json.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    sections = "\n".join(
        f'<section class="panel" id="panel-{key}" data-panel="{key}"><h2>{heading}</h2>'
        f'<p class="caption">{caption}</p><div class="body"></div></section>'
        for key, (heading, caption) in PANELS.items())
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
</head>
<body data-explore="loading">
<header>
<h1>{html.escape(title)}</h1>
<div id="runs"></div>
<div id="summary"></div>
</header>
<main>
{sections}
</main>
<div id="tooltip"></div>
<pre id="explore-status"></pre>
<script type="application/json" id="explore-data">{safe_json}</script>
<script>{SCRIPT}</script>
</body>
</html>
"""
