"""The run names of the paper's W&B projects, as the authors' code builds them (marin,
experiments/data_efficiency/train.py, `DataEfficiencyConfig.build_name`):

    {model}-{tokens}x{epochs}-{data}[+{teacher}^{share}]-{cos|wsd}-lr{lr:.4f}-wd{wd:.2f}{tag}

e.g. `300m4k-209Mx16-dclm-cos-lr0.0030-wd1.60-bs64`. `tokens` is one epoch's tokens in their
K/M/B notation (209715200 -> "209M", 1677721600 -> "1.7B"); `model` is a size and a context
("300m4k", "1_4b4k": 1.4B); a seed variant's tag ends in `-ts{train seed}-ds{data seed}`; an
ensemble's evaluation run is `ppl-eval-ensemble-{K}x-{member name}`. Newer marin code appends a
hash to W&B ids, so the name parsed is `run.name`, never `run.id`."""

from __future__ import annotations

import dataclasses
import re

NAME = re.compile(
    r"^(?P<model>[a-z0-9_]+)-(?P<tokens>\d+(?:\.\d+)?[KMB]?)x(?P<epochs>\d+(?:\.\d+)?)-(?P<data>[^+]+?)"
    r"(?:\+(?P<teacher>[^^]+)\^(?P<share>\d+(?:\.\d+)?))?-(?P<schedule>cos|wsd)-lr(?P<lr>\d+\.\d+)"
    r"-wd(?P<wd>\d+\.\d+)(?P<tag>.*)$"
)
MODEL = re.compile(r"^(?P<size>\d+(?:_\d+)?)(?P<unit>[mb])(?P<context>\d+)k$")
SEEDS = re.compile(r"-ts(?P<train>\d+)-ds(?P<data>\d+)$")
ENSEMBLE_EVAL = re.compile(r"^ppl-eval-ensemble-(?P<k>\d+)x-(?P<member>.+)$")
UNITS = {"K": 1e3, "M": 1e6, "B": 1e9, "": 1.0}
SCHEDULES = {"cos": "cosine", "wsd": "linear"}


class RunNameError(ValueError):
    """A run name outside the paper's grammar; the message says which part does not parse."""


@dataclasses.dataclass(frozen=True)
class PaperRun:
    name: str
    model: str  # "300m4k"
    nominal_params: float  # the size the paper fits on: 3e8 for "300m4k"
    context: int  # 4096 for "...4k"
    tokens_label: str  # one epoch's tokens as named: "209M"
    nominal_tokens: float  # that label as a number: 2.09e8 (the config's exact count is preferred)
    epochs: int
    data: str
    teacher: str | None
    teacher_share: float
    schedule: str  # cosine / linear
    learning_rate: float
    weight_decay: float
    tag: str  # what follows the weight decay: "-bs64", "-ts1-ds1", ""
    train_seed: int | None
    data_seed: int | None

    @property
    def recipe_key(self) -> str:
        """The name without its seed suffix: the members of one ensemble share it."""
        return SEEDS.sub("", self.name)


def parse_model(model: str) -> tuple[float, int]:
    """("300m4k") -> (3e8, 4096); ("1_4b4k") -> (1.4e9, 4096)."""
    m = MODEL.match(model)
    if not m:
        raise RunNameError(f"model '{model}' is not <size><m|b><context>k (e.g. 300m4k, 1_4b4k)")
    size = float(m["size"].replace("_", "."))
    return size * (1e6 if m["unit"] == "m" else 1e9), int(m["context"]) * 1024


def parse_name(name: str) -> PaperRun:
    m = NAME.match(name)
    if not m:
        raise RunNameError(f"'{name}' is not {{model}}-{{tokens}}x{{epochs}}-{{data}}[+{{teacher}}^{{share}}]-"
                         "{cos|wsd}-lr{lr}-wd{wd}{tag}")
    params, context = parse_model(m["model"])
    tokens = m["tokens"]
    unit = tokens[-1] if tokens[-1] in "KMB" else ""
    epochs = float(m["epochs"])
    if epochs != int(epochs):
        raise RunNameError(f"'{name}': fractional epochs {m['epochs']} (the study's epochs are whole)")
    seeds = SEEDS.search(m["tag"])
    return PaperRun(
        name=name, model=m["model"], nominal_params=params, context=context, tokens_label=tokens,
        nominal_tokens=float(tokens[: len(tokens) - len(unit)]) * UNITS[unit], epochs=int(epochs), data=m["data"],
        teacher=m["teacher"], teacher_share=float(m["share"]) if m["share"] else 0.0,
        schedule=SCHEDULES[m["schedule"]], learning_rate=float(m["lr"]), weight_decay=float(m["wd"]), tag=m["tag"],
        train_seed=int(seeds["train"]) if seeds else None, data_seed=int(seeds["data"]) if seeds else None,
    )


def parse_ensemble_eval(name: str) -> tuple[int, PaperRun] | None:
    """(K, the member run) of an ensemble evaluation's name; None for any other name."""
    m = ENSEMBLE_EVAL.match(name)
    return (int(m["k"]), parse_name(m["member"])) if m else None


def token_label(tokens: int) -> str:
    """One epoch's tokens as the authors' names write them (train.py, `format_num_tokens`)."""
    if tokens >= 1_000_000_000:
        return f"{tokens / 1_000_000_000:.1f}B"
    if tokens >= 10_000_000:
        return f"{int(tokens / 1_000_000)}M"
    if tokens >= 1_000_000:
        return f"{tokens / 1_000_000:.1f}M"
    if tokens >= 1_000:
        return f"{tokens / 1_000:.1f}K"
    return f"{tokens}"


def build_name(model: str, tokens: int, epochs: int, data: str, lr: float, wd: float, tag: str = "",
               teacher: str | None = None, share: float = 0.0, schedule: str = "cos") -> str:
    """A name in the paper's grammar (for tests and for writing runs the importer reads)."""
    data_str = f"{token_label(tokens)}x{epochs}-{data}" + (f"+{teacher}^{share}" if teacher else "")
    lr_str = f"{lr:.4f}" if lr >= 1e-4 else f"{lr:.5f}"
    return f"{model}-{data_str}-{schedule}-lr{lr_str}-wd{wd:.2f}{tag}"
