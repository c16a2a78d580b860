"""What one run, ensemble, distillation and CPT stage is: the specs a job receives, and run ids.

A run id is readable and stable (`n2-d8k-ep8-lr0.01-wd0.8-s0`): it names the model, token budget,
epochs, lr, weight decay and seed, so a run can be found, and parsed back, by its hyperparameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    """A Llama shape; parameter counts are those of levanter's LlamaLMHeadModel."""

    name: str
    hidden_dim: int
    intermediate_dim: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    seq_len: int
    gradient_checkpointing: bool = False
    attention_backend: str = "default"  # levanter's AttentionBackend value
    cross_entropy_block_size: int | None = None
    hf_base: str | None = None  # a Hugging Face model directory whose config.json this shape was read from
    tied_embeddings: bool = False  # the LM head is the token embedding (a base's tie_word_embeddings)

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads

    def non_embedding_params(self) -> int:
        """Parameters outside the token embedding and the LM head (the paper's N)."""
        h, hd = self.hidden_dim, self.head_dim
        attn = h * self.num_heads * hd * 2 + h * self.num_kv_heads * hd * 2
        mlp = 3 * h * self.intermediate_dim
        norms = 2 * h
        return self.num_layers * (attn + mlp + norms) + h

    def total_params(self, vocab_size: int) -> int:
        return self.non_embedding_params() + (1 if self.tied_embeddings else 2) * vocab_size * self.hidden_dim

    def flops_per_token(self, vocab_size: int) -> float:
        """Forward + backward FLOPs per training token (6N plus attention)."""
        n = self.non_embedding_params() + vocab_size * self.hidden_dim
        attn = 2 * self.num_layers * self.seq_len * self.hidden_dim
        return 6.0 * n + 6.0 * attn


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one training run's weights; nothing else."""

    run_id: str
    model: ModelShape
    token_budget: int
    epochs: int
    learning_rate: float
    weight_decay: float
    seed: int
    batch_size: int
    optimizer: dict
    data: str  # "d<tokens>" for real data, "distill/<name>" for a student's real+synthetic mix
    num_train_steps: int
    tokens_per_epoch: int
    synthetic_share: float = 0.0
    teacher: str | None = None
    # CPT: the search cell whose selected run's weights it starts from, or `hf:<dir>` for a Hugging
    # Face model directory (cpt.base.hf)
    init_from: str | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["init_from"] is None:  # absent unless set: specs (and run hashes) from before CPT are unchanged
            del d["init_from"]
        for k, default in (("attention_backend", "default"), ("cross_entropy_block_size", None), ("hf_base", None),
                             ("tied_embeddings", False)):
            if d["model"][k] == default:  # likewise for the kernels' settings and a CPT base's directory
                del d["model"][k]
        return d

    @property
    def cache_name(self) -> str:
        """Directory name of the levanter cache this run trains on."""
        return self.data.replace("/", "-")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def spec_hash(self) -> str:
        return spec_hash(self.to_dict())

    @staticmethod
    def from_dict(d: dict) -> "RunSpec":
        d = dict(d)
        d["model"] = ModelShape(**d["model"])
        return RunSpec(**d)


@dataclass(frozen=True)
class EnsembleSpec:
    """K = 1..size members of one recipe, seeds 0..size-1. A fixed ensemble lists its members; an
    ensemble of a search (`cell`) derives them from the cell's selected run, known after the search."""

    name: str
    members: tuple[str, ...]  # fixed: run ids in seed order (the first K form the K-ensemble); else ()
    model: str
    token_budget: int
    size: int = 0
    recipe: str = "fixed"  # "fixed" or the name of its entry of `ensemble_recipes`
    cell: str | None = None
    epochs_factor: float = 1.0
    weight_decay_factor: float = 1.0

    def member_ids(self, best: dict | None = None) -> list[str]:
        """The members' run ids; an ensemble of a search needs its cell's selected run `best`
        (learning_rate, weight_decay, epochs): same lr, epochs x epochs_factor, wd x weight_decay_factor."""
        if self.cell is None:
            return list(self.members)
        if best is None:
            raise ValueError(f"ensemble '{self.name}' needs the outcome of search cell '{self.cell}'")
        epochs = max(1, round(best["epochs"] * self.epochs_factor))
        wd = float(f"{best['weight_decay'] * self.weight_decay_factor:.6g}")  # the value its run id names
        return [run_id(self.model, self.token_budget, epochs, best["learning_rate"], wd, k) for k in range(self.size)]


@dataclass(frozen=True)
class DistillSpec:
    name: str
    # one run id (self-distillation) or an ensemble's members; empty when they are known only once a
    # search has ended (an ensemble of a search, or a search's selected run)
    teacher_members: tuple[str, ...]
    teacher_kind: str  # "ensemble", "single" (a given run) or "search" (the selected run of `teacher_cell`)
    teacher_name: str  # the ensemble's name, the run id, or the cell id
    student: str
    synthetic_share: float
    teacher_tokens: int
    temperature: float
    token_budget: int
    seed: int
    teacher_cell: str | None = None  # the search cell the teacher comes from, if any
    sampling: str = "mixture"  # "mixture" (token-level) or "members" (each sequence from one member)

    def sampling_params(self) -> dict:
        """What determines the synthetic corpus (the sampling job's params); the members' files are
        the job's inputs, so a teacher known only from a search is named, not listed."""
        return {
            "teacher": list(self.teacher_members) if self.teacher_members else [self.teacher_kind, self.teacher_name],
            "teacher_tokens": self.teacher_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
            # absent for the default, so that the corpora (and runs) made before the key are unchanged
            **({"sampling": self.sampling} if self.sampling != "mixture" else {}),
        }


@dataclass(frozen=True)
class CptSpec:
    """Continued pre-training on the math domain (data/math_data.py), from a search cell's selected run
    or a Hugging Face model directory (`base_hf`, then `base_cell` is None)."""

    base_cell: str | None
    model: str
    token_budget: int  # the recipes' math budget
    scaling: dict[int, str]  # math budget -> the default recipe's run there (its L(D))
    small_batch: str
    regularized: tuple[str, ...]  # one per weight decay of the grid, seed 0
    members: dict[str, tuple[str, ...]]  # a regularized run -> its ensemble (seeds 0..K-1, itself first)
    problems: dict
    answer_tokens: int
    seed: int
    base_hf: str | None = None

    @property
    def base(self) -> str:
        """What the CPT runs start from, as their init_from names it: a cell id or `hf:<dir>`."""
        return self.base_cell or HF_INIT + self.base_hf

    @property
    def default(self) -> str:
        """The default recipe's run at the recipes' budget."""
        return self.scaling[self.token_budget]

    @property
    def runs(self) -> list[str]:
        """Every run known before training (ensembles only of the selected weight decay are trained)."""
        return sorted({*self.scaling.values(), self.small_batch, *self.regularized})


HF_INIT = "hf:"  # RunSpec.init_from of a run that starts from a Hugging Face model directory


def spec_hash(spec: dict) -> str:
    """A run's spec, hashed: its `RunSpec.to_dict()` (or the spec.json / W&B config holding it) as sorted
    JSON. One function for the checkpoints' folders (model/engine.py) and the runs table's `spec_hash`
    column, so a row names the exact spec that trained it; a JSON round trip keeps the value."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]


def format_tokens(n: int) -> str:
    """Readable token counts for ids: 65536 -> 64k, 2097152 -> 2m."""
    if n % (1 << 20) == 0:
        return f"{n >> 20}m"
    if n % 1024 == 0:
        return f"{n >> 10}k"
    return str(n)


def format_number(x: float) -> str:
    return f"{x:g}"


def synthetic_tokens(token_budget: int, share: float) -> int:
    """Synthetic tokens that make up `share` of a student's mix beside `token_budget` real ones."""
    return round(token_budget * share / (1.0 - share))


def run_id(model: str, token_budget: int, epochs: int, lr: float, wd: float, seed: int) -> str:
    return (
        f"{model}-d{format_tokens(token_budget)}-ep{epochs}-lr{format_number(lr)}"
        f"-wd{format_number(wd)}-s{seed}"
    )


def cpt_run_id(model: str, budget: int, epochs: int, lr: float, wd: float, batch: int, seed: int) -> str:
    return (f"cpt-{model}-m{format_tokens(budget)}-ep{epochs}-lr{format_number(lr)}-wd{format_number(wd)}"
            f"-bs{batch}-s{seed}")


_RUN_ID = re.compile(
    r"^(?P<model>[a-z][a-z0-9]*)-d(?P<tokens>\d+[km]?)-ep(?P<epochs>\d+)-lr(?P<lr>[0-9.e+-]+?)"
    r"-wd(?P<wd>[0-9.e+-]+?)-s(?P<seed>\d+)$"
)


def recipe_of(rid: str) -> str:
    """A run id without its seed: the seeds of one recipe (an ensemble's members) share it."""
    return re.sub(r"-s\d+$", "", rid)


def parse_run_id(rid: str, token_budgets) -> tuple[str, int, int, float, float, int] | None:
    """(model, budget, epochs, lr, wd, seed) of a run id of `run_id`'s form, or None."""
    m = _RUN_ID.match(rid)
    budgets = {format_tokens(b): b for b in token_budgets}
    if m is None or m["tokens"] not in budgets:
        return None
    try:
        lr, wd = float(m["lr"]), float(m["wd"])
    except ValueError:
        return None
    return m["model"], budgets[m["tokens"]], int(m["epochs"]), lr, wd, int(m["seed"])
