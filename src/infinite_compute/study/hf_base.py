"""A local Hugging Face Llama model directory as the CPT stage's base (`cpt.base: {hf: <dir>}`): its
shape, read from its config.json, and the files levanter's `initialize_from_hf` needs from it.

Pure Python (json and os): the plan reads the shape when the Snakefile is parsed. Whether the
tokenizer loads and defines an end-of-sequence token needs transformers; data.tokenizer checks that
(check_hf_base there runs both checks before the first job).
"""

from __future__ import annotations

import json
import os

from .config import ConfigError
from .specs import ModelShape

KEY = "cpt.base"
CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")  # a fast tokenizer's file, or a SentencePiece model
MODEL_TYPES = ("llama",)  # levanter's LlamaConfig reads these (Llama-3.2 is `llama`)


def weight_files(path: str) -> list[str]:
    """The safetensors files of the model at `path` (one file, or the shards its index names)."""
    if os.path.isfile(os.path.join(path, SAFETENSORS)):
        return [os.path.join(path, SAFETENSORS)]
    index = os.path.join(path, SAFETENSORS_INDEX)
    if os.path.isfile(index):
        with open(index) as f:
            shards = sorted(set(json.load(f).get("weight_map", {}).values()))
        return [os.path.join(path, s) for s in shards] or [index]
    return []


def tokenizer_files(path: str) -> list[str]:
    """The files a tokenizer at `path` may be read from (rules list those that exist as inputs)."""
    return [os.path.join(path, f) for f in (*TOKENIZER_FILES, "tokenizer_config.json", "special_tokens_map.json")]


def base_files(path: str) -> list[str]:
    """The files of the base at `path` that a CPT run reads: its config, weights and tokenizer."""
    return [os.path.join(path, CONFIG), *(weight_files(path) or [os.path.join(path, SAFETENSORS)]),
            *tokenizer_files(path)]


def missing_files(path: str) -> list[str]:
    """What the base at `path` lacks, as sentences; empty when its files are all there."""
    if not os.path.isdir(path):
        return [f"'{path}' is not a directory (download the model there once, e.g. with `huggingface-cli download`)"]
    out = []
    if not os.path.isfile(os.path.join(path, CONFIG)):
        out.append(f"no {CONFIG} in '{path}'")
    weights = weight_files(path)
    if not weights:
        out.append(f"no weights in '{path}' (expected {SAFETENSORS} or {SAFETENSORS_INDEX} with its shards)")
    out += [f"the weight shard '{w}' is missing" for w in weights if not os.path.isfile(w)]
    if not any(os.path.isfile(os.path.join(path, t)) for t in TOKENIZER_FILES):
        out.append(f"no tokenizer in '{path}' (expected one of {', '.join(TOKENIZER_FILES)})")
    return out


def read_config(path: str) -> dict | None:
    """The base's config.json, or None when the file is absent (a dry run shows the DAG without it)."""
    cfg = os.path.join(path, CONFIG)
    if not os.path.isfile(cfg):
        return None
    try:
        with open(cfg) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(KEY, f"'{cfg}' is not readable JSON: {e}") from None
    if d.get("model_type") not in MODEL_TYPES:
        raise ConfigError(KEY, f"'{cfg}' has model_type {d.get('model_type')!r}; expected one of {list(MODEL_TYPES)}")
    return d


def base_shape(base: dict, seq_len: int, model_defaults: dict) -> ModelShape:
    """The CPT runs' shape: the base's dimensions (config.json), the study's context length and
    kernel settings. Without config.json (a dry run before the download) the dimensions are 0: the
    plan still lists the jobs, and the check before the first job stops a real run."""
    path = os.path.normpath(base["hf"])
    d = read_config(path) or {}

    def dim(key: str, default=None) -> int:
        if not d:
            return 0
        v = d.get(key, default)
        if not isinstance(v, int) or v < 1:
            raise ConfigError(KEY, f"'{os.path.join(path, CONFIG)}' has {key} = {v!r}; expected a positive integer")
        return v

    heads = dim("num_attention_heads")
    return ModelShape(
        name=base.get("name", "base"),
        hidden_dim=dim("hidden_size"),
        intermediate_dim=dim("intermediate_size"),
        num_layers=dim("num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=dim("num_key_value_heads", heads),
        seq_len=base.get("seq_len", seq_len),
        gradient_checkpointing=model_defaults.get("gradient_checkpointing", False),
        attention_backend=model_defaults.get("attention_backend", "default"),
        cross_entropy_block_size=model_defaults.get("cross_entropy_block_size"),
        hf_base=path,
        tied_embeddings=bool(d.get("tie_word_embeddings", False)),
    )
