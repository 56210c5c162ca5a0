"""How a flow's import maps an extracted record to the table's columns and checks it,
a record at a time (`Mapper.check`) or a page at once with Arrow (`typed_columns`,
`typed_page`: only where that gives exactly what the record check gives)."""

from __future__ import annotations

from typing import Any

from jobdock.kinds.flow_input import ImportSpec
from jobdock.kinds.ingest import RowChecker, typed_batch

Problem = tuple[str, str, str]  # (column, reason, code)


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
        batch = typed_batch(mapped, self.checker)
        return None if batch is None else last_of_each_key(batch, self.checker.key_positions)


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
