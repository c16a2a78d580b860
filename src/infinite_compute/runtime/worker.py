"""Warm workers: a pool of processes that keep jax and levanter imported for the study's jax jobs.

At the study's model sizes a training job spends more time starting (imports, data and state
set-up, tracing and compiling) than training (bench/train.py). When Snakemake runs jobs on this
machine, the Snakefile's `onstart` starts this pool (cli/pool.py: the jobs' command line is what a
worker runs); every `python -m infinite_compute <cmd>` of a jax command then hands its argv, working directory, environment and its stdout/stderr file
descriptors to an idle worker over a Unix socket, and exits with the worker's exit code. The job's
log, exit code and outputs are what they would be in its own process; a job the pool cannot take
(no pool, or it is gone) runs in its own process as before.

- One worker runs one job at a time; the pool has as many workers as Snakemake runs jobs at once.
  A connection waits in the socket's backlog until a worker is idle.
- A job whose client goes away (Snakemake killed it, or was stopped) takes its worker with it: the
  worker exits at once, as the job's own process would have, and the pool starts a fresh one. A
  killed training resumes from its checkpoint as before.
- Workers are forked from the pool before anything heavy is imported; each is replaced after
  `max_tasks` jobs or once it holds more than `max_rss_mb`, so nothing a job leaves behind
  (handlers, caches) builds up.
- The pool exits when the process that started it (Snakemake) is gone, and removes its socket.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import Callable

import psutil  # installed with snakemake

ENV = "IC_WORKER"  # the pool's socket path, set for local jobs by the Snakefile
JOB_START = "IC_JOB_START"  # when the client process started: a job's start-up is timed from it
_MAX_REQUEST = 1 << 20
# the folder that holds the package (src/): the pool's interpreter imports it from there
_SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def forward(argv: list[str]) -> int | None:
    """Run `argv` on a warm worker and return its exit code; None when no pool answers (the
    caller then runs it in its own process)."""
    path = os.environ.get(ENV)
    if not path:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    env = {**os.environ, JOB_START: repr(psutil.Process().create_time())}
    request = {"argv": list(argv), "cwd": os.getcwd(), "env": env}
    sys.stdout.flush()
    sys.stderr.flush()
    payload = json.dumps(request).encode()
    with conn:
        # the worker takes the connection's end (EOF) as this process being gone: send, then only read
        socket.send_fds(conn, [len(payload).to_bytes(8, "big") + payload], [1, 2])
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
    if not reply:
        print(f"infinite_compute: the warm worker at {path} died while running {' '.join(argv)} "
              f"(see logs/workers.log); set {ENV}= to run jobs in their own processes", file=sys.stderr)
        return 1
    return int(json.loads(reply)["rc"])


# --- the worker --------------------------------------------------------------------------------


def _run(main: Callable[[list[str]], None], request: dict, fds: list[int], conn: socket.socket) -> int:
    """Run one job, `main(argv)`, with the client's cwd, environment and stdout/stderr; exit the
    worker if the client goes away before the job ends."""
    done = threading.Event()

    def watch() -> None:
        try:
            conn.recv(1)  # EOF: the client closed its end, i.e. it is gone
        except OSError:
            pass
        if not done.is_set():
            os._exit(128 + signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()
    saved_fds = os.dup(1), os.dup(2)
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    try:
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.pop(ENV, None)  # the job runs here, it is not forwarded again
        os.chdir(request["cwd"])
        main(request["argv"])
        rc = 0
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        rc = 1
    finally:
        done.set()
        sys.stdout.flush()
        sys.stderr.flush()
        for h in root.handlers[:]:  # levanter adds a file handler per run
            if h not in saved_handlers:
                root.removeHandler(h)
                h.close()
        root.setLevel(saved_level)
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in (*saved_fds, *fds):
            os.close(fd)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return rc


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    """A request (8-byte length, then JSON) and the two file descriptors sent with it."""
    msg, fds, _, _ = socket.recv_fds(conn, _MAX_REQUEST, 2)
    if len(fds) != 2 or len(msg) < 8:
        for fd in fds:
            os.close(fd)
        raise ValueError("not a request")
    size = int.from_bytes(msg[:8], "big")
    msg = msg[8:]
    while len(msg) < size:
        chunk = conn.recv(size - len(msg))
        if not chunk:
            raise ValueError("request cut short")
        msg += chunk
    return json.loads(msg), fds


def _describe(argv: list[str]) -> str:
    """A job in one line: its command (the first word that is neither a flag nor a flag's number)
    and its first output (the value of its first --out... flag)."""
    cmd = next((a for a in argv if not a.startswith("-") and not a.isdigit()), "?")
    out = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("--out")), "")
    return f"{cmd} {out}"


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _worker(listener: socket.socket, main: Callable[[list[str]], None], warm_up: Callable[[], None],
            max_tasks: int, max_rss_mb: float) -> None:
    warm_up()
    for _ in range(max_tasks):
        conn, _ = listener.accept()
        with conn:
            try:
                request, fds = _receive(conn)
            except (OSError, ValueError, KeyError):
                continue
            started = time.time()
            rc = _run(main, request, fds, conn)
            # the job's line in logs/workers.log: what it ran, its time and the worker's memory after it
            rss = _rss_mb()
            print(f"worker {os.getpid()}: rc={rc} {time.time() - started:.1f}s rss={rss:.0f}MB "
                  f"{_describe(request['argv'])}", flush=True)
            try:
                conn.sendall(json.dumps({"rc": rc}).encode())
                conn.shutdown(socket.SHUT_RDWR)  # ends the client's read, and wakes the watcher's
            except OSError:
                pass
        if rss > max_rss_mb:
            break


def _alive(pid: int, created: float) -> bool:
    try:
        return psutil.Process(pid).create_time() == created
    except psutil.Error:
        return False


def serve(path: str, workers: int, owner: int, main: Callable[[list[str]], None], warm_up: Callable[[], None],
          max_tasks: int = 200, max_rss_mb: float = 2048) -> None:
    """The pool: listen on `path`, keep `workers` workers, exit when process `owner` is gone. Each
    worker calls `warm_up()` once (the imports every job needs), then `main(argv)` for each job."""
    created = psutil.Process(owner).create_time()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    children: set[int] = set()

    def stop(*_):
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"pool {os.getpid()}: {workers} workers on {path}, for process {owner}", flush=True)
    while True:
        while len(children) < workers:
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is Snakemake's
                try:
                    _worker(listener, main, warm_up, max_tasks, max_rss_mb)
                finally:
                    os._exit(0)
            children.add(pid)
        time.sleep(0.5)
        while children:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            children.discard(pid)
        if not _alive(owner, created):
            stop()


def pool_size(cores: int, threads: int, worker_gb: float = 3.0) -> int:
    """Workers for `cores` job slots of `threads` cores each, no more than the memory holds (a
    worker is replaced at 2 GB; `worker_gb` leaves room for the job it is running)."""
    return max(1, min(cores // max(1, threads), int(psutil.virtual_memory().total / 2**30 // worker_gb)))


def start(path: str, workers: int, log: str, module: str) -> int:
    """Start a pool for this process (Snakemake's) in the background: `python -m <module> <path>
    <workers> <this pid>`, a module that calls `serve`; returns the pool's pid."""
    os.makedirs(os.path.dirname(log) or ".", exist_ok=True)
    with open(log, "a") as f:
        p = subprocess.Popen(
            [sys.executable, "-m", module, path, str(workers), str(os.getpid())],
            stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                [_SRC, os.environ.get("PYTHONPATH", "")])},
        )
    return p.pid

