"""A tour of the tinygrad_rnn engine in four short acts, each checked as it runs.

1. Fit a small tanh network to a noisy sine with plain gradient descent, and
   compare its error with the baseline of always predicting the mean.
2. Backpropagate through a 100,000-step recurrence h_t = tanh(w h_{t-1} + x_t):
   the backward pass is iterative, so no recursion limit is hit.
3. A Hessian-vector product by double backward (create_graph=True), checked
   against the closed form.
4. A new op written as a Function with a hand-written backward, gradchecked.

Run:  python examples/engine_tour.py [--device cpu|cuda] [--steps 100000]
"""
import argparse
import time

import numpy as np

import tinygrad_rnn as tg
import tinygrad_rnn.functional as F


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
    for _ in range(epochs):
        loss = F.mse_loss((x @ w1 + b1).tanh() @ w2 + b2, y)
        loss.backward()
        for p in params:
            p.data -= lr * p.grad.data
            p.grad = None
    baseline = F.mse_loss(tg.zeros_like(y) + y.mean(), y).item()
    return loss.item(), baseline


def long_unroll(device, steps):
    w = tg.tensor(0.9, dtype=tg.float64, requires_grad=True, device=device)
    xs = tg.tensor(np.random.default_rng(1).uniform(-1, 1, steps), dtype=tg.float64, device=device)
    h = tg.zeros((), dtype=tg.float64, device=device)
    start = time.perf_counter()
    for t in range(steps):
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=100_000)
    args = parser.parse_args()
    print(f"tinygrad_rnn engine tour on {args.device}\n")

    loss, baseline = fit_sine(args.device)
    print(f"1. tanh MLP on a noisy sine: MSE {loss:.4f} vs {baseline:.4f} for predicting the mean "
          f"({baseline / loss:.0f}x lower)")

    grad, fwd, bwd = long_unroll(args.device, args.steps)
    print(f"2. {args.steps:,}-step recurrence: dh_T/dw = {grad:.6f}; forward {fwd:.2f} s, backward {bwd:.2f} s, "
          "no recursion limit")

    hv, expected = hessian_vector_product(args.device)
    print(f"3. Hessian-vector product by double backward: {hv} (closed form {expected})")
    assert np.allclose(hv, expected)

    x = tg.randn(4, dtype=tg.float64, requires_grad=True, device=args.device)
    op = lambda z: ScaledTanh.apply(z, 1.7159, 2 / 3)  # noqa: E731
    ok = tg.gradcheck(op, (x,)) and tg.gradgradcheck(op, (x,))
    print(f"4. user-defined ScaledTanh op: gradcheck and gradgradcheck {'passed' if ok else 'FAILED'}")


if __name__ == "__main__":
    main()
