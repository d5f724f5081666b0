"""nn.Seq2Seq: shapes, padding, teacher forcing against step-by-step decoding, greedy
and beam search against decoders written out here from ``encode``/``decode_step``,
scheduled sampling, gradients in float64, a small task learned, and input checks."""
import itertools

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from helpers import hyp

KINDS = ["bahdanau", "luong_dot", "luong_general", "luong_concat"]
ATTENTIONS = [None] + KINDS
CELLS = ["gru", "lstm"]
PAD, BOS, EOS = 0, 1, 2
SRC_VOCAB, TGT_VOCAB = 7, 6


# ----------------------------------------------------------------- helpers
def make_model(device, cell="gru", attention="bahdanau", num_layers=1, bidirectional=True, input_feeding=True,
               seed=0, embed_size=3, hidden_size=4, src_vocab=SRC_VOCAB, tgt_vocab=TGT_VOCAB, scale=0.8,
               bias=None, dropout=0.0):
    """A float64 model with random parameters (padding rows of the embeddings kept at zero).
    ``bias`` maps target ids to a value added to the readout bias (to favour or forbid tokens)."""
    model = tg.nn.Seq2Seq(src_vocab, tgt_vocab, embed_size, hidden_size, cell=cell, attention=attention,
                          num_layers=num_layers, bidirectional_encoder=bidirectional, dropout=dropout,
                          pad_id=PAD, bos_id=BOS, eos_id=EOS, input_feeding=input_feeding, device=device,
                          dtype=tg.float64)
    rng = np.random.default_rng(seed)
    state = {name: scale * rng.standard_normal(p.shape) for name, p in model.named_parameters()}
    state["src_embed.weight"][PAD] = 0.0
    state["tgt_embed.weight"][PAD] = 0.0
    for token, value in (bias or {}).items():
        state["readout.bias"][token] += value
    model.load_state_dict(state)
    return model


@st.composite
def configs(draw, attention=True):
    cfg = dict(num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()),
               input_feeding=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))
    if attention:
        cfg["attention"] = draw(st.sampled_from(ATTENTIONS))
        cfg["cell"] = draw(st.sampled_from(CELLS))
    return cfg


@st.composite
def batches(draw, max_batch=3, max_src=5, max_tgt=4, min_tgt=1):
    """src (B, S) padded with PAD past each row's length, the lengths, tgt_in (B, T) starting with BOS."""
    batch = draw(st.integers(1, max_batch))
    src_len = draw(st.integers(1, max_src))
    steps = draw(st.integers(min_tgt, max_tgt))
    lengths = draw(st.lists(st.integers(1, src_len), min_size=batch, max_size=batch))
    seed = draw(st.integers(0, 2**16))
    return make_batch(batch, src_len, steps, lengths, seed)


def make_batch(batch, src_len, steps, lengths, seed):
    rng = np.random.default_rng(seed)
    src = rng.integers(1, SRC_VOCAB, size=(batch, src_len))
    src[np.arange(src_len)[None, :] >= np.asarray(lengths)[:, None]] = PAD
    tgt_in = rng.integers(2, TGT_VOCAB, size=(batch, steps))
    tgt_in[:, 0] = BOS
    return dict(src=src, lengths=list(lengths), tgt_in=tgt_in, seed=seed)


def ids(a, device):
    return tg.tensor(np.asarray(a, dtype=np.int64), device=device)


def initial_feed(model, batch, device):
    return tg.zeros(batch, model.hidden_size, dtype=tg.float64, device=device) if model.input_feeding else None


def run_steps(model, src, lengths, steps, next_tokens, device):
    """encode, then decode_step ``steps`` times; ``next_tokens(t, previous_logits)`` gives each step's input.
    Returns the logits (B, steps, V) and each step's attention weights (or None)."""
    states, memory = model.encode(ids(src, device), lengths)
    feed = initial_feed(model, len(src), device)
    logits, weights, previous = [], [], None
    for t in range(steps):
        tokens = np.asarray(next_tokens(t, previous), dtype=np.int64)
        step, states, feed, w = model.decode_step(ids(tokens, device), states, memory, feed)
        previous = step.numpy()
        logits.append(previous)
        weights.append(None if w is None else w.numpy())
    return np.stack(logits, axis=1), weights


def greedy(model, src, lengths, max_len, device):
    """A greedy decoder from encode/decode_step: argmax each step, each row stopping at EOS."""
    batch = len(src)
    tokens = [[] for _ in range(batch)]
    maps = [[] for _ in range(batch)]
    done = np.zeros(batch, dtype=bool)
    with tg.no_grad():
        states, memory = model.encode(ids(src, device), lengths)
        feed = initial_feed(model, batch, device)
        current = np.full(batch, BOS)
        for _ in range(max_len):
            logits, states, feed, w = model.decode_step(ids(current, device), states, memory, feed)
            current = logits.numpy().argmax(axis=1)
            for b in range(batch):
                if done[b]:
                    continue
                if current[b] == EOS:
                    done[b] = True
                    continue
                tokens[b].append(int(current[b]))
                maps[b].append(np.zeros(lengths[b]) if w is None else w.numpy()[b, :lengths[b]])
            if done.all():
                break
    return tokens, [np.array(m).reshape(len(m), lengths[b]) for b, m in enumerate(maps)]


def replayed_attention(model, src_row, tokens, device):
    """The attention (len(tokens), len(src_row)) of the decoder fed BOS and then ``tokens[:-1]``."""
    fed = [BOS] + list(tokens[:-1])
    if not tokens:
        return np.zeros((len(tokens), len(src_row)))
    with tg.no_grad():
        _, weights = run_steps(model, [list(src_row)], [len(src_row)], len(fed), lambda t, _: [fed[t]], device)
    return np.concatenate(weights, axis=0)


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def assert_close(got, expected, rtol=1e-10, atol=1e-12, msg=""):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, (msg, got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=msg)


def assert_maps(maps, tokens, lengths, attention):
    assert len(maps) == len(tokens)
    for b, (amap, toks) in enumerate(zip(maps, tokens)):
        amap = np.asarray(amap)
        if attention is None:
            assert amap.shape[0] == len(toks) and amap.shape[1] in (0, lengths[b]), (b, amap.shape)
            assert not amap.any()
        else:
            assert amap.shape == (len(toks), lengths[b]), (b, amap.shape, len(toks), lengths[b])
            assert np.all(amap >= 0.0)
            assert_close(amap.sum(axis=1), np.ones(len(toks)), rtol=0, atol=1e-12, msg=f"row sums of map {b}")


FULL_BATCH = make_batch(3, 5, 4, [5, 2, 3], seed=11)
FULL_CFG = dict(num_layers=2, bidirectional=True, input_feeding=True, seed=5)


# ----------------------------------------------------------------- shapes and padding
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", CELLS)
@hyp(5)
@given(cfg=configs(attention=False), data=batches())
@example(cfg=FULL_CFG, data=FULL_BATCH)
def test_logits_shape(device, cell, attention, cfg, data):
    model = make_model(device, cell, attention, **cfg)
    logits = model(ids(data["src"], device), data["lengths"], ids(data["tgt_in"], device))
    assert logits.shape == data["tgt_in"].shape + (TGT_VOCAB,)
    assert logits.dtype == tg.float64
    assert np.all(np.isfinite(logits.numpy()))
    # src_lengths may also be a tensor
    again = model(ids(data["src"], device), ids(data["lengths"], device), ids(data["tgt_in"], device))
    np.testing.assert_array_equal(again.numpy(), logits.numpy())


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", CELLS)
@hyp(4)
@given(cfg=configs(attention=False), data=batches())
@example(cfg=FULL_CFG, data=FULL_BATCH)
def test_padded_source_tokens_change_nothing(device, cell, attention, cfg, data):
    model = make_model(device, cell, attention, **cfg)
    src, lengths = data["src"], data["lengths"]
    other = src.copy()
    padded = np.arange(src.shape[1])[None, :] >= np.asarray(lengths)[:, None]
    other[padded] = np.random.default_rng(data["seed"]).integers(1, SRC_VOCAB, size=int(padded.sum()))
    a = model(ids(src, device), lengths, ids(data["tgt_in"], device)).numpy()
    b = model(ids(other, device), lengths, ids(data["tgt_in"], device)).numpy()
    assert_close(b, a, rtol=1e-13, atol=1e-14)
    for beam in (1, 2):
        tok_a, map_a = model.generate(ids(src, device), lengths, max_len=4, beam_size=beam)
        tok_b, map_b = model.generate(ids(other, device), lengths, max_len=4, beam_size=beam)
        assert tok_a == tok_b
        for x, y in zip(map_a, map_b):
            assert_close(y, x, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", CELLS)
@hyp(3)
@given(cfg=configs(attention=False), data=batches(max_batch=3, max_src=4, max_tgt=3))
@example(cfg=FULL_CFG, data=FULL_BATCH)
def test_padded_batch_equals_each_example_alone(device, cell, attention, cfg, data):
    model = make_model(device, cell, attention, bias={EOS: 1.0}, **cfg)
    src, lengths, tgt_in = data["src"], data["lengths"], data["tgt_in"]
    logits = model(ids(src, device), lengths, ids(tgt_in, device)).numpy()
    gens = {beam: model.generate(ids(src, device), lengths, max_len=4, beam_size=beam) for beam in (1, 3)}
    for b, n in enumerate(lengths):
        alone = model(ids(src[b:b + 1, :n], device), [n], ids(tgt_in[b:b + 1], device)).numpy()
        assert_close(logits[b], alone[0], msg=f"logits of row {b}")
        for beam, (tokens, maps) in gens.items():
            tok1, map1 = model.generate(ids(src[b:b + 1, :n], device), [n], max_len=4, beam_size=beam)
            assert tokens[b] == tok1[0], (beam, b)
            assert_close(maps[b], map1[0], msg=f"attention of row {b}, beam {beam}")


# ----------------------------------------------------------------- teacher forcing
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", CELLS)
@hyp(4)
@given(cfg=configs(attention=False), data=batches(max_tgt=5))
@example(cfg=FULL_CFG, data=FULL_BATCH)
def test_teacher_forced_logits_equal_step_by_step_decoding(device, cell, attention, cfg, data):
    model = make_model(device, cell, attention, **cfg)
    src, lengths, tgt_in = data["src"], data["lengths"], data["tgt_in"]
    logits = model(ids(src, device), lengths, ids(tgt_in, device)).numpy()
    manual, weights = run_steps(model, src, lengths, tgt_in.shape[1], lambda t, _: tgt_in[:, t], device)
    assert_close(logits, manual)
    valid = np.arange(src.shape[1])[None, :] < np.asarray(lengths)[:, None]
    for w in weights:
        if attention is None:
            assert w is None
        else:
            assert w.shape == src.shape
            assert np.all(w[~valid] == 0.0)
            assert_close(w.sum(axis=1), np.ones(len(src)), rtol=0, atol=1e-12)
    # step t sees tgt_in[:, :t+1] only: later tokens change nothing before them
    changed = tgt_in.copy()
    changed[:, -1] = (changed[:, -1] + 1 - 2) % (TGT_VOCAB - 2) + 2
    again = model(ids(src, device), lengths, ids(changed, device)).numpy()
    assert_close(again[:, :-1], logits[:, :-1], rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", CELLS)
@hyp(3)
@given(cfg=configs(attention=False), data=batches(max_tgt=5))
@example(cfg=FULL_CFG, data=FULL_BATCH)
def test_teacher_forcing_zero_feeds_argmax(device, cell, attention, cfg, data):
    model = make_model(device, cell, attention, **cfg)
    src, lengths, tgt_in = data["src"], data["lengths"], data["tgt_in"]
    logits = model(ids(src, device), lengths, ids(tgt_in, device), teacher_forcing=0.0).numpy()
    manual, _ = run_steps(model, src, lengths, tgt_in.shape[1],
                          lambda t, prev: tgt_in[:, 0] if t == 0 else prev.argmax(axis=1), device)
    assert_close(logits, manual)
    # the target tokens after BOS are not used at all
    other = tgt_in.copy()
    other[:, 1:] = (other[:, 1:] - 1) % (TGT_VOCAB - 2) + 2
    again = model(ids(src, device), lengths, ids(other, device), teacher_forcing=0.0).numpy()
    assert_close(again, logits, rtol=1e-13, atol=1e-14)


def _select(cond, a, b):
    """Row-wise choice between two decoder states (Tensors, tuples or lists of them)."""
    if a is None:
        return None
    if isinstance(a, (tuple, list)):
        return type(a)(_select(cond, x, y) for x, y in zip(a, b))
    return tg.where(cond, a, b)


def _replay_scheduled_sampling(model, src, lengths, tgt_in, logits, device):
    """Walk the decoder step by step and check that every fed token was either the true one or
    the argmax of the previous step. Returns (# own predictions fed, # true tokens fed) over the
    positions where the two differ."""
    own = truth_fed = 0
    with tg.no_grad():
        states, memory = model.encode(ids(src, device), lengths)
        feed = initial_feed(model, len(src), device)
        for t in range(tgt_in.shape[1]):
            if t == 0:
                _, states, feed, _ = model.decode_step(ids(tgt_in[:, 0], device), states, memory, feed)
                continue
            truth, guess = tgt_in[:, t], logits[:, t - 1].argmax(axis=1)
            out_t = model.decode_step(ids(truth, device), states, memory, feed)
            out_g = model.decode_step(ids(guess, device), states, memory, feed)
            lt, lg = out_t[0].numpy(), out_g[0].numpy()
            took_truth = np.all(np.isclose(logits[:, t], lt, rtol=1e-10, atol=1e-12), axis=1)
            took_guess = np.all(np.isclose(logits[:, t], lg, rtol=1e-10, atol=1e-12), axis=1)
            assert np.all(took_truth | took_guess), f"step {t}: fed neither the true token nor the prediction"
            differ = truth != guess
            own += int((took_guess & differ).sum())
            truth_fed += int((took_truth & differ).sum())
            cond = tg.tensor(took_truth[:, None], device=device)
            states = _select(cond, out_t[1], out_g[1])
            feed = _select(cond, out_t[2], out_g[2])
    return own, truth_fed


@pytest.mark.parametrize("attention", [None, "luong_general"])
@pytest.mark.parametrize("cell", CELLS)
def test_scheduled_sampling(device, cell, attention):
    model = make_model(device, cell, attention, num_layers=2, seed=3)
    data = make_batch(8, 4, 10, [4, 1, 3, 2, 4, 4, 2, 3], seed=5)
    src, lengths, tgt_in = data["src"], data["lengths"], data["tgt_in"]
    args = (ids(src, device), lengths, ids(tgt_in, device))
    teacher = model(*args).numpy()
    for seed in (0, 1):
        tg.manual_seed(seed)
        assert_close(model(*args, teacher_forcing=1.0).numpy(), teacher, rtol=0, atol=0)
    fractions = {}
    for tf in (0.25, 0.75):
        own = truth_fed = 0
        for seed in (0, 1, 2):
            tg.manual_seed(seed)
            first = model(*args, teacher_forcing=tf).numpy()
            tg.manual_seed(seed)
            second = model(*args, teacher_forcing=tf).numpy()
            np.testing.assert_array_equal(first, second)      # reproducible under manual_seed
            o, t = _replay_scheduled_sampling(model, src, lengths, tgt_in, first, device)
            own, truth_fed = own + o, truth_fed + t
        assert own > 0 and truth_fed > 0, (tf, own, truth_fed)
        fractions[tf] = own / (own + truth_fed)
    # the own prediction is fed with probability 1 - teacher_forcing
    assert 0.55 < fractions[0.25] < 0.95, fractions
    assert 0.05 < fractions[0.75] < 0.45, fractions


# ----------------------------------------------------------------- decoding
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", CELLS)
@hyp(4)
@given(cfg=configs(attention=False), data=batches(max_batch=3, max_src=4),
       max_len=st.integers(1, 6), eos_bias=st.sampled_from([0.0, 1.0, 2.0]))
@example(cfg=FULL_CFG, data=FULL_BATCH, max_len=5, eos_bias=1.0)
def test_beam_size_one_equals_greedy(device, cell, attention, cfg, data, max_len, eos_bias):
    model = make_model(device, cell, attention, bias={EOS: eos_bias}, **cfg)
    src, lengths = data["src"], data["lengths"]
    tokens, maps = model.generate(ids(src, device), lengths, max_len=max_len, beam_size=1)
    ref_tokens, ref_maps = greedy(model, src, lengths, max_len, device)
    assert tokens == ref_tokens
    assert all(isinstance(x, int) for row in tokens for x in row)
    assert_maps(maps, tokens, lengths, attention)
    for b in range(len(src)):
        got = np.asarray(maps[b])
        if attention is not None:
            assert_close(got, ref_maps[b], msg=f"attention of row {b}")


@pytest.mark.parametrize("attention", KINDS)
@hyp(6)
@given(cfg=configs(attention=False), cell=st.sampled_from(CELLS), data=batches(max_batch=3, max_src=4),
       beam=st.integers(1, 4), length_penalty=st.sampled_from([0.0, 1.0]), eos_bias=st.sampled_from([-1.0, 1.5]),
       max_len=st.integers(1, 6))
@example(cfg=FULL_CFG, cell="lstm", data=FULL_BATCH, beam=3, length_penalty=1.0, eos_bias=-1.0, max_len=5)
@example(cfg=dict(num_layers=1, bidirectional=True, input_feeding=True, seed=8), cell="gru",
         data=make_batch(2, 3, 1, [3, 2], seed=8), beam=3, length_penalty=1.0, eos_bias=-1.0, max_len=5)
@example(cfg=dict(num_layers=1, bidirectional=True, input_feeding=True, seed=10), cell="gru",
         data=make_batch(2, 3, 1, [3, 2], seed=10), beam=3, length_penalty=1.0, eos_bias=-1.0, max_len=5)
@example(cfg=dict(num_layers=2, bidirectional=False, input_feeding=True, seed=27), cell="lstm",
         data=make_batch(2, 3, 1, [3, 2], seed=27), beam=3, length_penalty=1.0, eos_bias=-1.0, max_len=5)
def test_generated_attention_is_that_of_the_returned_tokens(device, attention, cfg, cell, data, beam,
                                                           length_penalty, eos_bias, max_len):
    """Each returned attention row is what the decoder computes when fed BOS and the returned tokens
    before it: the map follows the hypothesis through every reordering of the beam."""
    model = make_model(device, cell, attention, bias={EOS: eos_bias}, **cfg)
    src, lengths = data["src"], data["lengths"]
    tokens, maps = model.generate(ids(src, device), lengths, max_len=max_len, beam_size=beam,
                                  length_penalty=length_penalty)
    assert_maps(maps, tokens, lengths, attention)
    for b, n in enumerate(lengths):
        assert_close(maps[b], replayed_attention(model, src[b, :n], tokens[b], device), msg=f"row {b}")


@pytest.mark.parametrize("attention", ATTENTIONS)
@hyp(6)
@given(cfg=configs(attention=False), cell=st.sampled_from(CELLS), data=batches(max_batch=2, max_src=4),
       max_len=st.integers(1, 4), length_penalty=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
       eos_bias=st.sampled_from([-1.0, 0.0, 1.0]))
@example(cfg=FULL_CFG, cell="gru", data=make_batch(2, 3, 1, [3, 2], seed=2), max_len=4, length_penalty=1.0,
         eos_bias=-1.0)
@example(cfg=FULL_CFG, cell="lstm", data=make_batch(2, 3, 1, [1, 3], seed=3), max_len=3, length_penalty=0.5,
         eos_bias=0.0)
def test_wide_beam_is_exhaustive_search(device, attention, cfg, cell, data, max_len, length_penalty, eos_bias):
    """With a beam wider than the number of candidates nothing is pruned, so the result is the best of
    all sequences: k tokens then EOS (k < max_len) scored log p / (k + 1) ** length_penalty, or max_len
    tokens cut off without EOS scored log p / max_len ** length_penalty."""
    model = make_model(device, cell, attention, bias={EOS: eos_bias}, **cfg)
    src, lengths = data["src"], data["lengths"]
    others = [tok for tok in range(TGT_VOCAB) if tok != EOS]
    tokens, maps = model.generate(ids(src, device), lengths, max_len=max_len, beam_size=800,
                                  length_penalty=length_penalty)
    assert_maps(maps, tokens, lengths, attention)
    seqs = np.array(list(itertools.product(others, repeat=max_len)), dtype=np.int64).reshape(-1, max_len)
    tgt_in = np.concatenate([np.full((len(seqs), 1), BOS), seqs[:, :-1]], axis=1)
    for b, n in enumerate(lengths):
        with tg.no_grad():
            logits = model(ids(np.repeat(src[b:b + 1, :n], len(seqs), axis=0), device), [n] * len(seqs),
                           ids(tgt_in, device)).numpy()
        logp = log_softmax(logits)                                        # (N, max_len, V)
        chosen = np.take_along_axis(logp, seqs[..., None], axis=2)[..., 0]
        prefix = np.concatenate([np.zeros((len(seqs), 1)), np.cumsum(chosen, axis=1)], axis=1)
        best, best_score = None, -np.inf
        for i, seq in enumerate(seqs):
            for k in range(max_len):                                      # k tokens, then EOS
                score = (prefix[i, k] + logp[i, k, EOS]) / (k + 1) ** length_penalty
                if score > best_score:
                    best, best_score = list(seq[:k]), score
            score = prefix[i, max_len] / max_len ** length_penalty        # cut off at max_len
            if score > best_score:
                best, best_score = list(seq), score
        assert tokens[b] == [int(x) for x in best], (b, tokens[b], best)
        if attention is not None:
            assert_close(maps[b], replayed_attention(model, src[b, :n], tokens[b], device), msg=f"row {b}")


def _copy_state(model):
    return {name: p.numpy().copy() for name, p in model.named_parameters()}


@pytest.mark.parametrize("cell", CELLS)
def test_input_feeding_feeds_the_previous_attentional_state(device, cell):
    """With input feeding the first decoder layer reads [e(y_{t-1}); h~_{t-1}] (h~_0 = 0): with the
    h~ columns of its input weight zeroed it is the model without input feeding."""
    E = 3
    data = FULL_BATCH
    args = (ids(data["src"], device), data["lengths"], ids(data["tgt_in"], device))
    feeding = make_model(device, cell, "luong_general", input_feeding=True, seed=4, embed_size=E)
    plain = make_model(device, cell, "luong_general", input_feeding=False, seed=4, embed_size=E)
    state = _copy_state(feeding)
    assert state["decoder.0.weight_ih"].shape[1] == E + feeding.hidden_size
    assert plain.decoder[0].weight_ih.shape[1] == E
    with_feed = feeding(*args).numpy()
    state["decoder.0.weight_ih"][:, E:] = 0.0
    feeding.load_state_dict(state)
    zeroed = feeding(*args).numpy()
    plain_state = dict(state, **{"decoder.0.weight_ih": state["decoder.0.weight_ih"][:, :E]})
    plain.load_state_dict(plain_state)
    assert_close(plain(*args).numpy(), zeroed)
    # the fed-back state starts at zero, so the first step is the same either way; later ones are not
    assert_close(with_feed[:, 0], zeroed[:, 0])
    assert np.abs(with_feed[:, 1:] - zeroed[:, 1:]).max() > 1e-6
    # without attention there is nothing to feed back
    no_attention = make_model(device, cell, None, input_feeding=True, embed_size=E)
    assert not no_attention.input_feeding
    assert no_attention.decoder[0].weight_ih.shape[1] == E


@pytest.mark.parametrize("beam", [1, 3])
@hyp(6)
@given(cfg=configs(), data=batches(max_batch=3, max_src=4), max_len=st.integers(1, 7),
       eos_bias=st.sampled_from([-1.0, 0.0, 1.5, 3.0]))
@example(cfg=dict(FULL_CFG, cell="lstm", attention="bahdanau"), data=FULL_BATCH, max_len=6, eos_bias=1.5)
def test_generate_stops_at_eos_and_respects_max_len(device, beam, cfg, data, max_len, eos_bias):
    # BOS is made impossible to predict, so a BOS in the output can only be the start token leaking in
    model = make_model(device, bias={EOS: eos_bias, BOS: -60.0}, **cfg)
    src, lengths = data["src"], data["lengths"]
    tokens, maps = model.generate(ids(src, device), lengths, max_len=max_len, beam_size=beam)
    assert isinstance(tokens, list) and len(tokens) == len(src)
    for row in tokens:
        assert isinstance(row, list)
        assert EOS not in row and BOS not in row, row
        assert len(row) <= max_len
    assert_maps(maps, tokens, lengths, cfg["attention"])


@pytest.mark.parametrize("beam", [1, 2])
@pytest.mark.parametrize("attention", [None, "bahdanau"])
def test_generate_extremes(device, attention, beam):
    data = FULL_BATCH
    src, lengths = ids(data["src"], device), data["lengths"]
    # EOS always wins: every output is empty, with (0, S_b) attention
    model = make_model(device, "gru", attention, bias={EOS: 80.0})
    tokens, maps = model.generate(src, lengths, max_len=5, beam_size=beam)
    assert tokens == [[], [], []]
    assert_maps(maps, tokens, lengths, attention)
    # EOS never wins: every output is exactly max_len long
    model = make_model(device, "lstm", attention, bias={EOS: -80.0})
    for max_len in (1, 4):
        tokens, maps = model.generate(src, lengths, max_len=max_len, beam_size=beam)
        assert [len(t) for t in tokens] == [max_len] * 3
        assert_maps(maps, tokens, lengths, attention)


def test_generate_uses_eval_mode_and_restores_training(device):
    model = make_model(device, "gru", "bahdanau", dropout=0.5)
    plain = make_model(device, "gru", "bahdanau", dropout=0.0)
    src, lengths = ids(FULL_BATCH["src"], device), FULL_BATCH["lengths"]
    model.train()
    tg.manual_seed(0)
    first = model.generate(src, lengths, max_len=4, beam_size=2)
    assert model.training
    tg.manual_seed(1)
    second = model.generate(src, lengths, max_len=4, beam_size=2)
    reference = plain.generate(src, lengths, max_len=4, beam_size=2)
    assert first[0] == second[0] == reference[0]
    model.eval()
    model.generate(src, lengths, max_len=2)
    assert not model.training
    # and in eval mode the dropout model's logits are the plain model's
    tgt_in = ids(FULL_BATCH["tgt_in"], device)
    assert_close(model(src, lengths, tgt_in).numpy(), plain(src, lengths, tgt_in).numpy())


# ----------------------------------------------------------------- gradients
GRAD_PARAMS = ["attention.", "key_projection.", "combine.weight", "decoder.0.weight_hh", "encoder.weight_ih_l0_reverse",
               "bridge.weight", "readout.bias", "src_embed.weight"]


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck(device, cell, attention):
    model = make_model(device, cell, attention, embed_size=2, hidden_size=2, src_vocab=5, tgt_vocab=5,
                       seed=CELLS.index(cell) * 7 + ATTENTIONS.index(attention), num_layers=1, bidirectional=True)
    src = ids([[3, 4, 2], [4, 3, 0]], device)
    lengths = [3, 2]
    tgt_in = ids([[BOS, 3, 4], [BOS, 2, 3]], device)
    named = dict(model.named_parameters())
    chosen = [p for name, p in named.items() if any(name.startswith(g) for g in GRAD_PARAMS)]
    assert tg.gradcheck(lambda *params: model(src, lengths, tgt_in), tuple(chosen))


def test_padding_embeddings_get_no_gradient(device):
    model = make_model(device, "lstm", "luong_dot")
    data = FULL_BATCH
    logits = model(ids(data["src"], device), data["lengths"], ids(data["tgt_in"], device))
    w = tg.tensor(np.random.default_rng(0).standard_normal(logits.shape), dtype=tg.float64, device=device)
    (logits * w).sum().backward()
    assert np.all(model.src_embed.weight.grad.numpy()[PAD] == 0.0)
    assert np.any(model.src_embed.weight.grad.numpy() != 0.0)


# ----------------------------------------------------------------- learning
def test_learns_to_reverse_three_tokens(device):
    tg.manual_seed(0)
    model = tg.nn.Seq2Seq(6, 6, embed_size=8, hidden_size=16, cell="gru", attention="bahdanau",
                          device=device, dtype=tg.float64)
    seqs = np.array([[a, b, c] for a in range(3, 6) for b in range(3, 6) for c in range(3, 6)])
    src = ids(seqs, device)
    lengths = [3] * len(seqs)
    reversed_ = seqs[:, ::-1]
    tgt_in = ids(np.concatenate([np.full((len(seqs), 1), BOS), reversed_], axis=1), device)
    tgt_out = ids(np.concatenate([reversed_, np.full((len(seqs), 1), EOS)], axis=1).reshape(-1), device)
    opt = tg.optim.Adam(model.parameters(), lr=0.03)
    losses = []
    for _ in range(200):
        opt.zero_grad()
        logits = model(src, lengths, tgt_in)
        loss = tg.functional.cross_entropy(logits.reshape(-1, 6), tgt_out)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], (losses[0], losses[-1])
    tokens, _ = model.generate(src, lengths, max_len=5)
    assert np.mean([t == list(r) for t, r in zip(tokens, reversed_)]) > 0.9


# ----------------------------------------------------------------- input checks
def test_bad_constructor_arguments():
    for cell in ("rnn", "GRU", None):
        with pytest.raises(ValueError, match="cell"):
            tg.nn.Seq2Seq(7, 6, 3, 4, cell=cell)
    for attention in ("dot", "Bahdanau", ""):
        with pytest.raises(ValueError, match="attention"):
            tg.nn.Seq2Seq(7, 6, 3, 4, attention=attention)
    for name, value in (("pad_id", 6), ("pad_id", -1), ("bos_id", 6), ("bos_id", -1), ("eos_id", 9),
                        ("eos_id", -2)):
        with pytest.raises(ValueError, match=name):
            tg.nn.Seq2Seq(7, 6, 3, 4, **{name: value})
    tg.nn.Seq2Seq(7, 6, 3, 4, pad_id=5, bos_id=4, eos_id=3)      # ids at the top of the vocabulary are fine


def _model_and_inputs(device):
    model = make_model(device, "gru", "bahdanau")
    data = FULL_BATCH
    return model, ids(data["src"], device), data["lengths"], ids(data["tgt_in"], device)


def test_bad_source(device):
    model, src, lengths, tgt_in = _model_and_inputs(device)
    raw = FULL_BATCH["src"]
    bad_sources = [tg.tensor(raw.astype(np.float64), device=device),    # floats
                   tg.tensor(raw.astype(bool), device=device),          # bools
                   ids(raw[0], device),                                  # 1-D
                   ids(raw[:, :, None], device),                         # 3-D
                   raw,                                                  # a NumPy array
                   raw.tolist()]                                         # a list
    for bad in bad_sources:
        with pytest.raises(ValueError, match="src"):
            model(bad, lengths, tgt_in)
        with pytest.raises(ValueError, match="src"):
            model.generate(bad, lengths)


def test_bad_lengths(device):
    model, src, lengths, tgt_in = _model_and_inputs(device)
    S = src.shape[1]
    for bad in ([0, 2, 3], [S + 1, 2, 3], [5, 2], [5, 2, 3, 1], [-1, 2, 3]):
        with pytest.raises(ValueError, match="lengths"):
            model(src, bad, tgt_in)
        with pytest.raises(ValueError, match="lengths"):
            model.generate(src, bad)
        with pytest.raises(ValueError, match="lengths"):
            model.encode(src, bad)
    with pytest.raises((TypeError, ValueError), match="lengths"):
        model(src, [5.0, 2.0, 3.0], tgt_in)


def test_source_lengths_none_means_full_length_or_a_clear_error(device):
    model, src, _, tgt_in = _model_and_inputs(device)
    full = [src.shape[1]] * src.shape[0]
    calls = (lambda n: model(src, n, tgt_in).numpy(), lambda n: model.generate(src, n, max_len=3)[0])
    for call in calls:
        try:
            got = call(None)
        except ValueError as e:
            assert "lengths" in str(e)
            continue
        expected = call(full)
        if isinstance(got, np.ndarray):
            assert_close(got, expected)
        else:
            assert got == expected


def test_bad_target(device):
    model, src, lengths, tgt_in = _model_and_inputs(device)
    raw = FULL_BATCH["tgt_in"]
    bad_targets = [tg.tensor(raw.astype(np.float64), device=device),   # floats
                   ids(raw[0], device),                                 # 1-D
                   ids(raw[:, :, None], device),                        # 3-D
                   ids(raw[:2], device),                                # too few rows
                   ids(np.concatenate([raw, raw[:1]]), device),         # too many rows
                   ids(raw[:, :0], device),                             # no steps (not even BOS)
                   raw,                                                 # a NumPy array
                   raw.tolist()]                                        # a list
    for bad in bad_targets:
        with pytest.raises(ValueError, match="tgt_in"):
            model(src, lengths, bad)


def test_bad_teacher_forcing(device):
    model, src, lengths, tgt_in = _model_and_inputs(device)
    for tf in (-0.1, 1.01, 2.0, float("nan")):
        with pytest.raises(ValueError, match="teacher_forcing"):
            model(src, lengths, tgt_in, teacher_forcing=tf)
    for tf in (0.0, 1.0):
        model(src, lengths, tgt_in, teacher_forcing=tf)


def test_bad_generate_arguments(device):
    model, src, lengths, _ = _model_and_inputs(device)
    for kw in (dict(max_len=0), dict(max_len=-3), dict(beam_size=0), dict(beam_size=-1)):
        with pytest.raises(ValueError, match="max_len|beam_size"):
            model.generate(src, lengths, **kw)
    model.generate(src, lengths, max_len=1, beam_size=1)
