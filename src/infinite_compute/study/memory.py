"""The memory plan: each jax job's peak memory on one of its devices, estimated from its shapes and
the devices its profile gives it, and checked before the first job (rules/common.smk): a config that
does not fit is refused naming the job, the estimate and the device memory it was checked against.

What a training step holds on a device, with P parameters sharded over `shard` devices, a micro-batch
of T tokens per device, compute dtype c bytes (bf16: 2, f32: 4):
  parameters (f32), AdamW's two moments (f32), the gradient (f32), a gradient accumulator when the
  batch takes several micro-steps, the compute-dtype copy of the parameters under mixed precision,
  and under FSDP the weights of one layer and of the LM head gathered whole;
  activations saved for the backward pass: per layer LAYER_H tensors of [T, hidden], LAYER_I of
  [T, intermediate] (c bytes each) and, with `vanilla` attention, LAYER_SCORES f32 tensors of
  [b, heads, S, S]; with gradient checkpointing only each layer's input [T, hidden], and one layer's
  full set while it is recomputed;
  the loss: LOGIT_BUFFERS f32 tensors of [T, vocab] (a [T, block] one with blockwise cross-entropy).
The counts are those of XLA's buffer assignment for the step on CPU, measured by bench/memory.py on
shapes of its calibration set and checked on others (bench/memory.md; tests/test_memory.py checks
both against XLA's analysis): XLA fuses less on a CPU than on a TPU or GPU, so on those they are an
upper bound. Pure Python: nothing here imports jax.
"""

from __future__ import annotations

import dataclasses
import re

from .config import ConfigError
from .specs import ModelShape

GiB = 2**30
# tensors of XLA CPU's step at its peak (bench/memory.md: measured on the calibration shapes)
LAYER_H = 18
LAYER_I = 6
LAYER_SCORES = 2
LOGIT_BUFFERS = 5
# positions whose [batch, positions, vocab] f32 logits a scoring program holds at once (model/scoring.py)
SCORE_POSITIONS = 512
# what a plan keeps free on each device: XLA's own workspace, fragmentation, the runtime
HEADROOM = 0.9
_BYTES = {"f32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "f16": 2, "float16": 2}
# HBM per chip of each TPU generation, and chips of a `tpu_type` per its core count
TPU_CHIP_GIB = {"v2": 8, "v3": 16, "v4": 32, "v5e": 16, "v5litepod": 16, "v5p": 95, "v6e": 32}
_TPU_CORES_PER_CHIP = {"v2": 2, "v3": 2, "v4": 2, "v5p": 2}


@dataclasses.dataclass(frozen=True)
class Devices:
    """The devices one job computes on: how many (all its processes), each one's memory in bytes (None:
    unknown, not checked), and the profile resources these were read from."""

    count: int
    memory: int | None
    source: str
    accelerator: bool = False  # a TPU or GPU (flash attention kernels run there)


@dataclasses.dataclass(frozen=True)
class Estimate:
    job: str  # the rule and what it runs, e.g. "train_model m1400 (batch 64)"
    devices: Devices
    parts: dict  # bytes on one device, by what holds them

    @property
    def total(self) -> int:
        return int(sum(self.parts.values()))

    @property
    def fits(self) -> bool | None:
        return None if self.devices.memory is None else self.total <= HEADROOM * self.devices.memory


def dtype_bytes(mp: str | None) -> tuple[int, int]:
    """(parameter, compute) bytes of levanter's mixed-precision policy string, e.g. 'p=f32,c=bfloat16'."""
    out = {"p": 4, "c": 4}
    for part in (mp or "").split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            if k.strip() in out and v.strip() in _BYTES:
                out[k.strip()] = _BYTES[v.strip()]
    return out["p"], out["c"]


def param_count(m: ModelShape, vocab: int) -> int:
    return m.total_params(vocab)


def _layer_params(m: ModelShape) -> int:
    return (m.non_embedding_params() - m.hidden_dim) // m.num_layers


FLASH = ("default", "jax_flash", "splash", "nvte")  # attention kernels that never hold [S, S] scores


def layer_activations(m: ModelShape, tokens: int, micro_batch: int, c: int, model_axis: int = 1,
                      accelerator: bool = False) -> int:
    """Bytes one layer saves for the backward pass without checkpointing (tensor parallelism splits
    the MLP width and the heads). The [S, S] attention scores count unless a flash kernel runs on an
    accelerator: on a CPU levanter's attention compiles to the same buffers whatever the backend
    (bench/memory.md)."""
    out = c * tokens * (LAYER_H * m.hidden_dim + LAYER_I * m.intermediate_dim // model_axis)
    if not (accelerator and m.attention_backend in FLASH):
        out += LAYER_SCORES * 4 * micro_batch * (m.num_heads // model_axis) * m.seq_len**2
    return out


def training_memory(m: ModelShape, vocab: int, batch: int, devices: int, *, sharding: str = "fsdp",
                    model_axis: int = 1, per_device_parallelism: int = -1, mp: str | None = None,
                    accelerator: bool = False) -> dict:
    """Bytes on one device of a training step (the parts the module docstring lists)."""
    p, c = dtype_bytes(mp)
    data = max(1, devices // model_axis)
    micro = batch // data if per_device_parallelism in (None, -1) else min(per_device_parallelism, batch // data)
    micro = max(1, micro)
    accumulate = batch // (micro * data) > 1
    shard = devices if sharding == "fsdp" else model_axis
    P = param_count(m, vocab)
    T = micro * m.seq_len
    parts = {
        "parameters": P * p / shard,
        "optimizer state": 2 * P * 4 / shard,
        "gradients": P * 4 / shard * (2 if accumulate else 1),
    }
    if c < p:
        parts["compute copy"] = P * c / shard
    if sharding == "fsdp" and devices > 1:
        parts["gathered weights"] = (_layer_params(m) + vocab * m.hidden_dim) * c
    layer = layer_activations(m, T, micro, c, model_axis, accelerator)
    block = m.cross_entropy_block_size or vocab
    loss = LOGIT_BUFFERS * 4 * T * min(block, vocab)
    if m.gradient_checkpointing:
        parts["activations"] = m.num_layers * c * T * m.hidden_dim
        parts["loss or recompute"] = max(loss, layer)
    else:
        parts["activations"] = m.num_layers * layer
        parts["loss or recompute"] = loss
    return parts


def scoring_memory(m: ModelShape, vocab: int, batch: int, devices: int = 1, accelerator: bool = False,
                   members: int = 1) -> dict:
    """Bytes on one device of an f32 forward pass scoring `batch` sequences (evaluation, benchmarks;
    model/scoring.py), the parameters sharded over `devices` and the batch split over them: the
    parameters, and the larger of the logits with their log-softmax (SCORE_POSITIONS positions at a
    time) and one layer's attention scores (vanilla attention, or any on a CPU) with its MLP's
    [T, intermediate] and [T, hidden] tensors; XLA frees each before the next; on several devices one
    layer's weights gathered whole (bench/memory.md)."""
    b = max(1, batch // devices)
    T = b * m.seq_len
    logits = 2 * 4 * b * min(SCORE_POSITIONS, m.seq_len) * vocab
    layer = 4 * T * (m.intermediate_dim + m.hidden_dim)
    if not (accelerator and m.attention_backend in FLASH):
        layer += LAYER_SCORES * 4 * b * m.num_heads * m.seq_len**2
    parts = {"parameters": members * param_count(m, vocab) * 4 / devices, "logits or activations": max(logits, layer)}
    if devices > 1:  # sharded parameters: a layer's weights gathered whole while it computes
        parts["gathered layer"] = _layer_params(m) * 4
    return parts


def sampling_memory(m: ModelShape, vocab: int, batch: int, members: int, devices: int = 1) -> dict:
    """Bytes on one device of sampling `batch` sequences from a mixture of `members` models with f32
    KV caches (model/sampling.py), parameters and cache split over `devices` (a sequence's page on the
    device of its row): the parameters, the caches, the per-layer copy of the stacked layer weights
    that levanter's decode step makes and, when the parameters are sharded, the part of those copies
    XLA keeps gathered (0.36-0.61 of a whole copy on the calibration shapes: counted as half), and the
    step's logits."""
    kv = 2 * m.num_layers * m.num_kv_heads * m.head_dim * m.seq_len * batch * 4
    parts = {
        "parameters": members * param_count(m, vocab) * 4 / devices,
        "kv cache": members * kv / devices,
        "layer copies": members * m.non_embedding_params() * 4 / devices,
        "logits": 2 * members * 4 * max(1, batch // devices) * vocab,
    }
    if devices > 1:
        parts["gathered layers"] = 0.5 * members * m.non_embedding_params() * 4
    return parts


def devices_of(resources: dict, rule: str, cpu: bool = True) -> Devices:
    """The devices a job of `rule` gets from its resources (a profile's set-resources): `tpu_chips` or
    a `tpu_type` (profiles/tpu), `gres: gpu:N` on each of `nodes` (profiles/slurm), else one device (the
    CPU). Each one's memory: the `device_memory_gib` resource, else a TPU generation's HBM, else the
    job's `mem_mb` when the jobs compute on the CPU (`cpu`); a GPU without `device_memory_gib` is
    not checked."""
    gib = resources.get("device_memory_gib")
    tpu = str(resources.get("tpu_type") or "")
    gres = re.search(r"gpu(?::[A-Za-z0-9_-]+)?:(\d+)", str(resources.get("gres") or ""))
    if resources.get("tpu_chips") or tpu:
        gen, _, cores = tpu.partition("-")
        # tpu_chips is per host: a multi-host slice's job has `hosts` of them
        count = (int(resources["tpu_chips"]) * int(resources.get("hosts") or 1) if resources.get("tpu_chips")
                 else int(cores) // _TPU_CORES_PER_CHIP.get(gen, 1))
        if gib is None and tpu:
            gib = TPU_CHIP_GIB.get(gen)
        return Devices(count, None if gib is None else int(float(gib) * GiB),
                       f"{rule}: tpu_chips/tpu_type {tpu or count}", True)
    if gres:
        count = int(gres.group(1)) * int(resources.get("nodes") or 1)
        return Devices(count, None if gib is None else int(float(gib) * GiB), f"{rule}: gres {resources['gres']}", True)
    if not cpu:  # resources.accelerator gpu, tpu or auto on one machine: its one device
        return Devices(1, None if gib is None else int(float(gib) * GiB), f"{rule}: 1 device", True)
    mem = gib * GiB if gib is not None else (resources.get("mem_mb") or 0) * 2**20 or None
    return Devices(1, None if mem is None else int(mem), f"{rule}: 1 CPU device")


def check_fits(estimates: list[Estimate]) -> None:
    """Refuse a plan with a job that does not fit its devices, naming each such job, its estimate and
    the device memory it was checked against."""
    bad = [e for e in estimates if e.fits is False]
    if bad:
        lines = []
        for e in bad:
            biggest = max(e.parts, key=e.parts.get)
            lines.append(f"  {e.job}: about {e.total / GiB:.1f} GiB on each of {e.devices.count} device(s) "
                         f"({biggest} {e.parts[biggest] / GiB:.1f} GiB), over {HEADROOM:.0%} of "
                         f"{e.devices.memory / GiB:.1f} GiB ({e.devices.source})")
        raise ConfigError("resources (memory plan)", f"{len(bad)} job(s) would not fit their devices' memory:\n"
                          + "\n".join(lines) + "\ndocs/memory.md says what to change (model.gradient_checkpointing, "
                          "model.cross_entropy_block_size, training.levanter.per_device_parallelism, "
                          "evaluation.batch_size, or the profile's devices and device_memory_gib)")


def format_table(estimates: list[Estimate]) -> str:
    rows = [("job", "devices", "estimate GiB", "device GiB", "fits")]
    for e in estimates:
        mem = "?" if e.devices.memory is None else f"{e.devices.memory / GiB:.1f}"
        rows.append((e.job, str(e.devices.count), f"{e.total / GiB:.2f}", mem,
                     {True: "yes", False: "NO", None: "unchecked"}[e.fits]))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


def plan_memory(plan, config: dict, resources: dict[str, dict]) -> list[Estimate]:
    """The memory plan of a study: one estimate per rule and shape (the largest batch and ensemble
    of each), on the devices `resources` ({rule: its resources}) give that rule's jobs. Shapes still
    unknown (a Hugging Face base before its download: dimensions 0) are left out."""
    vocab = config["tokenizer"]["vocab_size"]
    train, eval_batch = config["training"], config["evaluation"]["batch_size"]
    lev = train.get("levanter") or {}
    trainer = train["engine"] == "trainer"
    out: list[Estimate] = []

    cpu = config["resources"]["accelerator"] == "cpu"
    train_mem = {"mem_mb": config["resources"]["train_mem_mb"]}  # the training rules' own

    def dev(rule):
        own = train_mem if rule in ("train_model", "train_cpt") else {}
        d = devices_of({**own, **resources.get(rule, resources.get("*", {}))}, rule, cpu)
        return d if trainer or rule not in ("train_model", "train_cpt") else dataclasses.replace(d, count=1)

    def training(rule, shapes_batches):
        d = dev(rule)
        for (shape, batch) in sorted(shapes_batches, key=lambda x: (x[0].name, x[1])):
            parts = training_memory(
                shape, vocab, batch, d.count, sharding=train.get("sharding", "fsdp") if trainer else "data",
                model_axis=int(lev.get("model_axis_size", 1)) if trainer else 1,
                per_device_parallelism=int(lev.get("per_device_parallelism", -1)) if trainer else -1,
                mp=lev.get("mp") if trainer else None, accelerator=d.accelerator)
            out.append(Estimate(f"{rule} {shape.name} (batch {batch})", d, parts))

    known = lambda m: m.hidden_dim > 0  # noqa: E731
    pre = {(r.model, r.batch_size) for r in plan.runs.values() if known(r.model)}
    pre |= {(plan.models[c.model], plan.batch_size) for c in plan.cells.values()}
    training("train_model", pre)
    cpt = {(r.model, r.batch_size) for r in plan.cpt_runs.values() if known(r.model)}
    training("train_cpt", cpt)
    def larger(*parts):  # a job that runs several programs one after another: its largest
        return max(parts, key=lambda p: sum(p.values()))

    answers = int((config.get("cpt") or {}).get("answer_tokens") or 0)
    for rule, shapes, members in (
        ("evaluate_model", {m for m, _ in pre}, 1),
        ("cpt_evaluate", {m for m, _ in cpt}, 1),
        ("cpt_ensemble", {m for m, _ in cpt}, max((len(v) for v in (plan.cpt.members.values() if plan.cpt else ())),
                                                  default=1)),
    ):
        d = dev(rule)
        _check_split(rule, eval_batch, d)
        for m in sorted(shapes, key=lambda m: m.name):
            tag = f" x {members} members" if members > 1 else ""
            score = scoring_memory(m, vocab, eval_batch, d.count, d.accelerator)
            # cpt_evaluate's greedy answers: a decode (at most seq_len long); cpt_ensemble's: a forward
            # pass of each member in turn (model/sampling.py), all members' parameters loaded
            decode = sampling_memory(m, vocab, eval_batch, 1, d.count) if answers else {}
            parts = {"evaluate_model": score, "cpt_evaluate": larger(score, decode),
                     "cpt_ensemble": scoring_memory(m, vocab, eval_batch, d.count, d.accelerator, members)}[rule]
            out.append(Estimate(f"{rule} {m.name}{tag} (batch {eval_batch})", d, parts))
    d = dev("sample_teacher")
    _check_split("sample_teacher", eval_batch, d)
    for dist in plan.distillations.values():
        if plan.corpus_of(dist.name) != dist.name:
            continue  # its corpus is another distillation's (the same teacher and sampling)
        m, members = _teacher(plan, dist)
        loaded = 1 if dist.sampling == "members" else members  # `members`: one member in memory at a time
        out.append(Estimate(f"sample_teacher {dist.name}: {m.name} x {members} {dist.sampling} (batch {eval_batch})",
                            d, sampling_memory(m, vocab, eval_batch, loaded, d.count)))
    return out


def _check_split(rule: str, batch: int, d: Devices) -> None:
    """Scoring and sampling split each batch over the job's devices: it must divide evenly."""
    if batch % d.count:
        raise ConfigError("evaluation.batch_size", f"{batch} sequences cannot be split over the {d.count} devices "
                          f"of {rule} ({d.source}); expected a multiple of {d.count}")


def profile_resources(profile_dir: str) -> dict[str, dict]:
    """{rule: resources} as a Snakemake profile gives them: its set-resources over its default-resources
    (for rules without set-resources: the defaults, under the key '*')."""
    import yaml

    with open(f"{profile_dir.rstrip('/')}/config.yaml") as f:
        prof = yaml.safe_load(f) or {}
    default = dict(prof.get("default-resources") or {})
    return {"*": default, **{r: {**default, **v} for r, v in (prof.get("set-resources") or {}).items()}}


def _teacher(plan, dist) -> tuple[ModelShape, int]:
    """A distillation teacher's shape and member count."""
    if dist.teacher_kind == "ensemble":
        ens = plan.ensembles[dist.teacher_name]
        return plan.models[ens.model], ens.size or len(ens.members)
    if dist.teacher_kind == "search":
        return plan.models[plan.cells[dist.teacher_cell].model], 1
    return plan.runs[dist.teacher_name].model, 1
