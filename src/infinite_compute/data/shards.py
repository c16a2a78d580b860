"""Corpus shards as they ship, read streaming and checked to be text.

A shard's format comes from its name and is checked against its first bytes:

- `.jsonl`, `.jsonl.gz`, `.jsonl.zst` (`.zstd`): one JSON object per line, its text in a field;
- `.parquet`: a text column (Hugging Face datasets ship this way);
- anything else: plain text (`.txt`, `.py`, ...), one document per file; `.gz` / `.zst` after it
  compress it.

Local paths and URLs (gs://, s3://, https://, file://, through fsspec) are read the same way, in
chunks: memory does not grow with a shard's size. While a shard is read its bytes are hashed and
counted, so the manifest records what was read without a second pass.

What is not text in its declared form stops the read with a ShardError naming the file and where in
it: binary bytes (NUL or other control characters), bytes invalid in `data.encoding` beyond
`data.invalid_text_tolerance` (the share of a shard's bytes that may be replaced by U+FFFD, counted),
a truncated or corrupt compressed stream, a Parquet file without the column, an empty shard.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from typing import Iterator

MAGIC = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd", "parquet": b"PAR1"}
# other binary formats a text shard is sometimes mistaken for: named in the error
OTHER_MAGIC = {b"PK\x03\x04": "a zip archive", b"\x7fELF": "an ELF binary", b"BZh": "a bzip2 stream",
               b"\xfd7zXZ\x00": "an xz stream", b"\x89PNG": "a PNG image", b"%PDF": "a PDF"}
CHUNK = 1 << 20
LONG_LINE = 4 * CHUNK
# C0 control characters that are not whitespace: text does not hold them, binary data does
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f]")


class ShardError(ValueError):
    """A shard that is not what its name says, or not text: names the file and where in it."""

    def __init__(self, path: str, where: str, problem: str):
        super().__init__(f"{path}, {where}: {problem}")
        self.path, self.where, self.problem = path, where, problem

    def __reduce__(self):  # raised in a worker process, it reaches the job's own process intact
        return ShardError, (self.path, self.where, self.problem)


@dataclass
class ShardStats:
    """What reading one shard saw: the manifest's entry for it."""

    path: str
    format: str
    bytes: int = 0  # as stored (compressed, if it is)
    sha256: str = ""
    documents: int = 0
    characters: int = 0
    replaced_bytes: int = 0  # bytes invalid in the encoding, replaced by U+FFFD (within the tolerance)
    control_characters: int = 0  # kept as they are (few: see _TextCheck)
    empty_records: int = 0  # JSON lines or Parquet rows whose text is empty or null

    def entry(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "bytes": self.bytes, "format": self.format,
                "documents": self.documents, "characters": self.characters,
                "replaced_bytes": self.replaced_bytes, "control_characters": self.control_characters,
                "empty_records": self.empty_records}


def shard_format(path: str) -> tuple[str, str | None]:
    """(kind, compression) from a shard's name: kind is jsonl, parquet or text; compression gzip,
    zstd or None."""
    name = path.lower().rsplit("/", 1)[-1]
    compression = None
    for suffix, comp in ((".gz", "gzip"), (".zst", "zstd"), (".zstd", "zstd")):
        if name.endswith(suffix):
            name, compression = name[: -len(suffix)], comp
            break
    if name.endswith(".parquet"):
        if compression:
            raise ShardError(path, "its name", "a compressed Parquet file: Parquet compresses its own pages, "
                                               "give the .parquet file")
        return "parquet", None
    return ("jsonl" if name.endswith((".jsonl", ".ndjson")) else "text"), compression


def describe(kind: str, compression: str | None) -> str:
    return kind + {"gzip": "+gzip", "zstd": "+zstd", None: ""}[compression]


def check_head(path: str, head: bytes, tail: bytes | None = None) -> None:
    """The first bytes of a shard agree with the format its name declares (ShardError if not)."""
    kind, compression = shard_format(path)
    if not head:
        raise ShardError(path, "byte 0", "the file is empty")
    want = MAGIC[compression] if compression else MAGIC["parquet"] if kind == "parquet" else None
    if want is not None:
        if not head.startswith(want):
            raise ShardError(path, "byte 0", f"its name says {describe(kind, compression)}, but it does not "
                                             f"start with the {compression or kind} signature {want!r} ({_looks_like(head)})")
        if kind == "parquet" and tail is not None and not tail.endswith(MAGIC["parquet"]):
            raise ShardError(path, "its last bytes", "a Parquet file must end with b'PAR1': it is truncated")
        return
    for magic, what in (*((m, f"a {k} stream") for k, m in MAGIC.items()), *OTHER_MAGIC.items()):
        if head.startswith(magic):
            raise ShardError(path, "byte 0", f"its name says {describe(kind, None)} text, but it is {what}: "
                                             "name it by its format (.jsonl.gz, .jsonl.zst, .parquet) or decompress it")


def _looks_like(head: bytes) -> str:
    for k, m in MAGIC.items():
        if head.startswith(m):
            return f"it is a {k} file"
    for m, what in OTHER_MAGIC.items():
        if head.startswith(m):
            return f"it is {what}"
    return f"it starts with {head[:8]!r}"


def read_head(path: str, n: int = 8) -> tuple[bytes, bytes | None]:
    """A local shard's first `n` bytes and, for Parquet, its last 4."""
    with open(path, "rb") as f:
        head = f.read(n)
        tail = None
        if shard_format(path)[0] == "parquet" and head:
            f.seek(max(0, os.path.getsize(path) - 4))
            tail = f.read(4)
    return head, tail


class _Hashing(io.RawIOBase):
    """A binary file read through, counting and hashing its bytes as they pass."""

    def __init__(self, f):
        self.f, self.sha, self.n = f, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.f.read(len(b))
        self.sha.update(data)
        self.n += len(data)
        b[: len(data)] = data
        return len(data)


def open_binary(path: str):
    """A local path or URL opened for reading bytes (fsspec only for URLs and buckets)."""
    if "://" in path:
        import fsspec  # only for URLs and buckets: a local corpus does not import it

        return fsspec.open(path, "rb").open()
    return open(path, "rb")


def _zstd_chunks(path: str, raw) -> Iterator[bytes]:
    """The decompressed bytes of a zstd stream (one or more frames), ShardError when it is truncated
    or corrupt: a stream that ends inside a frame is an error, not a shorter shard."""
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    obj, read, pending = dctx.decompressobj(), 0, b""
    while True:
        chunk = pending or raw.read(CHUNK)
        pending = b""
        if not chunk:
            break
        read += len(chunk)
        try:
            out = obj.decompress(chunk)
        except zstandard.ZstdError as e:
            raise ShardError(path, f"compressed byte ~{read}", f"corrupt zstd stream ({e})") from None
        if out:
            yield out
        if obj.eof:  # a frame ended: what follows is the next frame
            pending = obj.unused_data
            obj = dctx.decompressobj()
            if not pending:
                nxt = raw.read(CHUNK)
                if not nxt:
                    return
                pending = nxt
    raise ShardError(path, f"compressed byte {read}", "the zstd stream ends inside a frame: the file is truncated")


def _gzip_chunks(path: str, raw) -> Iterator[bytes]:
    g = gzip.GzipFile(fileobj=raw, mode="rb")
    total = 0
    while True:
        try:
            chunk = g.read(CHUNK)
        except (EOFError, gzip.BadGzipFile, OSError) as e:
            raise ShardError(path, f"after {total} decompressed bytes", f"truncated or corrupt gzip stream ({e})") from None
        if not chunk:
            return
        total += len(chunk)
        yield chunk


def byte_chunks(path: str, raw, compression: str | None) -> Iterator[bytes]:
    if compression == "zstd":
        return _zstd_chunks(path, raw)
    if compression == "gzip":
        return _gzip_chunks(path, raw)
    return iter(lambda: raw.read(CHUNK), b"")


class _TextCheck:
    """Text has no NUL, and few other control characters: a NUL anywhere, or control characters in
    more than BINARY_SHARE of what was read, is binary data. (Web text holds a stray escape now and
    then; files that are not text hold them throughout.)"""

    BINARY_SHARE = 0.01

    def __init__(self, path: str, stats: ShardStats):
        self.path, self.stats, self.chars, self.controls = path, stats, 0, 0

    def __call__(self, text: str, where: str, final: bool = False) -> None:
        self.chars += len(text)
        if "\x00" in text:
            raise ShardError(self.path, where, "binary data: a NUL character (not text in its declared format)")
        self.controls += len(_CONTROL.findall(text))
        if self.controls > self.BINARY_SHARE * self.chars and (final or self.chars > 65536):
            raise ShardError(self.path, where, f"binary data: {self.controls} control characters in {self.chars} "
                                               f"(text in its declared format has almost none)")
        self.stats.control_characters = self.controls


class _Decoder:
    """Incremental decoding in `encoding` that counts the bytes it had to replace, and stops when
    they pass the tolerance (a share of the bytes read), naming where."""

    def __init__(self, path: str, encoding: str, tolerance: float, stats: ShardStats):
        self.path, self.encoding, self.tolerance, self.stats = path, encoding, tolerance, stats
        self.replaced = self.seen = 0

        def count(err: UnicodeDecodeError):
            self.replaced += err.end - err.start
            return "\ufffd", err.end

        name = f"infinite-compute-count-{id(self)}"
        codecs.register_error(name, count)
        try:
            self.dec = codecs.getincrementaldecoder(encoding)(errors=name)
        except LookupError:
            raise ShardError(path, "data.encoding", f"unknown encoding '{encoding}'") from None

    def decode(self, data: bytes, where: str, final: bool = False) -> str:
        text = self.dec.decode(data, final)
        self.seen += len(data)
        if self.replaced > self.tolerance * max(self.seen, 1) and (final or self.seen > 65536):
            raise ShardError(self.path, where, f"{self.replaced} of the {self.seen} bytes read are not valid "
                                               f"{self.encoding} (data.encoding); data.invalid_text_tolerance "
                                               f"allows {self.tolerance:g} of a shard's bytes")
        self.stats.replaced_bytes = self.replaced
        return text


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Byte lines (ending in b'\\n', the last maybe not) of a chunked stream."""
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        for p in parts:
            yield p + b"\n"
    if rest:
        yield rest


def _text_lines(chunks: Iterator[bytes], decoder: _Decoder, check: _TextCheck) -> Iterator[str]:
    """A plain-text shard's lines as str.splitlines(keepends=True) would cut the whole text."""
    buf, done = "", 0
    for chunk in chunks:
        text = decoder.decode(chunk, f"byte ~{done}")
        check(text, f"byte ~{done}")
        buf += text
        done += len(chunk)
        lines = buf.splitlines(keepends=True)
        # the last line may go on in the next chunk (a '\r' may be half of '\r\n'); one longer than
        # LONG_LINE is given in parts (split_lines then cuts it at other places than whole text would)
        buf = lines.pop() if lines else ""
        yield from lines
        if len(buf) > LONG_LINE:
            yield buf
            buf = ""
    text = decoder.decode(b"", f"byte {done}", final=True)
    check(text, f"byte {done}", final=True)
    buf += text
    yield from buf.splitlines(keepends=True)


def read_documents(path: str, data_cfg: dict, stats: ShardStats | None = None, name: str | None = None,
                   allow_empty: bool = False) -> Iterator[tuple[str, Iterator[str] | str]]:
    """(doc_id, text) of a shard's documents in file order; a plain-text shard gives one document
    whose text is an iterator of its lines (corpus.split_lines cuts it without holding it whole).
    Document ids start with `name` (default: the path): the file, then the line or row.

    `stats` (a ShardStats) is filled in as the shard is read; its sha256 and bytes are final when
    the iterator is exhausted. An empty file is an error unless `allow_empty`."""
    name = name or path
    kind, compression = shard_format(path)
    stats = stats if stats is not None else ShardStats(path, describe(kind, compression))
    encoding = data_cfg.get("encoding", "utf-8")
    tolerance = float(data_cfg.get("invalid_text_tolerance", 0.0))
    check = _TextCheck(path, stats)
    with open_binary(path) as f:
        raw = _Hashing(f)
        if kind == "parquet":
            yield from _parquet_documents(path, name, f, raw, data_cfg["text_field"], stats, check)
        else:
            head = raw.read(8)
            if head or not allow_empty:
                check_head(path, head)
            chunks = byte_chunks(path, _Prepended(head, raw), compression)
            decoder = _Decoder(path, encoding, tolerance, stats)
            if kind == "jsonl":
                yield from _jsonl_documents(path, name, chunks, decoder, check, data_cfg["text_field"], stats)
            else:
                yield name, _text_lines(chunks, decoder, check)
        while raw.read(CHUNK):  # the hash covers the whole file, whatever the reader left
            pass
        stats.bytes, stats.sha256 = raw.n, raw.sha.hexdigest()


class _Prepended(io.RawIOBase):
    """A stream whose first bytes were already read (to check the signature): they come first."""

    def __init__(self, head: bytes, f):
        self.head, self.f = head, f

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0:
                out, self.head = self.head + self.f.read(), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            return out + (self.f.read(n - len(out)) if n > len(out) else b"")
        return self.f.read(n)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def _jsonl_documents(path, name, chunks, decoder: _Decoder, check: _TextCheck, text_field: str, stats: ShardStats):
    for i, line in enumerate(_lines(chunks)):
        text_line = decoder.decode(line, f"line {i + 1}")
        if not text_line.strip():
            continue
        try:
            rec = json.loads(text_line)
            text = rec[text_field]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ShardError(path, f"line {i + 1}", f"expected a JSON object with a '{text_field}' field "
                                                    f"(data.text_field): {type(e).__name__}: {e}") from None
        if text is None or text == "":
            stats.empty_records += 1
            continue
        if not isinstance(text, str):
            raise ShardError(path, f"line {i + 1}", f"field '{text_field}' holds {type(text).__name__}, not text")
        check(text, f"line {i + 1}")
        yield f"{name}:{i}", text
    decoder.decode(b"", "the end of the file", final=True)
    check("", "the end of the file", final=True)


def _parquet_documents(path, name, f, raw, column: str, stats: ShardStats, check: _TextCheck):
    import pyarrow as pa
    import pyarrow.parquet as pq

    head = raw.read(4)
    f.seek(0)
    check_head(path, head)
    try:
        pf = pq.ParquetFile(f)
    except (pa.ArrowInvalid, OSError) as e:
        raise ShardError(path, "its footer", f"not a readable Parquet file ({e})") from None
    names = pf.schema_arrow.names
    if column not in names:
        raise ShardError(path, "its schema", f"no column '{column}' (data.text_field); its columns: {names}")
    typ = pf.schema_arrow.field(column).type
    if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
        raise ShardError(path, "its schema", f"column '{column}' is {typ}, not a string column")
    row = 0
    try:
        for batch in pf.iter_batches(columns=[column], batch_size=1024):
            for text in batch.column(0).to_pylist():
                if text is None or text == "":
                    stats.empty_records += 1
                else:
                    check(text, f"row {row}")
                    yield f"{name}:{row}", text
                row += 1
    except (pa.ArrowInvalid, OSError) as e:
        raise ShardError(path, f"row {row}", f"corrupt Parquet data ({e})") from None
    check("", "the end of the file", final=True)
    # the hash: Parquet is read by seeking, so the file is hashed in one pass of its own
    f.seek(0)
    raw.sha, raw.n = hashlib.sha256(), 0


SNIFF_BYTES = 1 << 16


def sniff(path: str, data_cfg: dict) -> None:
    """A quick look at a local shard before any job runs: its signature, and for text its first
    SNIFF_BYTES (decompressed) decoded in data.encoding, or for Parquet its schema. ShardError
    when what it sees is not text in the declared form; the corpus job reads the rest."""
    head, tail = read_head(path)
    check_head(path, head, tail)
    kind, compression = shard_format(path)
    stats = ShardStats(path, describe(kind, compression))
    if kind == "parquet":
        with open(path, "rb") as f:
            next(iter(_parquet_documents(path, path, f, _Hashing(f), data_cfg["text_field"], stats,
                                         _TextCheck(path, stats))), None)
        return
    with open(path, "rb") as f:
        sample = b""
        for chunk in byte_chunks(path, f, compression):
            sample += chunk
            if len(sample) >= SNIFF_BYTES:
                break
    sample = sample[:SNIFF_BYTES]
    decoder = _Decoder(path, data_cfg.get("encoding", "utf-8"), float(data_cfg.get("invalid_text_tolerance", 0.0)),
                       stats)
    text = decoder.decode(sample, f"its first {len(sample)} bytes")
    # the sample may end inside a character: only what the decoder has finished counts
    if decoder.replaced > decoder.tolerance * len(sample):
        raise ShardError(path, f"its first {len(sample)} bytes", f"{decoder.replaced} bytes are not valid "
                                                                 f"{decoder.encoding} (data.encoding); "
                                                                 f"data.invalid_text_tolerance allows {decoder.tolerance:g}")
    _TextCheck(path, stats)(text, f"its first {len(sample)} bytes", final=True)
