"""A miniature image captioner: 8x8 handwritten digits spelled out letter by letter.

One-to-many: a sequence generated from one fixed vector. Each image of scikit-learn's
bundled handwritten digits (1,797 images of 8x8 pixels; nothing is downloaded) is encoded
into a vector v = tanh(W_e x + b_e), and a GRU decoder spells the digit's name, "seven" =
s, e, v, e, n, then an end token. The decoder is conditioned on v in each of the three
ways of Goodfellow, Bengio & Courville (2016, Deep Learning §10.2.4):

    input   v at every step: v W_ctx^T added to every step's input projection (GRU(context_size=...))
    init    v as the initial state: h_0 = tanh(W_0 v + b_0)                   (nn.InitialState)
    both    both, as the decoder of Cho et al. (2014) is

Each is trained with the same budget (steps, batch, learning rate, sizes) for several
seeds; the table gives the held-out exact match of the greedy caption (the whole word
right) and the training cross-entropy per letter over the last tenth of the steps, next to
two classifiers on the same split (logistic regression and 1-nearest-neighbour), which only
have to pick one of ten classes. The figure shows the training curves and held-out images
with the captions the "both" model writes.

Run:  python examples/digits_captioner.py [--steps 1500] [--seeds 3] [--device cpu|cuda] [--smoke]
"""
import time

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from _common import parser, progress, pyplot, require, save_figure, start

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PAD, BOS, EOS = 0, 1, 2
LETTERS = sorted(set("".join(NAMES)))
CHARS = ["<pad>", "<bos>", "<eos>"] + LETTERS
MODES = ("input", "init", "both")


def spell(label):
    return [CHARS.index(c) for c in NAMES[label]]


def read(ids):
    return "".join(CHARS[i] for i in ids)


def digits(seed, test_share=0.2):
    """Pixels scaled to [0, 1] (N, 64) and labels, split into train and held-out parts at random."""
    data = require("sklearn.datasets").load_digits()
    pixels, labels = (data.data / 16.0).astype(np.float32), data.target
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = int(len(labels) * (1 - test_share))
    return (pixels[order[:cut]], labels[order[:cut]]), (pixels[order[cut:]], labels[order[cut:]])


def teacher_batch(labels):
    """Decoder inputs (BOS + name) and targets (name + EOS), padded: (B, T) each."""
    words = [spell(label) for label in labels]
    steps = max(len(w) for w in words) + 1
    tokens_in, tokens_out = np.full((len(words), steps), PAD), np.full((len(words), steps), PAD)
    for i, w in enumerate(words):
        tokens_in[i, :len(w) + 1] = [BOS] + w
        tokens_out[i, :len(w) + 1] = w + [EOS]
    return tokens_in, tokens_out


class Captioner(nn.Module):
    """v = tanh(W_e x + b_e) from the 64 pixels; a GRU decoder conditioned on v as ``mode`` says."""

    def __init__(self, mode, features, hidden, embed, device):
        self.mode = mode
        self.encoder = nn.Linear(64, features, device=device)
        self.embed = nn.Embedding(len(CHARS), embed, padding_idx=PAD, device=device)
        every_step = mode in ("input", "both")
        self.decoder = nn.GRU(embed, hidden, batch_first=True, context_size=features if every_step else None,
                              device=device)
        self.to_state = nn.InitialState(features, hidden, device=device) if mode in ("init", "both") else None
        self.readout = nn.Linear(hidden, len(CHARS), device=device)

    def condition(self, pixels):
        """The decoder's initial state (None: zeros) and context (None: none) for these images."""
        v = self.encoder(pixels).tanh()
        return (None if self.to_state is None else self.to_state(v),
                v if self.decoder.context_size is not None else None)

    def forward(self, pixels, tokens_in):
        """Teacher-forced logits (B, T, V): the whole decoder one node per call."""
        h0, context = self.condition(pixels)
        out, _ = self.decoder(self.embed(tokens_in), h0, context=context)
        return self.readout(out)

    def caption(self, pixels, max_len=7):
        """Greedy captions: one list of letter ids per image, stopped before EOS."""
        h, context = self.condition(pixels)
        batch = pixels.shape[0]
        tokens = np.full(batch, BOS)
        words, done = [[] for _ in range(batch)], np.zeros(batch, dtype=bool)
        for _ in range(max_len):
            x = self.embed(tg.tensor(tokens[:, None], device=pixels.device))
            out, h = self.decoder(x, h, context=context)
            tokens = self.readout(out[:, 0]).numpy().argmax(axis=1)
            for i in np.nonzero(~done)[0]:
                if tokens[i] == EOS:
                    done[i] = True
                else:
                    words[i].append(int(tokens[i]))
            if done.all():
                break
        return words


def train(mode, train_set, args, seed):
    """Adam on teacher-forced cross-entropy: the same steps, batch and learning rate for every mode."""
    tg.manual_seed(seed)
    model = Captioner(mode, args.features, args.hidden, args.embed, args.device)
    opt = tg.optim.Adam(model.parameters(), lr=args.lr)
    schedule = tg.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps, eta_min=args.lr / 20)
    rng = np.random.default_rng(seed)
    pixels, labels = train_set
    curve = []
    for _ in progress(range(args.steps), desc=f"{mode:>5}, seed {seed}", leave=False):
        rows = rng.integers(0, len(labels), args.batch)
        tokens_in, tokens_out = teacher_batch(labels[rows])
        logits = model(tg.tensor(pixels[rows], device=args.device), tg.tensor(tokens_in, device=args.device))
        loss = tg.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                           tg.tensor(tokens_out.reshape(-1), device=args.device), ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        curve.append(loss.item())
    return model, curve


def exact_match(model, test_set, device):
    pixels, labels = test_set
    with tg.no_grad():
        words = model.caption(tg.tensor(pixels, device=device))
    return np.mean([read(w) == NAMES[label] for w, label in zip(words, labels)]), words


def baselines(train_set, test_set):
    """Held-out accuracy of logistic regression and of 1-nearest-neighbour on the same pixels."""
    linear = require("sklearn.linear_model").LogisticRegression(max_iter=2000)
    nearest = require("sklearn.neighbors").KNeighborsClassifier(n_neighbors=1)
    return {name: clf.fit(*train_set).score(*test_set) for name, clf in
            (("logistic regression", linear), ("1-nearest-neighbour", nearest))}


def plot(curves, model, test_set, words, args):
    plt = pyplot()
    fig = plt.figure(figsize=(12, 4.2), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=(1, 1.1))
    ax = left.subplots()
    width = max(1, min(50, args.steps // 10))
    for mode in MODES:
        runs = np.array(curves[mode])
        smooth = np.array([np.convolve(c, np.ones(width) / width, mode="valid") for c in runs])
        line, = ax.plot(smooth.mean(axis=0), label=f"{mode} ({len(runs)} seeds, mean)")
        ax.fill_between(np.arange(smooth.shape[1]), smooth.min(axis=0), smooth.max(axis=0), alpha=0.2,
                        color=line.get_color())
    ax.set(yscale="log", xlabel="step", ylabel="training cross-entropy per letter (moving average)",
           title="Conditioning the decoder on the image vector")
    ax.legend()
    pixels, labels = test_set
    grid = right.subplots(3, 6)
    wrong = [k for k in range(len(labels)) if read(words[k]) != NAMES[labels[k]]][:6]
    shown = wrong + [k for k in range(len(labels)) if k not in wrong][:grid.size - len(wrong)]
    for k, ax in zip(shown, grid.flat):
        ax.imshow(pixels[k].reshape(8, 8), cmap="gray_r")
        caption, want = read(words[k]), NAMES[labels[k]]
        ax.set_title(caption or "(empty)", fontsize=10, color="black" if caption == want else "red")
        if caption != want:
            ax.set_xlabel(f"is {want}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    right.suptitle(f"held-out images with the captions of the '{model.mode}' model (its mistakes first, in red)")
    return save_figure(fig, args, "digits_captioner.png")


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=1500, help="training steps (batches) per model")
    p.add_argument("--seeds", type=int, default=3, help="runs per conditioning mode")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--features", type=int, default=32, help="size of the image vector v")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--embed", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--smoke", action="store_true", help="a few seconds: 20 steps, one seed, tiny sizes")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.seeds, args.batch, args.features, args.hidden = 20, 1, 16, 8, 16
    t0 = start(args, "digits captioner (one-to-many)")
    train_set, test_set = digits(args.seed)
    print(f"{len(train_set[1])} training and {len(test_set[1])} held-out images; e.g. label {test_set[1][0]} "
          f"-> {NAMES[test_set[1][0]]!r}")
    results, curves = {}, {}
    for mode in MODES:
        results[mode], curves[mode] = [], []
        for seed in range(args.seed, args.seed + args.seeds):
            started = time.perf_counter()
            model, curve = train(mode, train_set, args, seed)
            accuracy, words = exact_match(model, test_set, args.device)
            size = sum(int(np.prod(q.shape)) for q in model.parameters())
            final_loss = float(np.mean(curve[-max(1, args.steps // 10):]))
            results[mode].append((accuracy, time.perf_counter() - started, size, final_loss))
            curves[mode].append(curve)
        if mode == "both":
            shown, shown_words = model, words
    print(f"\nheld-out exact match of the greedy caption ({len(test_set[1])} images; {args.steps} steps of "
          f"{args.batch}; mean ± std over {args.seeds} seed(s))")
    print(f"  {'conditioning':<28} {'exact match':>14} {'train loss':>11} {'parameters':>11} {'seconds/run':>12}")
    for mode in MODES:
        acc = np.array([r[0] for r in results[mode]])
        seconds, loss = np.mean([r[1] for r in results[mode]]), np.mean([r[3] for r in results[mode]])
        print(f"  {mode:<28} {acc.mean():>8.1%} ± {acc.std():.1%} {loss:>11.4f} {results[mode][0][2]:>11,} "
              f"{seconds:>12.1f}")
    for name, accuracy in baselines(train_set, test_set).items():
        print(f"  {name + ' (class only)':<28} {accuracy:>8.1%}")
    plot(curves, shown, test_set, shown_words, args)
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
