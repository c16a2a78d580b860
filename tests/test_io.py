"""Outputs are written atomically: a killed writer leaves no half file (and its temp is cleaned by
the next write), concurrent writers and readers of one Parquet table never see a partial table,
and two jobs compiling at once share the persistent JAX compilation cache without corrupting it."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
from conftest import ROOT

ENV = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src"), "JAX_PLATFORMS": "cpu"}


def _python(code: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=ENV, **kw)


def test_a_killed_writer_leaves_no_half_file_and_its_temp_is_cleaned(tmp_path):
    out = tmp_path / "table.bin"
    out.write_bytes(b"the previous complete output")
    started = tmp_path / "started"
    p = _python(f"""
        from infinite_compute.runtime.io import atomic_path
        import time
        with atomic_path({str(out)!r}) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half of a new output")
                f.flush()
                open({str(started)!r}, "w").close()
                time.sleep(60)
                f.write(b" and the rest")
    """)
    deadline = time.time() + 60
    while not started.exists():
        assert p.poll() is None and time.time() < deadline
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert out.read_bytes() == b"the previous complete output"  # never the half-written one
    temps = [n for n in os.listdir(tmp_path) if n.startswith(".table.bin.")]
    assert len(temps) == 1 and str(p.pid) in temps[0]  # SIGKILL skipped the cleanup...

    from infinite_compute.runtime.io import atomic_write_text

    atomic_write_text(str(out), "new")  # ...which the next write of the same output does
    assert out.read_text() == "new" and not [n for n in os.listdir(tmp_path) if n.startswith(".table.bin.")]


def _tree(path) -> dict:
    return {n: open(os.path.join(path, n)).read() for n in sorted(os.listdir(path))}


OLD_TREE = {"a.txt": "old a", "b.txt": "old b"}
NEW_TREE = {"a.txt": "new a", "c.txt": "new c"}


def _kill_dir_writer_after_its_first_move(tmp_path, out, exchange=True) -> subprocess.Popen:
    """A child writes NEW_TREE into `out` (holding OLD_TREE) with atomic_dir and is SIGKILLed right
    after the first rename (or exchange) that moves `out`: the moment between moving the old
    directory aside and the new one in, for a writer that replaces a directory in two steps."""
    started = tmp_path / "started"
    p = _python(f"""
        import os, time
        from infinite_compute.runtime import io

        def pause_after(f):
            def moved(*args):
                r = f(*args)
                if {str(out)!r} in map(os.path.abspath, map(str, args[:2])):
                    open({str(started)!r}, "w").close()
                    time.sleep(60)
                return r
            return moved

        os.replace, os.rename = pause_after(os.replace), pause_after(os.rename)
        if {exchange!r}:
            if hasattr(io, "_exchange"):
                io._exchange = pause_after(io._exchange)
        else:  # as on a filesystem without renameat2's RENAME_EXCHANGE (e.g. NFS)
            io._exchange = lambda a, b: False
        with io.atomic_dir({str(out)!r}) as tmp:
            for name, text in {NEW_TREE!r}.items():
                open(os.path.join(tmp, name), "w").write(text)
    """)
    deadline = time.time() + 60
    while not started.exists():
        assert p.poll() is None and time.time() < deadline, "the writer ended without moving the directory"
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    return p


def _write_tree(path, tree):
    from infinite_compute.runtime.io import atomic_dir

    with atomic_dir(str(path)) as tmp:
        for name, text in tree.items():
            open(os.path.join(tmp, name), "w").write(text)


def test_a_dir_writer_killed_while_replacing_leaves_the_old_or_the_new_directory(tmp_path):
    out = tmp_path / "model"
    _write_tree(out, OLD_TREE)
    p = _kill_dir_writer_after_its_first_move(tmp_path, out)
    assert p.returncode == -signal.SIGKILL
    # the path is never missing: it holds one complete directory (here the new one: it was swapped in)
    assert out.is_dir() and _tree(out) in (OLD_TREE, NEW_TREE)
    assert _tree(out) == NEW_TREE
    temps = [n for n in os.listdir(tmp_path) if n.startswith(".model.")]
    assert temps and all(str(p.pid) in t for t in temps)  # SIGKILL skipped the cleanup (of the old tree)...
    _write_tree(out, {"d.txt": "third"})  # ...which the next write of the same output does
    assert _tree(out) == {"d.txt": "third"} and not [n for n in os.listdir(tmp_path) if n.startswith(".model.")]


def test_without_an_atomic_exchange_the_next_write_restores_a_dir_writer_killed_between_its_renames(tmp_path):
    """The two-rename fallback: killed with the old directory moved aside and the new one not yet
    in, the next atomic_dir write of the path (the job's rerun) first puts the old one back."""
    from infinite_compute.runtime.io import atomic_dir

    out = tmp_path / "model"
    _write_tree(out, OLD_TREE)
    p = _kill_dir_writer_after_its_first_move(tmp_path, out, exchange=False)
    assert p.returncode == -signal.SIGKILL and not out.exists()  # the window the fallback cannot close
    with atomic_dir(str(out)) as tmp:
        assert _tree(out) == OLD_TREE  # restored before the new write starts
        assert [n for n in os.listdir(tmp_path) if n.startswith(".model.")] == [os.path.basename(tmp)]
        open(os.path.join(tmp, "d.txt"), "w").write("third")
    assert _tree(out) == {"d.txt": "third"} and not [n for n in os.listdir(tmp_path) if n.startswith(".model.")]


def test_concurrent_parquet_writers_and_a_reader_never_see_a_partial_table(tmp_path):
    from infinite_compute.outputs.results import read_table

    path = tmp_path / "runs.parquet"
    writers = [_python(f"""
        import numpy as np, pyarrow as pa
        from infinite_compute.runtime.io import atomic_path
        import pyarrow.parquet as pq
        n = 200_000
        table = pa.table({{"writer": np.full(n, {w}), "x": np.arange(n) * {w + 1}}})
        for _ in range(15):
            with atomic_path({str(path)!r}) as tmp:
                pq.write_table(table, tmp)
    """) for w in range(2)]
    reads = 0
    while any(w.poll() is None for w in writers):
        if path.exists():
            t = read_table(str(path))  # the study's reader; raises on a partial or mixed file
            assert len(t) == 200_000 and t["writer"].nunique() == 1
            w = int(t["writer"].iloc[0])
            np.testing.assert_array_equal(t["x"].to_numpy(), np.arange(200_000) * (w + 1))
            reads += 1
    assert all(w.returncode == 0 for w in writers) and reads > 0
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_two_jobs_compiling_at_once_share_the_compilation_cache(tmp_path):
    """Both fill one persistent cache at the same time; a third process then compiles nothing."""
    cache = tmp_path / "jax-cache"
    code = f"""
        import jax, jax.numpy as jnp, json, sys
        jax.config.update("jax_compilation_cache_dir", {str(cache)!r})
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        from jax._src import monitoring
        misses = []
        monitoring.register_event_listener(lambda e, **kw: misses.append(e) if e.endswith("cache_misses") else None)
        outs = []
        for k in range(8):
            f = jax.jit(lambda x, k=k: jnp.tanh(x @ x.T + k).sum())
            outs.append(float(f(jnp.arange(64.0).reshape(8, 8) / 64)))
        print(json.dumps({{"outs": outs, "misses": len(misses)}}))
    """
    ps = [_python(code, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300)[0] for p in ps]
    assert all(p.returncode == 0 for p in ps)
    import json

    first, second = (json.loads(r.strip().splitlines()[-1]) for r in results)
    assert first["outs"] == second["outs"]
    assert first["misses"] + second["misses"] >= 8, (first, second)  # each function compiled by one of them
    third = _python(code, stdout=subprocess.PIPE, text=True)
    out = json.loads(third.communicate(timeout=300)[0].strip().splitlines()[-1])
    assert out["outs"] == first["outs"] and out["misses"] == 0, out
    assert len([f for f in os.listdir(cache) if not f.startswith(".")]) >= 8


def test_outputs_get_the_mode_the_users_umask_gives_a_plain_file(tmp_path):
    """An atomic write's temp file is owner-only (mkstemp): the output it becomes is not, so that a
    paper.html or a figure can be shared or served as the umask allows (0644 files and 0755 dirs at 022)."""
    from infinite_compute.runtime.io import atomic_dir, atomic_write_text

    saved = os.umask(0o022)
    try:
        for mask, file_mode, dir_mode in ((0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)):
            os.umask(mask)
            out = tmp_path / f"out-{mask:o}.txt"
            atomic_write_text(str(out), "x")
            with atomic_dir(str(tmp_path / f"dir-{mask:o}")) as d:
                open(os.path.join(d, "inner"), "w").close()
            assert (out.stat().st_mode & 0o777, (tmp_path / f"dir-{mask:o}").stat().st_mode & 0o777) == (
                file_mode, dir_mode), oct(mask)
    finally:
        os.umask(saved)
