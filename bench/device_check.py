"""The device check: the memory plan (study/memory.py) against a GPU's measured peak, on the paper's
shapes. Each part runs in a process of its own, so that each one's peak is its own, and prints the
peak (jax's `peak_bytes_in_use`) beside the plan's estimate for one device:

  train-m1400   3 steps of m1400 (config/paper.yaml: checkpointing, blockwise loss, accelerator attention),
                4 sequences of 4096, bf16 compute (p=f32,c=bfloat16)
  train-3b      the same for Llama-3.2-3B's shape (the CPT base; random weights)
  eval-m1400    one scoring batch of `evaluation.batch_size` sequences of m1400 (random weights, f32)
  sample-m300   1M tokens sampled from one m300 with the KV cache, 32 sequences a batch

    .venv/bin/python bench/device_check.py            # every part, on the GPU (about 5-8 minutes)
    .venv/bin/python bench/device_check.py --tiny     # the same code on toy shapes (any machine, CPU too)

On a CPU the peak is not reported (jax keeps no device statistics there): --tiny only runs the code.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "src"))

PARTS = ("train-m1400", "train-3b", "eval-m1400", "sample-m300")


def shapes(tiny: bool):
    from infinite_compute.study.config import load_merged_config
    from infinite_compute.study.plan import build_plan
    from infinite_compute.study.specs import ModelShape

    config = load_merged_config([os.path.join(ROOT, "config.yaml"), os.path.join(ROOT, "config", "paper.yaml")])
    plan = build_plan(config)
    m = config["model"]
    big = {"m1400": plan.models["m1400"], "m300": plan.models["m300"]}
    big["3b"] = ModelShape("llama3b", 3072, 8192, 28, 24, 8, m["seq_len"], m["gradient_checkpointing"],
                           m["attention_backend"], m["cross_entropy_block_size"])
    vocab = config["tokenizer"]["vocab_size"]
    micro = config["training"]["levanter"]["per_device_parallelism"]
    evaluation = config["evaluation"]["batch_size"]
    if tiny:
        import dataclasses

        big = {k: dataclasses.replace(v, hidden_dim=64, intermediate_dim=128, num_layers=2, num_heads=4,
                                      num_kv_heads=2, seq_len=128, cross_entropy_block_size=256) for k, v in big.items()}
        vocab = 1024
    return big, vocab, micro, evaluation, config["training"]["levanter"]["mp"]


def peak() -> int | None:
    import jax

    stats = jax.devices()[0].memory_stats()
    return None if not stats else int(stats.get("peak_bytes_in_use", 0))


def run_part(part: str, tiny: bool) -> dict:
    import equinox as eqx
    import haliax as hax
    import jax
    import jax.numpy as jnp
    import jmp
    import optax
    from levanter.models.lm_model import LmExample, compute_next_token_loss

    from infinite_compute.model.shapes import llama_config
    from infinite_compute.study.memory import sampling_memory, scoring_memory, training_memory

    big, vocab, micro, evaluation, mp = shapes(tiny)
    accelerator = jax.devices()[0].platform != "cpu"
    Vocab = hax.Axis("vocab", vocab)
    t0 = time.time()
    if part.startswith("train"):
        shape = big["m1400" if part == "train-m1400" else "3b"]
        config = llama_config(shape, None)
        policy = jmp.get_policy(mp)
        model = config.build(Vocab, key=jax.random.PRNGKey(0))
        opt = optax.adamw(1e-4, weight_decay=0.1)
        params, static = eqx.partition(model, eqx.is_inexact_array)
        opt_state = opt.init(params)
        Batch = hax.Axis("batch", micro)

        def loss_fn(params, tokens):
            m = policy.cast_to_compute(eqx.combine(params, static))
            ex = hax.vmap(lambda t: LmExample.causal(t), Batch)(hax.named(tokens, (Batch, config.Pos)))
            return compute_next_token_loss(m, ex, key=None).scalar()

        @jax.jit
        def step(params, opt_state, tokens):
            loss, grads = jax.value_and_grad(loss_fn)(params, tokens)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        for i in range(3):
            tokens = jax.random.randint(jax.random.PRNGKey(i), (micro, shape.seq_len), 0, vocab)
            params, opt_state, loss = step(params, opt_state, tokens)
        loss = float(loss)
        est = training_memory(shape, vocab, micro, 1, mp=mp, accelerator=accelerator)
        what = f"3 steps, loss {loss:.3f}"
    elif part == "eval-m1400":
        from infinite_compute.model import scoring

        shape = big["m1400"]
        model = llama_config(shape, None).build(Vocab, key=jax.random.PRNGKey(0))
        seqs = jax.random.randint(jax.random.PRNGKey(1), (evaluation, shape.seq_len), 0, vocab)
        lp = scoring.token_logprobs(model, jax.device_get(seqs), evaluation)
        est = scoring_memory(shape, vocab, evaluation, 1, accelerator)
        what = f"one batch, mean logprob {float(lp.mean()):.3f}"
    else:
        from infinite_compute.model.sampling import sample_sequences

        shape = big["m300"]
        model = llama_config(shape, None).build(Vocab, key=jax.random.PRNGKey(0))
        batch = 32
        n = max(batch, (1 << 20) // shape.seq_len if not tiny else 2 * batch)
        out = sample_sequences([model], n, shape.seq_len, 0, 1.0, 0, batch)
        est = sampling_memory(shape, vocab, batch, 1)
        what = f"{out.size:,} tokens sampled"
    jax.block_until_ready(jnp.zeros(()))
    return {"part": part, "peak": peak(), "estimate": int(sum(est.values())), "seconds": round(time.time() - t0, 1),
            "what": what, "device": str(jax.devices()[0].device_kind)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--part", choices=PARTS)
    a = ap.parse_args()
    if a.part:
        print("RESULT " + json.dumps(run_part(a.part, a.tiny)), flush=True)
        return
    print(f"{'part':12s} {'peak GiB':>9s} {'plan GiB':>9s} {'plan/peak':>9s} {'s':>6s}  what")
    failed = 0
    for part in PARTS:
        p = subprocess.run([sys.executable, __file__, "--part", part, *(["--tiny"] if a.tiny else [])],
                           capture_output=True, text=True)
        lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        if p.returncode or not lines:
            failed += 1
            print(f"{part:12s} FAILED (exit {p.returncode}): {p.stderr.strip().splitlines()[-1:] }")
            continue
        r = json.loads(lines[-1][7:])
        pk = "n/a" if r["peak"] is None else f"{r['peak'] / 2**30:9.2f}"
        ratio = "n/a" if not r["peak"] else f"{r['estimate'] / r['peak']:9.2f}"
        print(f"{part:12s} {pk:>9s} {r['estimate'] / 2**30:9.2f} {ratio:>9s} {r['seconds']:6.1f}  {r['what']} ({r['device']})",
              flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
