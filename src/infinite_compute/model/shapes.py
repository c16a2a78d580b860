"""levanter's Llama config of a study model shape (study.specs.ModelShape): the one place that maps
the study's shape keys onto levanter's, for both training engines and for scoring."""

from __future__ import annotations

import dataclasses

from levanter.layers.attention import AttentionBackend
from levanter.models.llama import LlamaConfig
from transformers import LlamaConfig as HfLlamaConfig

from ..study.specs import ModelShape


def llama_config(m: ModelShape, tokenizer_dir: str | None, gradient_checkpointing: bool | None = None):
    """levanter's LlamaConfig of a shape; the tokenizer dir doubles as the local HF reference (None:
    levanter's defaults, for a model that is only built, never exported: model/memory_check.py)."""
    if m.hf_base is not None:
        return _hf_llama_config(m, tokenizer_dir, gradient_checkpointing)
    local = {} if tokenizer_dir is None else {"tokenizer": tokenizer_dir, "reference_checkpoint": tokenizer_dir}
    return LlamaConfig(
        seq_len=m.seq_len,
        hidden_dim=m.hidden_dim,
        intermediate_dim=m.intermediate_dim,
        num_layers=m.num_layers,
        num_heads=m.num_heads,
        num_kv_heads=m.num_kv_heads,
        gradient_checkpointing=m.gradient_checkpointing if gradient_checkpointing is None else gradient_checkpointing,
        attn_backend=AttentionBackend(m.attention_backend),
        cross_entropy_block_size=m.cross_entropy_block_size,
        **local,
    )


def _hf_llama_config(m: ModelShape, tokenizer_dir: str, gradient_checkpointing: bool | None):
    """The LlamaConfig of a Hugging Face base (cpt.base.hf), as levanter's initialize_from_hf reads it:
    everything from its config.json (rope and its scaling, tied embeddings, activation, norm epsilon),
    but the context length and the kernels, which are the study's."""
    hf = HfLlamaConfig.from_pretrained(m.hf_base, local_files_only=True)
    return dataclasses.replace(
        LlamaConfig.from_hf_config(hf),
        seq_len=m.seq_len,
        gradient_checkpointing=m.gradient_checkpointing if gradient_checkpointing is None else gradient_checkpointing,
        attn_backend=AttentionBackend(m.attention_backend),
        cross_entropy_block_size=m.cross_entropy_block_size,
        tokenizer=tokenizer_dir,
        reference_checkpoint=m.hf_base,
    )
