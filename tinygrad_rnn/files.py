"""Writing files atomically: to a temporary name in the same folder, then renamed.

A crash or an error mid-write never leaves half a file under the real name, and
a reader sees either the old file or the whole new one (``os.replace`` is atomic
on POSIX and Windows). A new file gets the mode a plain ``open`` gives it (0o666
less the umask, so 0o644 under umask 022); a replaced file keeps its mode.

Temporaries are named ``.tinygrad_rnn-<16 hex digits>.tmp``. An exception removes
its own; a writer killed outright (SIGKILL, power loss) cannot, so every write first
removes the stale temporaries in its folder (:func:`remove_stale_temporaries`).
A writer holds an exclusive ``flock`` on its temporary until the rename, and the
kernel drops it when the writer dies: a temporary that nobody holds and that is
older than ``STALE_AFTER_S`` (the moment between creating and locking the file)
has no live writer. Where ``fcntl`` is missing (Windows) none is removed.
"""
import contextlib
import os
import re
import secrets
import stat
import time

try:
    import fcntl
except ImportError:          # Windows
    fcntl = None

STALE_AFTER_S = 60.0
_TEMPORARY = re.compile(r"\.tinygrad_rnn-[0-9a-f]{16}\.tmp")


def write_atomically(path, write):
    """Call ``write(file)`` on a new binary file, then move it to ``path``; returns ``path``.

    A missing folder raises FileNotFoundError naming ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(directory)
    fd, tmp = _create_temporary(directory, path)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))      # a replaced file keeps its mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            if fcntl is not None:
                os.replace(tmp, path)          # while the lock is held, so no one takes it for stale
        if fcntl is None:
            os.replace(tmp, path)              # Windows renames only closed files
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return path


def _create_temporary(directory, path):
    """A new temporary in ``directory``, locked where ``fcntl`` exists: ``(fd, name)``."""
    while True:
        tmp = os.path.join(directory, f".tinygrad_rnn-{secrets.token_hex(8)}.tmp")
        try:       # mode 0o666 less the umask, as for any new file (mkstemp would give 0o600)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OSError(exc.errno, f"cannot write in the folder {directory} ({exc.strerror})",
                          os.fspath(path)) from None
        if fcntl is not None:
            with contextlib.suppress(OSError):     # a file system without locks: no cleaner can lock it either
                fcntl.flock(fd, fcntl.LOCK_EX)
        return fd, tmp


def remove_stale_temporaries(directory):
    """Remove the temporaries in ``directory`` whose writer is gone; returns their names.

    Only names of our own making count, and only a regular file that no process
    holds locked and that is older than ``STALE_AFTER_S``; any error leaves the
    file where it is (a live writer's temporary is never removed)."""
    if fcntl is None:
        return []
    try:
        names = sorted(name for name in os.listdir(directory) if _TEMPORARY.fullmatch(name))
    except OSError:
        return []
    removed = []
    for name in names:
        tmp = os.path.join(directory, name)
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)        # fails while its writer lives
            st = os.fstat(fd)
            if (stat.S_ISREG(st.st_mode) and time.time() - st.st_mtime > STALE_AFTER_S
                    and os.path.samestat(st, os.lstat(tmp))):
                os.remove(tmp)
                removed.append(name)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def write_bytes(path, data):
    """``data`` (bytes) to ``path``, atomically."""
    return write_atomically(path, lambda f: f.write(data))


def save_figure(figure, path, **savefig_kwargs):
    """A matplotlib figure to ``path`` as PNG, atomically."""
    return write_atomically(path, lambda f: figure.savefig(f, format="png", **savefig_kwargs))
