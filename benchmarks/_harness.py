"""Small helpers shared by the benchmarks: timing, peak memory, tables, JSON."""
import gc
import json
import math
import os
import tempfile
import time
import tracemalloc


def freeze_imports():
    """Move every object alive now (the imported modules: PyTorch's alone are
    ~150,000) out of the garbage collector's sight, so that its collections
    during a benchmark cost the same whether PyTorch is imported or not."""
    gc.collect()
    gc.freeze()


def best_of(run, repeats, warmup=1, gc_on=True):
    """Call ``run()`` ``warmup`` times untimed, then ``repeats`` times.

    ``run`` returns ``(forward_seconds, backward_seconds, result)``, timing its
    own phases with ``time.perf_counter``. Returns the minimum forward time,
    the minimum backward time, the minimum total, and the last ``result``.
    The garbage collector stays on (as in a training loop) unless ``gc_on`` is
    False; a collection before each call gives every call the same heap.
    """
    for _ in range(warmup):
        run()
    fwd = bwd = total = math.inf
    result = None
    for _ in range(repeats):
        gc.collect()
        if not gc_on:
            gc.disable()
        try:
            f, b, result = run()
        finally:
            gc.enable()
        fwd, bwd, total = min(fwd, f), min(bwd, b), min(total, f + b)
    return {"fwd_s": fwd, "bwd_s": bwd, "total_s": total}, result


def peak_bytes(run):
    """Peak of the memory traced by ``tracemalloc`` while ``run()`` executes,
    above what was allocated before it. Sees Python objects and NumPy buffers,
    not memory allocated by C++ libraries such as PyTorch or by the GPU."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def timer():
    return time.perf_counter()


def cell(value, spec=".2f", suffix=""):
    """``value`` formatted for a table, or an em dash for None."""
    return "—" if value is None else f"{value:{spec}}{suffix}"


def table(headers, rows):
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def write_json_atomic(path, obj):
    """Write ``obj`` as JSON to ``path`` through a temporary file in the same
    folder and ``os.replace``, so a reader never sees a half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def parse_kinds(text, kinds):
    """The comma-separated subset of ``kinds`` named in ``text``, in the order of ``kinds``."""
    named = [k.strip().lower() for k in text.split(",") if k.strip()]
    bad = [k for k in named if k not in kinds]
    if bad or not named:
        raise SystemExit(f"--kinds: expected a comma-separated subset of {','.join(kinds)}, got {text!r}")
    return [k for k in kinds if k in named]
