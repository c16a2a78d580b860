"""Training speed on this machine, per model shape of the default study:

- peak: fp32 matmul GFLOP/s (a 1024^3 jnp.dot, best of 5) with the jobs' thread setting;
- levanter: the study's own training path (`python -m infinite_compute train`, levanter's Trainer)
  as a fresh process on the default study's 16k-token cache: start-up (process start to the end of
  the first step), median step time, data-loading time, tokens/s and model-FLOPs utilisation;
- plain: a minimal JAX+optax loop of the same model (levanter's Llama, AdamW, next-token loss), in
  one process, one jitted step per batch; and `scan`: the same with 16 steps per jitted call.

    .venv/bin/python bench/train.py [--models n1,n2,n3,n4] [--steps 256] [--threads 1]

MFU = 6N-style model FLOPs per token (plan.ModelShape.flops_per_token) x steady tokens/s / peak.
Start-up is from process start to the end of the first step for levanter, and the first (compiling)
call for the in-process loops. Each
measurement runs in its own process, with XLA single-threaded for --threads 1 (as the default
study's jobs run, two at once on two cores). The 16k cache is built first if missing (snakemake).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "results", "data", "cache", "d16384")
TOKENIZER = os.path.join(ROOT, "results", "data", "tokenizer")


def _env(threads: int) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.path.join(ROOT, "src")}
    if threads == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return env


def _worker(args: list[str], threads: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", *args], env=_env(threads), capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- workers (each in a fresh process) ----


def worker_peak() -> dict:
    import jax
    import jax.numpy as jnp

    n = 1024
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    f = jax.jit(jnp.dot)
    f(a, b).block_until_ready()
    best = min(_timed(lambda: f(a, b).block_until_ready()) for _ in range(5))
    return {"gflops": 2 * n**3 / best / 1e9}


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def worker_plain(shape: dict, steps: int, scan: int) -> dict:
    """levanter's Llama and next-token loss, optax AdamW, random tokens; `scan` steps per jitted call."""
    import equinox as eqx
    import haliax as hax
    import jax
    import jax.numpy as jnp
    import optax
    from levanter.models.llama import LlamaConfig, LlamaLMHeadModel
    from levanter.models.lm_model import LmExample, compute_next_token_loss

    from infinite_compute import evaluate

    batch, seq, vocab = 16, shape["seq_len"], shape["vocab"]
    cfg = LlamaConfig(seq_len=seq, hidden_dim=shape["hidden_dim"], intermediate_dim=shape["intermediate_dim"],
                      num_layers=shape["num_layers"], num_heads=shape["num_heads"], num_kv_heads=shape["num_heads"],
                      gradient_checkpointing=False)
    Vocab, Pos, Batch = hax.Axis("vocab", vocab), hax.Axis("position", seq), hax.Axis("batch", batch)
    with evaluate.device_mesh():
        model = LlamaLMHeadModel.init(Vocab, cfg, key=jax.random.PRNGKey(0))
        opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, 0.9, 0.95, weight_decay=0.1))
        state = (model, opt.init(eqx.filter(model, eqx.is_array)))
        def loss_fn(m, tokens):
            return compute_next_token_loss(m, hax.vmap(LmExample.causal, Batch)(tokens)).scalar()

        def one(state, tokens):
            m, o = state
            loss, g = eqx.filter_value_and_grad(loss_fn)(m, tokens)
            upd, o = opt.update(g, o, eqx.filter(m, eqx.is_array))
            return (eqx.apply_updates(m, upd), o), loss

        @eqx.filter_jit
        def step(state, tokens):  # tokens: [scan, batch, seq] ints
            def body(s, t):
                return one(s, hax.named(t, (Batch, Pos)))

            return jax.lax.scan(body, state, tokens)

        data = jax.random.randint(jax.random.PRNGKey(1), (steps + 2 * scan, batch, seq), 0, vocab)
        t0 = time.perf_counter()
        state, loss = step(state, data[:scan])
        loss.block_until_ready()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(scan, steps + scan, scan):
            state, loss = step(state, data[i:i + scan])
            float(loss[-1])  # a host sync per call, as a logged loss would
        took = time.perf_counter() - t0
    return {"first_call_seconds": first, "step_seconds": took / steps, "tokens_per_second": steps * batch * seq / took}


def worker_levanter(shape: dict, steps: int, workdir: str) -> dict:
    """The study's training job as the Snakefile runs it; its metrics.json has the timings."""
    spec = {
        "batch_size": 16, "data": "d16384", "epochs": steps * 16 * shape["seq_len"] // 16384,
        "learning_rate": 0.01, "model": {k: shape[k] for k in ("hidden_dim", "intermediate_dim", "num_layers",
                                                                "num_heads", "seq_len")}
        | {"name": shape["name"], "num_kv_heads": shape["num_heads"], "gradient_checkpointing": False},
        "num_train_steps": steps, "optimizer": {"beta1": 0.9, "beta2": 0.95, "epsilon": 1e-08, "lr_schedule": "cosine",
                                                 "max_grad_norm": 1.0, "min_lr_ratio": 0.0, "warmup": 0.01},
        "run_id": f"bench-{shape['name']}", "seed": 0, "synthetic_share": 0.0, "teacher": None,
        "token_budget": 16384, "tokens_per_epoch": 16384, "weight_decay": 0.1,
    }
    out = os.path.join(workdir, "out")
    settings = {"checkpoint_minutes": 1.0, "evals_per_run": 2, "wandb": {"enabled": False}}
    from infinite_compute import cli

    cli.main(["--threads", os.environ.get("BENCH_THREADS", "1"), "train", "--spec", json.dumps(spec),
              "--cache", CACHE, "--tokenizer", TOKENIZER, "--out", out, "--checkpoints", os.path.join(workdir, "ck"),
              "--settings", json.dumps(settings)])
    m = json.load(open(os.path.join(out, "metrics.json")))
    return {k: m[k] for k in ("startup_seconds", "step_seconds", "loading_seconds", "tokens_per_second",
                              "wall_seconds")}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="n1,n2,n3,n4")
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--config", default=os.path.join(ROOT, "config.yaml"))
    p.add_argument("--worker", nargs="+")
    a = p.parse_args()
    if a.worker:
        kind, *rest = a.worker
        if kind == "peak":
            r = worker_peak()
        elif kind == "plain":
            r = worker_plain(json.loads(rest[0]), int(rest[1]), int(rest[2]))
        else:
            r = worker_levanter(json.loads(rest[0]), int(rest[1]), rest[2])
        print(json.dumps(r))
        return

    import yaml

    sys.path.insert(0, os.path.join(ROOT, "src"))
    from infinite_compute.plan import ModelShape

    cfg = yaml.safe_load(open(a.config))
    if not os.path.isdir(CACHE):
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "snakemake"), "--cores", "2", "-q",
                        os.path.relpath(CACHE, ROOT), os.path.relpath(TOKENIZER, ROOT)], cwd=ROOT, check=True)
    vocab = cfg["tokenizer"]["vocab_size"]
    peak = _worker(["peak"], a.threads)["gflops"]
    print(f"matmul peak, {a.threads} thread(s): {peak:.1f} GFLOP/s (fp32, 1024^3)")
    print("tokens/s: over the whole training (levanter: from train_lm.main's start); steady: between steps; "
          "MFU: steady model FLOP/s over the peak")
    print(f"{'model':6s} {'params':>8s} | {'path':9s} {'start-up':>9s} {'step ms':>8s} {'load ms':>8s} "
          f"{'tokens/s':>9s} {'steady':>9s} {'MFU':>6s}")
    for name in a.models.split(","):
        shape = {"name": name, "seq_len": cfg["model"]["seq_len"], "vocab": vocab, **cfg["models"][name]}
        ms = ModelShape(name=name, seq_len=shape["seq_len"], hidden_dim=shape["hidden_dim"],
                        intermediate_dim=shape["intermediate_dim"], num_layers=shape["num_layers"],
                        num_heads=shape["num_heads"], num_kv_heads=shape["num_heads"])
        fpt = ms.flops_per_token(vocab)
        rows = {}
        with tempfile.TemporaryDirectory(dir=os.path.join(ROOT, "results")) as wd:
            t0 = time.time()
            lev = _worker(["levanter", json.dumps(shape), str(a.steps), wd], a.threads)
            lev["process_seconds"] = time.time() - t0
        rows["levanter"] = lev
        rows["plain"] = _worker(["plain", json.dumps(shape), str(a.steps), "1"], a.threads)
        rows["scan16"] = _worker(["plain", json.dumps(shape), str(a.steps), "16"], a.threads)
        for path, r in rows.items():
            start = r.get("startup_seconds", r.get("first_call_seconds"))
            steady = 16 * shape["seq_len"] / r["step_seconds"]  # tokens/s between steps, start-up excluded
            print(f"{name:6s} {ms.non_embedding_params() / 1e6:7.2f}M | {path:9s} {start:8.1f}s "
                  f"{r['step_seconds'] * 1e3:8.1f} {r.get('loading_seconds', 0) * 1e3:8.1f} "
                  f"{r['tokens_per_second']:9.0f} {steady:9.0f} {fpt * steady / (peak * 1e9):6.3f}")
        in_steps = a.steps * lev["step_seconds"]
        print(f"{name:6s} levanter job: {lev['process_seconds']:.1f} s in all for {a.steps} steps, of which "
              f"~{in_steps:.1f} s in steps ({in_steps / lev['process_seconds']:.0%}); steady step time "
              f"levanter/plain {lev['step_seconds'] / rows['plain']['step_seconds']:.2f}x, "
              f"levanter/scan16 {lev['step_seconds'] / rows['scan16']['step_seconds']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
