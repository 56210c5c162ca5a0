"""Streaming readers of the files the `ingest` kind loads: CSV, JSONL, Parquet, Avro.

`read_records(f, name)` yields `Record`s one at a time: a 1-based position
(the line for CSV and JSONL, the row for Parquet and Avro) and the record as
a dict, or the reason it could not be read. Nothing reads a whole file into
memory: CSV and JSONL go line by line, Parquet by row batches, Avro by block.

`read_batches(f, name, wanted)` reads the same records, but gives CSV and
Parquet as `ArrowRows` where it can: many records at once as Arrow columns
(CSV values as text, Parquet values typed), parsed in C++ instead of one by
one in Python. Its CSV path cuts the file into blocks at line ends and hands
a block to Arrow only when Arrow's reading is certainly the `csv` module's:
one record per line, every field count right, quotes only around whole
fields, valid UTF-8. Anything else (blank lines, a line break inside quotes, a
short row, `"a,"b"`, a quoted header) goes, from that block to the end of the
file, through the `csv` module as `read_records` does, so positions, error
records and failures stay the same.

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
import re
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import IO, Any, BinaryIO, cast

FORMATS = ("csv", "jsonl", "parquet", "avro")
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_AVRO_MAGIC = b"Obj\x01"
_BY_SUFFIX = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
              ".parquet": "parquet", ".pq": "parquet", ".avro": "avro"}
_PARQUET_BATCH = 4_096
# Rows per Arrow batch of a Parquet file in read_batches (one batch is in memory at once).
_PARQUET_ARROW_BATCH = 32_768
# Bytes of CSV per Arrow block in read_batches: big enough that Arrow's per-call cost
# vanishes, small enough that a block and its columns stay a few MB.
_CSV_BLOCK = 4 * 1024 * 1024
# A quote that neither opens nor closes a field (`a"b`, `"a""b"`, `"a"b`): the csv module
# refuses some of these where Arrow reads a value, so such a block is left to the csv module.
_ODD_QUOTE = re.compile(rb'[^,\n]"[^,\r\n]')
# Lines of fields whose quotes pair as the csv module pairs them: a quoted field (no quote
# inside: a doubled one is an _ODD_QUOTE) ends at a delimiter or a line end; an unquoted one
# does not start with a quote. In `"a,"b"` the second quote closes the field before `b`: the
# csv module refuses the file there, Arrow would read `a,b"`, so such a block is left to the
# csv module. Possessive (no backtracking): ~17 ms per 4 MB block, run only on blocks with
# a quote.
_FIELD = rb'(?:"[^"\n]*+"|[^,"\n][^,\n]*+|)'
_PAIRED_QUOTES = re.compile(rb"(?:(?:" + _FIELD + rb",)*+" + _FIELD + rb"(?:\r?\n|\Z))*+")
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


@dataclass(slots=True)
class ArrowRows:
    """Records read at once: `batch` (a pyarrow Table or RecordBatch, one column per
    wanted field the file has) holds the record at position `first + i` in row i."""

    batch: Any
    first: int
    unit: str

    def records(self) -> list[Record]:
        """The same records one by one, as `read_records` gives them."""
        return [Record(self.first + i, values, unit=self.unit)
                for i, values in enumerate(self.batch.to_pylist())]


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
    for item in _read(raw, name, None):
        if isinstance(item, ArrowRows):  # pragma: no cover - only asked for with `wanted`
            yield from item.records()
        else:
            yield item


def read_batches(raw: BinaryIO, name: str, wanted: list[str]) -> Iterator[Record | ArrowRows]:
    """The records of one file, streamed, as `ArrowRows` where the format allows (CSV,
    Parquet) and `Record`s otherwise; only the `wanted` fields are kept in ArrowRows.
    Raises UnreadableFile (the file as a whole)."""
    return _read(raw, name, wanted)


def _read(raw: BinaryIO, name: str, wanted: list[str] | None) -> Iterator[Record | ArrowRows]:
    stream: IO[bytes] = raw if hasattr(raw, "peek") else io.BufferedReader(_Raw(raw))
    try:
        first = _peek(stream, 2)
        compressed = first == _GZIP_MAGIC or name.lower().endswith(".gz")
        if compressed:
            stream = cast(IO[bytes], gzip.GzipFile(fileobj=stream, mode="rb"))
        fmt = detect_format(name, _peek(stream, 8))
        if fmt == "csv":
            yield from (_csv(stream, name) if wanted is None
                        else _csv_arrow(stream, name, wanted))
        elif fmt == "jsonl":
            yield from _jsonl(stream, name)
        elif fmt == "parquet":
            if wanted is None:
                yield from _parquet(stream, name, compressed)
            else:
                yield from _parquet_arrow(stream, name, compressed, wanted)
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


def _text(stream: Iterable[bytes], name: str, bom: bool = True) -> Iterator[str]:
    """Lines of UTF-8 text (a BOM is dropped at the start of a file, `bom`); bytes that
    are not UTF-8 fail the file."""
    decoder = codecs.getincrementaldecoder("utf-8-sig" if bom else "utf-8")("strict")
    try:
        for line in stream:
            yield decoder.decode(line)
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"{name}: is not UTF-8 text: {exc}") from exc


def _csv(stream: Iterable[bytes], name: str) -> Iterator[Record]:
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.reader(_text(stream, name), strict=True)
    try:
        header = _csv_header(next(reader, None), name)
    except csv.Error as exc:
        raise UnreadableFile(f"{name}: is not valid CSV (line {reader.line_num}): {exc}") from exc
    yield from _csv_body(reader, header, name, 0)


def _csv_header(row: list[str] | None, name: str) -> list[str]:
    if not row or not any(h.strip() for h in row):
        raise UnreadableFile(f"{name}: has no CSV header row")
    return [h.strip() for h in row]


def _csv_body(reader: Any, header: list[str], name: str, offset: int) -> Iterator[Record]:
    """The records of a csv.reader whose first line is line `offset` + 1 of the file."""
    try:
        line = offset + reader.line_num
        for row in reader:
            position, line = line + 1, offset + reader.line_num
            if not row:
                continue  # a blank line
            if len(row) != len(header):
                yield Record(position, None, f"expected {len(header)} fields, found {len(row)}")
                continue
            # CSV cannot tell an empty text from a missing value: both are missing.
            yield Record(position, {h: v if v != "" else None
                                    for h, v in zip(header, row, strict=True)})
    except csv.Error as exc:
        raise UnreadableFile(f"{name}: is not valid CSV (line {offset + reader.line_num}):"
                             f" {exc}") from exc


def _csv_arrow(stream: IO[bytes], name: str, wanted: list[str]) -> Iterator[Record | ArrowRows]:
    """CSV in Arrow blocks where that reads exactly as `_csv`; see the module's text."""
    head = stream.readline()
    # A header with a quote may run over several lines: the csv module reads that file.
    if b'"' in head or b"\r" in head.rstrip(b"\r\n"):
        yield from _csv(chain([head], stream), name)
        return
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    header = _csv_header(next(csv.reader(_text([head], name)), None), name)
    columns = [h for h in header if h in wanted]
    # A record as a dict keeps the last of a repeated name; no wanted column: all missing.
    if len(set(header)) != len(header) or not columns:
        yield from _csv_body(csv.reader(_text(stream, name, bom=False), strict=True), header,
                             name, 1)
        return
    line = 1  # the last line read
    carry = b""
    while True:
        data = stream.read(_CSV_BLOCK)
        block = carry + data
        if not block:
            return
        cut = len(block) if not data else _record_end(block)
        if cut < 0:  # no line end outside quotes yet: read on
            carry = block
            continue
        piece, carry = block[:cut], block[cut:]
        rows = _arrow_block(piece, header, columns)
        if rows is None:
            # From here to the end, the csv module reads, as it would have from the start.
            rest = _joined(piece + carry, stream)
            yield from _csv_body(csv.reader(_text(rest, name, bom=False), strict=True),
                                 header, name, line)
            return
        yield ArrowRows(rows, line + 1, "line")
        line += rows.num_rows


def _joined(head: bytes, stream: IO[bytes]) -> Iterator[bytes]:
    """The lines of `head` then of `stream`, `head`'s unfinished last line finished by
    the stream's first."""
    last = b""
    for line in io.BytesIO(head):
        if line.endswith(b"\n"):
            yield line
        else:
            last = line
    line = last + stream.readline()
    if line:
        yield line
    yield from stream


def _record_end(block: bytes) -> int:
    """The end (after its newline) of the last line of `block` that ends outside quotes
    (counting from a record's start), or -1. A wrong guess is caught by `_arrow_block`."""
    end = len(block)
    if b'"' not in block:  # a search in C, where a count of quotes is a slower pass
        return block.rfind(b"\n") + 1 or -1
    quotes = block.count(b'"')
    while True:
        newline = block.rfind(b"\n", 0, end)
        if newline < 0:
            return -1
        quotes -= block.count(b'"', newline + 1, end)
        if quotes % 2 == 0:
            return newline + 1
        end = newline


def _arrow_block(piece: bytes, header: list[str], columns: list[str]) -> Any:
    """The block's records as an Arrow table of text columns, or None when Arrow might read
    it otherwise than the csv module: any line that is not exactly one record of the right
    width (blank, short, long, or a line break inside quotes), a quote out of place, or
    bytes that are not UTF-8."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    lines = piece.count(b"\n") + (0 if piece.endswith(b"\n") else 1)
    if b'"' in piece and (_ODD_QUOTE.search(piece) or not _PAIRED_QUOTES.fullmatch(piece)):
        return None
    try:
        if not _utf8(piece):  # the csv module would refuse the whole file (Arrow: no check)
            return None
        table = pacsv.read_csv(
            pa.py_buffer(piece),
            # One block of Arrow's for the piece: one chunk per column, nothing to combine.
            read_options=pacsv.ReadOptions(column_names=header, use_threads=False,
                                           block_size=len(piece) + 1),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in columns}, include_columns=columns,
                null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=True,
                check_utf8=False))
    except pa.ArrowInvalid:
        return None
    return table if table.num_rows == lines else None


def _utf8(piece: bytes) -> bool:
    """Whether `piece` is UTF-8, as strict as Python's decoder: Arrow's check, which does
    not hold the GIL (a decode would, and copy the text), as one large binary value."""
    import pyarrow as pa

    offsets = pa.py_buffer(struct.pack("<qq", 0, len(piece)))
    value = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(piece)])
    try:
        value.cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


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
    position = 0
    for batch in _parquet_batches(stream, name, compressed, _PARQUET_BATCH, None):
        for values in batch.to_pylist():
            position += 1
            yield Record(position, values, unit="row")


def _parquet_arrow(stream: IO[bytes], name: str, compressed: bool,
                   wanted: list[str]) -> Iterator[ArrowRows]:
    position = 0
    for batch in _parquet_batches(stream, name, compressed, _PARQUET_ARROW_BATCH, wanted):
        yield ArrowRows(batch, position + 1, "row")
        position += batch.num_rows


def _parquet_batches(stream: IO[bytes], name: str, compressed: bool, size: int,
                     wanted: list[str] | None) -> Iterator[Any]:
    """The file's Arrow batches of `size` rows, with the `wanted` columns it has (all when
    None); UnreadableFile when it is not Parquet or its data is corrupt."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source, temporary = _seekable(stream, compressed)
    try:
        try:
            parquet = pq.ParquetFile(source)
            names = parquet.schema_arrow.names
        except (pa.ArrowException, ValueError) as exc:
            raise UnreadableFile(f"{name}: is not a readable Parquet file: {exc}") from exc
        columns = [c for c in wanted if c in names] if wanted is not None else None
        position = 0
        try:
            for batch in parquet.iter_batches(batch_size=size, columns=columns or None):
                yield batch
                position += batch.num_rows
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
