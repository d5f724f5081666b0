"""Conditioning on a fixed vector (nn/context.py): a layer built with ``context_size`` equals, in
value and gradient, a stack of layers without context whose every input is [x_t ; c] and whose
weight_ih is [W_ih | W_ctx]; it still runs as one whole-sequence node per layer and direction
(kernel or traced); ``InitialState`` against NumPy; finite differences in float64; Seq2Seq's
context modes against a decoder written out here, teacher forcing against step-by-step
scores, and greedy and beam search against the teacher-forced scores; bad inputs."""
import itertools

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import study
from helpers import hyp, parts, scan_nodes

KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
MODES = ["kernel", "traced", "per_step"]


# ----------------------------------------------------------------- helpers
def make_layer(kind, input_size, hidden_size, mode="kernel", device="cpu", **kw):
    kw = dict(kw, fused=mode == "kernel", per_step=mode == "per_step", device=device, dtype=tg.float64)
    if kind.startswith("rnn"):
        return tg.nn.RNN(input_size, hidden_size, nonlinearity=kind[4:], **kw)
    return {"lstm": tg.nn.LSTM, "gru": tg.nn.GRU}[kind](input_size, hidden_size, **kw)


def tensor(a, device="cpu", grad=False):
    return tg.tensor(np.asarray(a, dtype=np.float64), dtype=tg.float64, device=device, requires_grad=grad)


def randomize(module, rng, scale=0.6):
    module.load_state_dict({name: scale * rng.standard_normal(p.shape) for name, p in module.named_parameters()})


def assert_close(got, expected, msg="", rtol=1e-9, atol=1e-11):
    got = got.numpy() if isinstance(got, tg.Tensor) else np.asarray(got)
    expected = expected.numpy() if isinstance(expected, tg.Tensor) else np.asarray(expected)
    assert got.shape == expected.shape, (msg, got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=msg)


def concatenated_reference(layer, make_single, x, hx, context, lengths):
    """``layer`` (time-major, with context) recomputed without context: layer k is a one-layer
    ``make_single(in_k + C)`` run step by step on [input ; c at every step], with weight_ih
    [W_ih | W_ctx] and the other parameters copied. Returns (output, final parts, the one-layer
    layers) for comparing values and then gradients."""
    steps, batch = x.shape[:2]
    directions = layer.directions
    layer_input, finals, singles = x, [], []
    for k in range(layer.num_layers):
        width = layer_input.shape[2]
        single = make_single(width + layer.context_size)
        state = {}
        for name, _ in single.named_parameters():
            own = getattr(layer, name.replace("_l0", f"_l{k}"))
            if name.startswith("weight_ih"):
                ch = getattr(layer, name.replace("weight_ih_l0", f"weight_context_l{k}"))
                state[name] = np.concatenate([own.numpy(), ch.numpy()], axis=1)
            else:
                state[name] = own.numpy()
        single.load_state_dict(state)
        joined = tg.cat([layer_input, context.unsqueeze(0).broadcast_to((steps, batch, layer.context_size))], axis=2)
        h0 = None if hx is None else tuple(p[k * directions:(k + 1) * directions] for p in parts(hx))
        out, final = single(joined, h0 if h0 is None or len(h0) > 1 else h0[0], lengths=lengths)
        finals.append(parts(final))
        singles.append(single)
        layer_input = out
    return layer_input, [tg.cat(list(p), axis=0) for p in zip(*finals)], singles


def assert_grads_match(layer, singles):
    """Each parameter's gradient in ``layer`` equals its share of the concatenated layers' gradients."""
    for k, single in enumerate(singles):
        for name, p in single.named_parameters():
            own = getattr(layer, name.replace("_l0", f"_l{k}"))
            if name.startswith("weight_ih"):
                ch = getattr(layer, name.replace("weight_ih_l0", f"weight_context_l{k}"))
                width = own.shape[1]
                assert_close(own.grad, p.grad.numpy()[:, :width], f"{name} layer {k}")
                assert_close(ch.grad, p.grad.numpy()[:, width:], f"weight_context layer {k}{name[12:]}")
            else:
                assert_close(own.grad, p.grad, f"{name} layer {k}")


@st.composite
def configs(draw):
    steps, batch = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    lengths = st.lists(st.integers(1, steps), min_size=batch, max_size=batch)
    return dict(steps=steps, batch=batch, input_size=draw(st.integers(1, 3)), hidden_size=draw(st.integers(1, 3)),
                context_size=draw(st.integers(1, 3)), num_layers=draw(st.integers(1, 2)),
                bidirectional=draw(st.booleans()), batch_first=draw(st.booleans()), with_hx=draw(st.booleans()),
                lengths=draw(st.none() | lengths), seed=draw(st.integers(0, 2**16)))


FULL = dict(steps=4, batch=3, input_size=2, hidden_size=3, context_size=2, num_layers=2, bidirectional=True,
            batch_first=True, with_hx=True, lengths=[4, 1, 3], seed=1)


def run_against_reference(layer, make_single, cfg, device, n_parts, check_graph=None):
    """Run ``layer`` and the concatenated reference on the same random inputs; check outputs, final
    states, the gradients of x, c, hx and every parameter; ``check_graph(output, finals)`` looks at
    the layer's graph before its backward frees it."""
    rng = np.random.default_rng(cfg["seed"])
    T, B, I, H, C = (cfg[k] for k in ("steps", "batch", "input_size", "hidden_size", "context_size"))
    count = cfg["num_layers"] * (2 if cfg["bidirectional"] else 1)
    x_tm, c = rng.standard_normal((T, B, I)), rng.standard_normal((B, C))
    hx = [rng.standard_normal((count, B, H)) for _ in range(n_parts)] if cfg["with_hx"] else None
    w_out = rng.standard_normal((T, B, H * count // cfg["num_layers"]))
    w_fin = rng.standard_normal((n_parts, count, B, H))
    results = []
    for reference in (False, True):
        x = tensor(x_tm, device, grad=True)
        ct = tensor(c, device, grad=True)
        h0 = None if hx is None else [tensor(h, device, grad=True) for h in hx]
        h0_arg = None if h0 is None else (tuple(h0) if n_parts > 1 else h0[0])
        if reference:
            out, finals, singles = concatenated_reference(layer, make_single, x, h0_arg, ct, cfg["lengths"])
        else:
            given_x = x.swapaxes(0, 1) if cfg["batch_first"] else x
            out, final = layer(given_x, h0_arg, lengths=cfg["lengths"], context=ct)
            out = out.swapaxes(0, 1) if cfg["batch_first"] else out
            finals, singles = parts(final), None
            if check_graph is not None:
                check_graph(out, finals)
        loss = (out * tensor(w_out, device)).sum()
        for f, w in zip(finals, w_fin):
            loss = loss + (f * tensor(w, device)).sum()
        loss.backward()
        results.append((out, finals, x.grad, ct.grad, None if h0 is None else [h.grad for h in h0], singles))
    (out, finals, dx, dc, dh, _), (r_out, r_finals, r_dx, r_dc, r_dh, singles) = results
    assert_close(out, r_out, "output")
    for i, (f, r) in enumerate(zip(finals, r_finals)):
        assert_close(f, r, f"final state part {i}")
    assert_close(dx, r_dx, "dL/dx")
    assert_close(dc, r_dc, "dL/dcontext")
    for i, (g, r) in enumerate(zip(dh or [], r_dh or [])):
        assert_close(g, r, f"dL/dhx part {i}")
    assert_grads_match(layer, singles)


# ----------------------------------------------------------------- 1. layer == concatenated inputs
@pytest.mark.parametrize("kind", KINDS)
@hyp(10)
@given(cfg=configs(), mode=st.sampled_from(MODES))
@example(cfg=FULL, mode="kernel")
@example(cfg=FULL, mode="traced")
def test_context_equals_concatenated_input(device, kind, cfg, mode):
    """The context added to every step's projection == [x_t ; c] into a layer of input size in+C whose
    extra weight columns are W_ctx, for every layer and direction; values and all gradients. One Scan
    node per layer and direction (the kernel when fused), or none step by step."""
    layer = make_layer(kind, cfg["input_size"], cfg["hidden_size"], mode, device, num_layers=cfg["num_layers"],
                       bidirectional=cfg["bidirectional"], batch_first=cfg["batch_first"],
                       context_size=cfg["context_size"])
    randomize(layer, np.random.default_rng(cfg["seed"] + 1))

    def make_single(size):
        return make_layer(kind, size, cfg["hidden_size"], "per_step", device, bidirectional=cfg["bidirectional"])

    def check_graph(out, finals):
        scans = scan_nodes(out, *finals)
        if mode == "per_step":
            assert scans == []
        else:
            assert len(scans) == cfg["num_layers"] * layer.directions
            assert all((s.program.kernel is not None) == (mode == "kernel") for s in scans)

    run_against_reference(layer, make_single, cfg, device, 2 if kind == "lstm" else 1, check_graph)


@pytest.mark.parametrize("cell", [tg.nn.PeepholeLSTMCell, tg.nn.CoupledLSTMCell, tg.nn.JordanCell])
@hyp(4)
@given(cfg=configs())
@example(cfg=FULL)
def test_any_cell_with_context_equals_concatenated_input(cell, cfg):
    """nn.Recurrent over variant cells (traced steps): the same equality; W_ctx has the width of the
    cell's projected input."""
    def make(size, **kw):
        return tg.nn.Recurrent(lambda i, h: cell(i, h, dtype=tg.float64), size, cfg["hidden_size"],
                               bidirectional=cfg["bidirectional"], **kw)

    layer = make(cfg["input_size"], num_layers=cfg["num_layers"], batch_first=cfg["batch_first"],
                 context_size=cfg["context_size"])
    randomize(layer, np.random.default_rng(cfg["seed"]))
    width = layer.weight_ih_l0.shape[0]
    assert layer.weight_context_l0.shape == (width, cfg["context_size"])
    n_parts = len(layer.cells()[0].state_names)
    run_against_reference(layer, lambda size: make(size, per_step=True), cfg, "cpu", n_parts)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["kernel", "traced"])
def test_context_gradcheck(kind, mode):
    """Finite differences in float64 for x, c, hx and W_ctx, with lengths (the other parameters'
    gradients are held to the concatenated layer above)."""
    rng = np.random.default_rng(3)
    layer = make_layer(kind, 2, 2, mode, num_layers=2, bidirectional=True, context_size=2)
    randomize(layer, rng)
    x, c = tensor(rng.standard_normal((3, 2, 2)), grad=True), tensor(rng.standard_normal((2, 2)), grad=True)
    h = [tensor(rng.standard_normal((4, 2, 2)), grad=True) for _ in range(2 if kind == "lstm" else 1)]

    def fn(x, c, *rest):
        hx = tuple(rest[:len(h)]) if len(h) > 1 else rest[0]
        out, final = layer(x, hx, lengths=[3, 2], context=c)
        return (out, *parts(final))

    assert tg.gradcheck(fn, (x, c, *h, *layer.context_weights()))


@pytest.mark.parametrize("mode", ["kernel", "traced"])
def test_context_second_derivatives_and_forward_mode(mode):
    """create_graph through the node (the kernel replays its traced program, q a loop-invariant
    input) and study.jvp in the direction of c, against finite differences."""
    rng = np.random.default_rng(4)
    layer = make_layer("lstm", 2, 2, mode, bidirectional=True, context_size=3)
    randomize(layer, rng)
    x, c = tensor(rng.standard_normal((3, 2, 2)), grad=True), tensor(rng.standard_normal((2, 3)), grad=True)

    def fn(x, c, *weights):
        out, (h_n, c_n) = layer(x, context=c, lengths=[3, 1])
        return out, h_n

    assert tg.gradgradcheck(fn, (x, c, layer.weight_context_l0_reverse))
    direction = rng.standard_normal((1, 2, 3))
    _, (t_out, _) = study.jvp(fn, (x, c), (None, direction))
    eps = 1e-6
    plus = fn(x, tensor(c.numpy() + eps * direction[0]))[0].numpy()
    minus = fn(x, tensor(c.numpy() - eps * direction[0]))[0].numpy()
    assert_close(t_out.numpy()[0], (plus - minus) / (2 * eps), rtol=1e-6, atol=1e-8)


def test_unbatched_context_equals_batch_of_one():
    rng = np.random.default_rng(5)
    layer = make_layer("gru", 3, 4, context_size=2, num_layers=2)
    x, c = tensor(rng.standard_normal((5, 3))), tensor(rng.standard_normal(2))
    out, h_n = layer(x, context=c)
    out1, h_n1 = layer(x.unsqueeze(1), context=c.unsqueeze(0))
    assert_close(out, out1.numpy()[:, 0])
    assert_close(h_n, h_n1.numpy()[:, 0])


def test_context_changes_every_step_and_zero_context_is_no_context():
    """c = 0 gives the layer without context (same other weights); c != 0 changes the output at
    every step, not only the first."""
    rng = np.random.default_rng(6)
    with_c = make_layer("lstm", 3, 4, context_size=2)
    without = make_layer("lstm", 3, 4)
    randomize(with_c, rng)
    without.load_state_dict({k: v for k, v in with_c.state_dict().items() if "weight_context" not in k})
    x = tensor(rng.standard_normal((6, 2, 3)))
    base = without(x)[0].numpy()
    assert_close(with_c(x, context=tensor(np.zeros((2, 2))))[0], base)
    moved = with_c(x, context=tensor(rng.standard_normal((2, 2))))[0].numpy()
    assert np.all(np.abs(moved - base).max(axis=(1, 2)) > 1e-6)


# ----------------------------------------------------------------- 2. as the initial state
def test_initial_state_against_numpy():
    rng = np.random.default_rng(7)
    C, H, L, B = 3, 4, 2, 5
    init = tg.nn.InitialState(C, H, num_layers=L, bidirectional=True, state_parts=2, dtype=tg.float64)
    c = rng.standard_normal((B, C))
    h0, c0 = init(tensor(c))
    w, b = init.weight.numpy(), init.bias.numpy()
    expected = np.tanh(c @ w.T + b).reshape(B, 2, L * 2, H).transpose(1, 2, 0, 3)
    assert_close(h0, expected[0])
    assert_close(c0, expected[1])
    assert tg.nn.InitialState(C, H, dtype=tg.float64)(tensor(c)).shape == (1, B, H)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_both_ways_gradcheck(kind):
    """The context as h_0 (through InitialState) and at every step at once: finite differences in c
    and in both maps' weights."""
    rng = np.random.default_rng(8)
    layer = make_layer(kind, 2, 2, num_layers=2, context_size=2)
    init = tg.nn.InitialState(2, 2, num_layers=2, state_parts=2 if kind == "lstm" else 1, dtype=tg.float64)
    randomize(layer, rng)
    x, c = tensor(rng.standard_normal((3, 2, 2))), tensor(rng.standard_normal((2, 2)), grad=True)

    def fn(c, *weights):
        return layer(x, init(c), context=c)[0]

    assert tg.gradcheck(fn, (c, init.weight, init.bias, layer.weight_context_l0, layer.weight_context_l1))


# ----------------------------------------------------------------- 3. bad inputs
def test_context_errors_name_what_was_wrong():
    layer = make_layer("gru", 3, 4, context_size=2)
    plain = make_layer("gru", 3, 4)
    x = tensor(np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match="built without context_size"):
        plain(x, context=tensor(np.zeros((2, 2))))
    with pytest.raises(ValueError, match=r"built with context_size=2.*context= of shape \(batch, 2\)"):
        layer(x)
    with pytest.raises(ValueError, match=r"GRU: context has shape \(3, 2\), expected \(2, 2\)"):
        layer(x, context=tensor(np.zeros((3, 2))))
    with pytest.raises(ValueError, match=r"context has shape \(2, 5\), expected \(2, 2\) \(batch, context_size\)"):
        layer(x, context=tensor(np.zeros((2, 5))))
    with pytest.raises(ValueError, match=r"context has shape \(2,\), expected \(2, 2\)"):
        layer(x, context=tensor(np.zeros(2)))
    with pytest.raises(ValueError, match=r"expected \(2,\) \(context_size,\) for an unbatched input"):
        layer(x[:, 0], context=tensor(np.zeros((1, 2))))
    with pytest.raises(TypeError, match="context is float32, expected float64"):
        layer(x, context=tg.zeros(2, 2))
    with pytest.raises(TypeError, match="context.*numpy.ndarray"):
        layer(x, context=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="context_size must be at least 1"):
        tg.nn.LSTM(3, 4, context_size=0)
    with pytest.raises(TypeError, match="context_size must be an int"):
        tg.nn.RNN(3, 4, context_size=2.0)
    with pytest.raises(ValueError, match=r"InitialState: context has shape \(2, 3\), expected \(batch, 2\)"):
        tg.nn.InitialState(2, 4)(tg.zeros(2, 3))
    with pytest.raises(ValueError, match="Seq2Seq: context must be one of"):
        tg.nn.Seq2Seq(5, 5, context="hidden")


def test_context_weights_are_named_and_round_trip():
    layer = make_layer("lstm", 3, 4, num_layers=2, bidirectional=True, context_size=5)
    names = [n for n, _ in layer.named_parameters() if "weight_context" in n]
    assert names == ["weight_context_l0", "weight_context_l0_reverse", "weight_context_l1", "weight_context_l1_reverse"]
    assert all(p.shape == (16, 5) for p in layer.context_weights())
    bound = 1 / np.sqrt(4)
    assert all(np.abs(p.numpy()).max() <= bound for p in layer.context_weights())
    other = make_layer("lstm", 3, 4, num_layers=2, bidirectional=True, context_size=5)
    other.load_state_dict(layer.state_dict())
    x, c = tensor(np.ones((2, 1, 3))), tensor(np.ones((1, 5)))
    assert_close(other(x, context=c)[0], layer(x, context=c)[0], rtol=0, atol=0)


# ----------------------------------------------------------------- 4. Seq2Seq
PAD, BOS, EOS = 0, 1, 2


def make_model(device="cpu", cell="gru", attention=None, context="input", num_layers=1, seed=0, tgt_vocab=6,
               bidirectional=True):
    model = tg.nn.Seq2Seq(7, tgt_vocab, 3, 4, cell=cell, attention=attention, num_layers=num_layers,
                          bidirectional_encoder=bidirectional, context=context, device=device, dtype=tg.float64)
    rng = np.random.default_rng(seed)
    state = {name: 0.8 * rng.standard_normal(p.shape) for name, p in model.named_parameters()}
    state["src_embed.weight"][PAD] = state["tgt_embed.weight"][PAD] = 0.0
    model.load_state_dict(state)
    return model


def ids(a, device="cpu"):
    return tg.tensor(np.asarray(a, dtype=np.int64), device=device)


SRC, LENGTHS = [[3, 4, 5, 6], [5, 6, 0, 0], [4, 0, 0, 0]], [4, 2, 1]


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("context", ["input", "both"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_seq2seq_context_equals_decoder_written_out(context, cell):
    """The decoder with the summary at every step == a decoder written out here: the summary
    k = tanh(W_s [h_fwd; h_bwd]) concatenated onto every layer's input of cells whose weight_ih is
    [W_ih | W_ctx], from zeros ("input") or from the bridge ("both")."""
    model = make_model(cell=cell, context=context, num_layers=2)
    tgt_in = np.array([[BOS, 3, 4], [BOS, 5, 3], [BOS, 4, 4]])
    got = model(ids(SRC), LENGTHS, ids(tgt_in)).numpy()
    with tg.no_grad():
        _, finals = model.encoder(model.src_embed(ids(SRC)), lengths=LENGTHS)
        hidden = finals[0] if cell == "lstm" else finals
        joined = [tg.cat([hidden[2 * k], hidden[2 * k + 1]], axis=1) for k in range(2)]
        summary = model.summary(joined[1]).tanh()
        if context == "both":
            states = [model.bridge(j).tanh() for j in joined]
            if cell == "lstm":
                cells = [model.bridge_cell(tg.cat([finals[1][2 * k], finals[1][2 * k + 1]], axis=1)).tanh()
                         for k in range(2)]
                states = list(zip(states, cells))
        else:
            zeros = tg.zeros(3, 4, dtype=tg.float64)
            states = [(zeros, zeros) if cell == "lstm" else zeros for _ in range(2)]
        refs = []
        for k, own in enumerate(model.decoder):
            ref = type(own)(own.input_size + 4, 4, dtype=tg.float64)
            ref.load_state_dict({"weight_ih": np.concatenate([own.weight_ih.numpy(),
                                                              model.context_input[k].weight.numpy()], axis=1),
                                 "weight_hh": own.weight_hh.numpy(), "bias_ih": own.bias_ih.numpy(),
                                 "bias_hh": own.bias_hh.numpy()})
            refs.append(ref)
        expected = []
        for t in range(tgt_in.shape[1]):
            x = model.tgt_embed(ids(tgt_in[:, t]))
            for k, ref in enumerate(refs):
                states[k] = ref(tg.cat([x, summary], axis=1), states[k])
                x = states[k][0] if cell == "lstm" else states[k]
            expected.append(model.readout(x).numpy())
    assert_close(got, np.stack(expected, axis=1))


@pytest.mark.parametrize("context", ["init", "input", "both"])
@pytest.mark.parametrize("cell,attention", [("gru", None), ("lstm", "bahdanau"), ("gru", "luong_general")])
def test_teacher_forced_scores_equal_step_by_step_and_generation(device, context, cell, attention):
    """Teacher forcing is one Scan node for the decoder whose gradient reaches the context
    weights; its log-probs equal those of encode/decode_step fed the same tokens; and the greedy
    tokens of generate are the argmax chain of the teacher-forced log-probs, ending in EOS."""
    model = make_model(device, cell, attention, context, num_layers=2, seed=11)
    with tg.no_grad():
        tokens, _ = model.generate(ids(SRC, device), LENGTHS, max_len=5, beam_size=1)
    steps = max(len(t) for t in tokens) + 1
    tgt_in = np.full((3, steps), PAD)
    for b, seq in enumerate(tokens):
        tgt_in[b, :len(seq) + 1] = [BOS] + seq
    logits = model(ids(SRC, device), LENGTHS, ids(tgt_in, device))
    assert len(scan_nodes(logits)) == 2 * 2 + 1          # the encoder's layers and directions, the decoder
    logits.sum().backward()
    if context != "init":
        assert all(np.abs(m.weight.grad.numpy()).sum() > 0 for m in model.context_input)
    forced = log_softmax(logits.numpy())
    with tg.no_grad():
        states, memory = model.encode(ids(SRC, device), LENGTHS)
        feed = tg.zeros(3, 4, dtype=tg.float64, device=device) if model.input_feeding else None
        for t in range(steps):
            step, states, feed, _ = model.decode_step(ids(tgt_in[:, t], device), states, memory, feed)
            assert_close(log_softmax(step.numpy()), forced[:, t], f"step {t}")
    for b, seq in enumerate(tokens):
        chain = forced[b].argmax(axis=1)
        assert list(chain[:len(seq)]) == seq
        if len(seq) < 5:
            assert chain[len(seq)] == EOS


@pytest.mark.parametrize("context", ["input", "both"])
def test_beam_search_is_exhaustive_search_over_teacher_forced_scores(context):
    """With a beam wider than every hypothesis (4 target ids, 3 steps), beam search returns the
    sequence of best length-normalised teacher-forced log-probability among all sequences."""
    model = make_model(cell="lstm", attention="luong_dot", context=context, tgt_vocab=4, seed=2)
    max_len, vocab = 3, 4
    src, lengths = [[3, 4, 5, 6], [6, 5, 0, 0]], [4, 2]
    got, _ = model.generate(ids(src), lengths, max_len=max_len, beam_size=64)
    candidates = [list(s) + [EOS] for n in range(max_len)
                  for s in itertools.product([v for v in range(vocab) if v != EOS], repeat=n)]
    candidates += [list(s) for s in itertools.product([v for v in range(vocab) if v != EOS], repeat=max_len)]
    for b in range(2):
        best, best_seq = -np.inf, None
        for length in range(1, max_len + 1):
            group = [c for c in candidates if len(c) == length]
            fed = np.array([[BOS] + c[:-1] for c in group])
            rows = len(group)
            with tg.no_grad():
                logp = log_softmax(model(ids([src[b]] * rows), [lengths[b]] * rows, ids(fed)).numpy())
            scores = logp[np.arange(rows)[:, None], np.arange(length)[None, :], np.array(group)].sum(axis=1)
            k = int(np.argmax(scores / length))
            if scores[k] / length > best:
                best, best_seq = scores[k] / length, group[k]
        assert got[b] == [t for t in best_seq if t != EOS]


def test_study_tools_refuse_a_layer_built_with_context():
    """The study tools run a layer's cells themselves, without the context: on a layer built with
    context_size they raise instead of studying a different computation."""
    layer = make_layer("gru", 2, 3, context_size=2)
    x = tensor(np.zeros((3, 2, 2)))
    tools = [lambda: study.trace(layer, x), lambda: study.truncation.measure(layer, x, lambda out, final: out.sum()),
             lambda: study.rtrl_gradients(layer, x, step_loss=lambda t, h: h.sum())]
    for tool in tools:
        with pytest.raises(ValueError, match="context_size=2"):
            tool()
