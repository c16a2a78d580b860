"""The data stage at scale: generated shards of at least 1 GB of text through the corpus, tokenize
and budget-cache jobs, at 1 and 2 workers side by side: wall time, MB/s, and peak resident memory
per process (the job's own, and its largest worker's), polled from the process tree.

    .venv/bin/python bench/data_scale.py [--gb 1.0] [--out bench/data_scale.md] [--work DIR]

The shards are .jsonl.zst (as DCLM ships), their documents cut from the interpreter's stdlib text
at seeded offsets. The jobs run as Snakemake runs them (`python -m infinite_compute ...`). The
outputs of the two worker counts are compared byte for byte (the corpus splits, the token stream).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil
import zstandard

from infinite_compute.data.corpus import stdlib_sources

BUDGETS = [16_777_216, 67_108_864, 201_326_592]  # tokens per GB of text: nested prefixes of the stream
VALIDATION_TOKENS = 4_194_304
SHARD_TEXT = 64 << 20


def make_shards(root: str, gb: float, seed: int = 0) -> tuple[int, int]:
    """.jsonl.zst shards of ~SHARD_TEXT of text each, `gb` GB in all; returns (text bytes, stored bytes)."""
    lines = []
    for _, path in stdlib_sources():
        lines.extend(open(path, encoding="utf-8").read().splitlines(keepends=True))
    rng = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    total = stored = 0
    k = 0
    cctx = zstandard.ZstdCompressor(level=3)
    while total < gb * 1e9:
        path = os.path.join(root, f"shard-{k:04d}.jsonl.zst")
        size = 0
        with open(path, "wb") as raw, cctx.stream_writer(raw) as f:
            while size < SHARD_TEXT:
                a = rng.randrange(len(lines) - 200)
                text = "".join(lines[a : a + rng.randrange(20, 200)])
                line = (json.dumps({"text": text, "id": f"{k}-{size}"}) + "\n").encode()
                f.write(line)
                size += len(text.encode())
        total += size
        stored += os.path.getsize(path)
        k += 1
    return total, stored


def _anon(pid: int) -> int:
    """Resident anonymous memory (heap, not the page cache of memory-mapped files), bytes."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run(cmd: list[str], log: str) -> dict:
    """Run a job; its wall time and peak memory (MB), of its own process and of its largest child:
    RSS, and the anonymous part of it (RSS also counts the pages of memory-mapped token files,
    which the kernel drops at will)."""
    t0 = time.time()
    with open(log, "w") as out:
        p = psutil.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    peak = {"job": 0, "worker": 0, "job_anon": 0, "worker_anon": 0}
    done = threading.Event()

    def poll():
        while not done.is_set():
            try:
                peak["job"] = max(peak["job"], p.memory_info().rss)
                peak["job_anon"] = max(peak["job_anon"], _anon(p.pid))
                for c in p.children(recursive=True):
                    try:
                        peak["worker"] = max(peak["worker"], c.memory_info().rss)
                        peak["worker_anon"] = max(peak["worker_anon"], _anon(c.pid))
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            time.sleep(0.1)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    rc = p.wait()
    done.set()
    th.join()
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed: see {log}")
    return {"seconds": time.time() - t0, **{f"{k}_mb": v / 2**20 for k, v in peak.items()}}


def sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--work", default=None, help="where the shards and outputs go (default: a temp dir, removed)")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="data-scale-")
    py = [sys.executable, "-m", "infinite_compute"]
    t0 = time.time()
    text, stored = make_shards(os.path.join(work, "shards"), a.gb)
    made = time.time() - t0
    data = {"source": "files", "files": [os.path.join(work, "shards", "*.jsonl.zst")], "text_field": "text",
            "max_document_chars": 8000, "validation_fraction": 0.01, "encoding": "utf-8", "invalid_text_tolerance": 0.0}
    budgets = [int(b * a.gb) for b in BUDGETS]  # the same share of the corpus at any --gb
    rows, hashes = [], {}
    tok = os.path.join(work, "tokenizer")
    for workers in (1, 2):
        out = os.path.join(work, f"w{workers}")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        c = run([*py, "corpus", "--data", json.dumps(data), "--seed", "0", "--out", os.path.join(out, "corpus"),
                 "--workers", str(workers)], os.path.join(out, "corpus.log"))
        rows.append(("corpus", workers, c, text / 1e6 / c["seconds"]))
        if workers == 1:
            t = run([*py, "tokenizer", "--train", os.path.join(out, "corpus", "train.jsonl"), "--vocab-size", "512",
                     "--training-chars", "4000000", "--out", tok], os.path.join(out, "tokenizer.log"))
            rows.append(("tokenizer (4M chars)", 1, t, float("nan")))
        k = run([*py, "tokenize", "--train", os.path.join(out, "corpus", "train.jsonl"), "--validation",
                 os.path.join(out, "corpus", "validation.jsonl"), "--tokenizer", tok, "--train-tokens", str(max(budgets)),
                 "--validation-tokens", str(int(VALIDATION_TOKENS * a.gb)), "--out-train", os.path.join(out, "tokens", "train"),
                 "--out-validation", os.path.join(out, "tokens", "validation"), "--workers", str(workers)],
                os.path.join(out, "tokenize.log"))
        with open(os.path.join(out, "tokenize.log")) as f:
            got = [json.loads(line) for line in f if line.startswith("{")]
        n_tokens = sum(g["tokens"] for g in got)
        rows.append(("tokenize", workers, k, n_tokens / 1e6 / k["seconds"]))
        hashes[workers] = {s: sha(os.path.join(out, "corpus", f"{s}.jsonl")) for s in ("train", "validation")}
        hashes[workers]["tokens"] = sha(os.path.join(out, "tokens", "train", "tokens.npy"))
        if workers == 1:
            for b in budgets:
                r = run([*py, "cache", "--train", os.path.join(out, "tokens", "train"), "--validation",
                         os.path.join(out, "tokens", "validation"), "--tokenizer", tok, "--budget", str(b),
                         "--out", os.path.join(out, "cache", f"d{b}")], os.path.join(out, f"cache-{b}.log"))
                rows.append((f"budget cache D={b:,}", 1, r, b / 1e6 / r["seconds"]))
    same = hashes[1] == hashes[2]
    lines = [
        "# The data stage at scale",
        "",
        f"Written by `bench/data_scale.py --gb {a.gb}`: {len(os.listdir(os.path.join(work, 'shards')))} generated "
        f".jsonl.zst shards, {text / 1e9:.2f} GB of text ({stored / 1e9:.2f} GB stored; made in {made:.0f} s), "
        f"budgets {', '.join(f'{b:,}' for b in budgets)} tokens (vocab 512), on this machine ({os.cpu_count()} cores). "
        "Each job runs as Snakemake runs it; peak RSS is polled every 0.1 s, for the job's own process and "
        "for its largest worker process.",
        "",
        "| job | workers | wall s | throughput | job: peak RSS / anon (MB) | largest worker: peak RSS / anon (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for name, w, r, rate in rows:
        unit = "MB text/s" if name == "corpus" else "M tokens/s"
        thr = "" if rate != rate else f"{rate:.2f} {unit}"
        worker = f"{r['worker_mb']:.0f} / {r['worker_anon_mb']:.0f}" if r["worker_mb"] else "-"
        lines.append(f"| {name} | {w} | {r['seconds']:.1f} | {thr} | {r['job_mb']:.0f} / {r['job_anon_mb']:.0f} | {worker} |")
    lines += ["", f"Outputs at 1 and 2 workers byte-identical (corpus splits, token stream): **{same}** "
                  f"({hashes[1]})."]
    text_out = "\n".join(lines) + "\n"
    print(text_out)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text_out)
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
