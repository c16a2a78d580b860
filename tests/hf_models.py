"""A tiny Hugging Face Llama written here by transformers (random weights, its own small tokenizer), as
a stand-in for a downloaded base such as meta-llama/Llama-3.2-3B: the same files (config.json,
model.safetensors, tokenizer.json ...), the same features (grouped-query attention, tied embeddings,
Llama-3's rope scaling, a BOS token distinct from its EOS), nothing fetched from a hub.

`python tests/hf_models.py <dir>` writes one (for trying `cpt.base: {hf: <dir>}` by hand).
"""

from __future__ import annotations

import os
import sys

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def tiny_tokenizer(texts: list[str], vocab_size: int = 300, eos: bool = True):
    """A byte-level BPE trained on `texts`, as transformers' fast tokenizer: BOS added at the start of
    each text (as Llama-3's does), EOS defined but not added (levanter's preprocessor appends it).
    With `eos` False the tokenizer has no end-of-sequence token (a bad base)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, EOS, UNK],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A $B",
                                                       special_tokens=[(BOS, tok.token_to_id(BOS))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, unk_token=UNK,
                                   **({"eos_token": EOS} if eos else {}), model_max_length=1 << 30)


def math_texts(n: int = 400, seed: int = 0) -> list[str]:
    """Text of the CPT domain (data/math_data.py's problems) for the tokenizer to learn."""
    from infinite_compute.data import math_data

    train, _ = math_data.generate(seed, n, 10)
    return [p.text() for p in train]


def write_tiny_llama(out_dir: str, *, eos: bool = True, hidden: int = 32, layers: int = 2, seed: int = 0) -> str:
    """A random tiny Llama and its tokenizer in `out_dir`, as `save_pretrained` writes them."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer(math_texts(), eos=eos)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
        rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64},
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    return out_dir


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    print(write_tiny_llama(sys.argv[1]))
