"""The study's tokenizer: a byte-level BPE trained on the corpus, a given Hugging Face tokenizer
(e.g. Llama-3's) checked and copied, or for the synthetic source a word-level tokenizer whose tokens
are the source's symbols (so the loss is in nats per symbol, the units of its entropy rate). Each is
a local HF tokenizer directory; nothing is fetched."""

from __future__ import annotations

import os
from typing import Iterator

from ..runtime.io import atomic_dir
from ..study.config import ConfigError
from ..study.hf_base import KEY as HF_KEY
from ..study.hf_base import missing_files, read_config

# transformers and tokenizers are imported inside the functions that use them: the corpus job and the
# Snakefile import this layer, and transformers takes seconds to import
from .corpus import EOT, read_jsonl


def copy_tokenizer(path: str, out_dir: str) -> dict:
    """A given Hugging Face tokenizer (e.g. Llama-3's) as the study's tokenizer directory, checked to
    load offline and to define the end-of-sequence token every document ends with."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"config key 'tokenizer.path': '{path}' is not a directory")
    tok = checked_tokenizer(path, "tokenizer.path")
    with atomic_dir(out_dir) as tmp:
        tok.save_pretrained(tmp)
    return {"path": path, "vocab_size": len(tok), "eos_token": tok.eos_token, "bos_token": tok.bos_token}


def checked_tokenizer(path: str, key: str):
    """The Hugging Face tokenizer at `path`, checked to load offline and to define the end-of-sequence
    token every document ends with; a ValueError naming config key `key` otherwise."""
    try:
        tok = load_tokenizer(path)
    except Exception as e:  # noqa: BLE001 - any load failure is a bad config value
        raise ValueError(f"config key '{key}': '{path}' is not a loadable Hugging Face tokenizer: {e}") from None
    if tok.eos_token_id is None:
        raise ValueError(f"config key '{key}': the tokenizer at '{path}' has no end-of-sequence token")
    return tok


def check_hf_base(base: dict) -> None:
    """A CPT base from a Hugging Face model directory (cpt.base.hf): its config, weights and tokenizer
    are there, the config is a Llama's, and the tokenizer loads with an end-of-sequence token.
    Run before the first job (the Snakefile's onstart), so a bad base stops the study, not a job."""
    missing = missing_files(base["hf"])
    if missing:
        raise ConfigError(f"{HF_KEY}.hf", "; ".join(missing))
    read_config(base["hf"])  # a ConfigError naming cpt.base if it is not a Llama's
    checked_tokenizer(base["hf"], f"{HF_KEY}.hf")


def train_tokenizer(train_jsonl: str, vocab_size: int, training_chars: int, out_dir: str) -> None:
    """Byte-level BPE on the first `training_chars` of the training split, as a local HF tokenizer dir.

    The post-processor adds <|endoftext|> at both ends of a document, so levanter's BatchTokenizer
    finds BOS and EOS already present and leaves the text alone.
    """
    # heavy: only the tokenizer job trains one (see the note above)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    def texts() -> Iterator[str]:
        seen = 0
        for rec in read_jsonl(train_jsonl):
            yield rec["text"]
            seen += len(rec["text"])
            if seen >= training_chars:
                return

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts(), trainer)
    _save(tok, tok.token_to_id(EOT), out_dir)


def _save(tok, eot: int, out_dir: str) -> None:
    """`tok` (a tokenizers.Tokenizer) as a local HF tokenizer directory, with <|endoftext|> at both ends
    of a document, so levanter's BatchTokenizer finds BOS and EOS already present."""
    from tokenizers import processors
    from transformers import LlamaConfig as HfLlamaConfig
    from transformers import PreTrainedTokenizerFast

    tok.post_processor = processors.TemplateProcessing(
        single=f"{EOT} $A {EOT}", pair=f"{EOT} $A {EOT} $B {EOT}", special_tokens=[(EOT, eot)]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT, model_max_length=1 << 30,
                                   model_input_names=["input_ids"])
    with atomic_dir(out_dir) as tmp:
        fast.save_pretrained(tmp)
        # levanter's HF export needs a *local* reference checkpoint with a Llama config.json
        HfLlamaConfig(vocab_size=len(fast), bos_token_id=eot, eos_token_id=eot).save_pretrained(tmp)


def word_tokenizer(symbols: list[str], out_dir: str) -> None:
    """One token per symbol (words split at white space), <|endoftext|> first; an unknown word is
    <unk>, which the synthetic corpus never contains."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {EOT: 0, **{s: i + 1 for i, s in enumerate(symbols)}, "<unk>": len(symbols) + 1}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    _save(tok, 0, out_dir)


def document_start(tokenizer) -> int:
    """The token a document starts with, as levanter's preprocessor starts it in training: BOS (the
    study's tokenizers use <|endoftext|> for both BOS and EOS; a Hugging Face base's has its own BOS,
    e.g. Llama-3's <|begin_of_text|>), or EOS for a tokenizer without a BOS."""
    return tokenizer.eos_token_id if tokenizer.bos_token_id is None else tokenizer.bos_token_id


def load_tokenizer(tokenizer_dir: str):
    # heavy: only the jobs that tokenize or sample
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
