"""Streaming readers of the files the `ingest` kind loads: CSV, JSONL, Parquet, Avro.

`read_records(f, name)` yields `Record`s one at a time: a 1-based position
(the line for CSV and JSONL, the row for Parquet and Avro) and the record as
a dict, or the reason it could not be read. Nothing reads a whole file into
memory: CSV and JSONL go line by line, Parquet by row batches, Avro by block.

The format comes from the name (`.csv`, `.jsonl`/`.ndjson`/`.json`, `.parquet`/
`.pq`, `.avro`, each optionally `.gz`); when the name says nothing, from the
content (the Parquet and Avro magic bytes, a JSON object on the first line,
else CSV). Gzip is recognised by its magic bytes whatever the name.

A file that cannot be read at all (bad gzip, not Parquet, no CSV header, a
first JSONL line that is not JSON, ...) raises `UnreadableFile`; a single bad
line further on is a `Record` with an `error`. pyarrow and fastavro are imported
only when such a file is read, so workers that never ingest do not load them.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, cast

FORMATS = ("csv", "jsonl", "parquet", "avro")
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_AVRO_MAGIC = b"Obj\x01"
_BY_SUFFIX = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
              ".parquet": "parquet", ".pq": "parquet", ".avro": "avro"}
_PARQUET_BATCH = 4_096
# Largest CSV field accepted (the csv module's default is 128 KiB).
_CSV_FIELD_LIMIT = 16 * 1024 * 1024


class UnreadableFile(Exception):
    """The file cannot be read at all (its table fails with this message)."""


@dataclass(slots=True)
class Record:
    position: int  # 1-based line (CSV, JSONL) or row (Parquet, Avro), as `unit` says
    values: dict[str, Any] | None
    error: str | None = None
    unit: str = "line"


def detect_format(name: str, head: bytes) -> str:
    """The format of a file named `name` whose first bytes (uncompressed) are `head`."""
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    if head.startswith(_AVRO_MAGIC):
        return "avro"
    lower = name.lower().removesuffix(".gz")
    for suffix, found in _BY_SUFFIX.items():
        if lower.endswith(suffix):
            return found
    return "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def read_records(raw: BinaryIO, name: str) -> Iterator[Record]:
    """The records of one file, streamed. Raises UnreadableFile (the file as a whole)."""
    stream: IO[bytes] = raw if hasattr(raw, "peek") else io.BufferedReader(_Raw(raw))
    try:
        first = _peek(stream, 2)
        compressed = first == _GZIP_MAGIC or name.lower().endswith(".gz")
        if compressed:
            stream = cast(IO[bytes], gzip.GzipFile(fileobj=stream, mode="rb"))
        fmt = detect_format(name, _peek(stream, 8))
        if fmt == "csv":
            yield from _csv(stream, name)
        elif fmt == "jsonl":
            yield from _jsonl(stream, name)
        elif fmt == "parquet":
            yield from _parquet(stream, name, compressed)
        else:
            yield from _avro(stream, name)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise UnreadableFile(f"{name}: cannot be read: {exc}") from exc


def _peek(stream: IO[bytes], size: int) -> bytes:
    """The next `size` bytes (fewer at the end), left unread."""
    peek: Any = getattr(stream, "peek")  # noqa: B009 - BufferedReader and GzipFile have it
    data: bytes = peek(size)
    return data[:size]


class _Raw(io.RawIOBase):
    """A binary stream without `peek`, as a raw stream that BufferedReader can wrap."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._source.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _text(stream: IO[bytes], name: str) -> Iterator[str]:
    """Lines of UTF-8 text (a BOM is dropped); bytes that are not UTF-8 fail the file."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    try:
        for line in stream:
            yield decoder.decode(line)
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"{name}: is not UTF-8 text: {exc}") from exc


def _csv(stream: IO[bytes], name: str) -> Iterator[Record]:
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.reader(_text(stream, name), strict=True)
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise UnreadableFile(f"{name}: has no CSV header row")
        header = [h.strip() for h in header]
        line = reader.line_num
        for row in reader:
            position, line = line + 1, reader.line_num
            if not row:
                continue  # a blank line
            if len(row) != len(header):
                yield Record(position, None, f"expected {len(header)} fields, found {len(row)}")
                continue
            # CSV cannot tell an empty text from a missing value: both are missing.
            yield Record(position, {h: v if v != "" else None
                                    for h, v in zip(header, row, strict=True)})
    except csv.Error as exc:
        raise UnreadableFile(f"{name}: is not valid CSV (line {reader.line_num}): {exc}") from exc


def _jsonl(stream: IO[bytes], name: str) -> Iterator[Record]:
    seen_one = False
    for number, line in enumerate(_text(stream, name), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            if not seen_one:
                raise UnreadableFile(f"{name}: is not JSON Lines (line {number}: {exc})") from exc
            yield Record(number, None, f"not JSON: {exc}")
            continue
        seen_one = True
        if not isinstance(value, dict):
            yield Record(number, None, f"a JSON {type(value).__name__}, not an object")
            continue
        yield Record(number, value)


def _seekable(stream: IO[bytes], compressed: bool) -> tuple[IO[bytes], bool]:
    """A seekable file with the stream's content: the stream itself, or a temporary copy
    on disk (Parquet readers seek to the footer; gzip and some blob streams cannot)."""
    if not compressed and stream.seekable():
        return stream, False
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the caller
    shutil.copyfileobj(stream, spool, 1024 * 1024)
    spool.seek(0)
    return spool, True


def _parquet(stream: IO[bytes], name: str, compressed: bool) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source, temporary = _seekable(stream, compressed)
    try:
        try:
            parquet = pq.ParquetFile(source)
        except (pa.ArrowException, ValueError) as exc:
            raise UnreadableFile(f"{name}: is not a readable Parquet file: {exc}") from exc
        position = 0
        try:
            for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH):
                for values in batch.to_pylist():
                    position += 1
                    yield Record(position, values, unit="row")
        except (pa.ArrowException, ValueError) as exc:
            raise UnreadableFile(f"{name}: Parquet data is corrupt after row {position}:"
                                 f" {exc}") from exc
    finally:
        if temporary:
            source.close()


def _avro(stream: IO[bytes], name: str) -> Iterator[Record]:
    import fastavro

    try:
        reader = fastavro.reader(stream)
    except Exception as exc:  # fastavro raises plain ValueError/TypeError/... on bad headers
        raise UnreadableFile(f"{name}: is not a readable Avro file: {exc}") from exc
    position = 0
    try:
        for values in reader:
            position += 1
            if not isinstance(values, dict):
                yield Record(position, None, "an Avro value that is not a record", "row")
                continue
            yield Record(position, values, unit="row")
    except Exception as exc:  # corrupt blocks: the codec's or fastavro's own errors
        raise UnreadableFile(f"{name}: Avro data is corrupt after row {position}:"
                             f" {exc}") from exc
