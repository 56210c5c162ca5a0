"""The input of the flow kinds (`flow`, `flow_export`, `flow_import`) and their labels.

These models are also the contract between the steps: the export names the records
of the import, an upload that the import reads itself (`source_upload`) or an artifact
of the export (`source_blob`: `RECORDS_ARTIFACT`, or what exports of earlier versions
wrote for uploads: `RECORDS_ARTIFACT`, `ARROW_ARTIFACT`); an errors retry gives
`records`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import jobdock.errors as errors
from jobdock.kinds.ingest import ColumnType, checked_column_names
from jobdock.store.tables import NAME

RECORDS_ARTIFACT = "records.jsonl"
# A CSV source's records as an Arrow IPC stream, as earlier exports wrote them: an
# import submitted by such an export still reads it.
ARROW_ARTIFACT = "records.arrow"
MAX_PAGE_SIZE = 10_000


class FlowFailed(errors.InvalidInput):
    """A flow step cannot run as asked (a missing upload or table, an unreadable file)."""

    code = "flow_failed"



class SourceSpec(BaseModel):
    upload: str | None = Field(None, description="an upload id (CSV or JSONL)")
    table: str | None = Field(None, pattern=NAME.pattern,
                              description="a table of the tenant's data area")

    @model_validator(mode="after")
    def _one(self) -> SourceSpec:
        if (self.upload is None) == (self.table is None):
            raise ValueError("name exactly one of 'upload' and 'table'")
        return self


class ExportSpec(BaseModel):
    export_id: str = Field(min_length=1, max_length=200)
    source: SourceSpec
    page_size: int = Field(100, ge=1, le=MAX_PAGE_SIZE, description="records per page")


class ImportSpec(BaseModel):
    import_id: str = Field(min_length=1, max_length=200)
    table: str = Field(pattern=NAME.pattern, description="the table to upsert into")
    primary_key: list[str] = Field(min_length=1)
    columns: dict[str, ColumnType] = Field(min_length=1,
                                           description="table column → declared type")
    mapping: dict[str, str] = Field(default_factory=dict,
                                    description="table column → source field, when they"
                                    " differ (a dotted name reaches into objects)")
    required: list[str] = Field(default_factory=list, description="columns that must have"
                                " a value")
    ignore_if: dict[str, Any] = Field(default_factory=dict, description="source field →"
                                      " value: records matching all of them are ignored")

    @field_validator("columns")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_column_names(value)

    @model_validator(mode="after")
    def _declared(self) -> ImportSpec:
        for what, names in (("primary_key", self.primary_key), ("required", self.required),
                            ("mapping", list(self.mapping))):
            missing = [c for c in names if c not in self.columns]
            if missing:
                raise ValueError(f"{what} names column(s) {missing} not declared in columns")
        if len(set(self.primary_key)) != len(self.primary_key):
            raise ValueError("primary_key names a column twice")
        return self


class _ByAlias(BaseModel):
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)


class FlowInput(_ByAlias):
    integration_id: str = Field(min_length=1, max_length=200)
    flow_id: str = Field(min_length=1, max_length=200)
    export: ExportSpec
    import_: ImportSpec = Field(alias="import")


class FlowExportInput(FlowInput):
    pass


class FlowImportInput(_ByAlias):
    integration_id: str = Field(min_length=1, max_length=200)
    flow_id: str = Field(min_length=1, max_length=200)
    export_id: str = Field(min_length=1, max_length=200)
    import_: ImportSpec = Field(alias="import")
    page_size: int = Field(100, ge=1, le=MAX_PAGE_SIZE)
    source_blob: str | None = Field(None, description="the export's records (JSON Lines)")
    source_upload: str | None = Field(None, description="an upload whose records the"
                                      " import reads itself (its export counts them)")
    records: list[Any] | None = Field(None, description="records to import instead of the"
                                      " export's (an errors retry: their retry data)")
    retry_of: str | None = None

    @model_validator(mode="after")
    def _source(self) -> FlowImportInput:
        if self.source_blob is None and self.source_upload is None and self.records is None:
            raise ValueError("name the export's records (source_blob or source_upload) or"
                             " give records")
        return self


def flow_labels(input: Any) -> dict[str, str]:
    """The labels of a flow job or step, from its validated input (KindSpec.labels_of)."""
    if not isinstance(input, dict):
        return {}
    export = input.get("export") or {}
    found = {"integration_id": input.get("integration_id"), "flow_id": input.get("flow_id"),
             "export_id": input.get("export_id") or export.get("export_id"),
             "import_id": (input.get("import") or {}).get("import_id")}
    return {k: v for k, v in found.items() if isinstance(v, str)}

