"""Teacher sampling: levanter's paged KV cache against a full forward pass per token.

    .venv/bin/python bench/sampling.py [hidden layers members batch seq_len vocab]

Prints tokens per second of each sampler (after compilation) and their ratio, on randomly
initialised Llamas of the default study's n2 shape unless told otherwise.
"""

import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def main(hidden=48, layers=2, members=4, batch=32, seq_len=128, vocab=1024) -> None:
    import haliax as hax
    import jax
    from levanter.models.llama import LlamaConfig, LlamaLMHeadModel

    from infinite_compute.model import sampling, scoring

    config = LlamaConfig(seq_len=seq_len, hidden_dim=hidden, intermediate_dim=hidden * 8 // 3, num_layers=layers,
                         num_heads=4, num_kv_heads=4, gradient_checkpointing=False)
    with scoring.device_mesh():
        models = [LlamaLMHeadModel.init(hax.Axis("vocab", vocab), config, key=jax.random.PRNGKey(k))
                  for k in range(members)]
        rates = {}
        for kv in (True, False):
            kw = dict(n_sequences=batch, seq_len=seq_len, eot_id=0, temperature=1.0, batch_size=batch, kv_cache=kv)
            t0 = time.perf_counter()
            sampling.sample_sequences(models, seed=0, **kw)  # compile + one batch
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            sampling.sample_sequences(models, seed=1, **kw)
            took = time.perf_counter() - t0
            rates[kv] = batch * seq_len / took
            print(f"{'kv cache' if kv else 'full forward':12s}: first call {first:6.1f} s, then {took:6.2f} s "
                  f"for {batch} x {seq_len} tokens from {members} member(s) = {rates[kv]:8.0f} tokens/s")
    print(f"kv cache / full forward: {rates[True] / rates[False]:.1f}x")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
