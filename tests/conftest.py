import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True, scope="module")
def _job_environment_stays_in_its_module():
    """Tests that call cli.main or runtime.env.set_job_defaults in this process set a job's environment
    (USE_TORCH=0, JAX_PLATFORMS, ...) and hide lm-eval from it: undo both once a module's tests and
    fixtures are done, so that later modules (and their subprocesses, e.g. test_layers' imports of
    the model layer, which fail under USE_TORCH=0 with lm-eval visible) start as a fresh session."""
    import sys

    saved_env, had_lm_eval, saved_lm_eval = dict(os.environ), "lm_eval" in sys.modules, sys.modules.get("lm_eval")
    yield
    os.environ.clear()
    os.environ.update(saved_env)
    if had_lm_eval:
        sys.modules["lm_eval"] = saved_lm_eval
    else:
        sys.modules.pop("lm_eval", None)


@pytest.fixture
def smoke_config():
    """The smoke config with the schema's defaults filled in."""
    from infinite_compute.study.config import load_config

    return load_config(os.path.join(ROOT, ".test", "config.yaml"), os.path.join(ROOT, "schemas", "config.schema.yaml"))


def worked_example(doc: str, kind: str) -> list[str]:
    """The fenced code blocks of the worked example `kind` in docs/`doc`: the blocks after its marker
    (`<!-- worked example: <kind>; ... -->`) up to the next heading, so that a test runs what the page shows."""
    import re

    with open(os.path.join(ROOT, "docs", doc), encoding="utf-8") as f:
        text = f.read()
    start = text.find(f"<!-- worked example: {kind};")
    assert start >= 0, f"docs/{doc} has no worked example '{kind}'"
    end = text.find("\n#", start)
    blocks = re.findall(r"^```\w*\n(.*?)^```", text[start:end if end >= 0 else None], re.M | re.S)
    assert blocks, f"docs/{doc}'s worked example '{kind}' has no code block"
    return blocks


def raw_smoke_config() -> dict:
    with open(os.path.join(ROOT, ".test", "config.yaml")) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """A corpus of 60 small text files, prepared, with a BPE tokenizer of 300 tokens: (root, manifest)."""
    import numpy as np

    from infinite_compute.data import corpus, tokenizer

    root = tmp_path_factory.mktemp("corpus")
    src = root / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "return", "def", "class", "self", "(", ")", ":"]
    for i in range(60):
        (src / f"f{i:02d}.txt").write_text("\n".join(" ".join(rng.choice(words, 8)) for _ in range(30)))
    cfg = {
        "seed": 0,
        "data": {"source": "files", "files": [str(src / "*.txt")], "text_field": "text", "max_document_chars": 800,
                 "validation_fraction": 0.1},
    }
    manifest = corpus.prepare_corpus(cfg, str(root / "corpus"))
    tokenizer.train_tokenizer(str(root / "corpus" / "train.jsonl"), 300, 100000, str(root / "tok"))
    return root, manifest


@pytest.fixture(scope="session")
def small_budget_cache(small_corpus, tmp_path_factory):
    """A levanter cache (train + validation) of 3,000 tokens of the small corpus: (its dir, the tokenizer dir)."""
    from infinite_compute.data import tokens

    root, _ = small_corpus
    tmp, tok_dir = tmp_path_factory.mktemp("budget"), str(root / "tok")
    for split, limit in (("train", 3000), ("validation", 500)):
        stream, offsets = tokens.tokenize_stream(str(root / "corpus" / f"{split}.jsonl"), tok_dir, limit)
        tokens.write_token_stream(str(tmp / f"{split}.npz"), stream, offsets)
    tokens.build_budget_cache(str(tmp / "train.npz"), str(tmp / "validation.npz"), tok_dir, 3000, str(tmp / "d3000"))
    return str(tmp / "d3000"), tok_dir
