"""Writing files atomically: to a temporary name in the same folder, then renamed.

A crash or an error mid-write never leaves half a file under the real name, and
a reader sees either the old file or the whole new one (``os.replace`` is atomic
on POSIX and Windows).
"""
import os
import tempfile


def write_atomically(path, write, suffix=""):
    """Call ``write(file)`` on a new binary file, then move it to ``path``; returns ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_bytes(path, data):
    """``data`` (bytes) to ``path``, atomically."""
    return write_atomically(path, lambda f: f.write(data))


def save_figure(figure, path, **savefig_kwargs):
    """A matplotlib figure to ``path`` as PNG, atomically."""
    return write_atomically(path, lambda f: figure.savefig(f, format="png", **savefig_kwargs), suffix=".png")
