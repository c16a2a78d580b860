import json

import numpy as np
import pytest

from infinite_compute.data import corpus, tokenizer, tokens
from infinite_compute.data.benchmarks import build_items


def test_split_long_cuts_at_lines_and_keeps_text():
    text = "".join(f"line {i}\n" for i in range(100))
    pieces = list(corpus.split_long("doc", text, 50))
    assert "".join(p.text for p in pieces) == text
    assert all(len(p.text) <= 50 for p in pieces)
    assert all(p.text.endswith("\n") for p in pieces)
    assert len({p.doc_id for p in pieces}) == len(pieces)


def test_split_is_stable_and_independent_of_other_documents():
    docs = [corpus.Document(f"d{i}", "x") for i in range(400)]
    train, val = corpus.split_documents(docs, 0.1, seed=0)
    assert 20 < len(val) < 60
    _, val_sub = corpus.split_documents(docs[:200], 0.1, seed=7)
    assert {d.doc_id for d in val_sub} == {d.doc_id for d in val if int(d.doc_id[1:]) < 200}


def test_manifest_records_every_file(small_corpus):
    root, manifest = small_corpus
    assert len(manifest["files"]) == 60
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])
    assert manifest["python"]


def test_tokenizer_training_is_deterministic(small_corpus, tmp_path):
    root, _ = small_corpus
    tokenizer.train_tokenizer(str(root / "corpus" / "train.jsonl"), 300, 100000, str(tmp_path / "tok2"))
    a = json.load(open(root / "tok" / "tokenizer.json"))
    b = json.load(open(tmp_path / "tok2" / "tokenizer.json"))
    assert a["model"]["merges"] == b["model"]["merges"] and a["model"]["vocab"] == b["model"]["vocab"]


def test_budgets_are_nested_prefixes_and_levanter_reads_them(small_corpus, tmp_path):
    from levanter.data.text import TextLmDatasetFormat, load_lm_dataset_cache

    root, _ = small_corpus
    tok_dir = str(root / "tok")
    stream, offsets = tokens.tokenize_stream(str(root / "corpus" / "train.jsonl"), tok_dir, 3000)
    assert len(stream) == 3000
    vstream, voffsets = tokens.tokenize_stream(str(root / "corpus" / "validation.jsonl"), tok_dir, 500)
    tokens.write_token_stream(str(tmp_path / "t.npz"), stream, offsets)
    tokens.write_token_stream(str(tmp_path / "v.npz"), vstream, voffsets)
    tok = tokenizer.load_tokenizer(tok_dir)
    read = {}
    for budget in (1000, 3000):
        out = tmp_path / f"d{budget}"
        info = tokens.build_budget_cache(str(tmp_path / "t.npz"), str(tmp_path / "v.npz"), tok_dir, budget, str(out))
        assert info["train_tokens"] == budget
        cache = load_lm_dataset_cache(str(out / "train"), TextLmDatasetFormat(), tok)
        rows = cache.get_batch_sync(list(range(len(cache))))
        read[budget] = np.concatenate([r["input_ids"] for r in rows])
        assert len(read[budget]) == budget
    np.testing.assert_array_equal(read[3000][:1000], read[1000])
    # documents begin with <|endoftext|>, as levanter's own tokenizer pass makes them
    assert read[1000][0] == tok.eos_token_id
    with pytest.raises(ValueError, match="data.token_budgets"):
        tokens.build_budget_cache(str(tmp_path / "t.npz"), str(tmp_path / "v.npz"), tok_dir, 5000, str(tmp_path / "x"))


def test_missing_and_empty_corpus_are_clear_errors(tmp_path):
    cfg = {"source": "files", "files": [str(tmp_path / "none*.txt")], "text_field": "text", "max_document_chars": 800}
    with pytest.raises(FileNotFoundError, match="data.files"):
        corpus.collect_documents(cfg)
    (tmp_path / "empty.txt").write_text("   \n")
    cfg["files"] = [str(tmp_path / "empty.txt")]
    with pytest.raises(ValueError, match="empty"):
        corpus.collect_documents(cfg)


def test_benchmark_items_are_deterministic_and_hold_the_true_next_line():
    docs = [{"id": f"d{k}", "text": "\n".join(f"doc {k} line number {i}" for i in range(12))} for k in range(10)]
    kw = dict(items=20, choices=4, context_lines=3, min_line_chars=5, seed=1)
    items = build_items(docs, **kw)
    assert items == build_items(docs, **kw)
    for it in items:
        last = it["context"].splitlines()[-1]
        k, i = last.split()[1], int(last.split()[-1])
        assert it["choices"][it["label"]] == f"doc {k} line number {i + 1}"
        assert len(set(it["choices"])) == 4


def test_a_given_tokenizer_is_checked_and_copied(tmp_path):
    corpus = tmp_path / "train.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"def f{i}(x):\n    return x + {i}\n"}) + "\n" for i in range(200)))
    tokenizer.train_tokenizer(str(corpus), 300, 100_000, str(tmp_path / "given"))
    info = tokenizer.copy_tokenizer(str(tmp_path / "given"), str(tmp_path / "study"))
    tok = tokenizer.load_tokenizer(str(tmp_path / "study"))
    assert info["vocab_size"] == len(tok) == 300 and tok.eos_token == info["eos_token"]
    assert tok("def f1(x):")["input_ids"] == tokenizer.load_tokenizer(str(tmp_path / "given"))("def f1(x):")["input_ids"]
    with pytest.raises(FileNotFoundError, match="tokenizer.path"):
        tokenizer.copy_tokenizer(str(tmp_path / "nowhere"), str(tmp_path / "x"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="tokenizer.path"):
        tokenizer.copy_tokenizer(str(tmp_path / "empty"), str(tmp_path / "y"))


def test_corpus_files_may_be_urls(tmp_path):
    """data.files accepts URLs and buckets through fsspec (here file:// URLs): the same documents."""

    for k in range(2):
        (tmp_path / f"shard-{k}.jsonl").write_text("".join(json.dumps({"text": f"doc {k}.{i}"}) + "\n" for i in range(3)))
    cfg = {"source": "files", "text_field": "text", "max_document_chars": 8000}
    local, _ = corpus.collect_documents({**cfg, "files": [str(tmp_path / "shard-*.jsonl")]})
    remote, manifest = corpus.collect_documents({**cfg, "files": [f"file://{tmp_path}/shard-*.jsonl"]})
    assert [d.text for d in remote] == [d.text for d in local] and len(remote) == 6
    assert all(f["path"].startswith("file://") for f in manifest)


def test_held_out_by_source_keeps_every_piece_of_a_file_on_one_side_whatever_the_cut(tmp_path):
    """data.held_out_by: source. The held-out text, joined back into whole files, is the same at any
    data.max_document_chars, and so are the benchmark items built from it; no piece of a held-out
    file is trained on."""
    from infinite_compute.data.benchmarks import build_local_items, whole_documents

    val = {}
    for chars in (512, 8000):
        cfg = {"data": {"source": "stdlib", "files": [], "text_field": "text", "max_document_chars": chars,
                        "validation_fraction": 0.05, "held_out_by": "source"}, "seed": 0}
        corpus.prepare_corpus(cfg, str(tmp_path / str(chars)))
        train = {corpus.source_id(r["id"]) for r in corpus.read_jsonl(str(tmp_path / str(chars) / "train.jsonl"))}
        held = list(corpus.read_jsonl(str(tmp_path / str(chars) / "validation.jsonl")))
        assert not train & {corpus.source_id(r["id"]) for r in held}
        val[chars] = sorted((d["id"], d["text"]) for d in whole_documents(held))
    assert val[512] == val[8000] and len(val[512]) > 30
    files = dict(corpus.stdlib_sources())
    name, text = next((n, t) for n, t in val[512] if n in files and len(t) > 5000)
    assert text == open(files[name], encoding="utf-8").read()  # a held-out file, whole again
    kw = dict(tasks=["heldout_next_line", "heldout_minimal_pairs"], items=200, choices=4, context_lines=3,
              min_line_chars=20, seed=0)
    docs = {c: [{"id": i, "text": t} for i, t in v] for c, v in val.items()}
    assert build_local_items(docs[512], **kw) == build_local_items(docs[8000], **kw)
    # by piece (the default), a file's pieces fall on both sides
    pieces = [d for d in corpus.split_long("f.py", "x = 1\n" * 2000, 512)]
    assert len({corpus.held_out(d.doc_id, 0.5) for d in pieces}) == 2
    assert len({corpus.held_out(d.doc_id, 0.5, "source") for d in pieces}) == 1


def test_documents_order_keeps_a_documents_pieces_together_in_order_and_pieces_order_scatters_them(tmp_path):
    """data.order: `documents` puts each source's pieces one after another in their own order, so the
    training text packs every document whole (marin's packing); `pieces` (the default) scatters them.
    The held-out split and the set of training pieces are the same either way."""
    runs = {}
    for order in ("pieces", "documents"):
        cfg = {"data": {"source": "stdlib", "files": [], "text_field": "text", "max_document_chars": 512,
                        "validation_fraction": 0.05, "held_out_by": "source", "order": order}, "seed": 0}
        corpus.prepare_corpus(cfg, str(tmp_path / order))
        runs[order] = [r["id"] for r in corpus.read_jsonl(str(tmp_path / order / "train.jsonl"))]
    assert sorted(runs["pieces"]) == sorted(runs["documents"])

    def runs_of(ids):  # each source's pieces as the order gives them, and how many stretches they make
        by, stretches, last = {}, {}, None
        for i in ids:
            s = corpus.source_id(i)
            by.setdefault(s, []).append(i)
            if s != last:
                stretches[s] = stretches.get(s, 0) + 1
            last = s
        return by, stretches

    by, stretches = runs_of(runs["documents"])
    assert set(stretches.values()) == {1}
    for s, ids in by.items():
        assert ids == ([s] if len(ids) == 1 else [f"{s}#{k}" for k in range(len(ids))])
    files = dict(corpus.stdlib_sources())
    texts = {r["id"]: r["text"] for r in corpus.read_jsonl(str(tmp_path / "documents" / "train.jsonl"))}
    name = next(s for s, ids in by.items() if len(ids) > 5 and s in files)
    assert "".join(texts[i] for i in by[name]) == open(files[name], encoding="utf-8").read()
    _, scattered = runs_of(runs["pieces"])
    assert max(scattered.values()) > 5
