"""Corpus shards as they ship (data/shards.py): every format gives the same documents, what is not
text stops the read naming the file and where, and the streamed corpus is the same whatever its
buckets and workers."""

import gzip
import json
import os
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from conftest import ROOT

from infinite_compute.data import corpus, shards
from infinite_compute.study.config import ConfigError

CFG = {"source": "files", "text_field": "text", "max_document_chars": 8000, "validation_fraction": 0.2,
       "encoding": "utf-8", "invalid_text_tolerance": 0.0}


def texts(n: int, seed: int = 0) -> list[str]:
    """Real text: lines of this project's own sources, in documents of 5-40 lines (some unicode)."""
    lines = []
    for base, _, names in os.walk(os.path.join(ROOT, "src", "infinite_compute")):
        for name in sorted(names):
            if name.endswith(".py"):
                lines.extend(open(os.path.join(base, name), encoding="utf-8").read().splitlines(keepends=True))
    rng = random.Random(seed)
    out = []
    for k in range(n):
        a = rng.randrange(len(lines) - 40)
        out.append(f"# doc {k} — ünïcode\n" + "".join(lines[a : a + rng.randrange(5, 40)]))
    return out


def jsonl_bytes(docs: list[str]) -> bytes:
    return "".join(json.dumps({"text": t, "url": f"u{i}"}) + "\n" for i, t in enumerate(docs)).encode()


def write_shards(root, docs: list[str]) -> dict[str, str]:
    """The same documents as each format ships: kind -> path."""
    os.makedirs(root, exist_ok=True)
    raw = jsonl_bytes(docs)
    paths = {k: os.path.join(root, f"shard.{k}") for k in ("jsonl", "jsonl.gz", "jsonl.zst", "parquet")}
    open(paths["jsonl"], "wb").write(raw)
    open(paths["jsonl.gz"], "wb").write(gzip.compress(raw))
    half = raw.index(b"\n", len(raw) // 2) + 1  # two zstd frames, as a streaming writer makes them
    c = zstandard.ZstdCompressor()
    open(paths["jsonl.zst"], "wb").write(c.compress(raw[:half]) + c.compress(raw[half:]))
    pq.write_table(pa.table({"url": [f"u{i}" for i in range(len(docs))], "text": docs}), paths["parquet"],
                   row_group_size=7)
    return paths


def read(path, **cfg):
    stats = shards.ShardStats(path, "?")
    docs = [(i, t if isinstance(t, str) else "".join(t)) for i, t in shards.read_documents(path, {**CFG, **cfg}, stats)]
    return docs, stats


def test_every_format_gives_the_same_documents(tmp_path):
    docs = texts(40)
    paths = write_shards(tmp_path, docs)
    for kind, path in paths.items():
        got, stats = read(path)
        assert [t for _, t in got] == docs, kind
        assert [i for i, _ in got] == [f"{path}:{k}" for k in range(40)]  # ids: the file, then line or row
        assert stats.bytes == os.path.getsize(path) and stats.sha256 == corpus.sha256_bytes(open(path, "rb").read())
    remote, _ = read(f"file://{paths['jsonl.zst']}")  # a URL through fsspec: the same text
    assert [t for _, t in remote] == docs
    # plain text: one document per file, cut at lines into pieces exactly as the whole text would be
    big = "".join(docs) * 3
    (tmp_path / "big.txt").write_text(big, encoding="utf-8")
    got, _ = read(str(tmp_path / "big.txt"))
    assert got == [(str(tmp_path / "big.txt"), big)]
    streamed = list(corpus.shard_documents("big", str(tmp_path / "big.txt"), {**CFG, "max_document_chars": 500},
                                           shards.ShardStats("big", "text")))
    assert streamed == list(corpus.split_long("big", big, 500)) and len(streamed) > 10
    # another encoding, declared
    (tmp_path / "latin.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1") * 50)
    assert read(str(tmp_path / "latin.txt"), encoding="latin-1")[0][0][1] == "café crème\n" * 50


@pytest.mark.parametrize("make, words", [
    (lambda p: p.with_suffix(".txt").write_bytes(random.Random(0).randbytes(400_000)), ["blob.txt", "byte"]),
    (lambda p: p.with_suffix(".txt").write_bytes("café crème\n".encode("latin-1") * 9000),
     ["blob.txt", "not valid utf-8", "data.invalid_text_tolerance"]),
    (lambda p: p.with_suffix(".jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress(jsonl_bytes(texts(60)))[:-40]), ["blob.jsonl.zst", "truncated"]),
    (lambda p: p.with_suffix(".jsonl.gz").write_bytes(gzip.compress(jsonl_bytes(texts(60)))[:-40]),
     ["blob.jsonl.gz", "truncated or corrupt gzip"]),
    (lambda p: p.with_suffix(".jsonl.gz").write_bytes(jsonl_bytes(texts(5))), ["blob.jsonl.gz", "gzip signature"]),
    (lambda p: p.with_suffix(".txt").write_bytes(gzip.compress(b"hello\n" * 100)), ["blob.txt", "gzip stream"]),
    (lambda p: pq.write_table(pa.table({"body": texts(5)}), p.with_suffix(".parquet")),
     ["blob.parquet", "no column 'text'", "body"]),
    (lambda p: p.with_suffix(".jsonl").write_bytes(b'{"text": "a"}\n{"txt": "b"}\n'), ["blob.jsonl", "line 2", "'text'"]),
    (lambda p: p.with_suffix(".jsonl").write_bytes(b'{"text": ""}\n\n'), ["blob.jsonl", "empty shard"]),
    (lambda p: p.with_suffix(".jsonl").write_bytes(jsonl_bytes(["ok"]) + b'{"text": "a\\u0000b"}\n'),
     ["blob.jsonl", "line 2", "NUL"]),
], ids=["random bytes", "latin-1 as utf-8", "truncated zstd", "truncated gzip", "gzip name, plain bytes",
        "text name, gzip bytes", "parquet without the column", "jsonl without the field", "empty shard", "NUL"])
def test_what_is_not_text_stops_the_corpus_naming_the_file_and_where(tmp_path, make, words):
    make(tmp_path / "blob")
    (path,) = [str(p) for p in tmp_path.iterdir()]
    with pytest.raises(shards.ShardError) as e:
        corpus.collect_documents({**CFG, "files": [path]})
    for w in words:
        assert w in str(e.value), str(e.value)


def test_a_tolerance_lets_a_few_bad_bytes_through_and_counts_them(tmp_path):
    good = "".join(texts(30)).encode()
    path = tmp_path / "mostly.txt"
    path.write_bytes(good[:5000] + b"\xff\xfe" + good[5000:])
    with pytest.raises(shards.ShardError, match="2 of the"):
        corpus.collect_documents({**CFG, "files": [str(path)]})
    docs, files = corpus.collect_documents({**CFG, "files": [str(path)], "invalid_text_tolerance": 0.001})
    assert files[0]["replaced_bytes"] == 2 and "\ufffd\ufffd" in "".join(d.text for d in docs)


def test_the_streamed_corpus_is_the_same_whatever_its_buckets_workers_and_shard_order(tmp_path, monkeypatch):
    docs = texts(300, seed=1)
    for k in range(4):  # four shards of the four formats
        paths = write_shards(tmp_path / f"s{k}", docs[75 * k : 75 * (k + 1)])
        for kind, p in paths.items():
            if not p.endswith(("jsonl", "jsonl.gz", "jsonl.zst", "parquet")[k]):
                os.remove(p)
    files = sorted(str(p) for p in tmp_path.glob("s*/shard.*"))
    cfg = {"data": {**CFG, "files": files}, "seed": 3}

    def run(name, **kw):
        m = corpus.prepare_corpus(cfg, str(tmp_path / name), **kw)
        return m, [open(tmp_path / name / f"{s}.jsonl", "rb").read() for s in ("train", "validation")]

    m1, one = run("one")
    monkeypatch.setattr(corpus, "BUCKET_BYTES", 2000)  # many order buckets, a task per shard
    m2, many = run("many", workers=2)
    cfg["data"]["files"] = files[::-1]
    _, reversed_ = run("reversed")
    assert one == many == reversed_
    assert m1["documents"] == m2["documents"] and sum(m1["documents"].values()) == 300
    assert [f["format"] for f in m1["files"]] == ["jsonl", "jsonl+gzip", "jsonl+zstd", "parquet"]
    assert all(f["documents"] == 75 and f["characters"] > 0 for f in m1["files"])
    assert not [p for p in os.listdir(tmp_path / "many") if p.startswith(".spill")]  # spill files are gone
    val = [json.loads(line)["id"] for line in one[1].decode().splitlines()]
    assert val and all(corpus.held_out(i, CFG["validation_fraction"]) for i in val)


def test_bad_shards_fail_before_any_job_and_good_ones_pass(tmp_path):
    """The Snakefile's onstart check (corpus.check_local_files) sniffs every local shard."""
    paths = write_shards(tmp_path, texts(50))
    data = {**CFG, "files": list(paths.values()), "token_budgets": [4096], "validation_tokens": 512}
    corpus.check_local_files(data)
    (tmp_path / "blob.txt").write_bytes(random.Random(1).randbytes(100_000))
    with pytest.raises(shards.ShardError, match="blob.txt"):
        corpus.check_local_files({**data, "files": [*paths.values(), str(tmp_path / "blob.txt")]})
    with pytest.raises(ConfigError, match="data.token_budgets"):
        corpus.check_local_files({**data, "files": [paths["jsonl"]], "token_budgets": [10**8]})


@pytest.mark.workflow
def test_the_data_stages_take_shards_as_they_ship_through_snakemake(tmp_path):
    """corpus -> tokenizer -> token streams -> budget caches on shards of every format, with 2
    workers; a truncated shard stops the corpus job (naming it) before any tokenizer is trained."""
    import yaml
    from test_workflow import project_copy, smk

    from infinite_compute.data.tokens import read_token_stream

    wd = project_copy(tmp_path / "shards")
    docs = texts(1600, seed=2)
    kinds = ("jsonl", "jsonl.gz", "jsonl.zst", "parquet")
    for k, kind in enumerate(kinds):
        paths = write_shards(os.path.join(wd, "corpus", f"s{k}"), docs[400 * k : 400 * (k + 1)])
        for other, p in paths.items():
            if other != kind:
                os.remove(p)
    cfg = {"data": {"source": "files", "files": ["corpus/s*/shard.*"]}, "resources": {"data_workers": 2}}
    yaml.safe_dump(cfg, open(os.path.join(wd, "shards.yaml"), "w"))
    args = ("figures/all", "--until", "build_cache", "--configfile", ".test/config.yaml", "shards.yaml", "--cores", "2")
    smk(wd, *args)
    manifest = json.load(open(os.path.join(wd, "results", "data", "corpus", "manifest.json")))
    assert [f["format"] for f in manifest["files"]] == ["jsonl", "jsonl+gzip", "jsonl+zstd", "parquet"]
    assert sum(manifest["documents"].values()) == 1600 and manifest["skipped"] == {"replaced_bytes": 0, "empty_records": 0}
    stream, offsets = read_token_stream(os.path.join(wd, "results", "data", "tokens", "train"))
    for budget in (4096, 8192, 16384):
        info = json.load(open(os.path.join(wd, "results", "data", "cache", f"d{budget}", "info.json")))
        assert info["train_tokens"] == budget and info["train_sha256"] == corpus.sha256_bytes(stream[:budget].tobytes())

    # a shard cut short after its first frames: the sniff before the jobs passes, the corpus job stops
    bad = os.path.join(wd, "corpus", "s2", "shard.jsonl.zst")
    raw = open(bad, "rb").read()
    open(bad, "wb").write(raw[: len(raw) - 200])
    p = smk(wd, *args, "--forceall", check=False)
    log = open(os.path.join(wd, "logs", "data", "prepare_corpus.log")).read()
    assert p.returncode != 0 and "corpus/s2/shard.jsonl.zst" in log and "truncated" in log, log[-2000:]
    assert not os.path.exists(os.path.join(wd, "results", "data", "corpus", "train.jsonl"))
