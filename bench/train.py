"""Training speed on this machine, per model shape of the default study:

- peak: fp32 matmul GFLOP/s (a 1024^3 jnp.dot, best of 5) with the jobs' thread setting, measured
  again before each shape (this VM's peak has varied from 137 to 284 GFLOP/s within an hour);
- trainer, loop: the study's own training job (`python -m infinite_compute train`) with each engine
  (training.engine: levanter's Trainer, or loop.py) as a fresh process on the default study's 8k-token
  cache: start-up (process start to the end of the first step), median step time, data-loading time,
  tokens/s and model-FLOPs utilisation;
- trainer-warm, loop-warm: the same job handed to a warm worker (runtime/worker.py, as Snakemake jobs on this
  machine run), as the worker's second job of the shape (its first one warms it up); start-up from
  the client's start;
- plain: a minimal JAX+optax loop of the same model (levanter's Llama, AdamW, next-token loss), in
  one process, one jitted step per batch; and `scan16`: the same with 16 steps per jitted call.

    .venv/bin/python bench/train.py [--models n1,n2,n3,n4] [--steps 256] [--threads 1]
                                    [--add-model wide=256,768,2,2]

`--add-model name=hidden,intermediate,layers,heads` adds a shape to the config's (e.g. a wider one,
to see where MFU goes as hidden size grows). MFU = 6N-style model FLOPs per token
(plan.ModelShape.flops_per_token) x steady tokens/s / peak. Start-up is from process start to the
end of the first step for the study's jobs, and the first (compiling) call for the in-process loops.
Each measurement runs in its own process, with the XLA flags the study's jobs set for --threads 1.
The cache is built first if missing (snakemake).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from infinite_compute.study import paths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, paths.fill(paths.BUDGET_CACHE, budget=8192))
TOKENIZER = os.path.join(ROOT, paths.TOKENIZER)


def _env(threads: int) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.path.join(ROOT, "src"),
           # the persistent compilation cache every job of a study shares (rules/common.smk)
           "JAX_COMPILATION_CACHE_DIR": os.environ.get("JAX_COMPILATION_CACHE_DIR",
                                                       os.path.join(ROOT, "results", "jax-cache"))}
    if threads == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return env


def bench_config(config: str, add_models: list[str]) -> dict:
    from infinite_compute.study.config import load_config

    cfg = load_config(config, os.path.join(ROOT, "schemas", "config.schema.yaml"))
    for a in add_models:
        name, dims = a.split("=")
        h, i, layers, heads = map(int, dims.split(","))
        cfg["models"][name] = {"hidden_dim": h, "intermediate_dim": i, "num_layers": layers, "num_heads": heads}
    return cfg


def bench_spec(cfg: dict, model: str, steps: int, budget: int = 8192):
    """The run the study's plan would make of `model` for `steps` steps on `budget` tokens (lr 0.01,
    wd 0.1, the config's batch, sequence length and optimizer): a single sweep point."""
    import copy

    from infinite_compute.study.plan import build_plan

    cfg = copy.deepcopy(cfg)
    epochs = steps * cfg["training"]["batch_size"] * cfg["model"]["seq_len"] // budget
    cfg["tuning"]["searches"] = []
    cfg.update(ensembles=[], ensemble_recipes=[], distillation=[], cpt=None,
               sweeps=[{"name": "bench", "models": [model], "token_budgets": [budget], "epochs": [epochs],
                        "learning_rates": [0.01], "weight_decays": [0.1], "seeds": [0]}])
    (spec,) = build_plan(cfg).runs.values()
    return spec


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


def worker_plain(spec: dict, vocab: int, steps: int, scan: int) -> dict:
    """levanter's Llama and next-token loss, optax AdamW, random tokens; `scan` steps per jitted call."""
    import equinox as eqx
    import haliax as hax
    import jax
    import optax
    from levanter.models.llama import LlamaLMHeadModel
    from levanter.models.lm_model import LmExample, compute_next_token_loss

    from infinite_compute.model import scoring
    from infinite_compute.model.shapes import llama_config
    from infinite_compute.study.specs import ModelShape

    batch, seq = spec["batch_size"], spec["model"]["seq_len"]
    cfg = llama_config(ModelShape(**spec["model"]), tokenizer_dir=TOKENIZER)
    Vocab, Pos, Batch = hax.Axis("vocab", vocab), hax.Axis("position", seq), hax.Axis("batch", batch)
    with scoring.device_mesh():
        model = LlamaLMHeadModel.init(Vocab, cfg, key=jax.random.PRNGKey(0))
        o = spec["optimizer"]
        opt = optax.chain(optax.clip_by_global_norm(o["max_grad_norm"]),
                          optax.adamw(spec["learning_rate"], o["beta1"], o["beta2"], o["epsilon"],
                                      weight_decay=spec["weight_decay"]))
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


def start_pool(workdir: str, threads: int) -> tuple[subprocess.Popen, str]:
    """One warm worker (runtime/worker.py, cli/pool.py) owned by this process, as Snakemake's onstart starts them."""
    sock = os.path.join(workdir, "pool.sock")
    p = subprocess.Popen([sys.executable, "-m", "infinite_compute.cli.pool", sock, "1", str(os.getpid())],
                         env=_env(threads), stdout=open(os.path.join(workdir, "pool.log"), "w"),
                         stderr=subprocess.STDOUT, start_new_session=True)
    import psutil

    while not (os.path.exists(sock) and psutil.Process(p.pid).children()):
        time.sleep(0.1)
    (worker,) = psutil.Process(p.pid).children()
    worker.cpu_percent()
    while worker.cpu_percent(interval=1.0) > 5:  # warming up (imports): not to be timed with the jobs
        pass
    return p, sock


def job(spec, workdir: str, threads: int, engine: str, sock: str | None = None) -> dict:
    """The study's training job as the Snakefile runs it, in a fresh process or handed to the warm
    worker at `sock`; its metrics.json has the timings, `process_seconds` is the whole command."""
    out = os.path.join(workdir, "out")
    settings = {"checkpoint_minutes": 1.0, "evals_per_run": 2, "wandb": {"enabled": False}, "engine": engine}
    env = _env(threads)
    if sock:
        env["IC_WORKER"] = sock
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "infinite_compute", "--threads", str(threads), "train", "--spec",
                    spec.to_json(), "--cache", CACHE, "--tokenizer", TOKENIZER, "--out", out,
                    "--checkpoints", os.path.join(workdir, "ck"), "--settings", json.dumps(settings)],
                   env=env, check=True, capture_output=True)
    m = json.load(open(os.path.join(out, "metrics.json")))
    return {**{k: m[k] for k in ("startup_seconds", "step_seconds", "loading_seconds", "tokens_per_second",
                                 "final_eval_loss")},
            "process_seconds": time.time() - t0}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="n1,n2,n3,n4")
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--config", default=os.path.join(ROOT, "config.yaml"))
    p.add_argument("--add-model", action="append", default=[])
    p.add_argument("--worker", nargs="+")
    a = p.parse_args()
    if a.worker:
        kind, *rest = a.worker
        if kind == "peak":
            r = worker_peak()
        else:
            r = worker_plain(json.loads(rest[0]), int(rest[1]), int(rest[2]), int(rest[3]))
        print(json.dumps(r))
        return

    sys.path.insert(0, os.path.join(ROOT, "src"))
    cfg = bench_config(a.config, a.add_model)
    vocab = cfg["tokenizer"]["vocab_size"]
    if not os.path.isdir(CACHE):
        # (targets before -q: snakemake 9's --quiet takes the words after it as its choices)
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "snakemake"), os.path.relpath(CACHE, ROOT),
                        os.path.relpath(TOKENIZER, ROOT), "--cores", "2", "-q"], cwd=ROOT, check=True)
    print("tokens/s: over the whole training (the study's jobs: from the training's start); steady: between "
          "steps; MFU: steady model FLOP/s over the peak measured before the shape")
    print(f"{'model':6s} {'params':>8s} | {'path':12s} {'start-up':>9s} {'step ms':>8s} {'load ms':>8s} "
          f"{'tokens/s':>9s} {'steady':>9s} {'MFU':>6s} {'loss':>7s}")
    pool_dir = tempfile.mkdtemp(dir=os.path.join(ROOT, "results"))
    pool, sock = start_pool(pool_dir, a.threads)
    for name in a.models.split(","):
        peak = _worker(["peak"], a.threads)["gflops"]
        print(f"{name:6s} matmul peak, {a.threads} thread(s): {peak:.1f} GFLOP/s (fp32, 1024^3)")
        spec = bench_spec(cfg, name, a.steps)
        fpt = spec.model.flops_per_token(vocab)
        tokens_per_step = spec.batch_size * spec.model.seq_len
        rows = {}
        for engine in ("trainer", "loop"):
            with tempfile.TemporaryDirectory(dir=os.path.join(ROOT, "results")) as wd:
                rows[engine] = job(spec, wd, a.threads, engine)
            # on a warm worker: its second job of this shape (the first warms it up), as in a study
            for _ in range(2):
                with tempfile.TemporaryDirectory(dir=os.path.join(ROOT, "results")) as wd:
                    rows[f"{engine}-warm"] = job(spec, wd, a.threads, engine, sock)
        rows["plain"] = _worker(["plain", spec.to_json(), str(vocab), str(a.steps), "1"], a.threads)
        rows["scan16"] = _worker(["plain", spec.to_json(), str(vocab), str(a.steps), "16"], a.threads)
        for path, r in rows.items():
            start = r.get("startup_seconds", r.get("first_call_seconds"))
            steady = tokens_per_step / r["step_seconds"]  # tokens/s between steps, start-up excluded
            loss = f"{r['final_eval_loss']:7.4f}" if "final_eval_loss" in r else ""
            print(f"{name:6s} {spec.model.non_embedding_params() / 1e6:7.2f}M | {path:12s} {start:8.1f}s "
                  f"{r['step_seconds'] * 1e3:8.1f} {r.get('loading_seconds', 0) * 1e3:8.1f} "
                  f"{r['tokens_per_second']:9.0f} {steady:9.0f} {fpt * steady / (peak * 1e9):6.3f} {loss}")
        tr, lp = rows["trainer-warm"], rows["loop-warm"]
        print(f"{name:6s} a {a.steps}-step job on a warm worker: trainer {tr['process_seconds']:.1f} s, loop "
              f"{lp['process_seconds']:.1f} s ({tr['process_seconds'] / lp['process_seconds']:.2f}x); steady step "
              f"trainer/loop {tr['step_seconds'] / lp['step_seconds']:.2f}x, loop/scan16 "
              f"{lp['step_seconds'] / rows['scan16']['step_seconds']:.2f}x; in a fresh process: trainer "
              f"{rows['trainer']['process_seconds']:.1f} s, loop {rows['loop']['process_seconds']:.1f} s", flush=True)
    pool.terminate()
    pool.wait()
    shutil.rmtree(pool_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
