"""Atomic writes (tinygrad_rnn/files.py): what tg.save and every figure go through.

A new file gets the umask's mode and a replaced file keeps its own; a failed write
leaves neither a temporary nor a changed file; a writer killed outright leaves a
temporary that the next write into the folder removes, but a live writer's
temporary is never touched; a missing folder is reported under the path asked for.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX modes, flock and signals")


def temporaries(directory):
    return sorted(name for name in os.listdir(directory) if name.startswith(".tinygrad_rnn-"))


def make_old(path):
    """Set the mtime of ``path`` back past STALE_AFTER_S: old enough to be a dead writer's."""
    old = time.time() - files.STALE_AFTER_S - 5
    os.utime(path, (old, old), follow_symlinks=False)


def mode(path):
    return os.stat(path).st_mode & 0o7777


@pytest.fixture
def umask():
    """Call it to set the process umask; the old one comes back after the test."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def save_figure(path):
    plt = pytest.importorskip("matplotlib.pyplot")
    figure = plt.figure(figsize=(1, 1))
    try:
        files.save_figure(figure, path)
    finally:
        plt.close(figure)


WRITERS = {
    "tg.save": lambda path: tg.save({"w": np.ones(3)}, path),
    "write_bytes": lambda path: files.write_bytes(path, b"digraph {}"),
    "save_figure": save_figure,
}


# ----------------------------------------------------------------- modes
@posix_only
@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077, 0o027])
def test_new_files_get_the_umasks_mode(writer, mask, umask, tmp_path):
    umask(mask)
    np.savez(tmp_path / "reference.npz", w=np.ones(3))
    WRITERS[writer](tmp_path / "new")
    assert mode(tmp_path / "new") == 0o666 & ~mask == mode(tmp_path / "reference.npz")


@posix_only
@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("old_mode", [0o600, 0o640, 0o664, 0o444])
def test_a_replaced_file_keeps_its_mode(writer, old_mode, umask, tmp_path):
    umask(0o022)
    path = tmp_path / "existing"
    path.write_bytes(b"old")
    os.chmod(path, old_mode)
    WRITERS[writer](path)
    assert mode(path) == old_mode and path.read_bytes() != b"old"
    assert os.listdir(tmp_path) == ["existing"]


# ----------------------------------------------------------------- failed writes
def fail_in_write(error):
    def write(f):
        f.write(b"half a file")
        f.flush()
        raise error
    return write


@pytest.mark.parametrize("error", [OSError("disk full"), ValueError("bad data"), KeyboardInterrupt(), SystemExit(1)],
                         ids=type)
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_an_exception_in_the_write_removes_the_temporary(error, existing, tmp_path):
    path = tmp_path / "out.bin"
    if existing:
        path.write_bytes(b"old")
    with pytest.raises(type(error)):
        files.write_atomically(path, fail_in_write(error))
    assert os.listdir(tmp_path) == (["out.bin"] if existing else [])
    if existing:
        assert path.read_bytes() == b"old"


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_an_exception_after_the_write_removes_the_temporary(step, tmp_path, monkeypatch):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def broken(*args):
        raise OSError(f"{step} failed")

    monkeypatch.setattr(os, step, broken)
    with pytest.raises(OSError, match=f"{step} failed"):
        files.write_bytes(path, b"new")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["out.bin"] and path.read_bytes() == b"old"


# ----------------------------------------------------------------- temporaries left by killed writers
OURS = ".tinygrad_rnn-0123456789abcdef.tmp"


@posix_only
def test_the_next_write_removes_stale_temporaries_and_nothing_else(tmp_path):
    (tmp_path / OURS).write_bytes(b"left by a killed writer")
    look_alikes = [".tinygrad_rnn-0123456789abcde.tmp", ".tinygrad_rnn-0123456789ABCDEF.tmp",
                   ".tinygrad_rnn-0123456789abcdef.tmp.npz", "x.tinygrad_rnn-0123456789abcdef.tmp",
                   ".tmp-0123abcd.npz", "ckpt.npz"]
    for name in look_alikes:
        (tmp_path / name).write_bytes(b"someone else's")
    (tmp_path / ".tinygrad_rnn-00000000000000dd.tmp").mkdir()
    os.symlink(tmp_path / "ckpt.npz", tmp_path / ".tinygrad_rnn-000000000000000e.tmp")
    for name in os.listdir(tmp_path):
        make_old(tmp_path / name)
    (tmp_path / ".tinygrad_rnn-00000000000000ff.tmp").write_bytes(b"young: its writer may not hold its lock yet")
    before = sorted(os.listdir(tmp_path))
    tg.save({"x": 1}, tmp_path / "new.npz")
    assert sorted(os.listdir(tmp_path)) == sorted(set(before) - {OURS} | {"new.npz"})
    assert (tmp_path / "ckpt.npz").read_bytes() == b"someone else's"


def test_the_next_write_removes_a_leftover_of_a_write_that_raised_outright(tmp_path, monkeypatch):
    """A writer whose own cleanup did not run (as when killed): its temporary waits for the next write."""
    monkeypatch.setattr(os, "remove", lambda path: None)     # the failing writer cannot remove its temporary
    with pytest.raises(OSError):
        files.write_atomically(tmp_path / "a.bin", fail_in_write(OSError("killed")))
    monkeypatch.undo()
    leftover, = temporaries(tmp_path)
    assert (tmp_path / leftover).read_bytes() == b"half a file"
    files.write_bytes(tmp_path / "b.bin", b"b")
    if os.name == "nt":
        return
    assert temporaries(tmp_path) == [leftover]          # too young: it could be a live writer's
    make_old(tmp_path / leftover)
    files.write_bytes(tmp_path / "b.bin", b"b")
    assert sorted(os.listdir(tmp_path)) == ["b.bin"]


def python(code, *args, **popen_kwargs):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env, **popen_kwargs)


def writing(directory):
    """Whether a temporary in ``directory`` has data in it: a save is mid-write."""
    for name in temporaries(directory):
        try:
            if os.path.getsize(os.path.join(directory, name)) > 0:
                return True
        except FileNotFoundError:           # renamed meanwhile
            pass
    return False


SAVE_FOREVER = """
import sys, numpy as np, tinygrad_rnn as tg
big = np.ones(4_000_000)      # 32 MB
while True:
    tg.save({"version": 2, "w": big}, sys.argv[1])
"""


@posix_only
def test_a_writer_killed_mid_save_leaves_a_temporary_the_next_save_removes(tmp_path):
    path = tmp_path / "ckpt.npz"
    tg.save({"version": 1, "w": np.zeros(3)}, path)
    for attempt in range(5):                     # the kill may land between two saves: then again
        child = python(SAVE_FOREVER, path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not writing(tmp_path):
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
        child.wait()
        if temporaries(tmp_path):
            break
    leftovers = temporaries(tmp_path)
    assert leftovers, "no save was caught mid-write"
    assert tg.load(path)["version"] in (1, 2)                 # the checkpoint itself is whole
    tg.save({"version": 3}, path)
    assert temporaries(tmp_path) == leftovers                 # too young: it could be a live writer's
    for name in leftovers:
        make_old(tmp_path / name)
    tg.save({"version": 4}, path)
    assert os.listdir(tmp_path) == ["ckpt.npz"] and tg.load(path) == {"version": 4}


WRITE_UNTIL_TOLD = """
import sys
from tinygrad_rnn.files import write_atomically

def write(f):
    f.write(b"first half, ")
    f.flush()
    print("writing", flush=True)
    sys.stdin.readline()
    f.write(b"second half")

write_atomically(sys.argv[1], write)
"""


@posix_only
def test_a_live_writers_temporary_is_never_removed(tmp_path):
    """Two processes saving into one folder: the slow one's temporary, however old, stays."""
    child = python(WRITE_UNTIL_TOLD, tmp_path / "slow.bin", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                   text=True)
    try:
        assert child.stdout.readline() == "writing\n"
        live, = temporaries(tmp_path)
        make_old(tmp_path / live)
        tg.save({"x": 1}, tmp_path / "fast.npz")
        assert files.remove_stale_temporaries(tmp_path) == []
        assert temporaries(tmp_path) == [live]
        child.stdin.write("go on\n")
        child.stdin.close()
        assert child.wait(timeout=60) == 0
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()
    assert (tmp_path / "slow.bin").read_bytes() == b"first half, second half"
    assert sorted(os.listdir(tmp_path)) == ["fast.npz", "slow.bin"]


# ----------------------------------------------------------------- missing folders
@pytest.mark.parametrize("writer", WRITERS)
def test_a_missing_folder_is_reported_under_the_path_asked_for(writer, tmp_path):
    path = tmp_path / "missing" / "out.npz"
    with pytest.raises(FileNotFoundError) as info:
        WRITERS[writer](path)
    message = str(info.value)
    assert info.value.filename == str(path) and str(path) in message
    assert f"folder {tmp_path / 'missing'}" in message and "tinygrad_rnn-" not in message
    assert os.listdir(tmp_path) == []


@posix_only
def test_a_file_in_place_of_the_folder_is_reported_under_the_path_asked_for(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    path = tmp_path / "file" / "out.npz"
    with pytest.raises(NotADirectoryError) as info:
        tg.save({"x": 1}, path)
    assert info.value.filename == str(path) and "tinygrad_rnn-" not in str(info.value)
