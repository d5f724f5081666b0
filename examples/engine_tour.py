"""A tour of the tinygrad_rnn engine in four short acts, each checked as it runs.

1. Fit a small tanh network to a noisy sine with plain gradient descent, and
   compare its error with the baseline of always predicting the mean.
2. Backpropagate through a 100,000-step recurrence h_t = tanh(w h_{t-1} + x_t):
   the backward pass is iterative, so no recursion limit is hit.
3. A Hessian-vector product by double backward (create_graph=True), checked
   against the closed form.
4. A new op written as a Function with a hand-written backward, gradchecked.

The figure (examples/out/engine_tour.png) shows the fit and its training loss.

Run:  python examples/engine_tour.py [--device cpu|cuda] [--steps 100000] [--smoke]
"""
import time

import numpy as np

import tinygrad_rnn as tg
import tinygrad_rnn.functional as F
from _common import parser, progress, pyplot, save_figure, start


def fit_sine(device, epochs=4000, hidden=32, lr=0.1):
    rng = np.random.default_rng(0)
    x = np.linspace(-2, 2, 256, dtype=np.float32)[:, None]
    y = np.sin(3 * x) + 0.05 * rng.standard_normal(x.shape).astype(np.float32)
    x, y = tg.tensor(x, device=device), tg.tensor(y, device=device)
    tg.manual_seed(0)
    params = [tg.randn(1, hidden, device=device) * 1.5, tg.zeros(hidden, device=device),
              tg.randn(hidden, 1, device=device) / hidden ** 0.5, tg.zeros(1, device=device)]
    params = [p.detach().requires_grad_() for p in params]
    w1, b1, w2, b2 = params
    losses = []
    for _ in progress(range(epochs), desc="1. fit"):
        loss = F.mse_loss((x @ w1 + b1).tanh() @ w2 + b2, y)
        loss.backward()
        for p in params:
            p.data -= lr * p.grad.data
            p.grad = None
        losses.append(loss.item())
    baseline = F.mse_loss(tg.zeros_like(y) + y.mean(), y).item()
    with tg.no_grad():
        fitted = ((x @ w1 + b1).tanh() @ w2 + b2).numpy()
    return losses, baseline, (x.numpy()[:, 0], y.numpy()[:, 0], fitted[:, 0])


def long_unroll(device, steps):
    w = tg.tensor(0.9, dtype=tg.float64, requires_grad=True, device=device)
    xs = tg.tensor(np.random.default_rng(1).uniform(-1, 1, steps), dtype=tg.float64, device=device)
    h = tg.zeros((), dtype=tg.float64, device=device)
    start = time.perf_counter()
    for t in progress(range(steps), desc="2. unroll", mininterval=0.5):
        h = (w * h + xs[t]).tanh()
    forward = time.perf_counter() - start
    h.backward()
    backward = time.perf_counter() - start - forward
    return w.grad.item(), forward, backward


def hessian_vector_product(device):
    x = tg.tensor([0.5, -1.0, 2.0], dtype=tg.float64, requires_grad=True, device=device)
    v = tg.tensor([1.0, 2.0, 3.0], dtype=tg.float64, device=device)
    g, = tg.grad((x ** 3).sum(), x, create_graph=True)      # g = 3 x^2
    hv, = tg.grad((g * v).sum(), x)                         # H v = 6 x * v
    return hv.numpy(), 6 * x.numpy() * v.numpy()


class ScaledTanh(tg.Function):
    """y = a tanh(b x) (LeCun et al. 1998 suggest a = 1.7159, b = 2/3); dy/dx = a b (1 - tanh^2(b x))."""

    @staticmethod
    def forward(ctx, x, a, b):
        ctx.save_for_backward(x)
        ctx.a, ctx.b = a, b
        return a * ctx.xp.tanh(b * x)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        t = ctx.xp.tanh(ctx.b * x)       # recomputed from the input, so it is differentiable too
        return grad * ctx.a * ctx.b * (1 - t * t), None, None


def plot(losses, baseline, curve, args):
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    x, y, fitted = curve
    left.plot(x, y, ".", markersize=3, color="gray", label="noisy sin(3x)")
    left.plot(x, fitted, color="C0", label="tanh MLP")
    left.set(xlabel="x", title="1. the fit")
    left.legend()
    right.semilogy(losses, color="C0", label="training MSE")
    right.axhline(baseline, color="gray", linestyle="--", label="predicting the mean")
    right.set(xlabel="epoch", ylabel="MSE", title="plain gradient descent")
    right.legend()
    save_figure(fig, args, "engine_tour.png")


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=100_000, help="length of the recurrence of act 2")
    p.add_argument("--smoke", action="store_true", help="a few seconds: a short fit and a 1,000-step recurrence")
    args = p.parse_args()
    if args.smoke:
        args.steps = min(args.steps, 1000)
    t0 = start(args, "tinygrad_rnn engine tour")

    losses, baseline, curve = fit_sine(args.device, epochs=200 if args.smoke else 4000)
    print(f"1. tanh MLP on a noisy sine: MSE {losses[-1]:.4f} vs {baseline:.4f} for predicting the mean "
          f"({baseline / losses[-1]:.0f}x lower)")

    grad, fwd, bwd = long_unroll(args.device, args.steps)
    print(f"2. {args.steps:,}-step recurrence: dh_T/dw = {grad:.6f}; forward {fwd:.2f} s, backward {bwd:.2f} s, "
          "no recursion limit")

    hv, expected = hessian_vector_product(args.device)
    print(f"3. Hessian-vector product by double backward: {hv} (closed form {expected})")
    if not np.allclose(hv, expected):
        raise SystemExit("the Hessian-vector product does not match its closed form")

    x = tg.randn(4, dtype=tg.float64, requires_grad=True, device=args.device)
    op = lambda z: ScaledTanh.apply(z, 1.7159, 2 / 3)  # noqa: E731
    ok = tg.gradcheck(op, (x,)) and tg.gradgradcheck(op, (x,))
    print(f"4. user-defined ScaledTanh op: gradcheck and gradgradcheck {'passed' if ok else 'FAILED'}")
    plot(losses, baseline, curve, args)
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
