"""Evaluating arithmetic expressions mod 10: a Tree-LSTM against sequence baselines.

Each example is a random expression over the digits 0..9 with +, - and x, for
instance ((7 - 2) x (4 + 9)), and its class is the expression's value mod 10.
The binary Tree-LSTM of Tai, Socher & Manning (2015) reads the expression tree
itself, leaves first, each operator the input of its own node. The sequence
baseline, an LSTM, reads the same tokens in the same order, the tree's
post-order, which is the expression in Reverse Polish notation (7 2 - 4 9 + x):
every subexpression is a span of it, and a stack machine reading it left to
right computes the value. Both are trained, as Tai et al. train on the
Stanford Sentiment Treebank, on the value of every subexpression: at each
tree node, and at the LSTM step where that subexpression ends. A bag of
tokens (a linear model on token counts, blind to order) and always answering
the most frequent class are the floors. Held-out expressions come from another
seed; the score is the accuracy on the whole expression's value.

Run:  python examples/trees.py [--steps 600] [--max-ops 4] [--smoke] [--device cpu|cuda]
"""
import time

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.nn.tree import NaryTreeLSTM, Tree
from _common import parser, progress, pyplot, save_figure, start

CLASSES = 10
OPS = {10: ("+", lambda a, b: a + b), 11: ("-", lambda a, b: a - b), 12: ("x", lambda a, b: a * b)}
VOCAB = 13
SYMBOLS = [str(d) for d in range(10)] + [OPS[k][0] for k in sorted(OPS)]
IGNORE = -100


def expression(rng, n_ops):
    """A random expression with ``n_ops`` operators: its tree of token ids, and its tokens and
    subexpression values mod 10 in post-order (the value of the whole expression last)."""
    if n_ops == 0:
        d = int(rng.integers(0, 10))
        return Tree(d), [d], [d]
    left = int(rng.integers(0, n_ops))
    (lt, ls, lv), (rt, rs, rv) = expression(rng, left), expression(rng, n_ops - 1 - left)
    op = int(rng.choice(list(OPS)))
    return Tree(op, [lt, rt]), ls + rs + [op], lv + rv + [OPS[op][1](lv[-1], rv[-1]) % CLASSES]


def infix(node):
    """The expression written out with parentheses, for printing."""
    if not node.children:
        return SYMBOLS[node.value]
    left, right = (infix(c) for c in node.children)
    return f"({left} {SYMBOLS[node.value]} {right})"


def dataset(rng, size, max_ops):
    """``size`` expressions with 1..max_ops operators: trees, post-order tokens and values, operator counts."""
    ops = rng.integers(1, max_ops + 1, size)
    trees, tokens, values = zip(*(expression(rng, int(n)) for n in ops))
    return {"trees": list(trees), "tokens": list(tokens), "values": list(values), "ops": ops}


def subset(data, rows):
    return {key: [data[key][i] for i in rows] for key in ("trees", "tokens", "values")}


def labels(batch):
    return np.array([v[-1] for v in batch["values"]])


class TreeClassifier(nn.Module):
    """Binary Tree-LSTM over the expression tree; a linear readout of each node's h."""

    def __init__(self, args):
        self.tree = NaryTreeLSTM(args.embed, args.hidden, vocab_size=VOCAB, device=args.device)
        self.readout = nn.Linear(args.hidden, CLASSES, device=args.device)

    def forward(self, batch):
        """Logits of every node (post-order, tree after tree) and of the roots."""
        output, (h, _) = self.tree(batch["trees"])
        return self.readout(output), self.readout(h)

    def loss(self, batch):
        nodes, _ = self(batch)
        target = np.concatenate(batch["values"])
        return tg.functional.cross_entropy(nodes, tg.tensor(target, device=nodes.device))


class SequenceClassifier(nn.Module):
    """LSTM over the post-order tokens; a linear readout of each step's h."""

    def __init__(self, args):
        self.embed = nn.Embedding(VOCAB, args.embed, device=args.device)
        self.lstm = nn.LSTM(args.embed, args.hidden, batch_first=True, device=args.device)
        self.readout = nn.Linear(args.hidden, CLASSES, device=args.device)

    def forward(self, batch):
        """Logits of every step (B, T, C), padded steps included, and of each row's last valid step."""
        lengths = np.array([len(t) for t in batch["tokens"]])
        ids = np.zeros((len(lengths), lengths.max()), dtype=np.int64)
        for i, t in enumerate(batch["tokens"]):
            ids[i, :len(t)] = t
        output, (h, _) = self.lstm(self.embed(tg.tensor(ids, device=self.readout.weight.device)), lengths=lengths)
        return self.readout(output), self.readout(h[0])

    def loss(self, batch):
        steps, _ = self(batch)
        target = np.full(steps.shape[:2], IGNORE)
        for i, v in enumerate(batch["values"]):
            target[i, :len(v)] = v
        return tg.functional.cross_entropy(steps.reshape(-1, CLASSES),
                                           tg.tensor(target.reshape(-1), device=steps.device), ignore_index=IGNORE)


class BagOfTokens(nn.Module):
    """A linear model on how often each token occurs: no notion of order or nesting."""

    def __init__(self, args):
        self.readout = nn.Linear(VOCAB, CLASSES, device=args.device)

    def forward(self, batch):
        counts = np.stack([np.bincount(t, minlength=VOCAB) for t in batch["tokens"]]).astype(np.float32)
        return None, self.readout(tg.tensor(counts, device=self.readout.weight.device))

    def loss(self, batch):
        _, roots = self(batch)
        return tg.functional.cross_entropy(roots, tg.tensor(labels(batch), device=roots.device))


def train(name, make, data, args):
    """Adam with a cosine schedule on random minibatches; returns the model and its loss curve."""
    tg.manual_seed(args.seed)
    model = make(args)
    opt = tg.optim.Adam(model.parameters(), lr=args.lr)
    schedule = tg.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps, eta_min=args.lr / 20)
    rng = np.random.default_rng(args.seed)
    curve = []
    for _ in progress(range(args.steps), desc=f"{name:>13}", leave=False):
        loss = model.loss(subset(data, rng.integers(0, len(data["trees"]), args.batch)))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        curve.append(loss.item())
    return model, curve


def predict(model, data, size=500):
    """The predicted value mod 10 of every whole expression in ``data``."""
    guesses = []
    with tg.no_grad():
        for i in range(0, len(data["trees"]), size):
            _, roots = model(subset(data, range(i, min(i + size, len(data["trees"])))))
            guesses.append(roots.numpy().argmax(axis=1))
    return np.concatenate(guesses)


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=600, help="training steps per model")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--max-ops", type=int, default=4, help="operators per expression: 1 to this")
    p.add_argument("--train-size", type=int, default=20000)
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-2)
    p.add_argument("--smoke", action="store_true", help="a few seconds: tiny data and models, few steps")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.batch, args.train_size, args.test_size, args.embed, args.hidden = 5, 8, 200, 100, 8, 8
    t0 = start(args, f"arithmetic expressions mod {CLASSES}, 1 to {args.max_ops} operators")
    train_set = dataset(np.random.default_rng(args.seed), args.train_size, args.max_ops)
    test_set = dataset(np.random.default_rng(args.seed + 10_000), args.test_size, args.max_ops)
    truth, ops = labels(test_set), test_set["ops"]
    i = int(np.argmax(ops == ops.max()))
    print(f"for instance  {infix(test_set['trees'][i])} = {truth[i]} (mod {CLASSES}),  read by the LSTM as  "
          + " ".join(SYMBOLS[t] for t in test_set["tokens"][i]))

    majority = np.bincount(labels(train_set), minlength=CLASSES).argmax()
    results = {"majority class": (np.full(len(truth), majority), None, 0.0)}
    for name, make in (("bag of tokens", BagOfTokens), ("LSTM (RPN)", SequenceClassifier),
                       ("Tree-LSTM", TreeClassifier)):
        t = time.perf_counter()
        model, curve = train(name, make, train_set, args)
        results[name] = (predict(model, test_set), curve, time.perf_counter() - t)
    report(results, truth, ops, args)
    plot(results, truth, ops, args)
    print(f"done in {time.perf_counter() - t0:.0f} s")


def by_ops(guess, truth, ops, max_ops):
    return [np.mean(guess[ops == n] == truth[ops == n]) for n in range(1, max_ops + 1)]


def report(results, truth, ops, args):
    print(f"\nheld-out accuracy on {len(truth)} expressions, by number of operators (chance {1 / CLASSES:.0%})")
    print(f"  {'model':<15} {'all':>6}" + "".join(f"{n:>5} op" for n in range(1, args.max_ops + 1))
          + "   train time")
    for name, (guess, _, took) in results.items():
        row = "".join(f"{a:8.1%}" for a in by_ops(guess, truth, ops, args.max_ops))
        print(f"  {name:<15} {np.mean(guess == truth):6.1%}{row}   {took:6.0f} s")
    baselines = [n for n in results if n != "Tree-LSTM"]
    best = max(baselines, key=lambda n: np.mean(results[n][0] == truth))
    gain = np.mean(results["Tree-LSTM"][0] == truth) - np.mean(results[best][0] == truth)
    print(f"Tree-LSTM against the best baseline ({best}): {gain * 100:+.1f} points")


WINDOW = 20        # steps in the moving average of the training loss


def plot(results, truth, ops, args):
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    counts = list(range(1, args.max_ops + 1))
    for k, (name, (guess, curve, _)) in enumerate(results.items()):
        color = f"C{k}"
        if curve is not None:                # the mean of the last `window` steps, drawn at the window's last step
            window = min(WINDOW, len(curve))
            average = np.convolve(curve, np.ones(window) / window, mode="valid")
            left.plot(np.arange(window - 1, len(curve)), average, color=color, label=name)
        right.plot(counts, by_ops(guess, truth, ops, args.max_ops), marker="o", color=color, label=name)
    left.axhline(np.log(CLASSES), color="gray", linestyle="--", label=f"uniform guess (ln {CLASSES})")
    left.set(xlabel="step", ylabel="training loss (moving average)", title="Training")
    left.legend()
    right.axhline(1 / CLASSES, color="gray", linestyle="--", label="chance")
    right.set(xlabel="operators in the expression", ylabel="held-out accuracy", ylim=(0, 1.02), xticks=counts,
              title=f"Value of the whole expression mod {CLASSES}")
    right.legend()
    save_figure(fig, args, "trees.png")


if __name__ == "__main__":
    main()
