"""Atomic writes: a killed job never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import tempfile
from typing import Iterator


def _temp_prefix(path: str) -> str:
    return f".{os.path.basename(path)}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(path: str) -> None:
    """Temp files and dirs of `path` left by a writer that was killed (SIGKILL skips `finally`):
    their names carry the writer's pid, and a writer that is still alive is left alone."""
    parent, base = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    try:
        names = os.listdir(parent)
    except FileNotFoundError:
        return
    stale_names = []
    for name in names:
        if not (name.startswith(f".{base}.") and (name.endswith(".tmp") or name.endswith(".tmp.old"))):
            continue
        pid = name[len(base) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            stale_names.append(name)
    for name in stale_names:
        stale = os.path.join(parent, name)
        if name.endswith(".tmp.old") and not os.path.lexists(path):
            # atomic_dir's two-rename fallback was killed between its renames: the old directory
            # (complete) is put back first; the new one beside it may be partial and is removed
            os.rename(stale, path)
        else:
            shutil.rmtree(stale, ignore_errors=True) if os.path.isdir(stale) else os.unlink(stale)


def _exchange(a: str, b: str) -> bool:
    """Swap the paths `a` and `b` in one atomic step (Linux renameat2 with RENAME_EXCHANGE). False
    where that is unavailable (no renameat2 in libc, an old kernel, or a filesystem without it,
    e.g. NFS): the caller then falls back to two renames."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), a, None, b)


def _umask() -> int:
    """The process's umask, read without changing it (os.umask can only set it, which would race with
    a thread creating a file): Linux reports it in /proc/self/status."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _as_created(tmp: str, mode: int) -> None:
    """Give a temp file or dir the mode a plain open() or mkdir() would have (mkstemp and mkdtemp make
    them owner-only), so that outputs can be shared and served as the user's umask allows."""
    if os.path.lexists(tmp) and not os.path.islink(tmp):
        os.chmod(tmp, mode & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=parent)
    os.close(fd)
    try:
        yield tmp
        _as_created(tmp, 0o666)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str) -> Iterator[str]:
    """Yield a temp directory beside `path`; it replaces `path` only if the block succeeds."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    _remove_stale_temps(path)
    tmp = tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=parent)
    try:
        yield tmp
        _as_created(tmp, 0o777)
        if os.path.isdir(path):
            # Replace in one step, so that `path` always holds the complete old or the complete new
            # directory (moving the old aside and then the new in leaves `path` missing in between,
            # and a writer killed there lost the output). After the exchange the old directory sits
            # at `tmp`, removed below, or by the next write as a dead writer's temp.
            if not _exchange(tmp, path):
                # Fallback: two renames. A kill between them leaves the old directory at `old`,
                # which the next write of `path` (a rerun of the job) puts back (_remove_stale_temps).
                old = tmp + ".old"
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def atomic_write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(x):
    import numpy as np  # only for a value json cannot write, which only numpy's scalars and arrays are here

    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def read_json(path: str):
    with open(path) as f:
        return json.load(f)
