"""How a flow's import maps an extracted record to the table's columns and checks it,
a record at a time (`Mapper.check`) or a page at once with Arrow (`typed_columns`,
`typed_page`: only where that gives exactly what the record check gives).

`checked_page` does both for a page: it types the page at once; when that fails, it
sets apart the records that cheap tests on whole columns find suspect (a missing
required value, text of the wrong shape for its type, ...), types the others at once
(halves of them, down to small pieces, should one still fail) and checks the suspect
ones record by record. So a page with a few failing records keeps most of the speed,
and every record is either a row exactly as `check` makes it or an error with
`check`'s problem.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from jobdock.kinds.flow_input import ImportSpec
from jobdock.kinds.ingest import _FALSE, _TRUE, RowChecker, _arrow_type, typed_batch

Problem = tuple[str, str, str]  # (column, reason, code)
# Pieces of a page this small are checked record by record rather than split again.
_ONE_BY_ONE = 256
# The text a value of each type has when it is not suspect (a filter only: the
# conversion at once and the record check decide).
_SHAPES = {
    "int": r"^[+-]?[0-9]+$",
    "float": r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$",
    "date": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    "datetime": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?"
                r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)?$",
}


class Mapper:
    """Maps an extracted record to the table's columns and checks it."""

    def __init__(self, spec: ImportSpec) -> None:
        self.sources = {column: spec.mapping.get(column, column) for column in spec.columns}
        self.required = list(spec.required)
        self.ignore_if = dict(spec.ignore_if)
        self.checker = RowChecker(dict(spec.columns), spec.primary_key)
        # Each column reads the field of its own name (names have no dots): the record
        # can be checked as it is, without building the mapped record first.
        self.identity = all(column == source for column, source in self.sources.items())
        self.plain = not any("." in source for source in self.sources.values())

    def ignored(self, record: dict[str, Any]) -> bool:
        if not self.ignore_if:
            return False
        for field, wanted in self.ignore_if.items():
            value = _get(record, field)
            if value != wanted and not (isinstance(value, str) and value == _text(wanted)):
                return False
        return True

    def not_ignored(self, page: Any) -> Any:
        """The records of a page of Arrow text columns that `ignored` keeps, at once."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self.ignore_if:
            return page
        names = page.schema.names
        matches = pa.array([True] * page.num_rows)
        for field, wanted in self.ignore_if.items():
            if field not in names:  # the record has no such field: its value is None
                if wanted is not None:
                    return page
                continue
            # A text value matches the wanted value's text (None's is "None"), a
            # missing one matches None.
            values = page.column(names.index(field))
            equal = pc.fill_null(pc.equal(values, _text(wanted)), False)
            if wanted is None:
                equal = pc.or_(equal, pc.is_null(values))
            matches = pc.and_(matches, equal)
        return page.filter(pc.invert(matches))

    def mapped(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record's value of each table column (column <- source field)."""
        if self.plain:
            return {column: record.get(source) for column, source in self.sources.items()}
        return {column: _get(record, source) for column, source in self.sources.items()}

    def check(self, record: dict[str, Any]) -> tuple[tuple[Any, ...] | None, Problem | None]:
        """The table row of an extracted record, or the problem that keeps it out."""
        # A missing column reads None from the record as from the mapped record.
        mapped = record if self.identity else self.mapped(record)
        for column in self.required:
            value = mapped.get(column)
            if value is None or value == "":
                return None, (column, "missing required field", "missing_required_field")
        row, problem = self.checker.check(mapped)
        if problem is not None:
            bad, reason, code = problem
            return None, (bad or "", reason, code)
        return row, None


    def typed_columns(self, page: Any) -> Any | None:
        """A page of Arrow text columns (a CSV's records) typed as `typed_page` would type
        its records, without making records of it; None as there."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self.plain:
            return None
        names = page.schema.names
        arrays = []
        for column, source in self.sources.items():
            values = (page.column(names.index(source)) if source in names
                      else pa.nulls(page.num_rows))  # as a column of None alone
            if column in self.required and (values.null_count or pc.any(
                    pc.equal(values, "")).as_py()):
                return None
            arrays.append(values)
        return self._typed(pa.RecordBatch.from_arrays(arrays, names=list(self.sources)))

    def typed_page(self, records: list[dict[str, Any]]) -> Any | None:
        """The page as an Arrow batch of the table's columns, typed at once by the ingest
        kind's `typed_batch`, when every record passes and converts as `check` would
        convert it; else None, and the page is checked record by record."""
        import pyarrow as pa

        if not self.plain:
            return None
        arrays = []
        for column in self.sources:
            values = [record.get(self.sources[column]) for record in records]
            if column in self.required and any(v is None or v == "" for v in values):
                return None
            # Arrow would make one type of mixed values (ints among floats as floats):
            # only a column of one Python type is typed at once.
            if len({type(v) for v in values if v is not None}) > 1:
                return None
            try:
                arrays.append(pa.array(values))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                return None
        return self._typed(pa.RecordBatch.from_arrays(arrays, names=list(self.sources)))

    def _typed(self, mapped: Any) -> Any | None:
        return typed_batch(mapped, self.checker)

    def suspects(self, page: Any) -> Any:
        """Which records of a page of Arrow text columns cheap tests on whole columns
        cannot pass: a missing required or key value, text of the wrong shape for its
        column's type, a NUL in text (an Arrow array of booleans)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        names = page.schema.names
        bad = pa.array([False] * page.num_rows)
        for (column, source), kind in zip(self.sources.items(), self.checker.kinds,
                                          strict=True):
            needed = column in self.required or column in self.checker.key_set
            if source not in names:
                if needed:
                    return pa.array([True] * page.num_rows)
                continue
            values = page.column(names.index(source))
            if not pa.types.is_string(values.type):
                continue
            test = pc.is_null(values) if needed else pa.array([False] * page.num_rows)
            if needed and (kind == "str" or column in self.required):
                test = pc.or_(test, pc.equal(values, ""))
            if kind in _SHAPES:
                test = pc.or_kleene(test, pc.invert(pc.match_substring_regex(
                    values, _SHAPES[kind])))
            elif kind == "str":
                test = pc.or_kleene(test, pc.match_substring(values, "\x00"))
            else:  # bool
                test = pc.or_kleene(test, pc.invert(pc.is_in(
                    pc.utf8_lower(values), value_set=pa.array(sorted(_TRUE | _FALSE)))))
            bad = pc.or_(bad, pc.fill_null(test, False))
        return bad

    def suspect_records(self, records: list[dict[str, Any]]) -> list[bool]:
        """Which records a cheap test per column cannot pass: a missing required or key
        value, or a value whose Python type is not the one most of the column has (which
        `typed_page` could not type at once)."""
        bad = [False] * len(records)
        for column, source in self.sources.items():
            needed = column in self.required or column in self.checker.key_set
            values = [record.get(source) for record in records]
            kinds = Counter(type(v) for v in values if v is not None)
            usual = kinds.most_common(1)[0][0] if kinds else None
            for i, value in enumerate(values):
                if value is None:
                    bad[i] = bad[i] or needed
                elif type(value) is not usual or (value == "" and column in self.required):
                    bad[i] = True
        return bad


Failure = tuple[dict[str, Any], Problem]  # a failing record and what keeps it out
# What `checked_page` makes of a page: its good rows, its failing records, the ignored.
CheckedPage = tuple[Any | None, list[Failure], int]


@dataclasses.dataclass
class _Checked:
    """What the pieces of a page gave: typed batches and the rows of records checked one
    by one, each with the positions of its records in the page, and the failures."""

    batches: list[tuple[Any, list[int]]] = dataclasses.field(default_factory=list)
    rows: list[tuple[int, tuple[Any, ...]]] = dataclasses.field(default_factory=list)
    failures: list[tuple[int, Failure]] = dataclasses.field(default_factory=list)


def checked_page(mapper: Mapper, page: Any) -> CheckedPage:
    """A page's good records as one Arrow batch of the table's columns (a key's last
    record only; None when there is none), its failing records in order, and the number
    of ignored ones. `page`: an Arrow batch of text columns (a CSV's) or a list of
    records."""
    import pyarrow.compute as pc

    if isinstance(page, list):
        kept: Any = [r for r in page if not mapper.ignored(r)] if mapper.ignore_if else page
        ignored, count = len(page) - len(kept), len(kept)
        typed = mapper.typed_page(kept)
    else:
        kept = mapper.not_ignored(page)
        ignored, count = page.num_rows - kept.num_rows, kept.num_rows
        typed = mapper.typed_columns(kept)
    if typed is not None or not count:
        return _last(mapper, typed), [], ignored
    out = _Checked()
    if not mapper.plain:
        _one_by_one(mapper, _records(kept), list(range(count)), out)
    elif isinstance(kept, list):
        flags = mapper.suspect_records(kept)
        _one_by_one(mapper, [r for r, b in zip(kept, flags, strict=True) if b],
                    [i for i, b in enumerate(flags) if b], out)
        _split(mapper, [r for r, b in zip(kept, flags, strict=True) if not b],
               [i for i, b in enumerate(flags) if not b], out)
    else:
        suspect = mapper.suspects(kept)
        flags = suspect.to_pylist()
        _one_by_one(mapper, kept.filter(suspect).to_pylist(),
                    [i for i, b in enumerate(flags) if b], out)
        _split(mapper, kept.filter(pc.invert(suspect)),
               [i for i, b in enumerate(flags) if not b], out)
    failures = [f for _, f in sorted(out.failures, key=lambda f: f[0])]
    return _joined(mapper, out), failures, ignored


def _records(page: Any) -> list[dict[str, Any]]:
    return page if isinstance(page, list) else list(page.to_pylist())


def _split(mapper: Mapper, piece: Any, where: list[int], out: _Checked) -> None:
    """Type `piece` (records, or an Arrow batch of text columns) at once, or its halves
    when that fails, down to pieces checked record by record."""
    if not where:
        return
    arrow = not isinstance(piece, list)
    typed = mapper.typed_columns(piece) if arrow else mapper.typed_page(piece)
    if typed is not None:
        out.batches.append((typed, where))
        return
    if len(where) <= _ONE_BY_ONE:
        _one_by_one(mapper, _records(piece), where, out)
        return
    half = len(where) // 2
    _split(mapper, piece.slice(0, half) if arrow else piece[:half], where[:half], out)
    _split(mapper, piece.slice(half) if arrow else piece[half:], where[half:], out)


def _one_by_one(mapper: Mapper, records: list[dict[str, Any]], where: list[int],
                out: _Checked) -> None:
    for position, record in zip(where, records, strict=True):
        row, problem = mapper.check(record)
        if row is None:
            out.failures.append((position, (record, problem or ("", "", ""))))
        else:
            out.rows.append((position, row))


def _joined(mapper: Mapper, out: _Checked) -> Any | None:
    """The good rows of a page's pieces in one batch, in the page's order."""
    import pyarrow as pa

    batches = [batch for batch, _ in out.batches]
    where = [p for _, positions in out.batches for p in positions]
    if out.rows:
        schema = _schema(mapper)
        columns = list(zip(*(row for _, row in out.rows), strict=True))
        batches.append(pa.RecordBatch.from_arrays(
            [pa.array(values, type=schema.field(i).type) for i, values in enumerate(columns)],
            schema=schema))
        where.extend(p for p, _ in out.rows)
    if not batches:
        return None
    table = pa.Table.from_batches(batches).combine_chunks()
    order = sorted(range(len(where)), key=where.__getitem__)
    return _last(mapper, table.take(order).to_batches()[0])


def _schema(mapper: Mapper) -> Any:
    import pyarrow as pa

    checker = mapper.checker
    return pa.schema([(name, _arrow_type(kind))
                      for name, kind in zip(checker.names, checker.kinds, strict=True)])


def _last(mapper: Mapper, batch: Any | None) -> Any | None:
    return None if batch is None else last_of_each_key(batch, mapper.checker.key_positions)


def last_of_each_key(batch: Any, key_positions: list[int]) -> Any:
    """The batch without the rows whose key a later row repeats (the last one wins)."""
    import pyarrow.compute as pc

    if len(key_positions) == 1 and pc.count_distinct(
            batch.column(key_positions[0])).as_py() == batch.num_rows:
        return batch  # the usual case, found without a Python object per key
    keys = [batch.column(i).to_pylist() for i in key_positions]
    last = {key: i for i, key in enumerate(
        keys[0] if len(keys) == 1 else zip(*keys, strict=True))}
    if len(last) == batch.num_rows:
        return batch
    return batch.take(sorted(last.values()))


def _get(record: dict[str, Any], path: str) -> Any:
    if path in record:
        return record[path]
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
