"""The traced AdamW equals levanter's AdamConfig update for update, while sharing one compile."""

import haliax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from levanter.models.llama import LlamaConfig
from levanter.optim import AdamConfig

from infinite_compute.model.optim import TracedAdamWConfig, schedule_value


@pytest.mark.parametrize("steps,warmup,min_ratio", [(64, 0.01, 0.0), (40, 0.1, 0.1), (200, 5, 0.0)])
def test_schedule_matches_levanter(steps, warmup, min_ratio):
    ref = AdamConfig(learning_rate=0.003, warmup=warmup, min_lr_ratio=min_ratio).lr_scheduler(steps)
    traced = TracedAdamWConfig(learning_rate=0.003, warmup=warmup, min_lr_ratio=min_ratio).build(steps)
    state = traced.init({"w": jnp.zeros(3)})
    for s in range(steps + 2):
        expected = float(ref(s))
        got = float(schedule_value(s, **state.schedule))
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-9), s


def _tiny_llama():
    Vocab = haliax.Axis("vocab", 64)
    cfg = LlamaConfig(seq_len=16, hidden_dim=16, intermediate_dim=32, num_layers=2, num_heads=2, num_kv_heads=2)
    return cfg.build(Vocab, key=jax.random.PRNGKey(0))


def test_updates_match_levanter_adamw():
    model = _tiny_llama()
    kw = dict(learning_rate=0.01, weight_decay=0.5, warmup=0.1, min_lr_ratio=0.0, max_grad_norm=1.0)
    ref, traced = AdamConfig(**kw).build(20), TracedAdamWConfig(**kw).build(20)
    rs, ts = ref.init(model), traced.init(model)
    rng = np.random.default_rng(0)
    p_ref = p_tr = model
    for _ in range(4):
        grads = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), model)
        u_ref, rs = ref.update(grads, rs, p_ref)
        u_tr, ts = traced.update(grads, ts, p_tr)
        for a, b in zip(jax.tree.leaves(u_ref), jax.tree.leaves(u_tr)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-8)
        p_ref = jax.tree.map(lambda p, u: p + u, p_ref, u_ref)
        p_tr = jax.tree.map(lambda p, u: p + u, p_tr, u_tr)
        assert float(ts.hyperparams["learning_rate"]) == pytest.approx(float(rs.hyperparams["learning_rate"]), rel=1e-5)


def test_one_compiled_step_serves_every_sweep_point():
    """lr, wd and length are data: jit traces the update once for all of them."""
    traces = []

    def step(opt_state, params, grads):
        traces.append(1)
        return traced_for_trace.update(grads, opt_state, params)

    params = {"w": jnp.ones((4, 4))}
    grads = {"w": jnp.full((4, 4), 0.1)}
    jitted = jax.jit(step)
    results = []
    for lr, wd, steps in [(0.01, 0.1, 50), (0.003, 0.8, 80), (0.03, 1.6, 20)]:
        traced_for_trace = TracedAdamWConfig(learning_rate=lr, weight_decay=wd, warmup=0.0).build(steps)  # noqa: F841
        u, _ = jitted(traced_for_trace.init(params), params, grads)
        results.append(float(u["w"][0, 0]))
    assert len(traces) == 1
    assert len(set(results)) == 3  # and the numbers did change the update


def test_levanter_trainer_settings_pass_through(smoke_config, tmp_path):
    """training.levanter: mesh, precision and parallelism reach levanter's TrainerConfig; without
    it, the CPU defaults hold."""
    import jmp

    from infinite_compute.model.trainer import levanter_config
    from infinite_compute.study.plan import build_plan

    plan = build_plan(smoke_config)
    spec = plan.runs[sorted(plan.runs)[0]]
    kw = dict(cache_dir=str(tmp_path), tokenizer_dir=str(tmp_path), checkpoint_dir=str(tmp_path),
              export_dir=str(tmp_path), evals_per_run=2, checkpoint_minutes=1.0, wandb=None)
    default = levanter_config(spec, **kw).trainer
    assert default.mp == jmp.get_policy("f32") and default.require_accelerator is False
    tpu = levanter_config(spec, **kw, trainer={"mp": "p=f32,c=bfloat16", "model_axis_size": 2,
                                               "per_device_parallelism": 4, "require_accelerator": True}).trainer
    assert tpu.mp == jmp.get_policy("p=f32,c=bfloat16") and tpu.model_axis_size == 2
    assert tpu.per_device_parallelism == 4 and tpu.require_accelerator is True
    assert tpu.train_batch_size == default.train_batch_size == spec.batch_size
