"""From source rows (decoded text values) to warehouse fact rows, and the columns the loader knows.

The loader knows the source tables column by column. A change arriving with
any other set of columns (a migration the loader was not updated for) stops
that table's sync with a message instead of loading something half-understood.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from .pgoutput import UNCHANGED, Value

GENERATION_SOURCE_COLUMNS = (
    "id", "user_id", "request_id", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop", "status",
    "output", "error", "finish_reason", "prompt_tokens", "completion_tokens", "created_at", "updated_at",
    "started_at", "completed_at", "claim_token", "claimed_at", "attempts", "model_name",
    "time_to_first_token_ms", "total_ms",
    # Pipeline bookkeeping (which job or stream holds the row, its dispatch, the API's idempotency key): known,
    # not facts.
    "claimed_by", "dispatch_token", "dispatch_due_at", "idempotency_key",
)  # fmt: skip
USAGE_SOURCE_COLUMNS = ("id", "user_id", "kind", "generation_id", "tokens", "created_at")

KNOWN_COLUMNS = {
    "content_generation": frozenset(GENERATION_SOURCE_COLUMNS),
    "content_usageevent": frozenset(USAGE_SOURCE_COLUMNS),
}
FACT_TABLE = {"content_generation": "fact_generation", "content_usageevent": "fact_usage"}

GENERATION_FACT_COLUMNS = (
    "id", "user_id", "status", "model_name", "prompt_tokens", "completion_tokens", "total_ms", "first_token_ms",
    "created_at", "day", "completed_at", "prompt_bytes", "output_bytes", "error_bytes", "version", "deleted",
)  # fmt: skip
USAGE_FACT_COLUMNS = ("id", "user_id", "kind", "generation_id", "tokens", "created_at", "day", "version", "deleted")
FACT_COLUMNS = {"fact_generation": GENERATION_FACT_COLUMNS, "fact_usage": USAGE_FACT_COLUMNS}

# Generations without a model (queued, failed before the service answered) are grouped under this name.
NO_MODEL = "unknown"

# The initial load reads the same values with SQL, in FACT_COLUMNS order and in the warehouse's column types (a
# binary COPY carries them as they are: an integer must arrive as the BIGINT the fact table holds).
INITIAL_SELECT = {
    "content_generation": (
        "SELECT id, user_id::bigint, status::varchar, coalesce(nullif(model_name, ''), 'unknown')::varchar, "
        "prompt_tokens::bigint, completion_tokens::bigint, total_ms::float8, time_to_first_token_ms::float8, "
        "created_at AT TIME ZONE 'UTC', (created_at AT TIME ZONE 'UTC')::date, completed_at AT TIME ZONE 'UTC', "
        "octet_length(prompt)::bigint, octet_length(output)::bigint, octet_length(error)::bigint, 0::bigint, false "
        "FROM content_generation"
    ),
    "content_usageevent": (
        "SELECT id, user_id::bigint, kind::varchar, generation_id::bigint, tokens::bigint, "
        "created_at AT TIME ZONE 'UTC', (created_at AT TIME ZONE 'UTC')::date, 0::bigint, false FROM content_usageevent"
    ),
}


def utc(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text).astimezone(UTC).replace(tzinfo=None)


def _int(text: str | None) -> int | None:
    return None if text is None else int(text)


def _float(text: str | None) -> float | None:
    return None if text is None else float(text)


def _bytes(text: str | None) -> int:
    return 0 if text is None else len(text.encode())


def fact_row(table: str, row: dict[str, Value], *, version: int, existing: dict[str, Any] | None) -> dict[str, Any]:
    """The fact row for a source row; TOASTed values the change did not carry come from ``existing``."""

    def value(name: str) -> str | None:
        raw = row.get(name)
        if raw is UNCHANGED:
            raise _Unchanged(name)
        return raw  # type: ignore[return-value]

    def keep(fact_column: str, compute: Any) -> Any:
        try:
            return compute()
        except _Unchanged:
            return (existing or {}).get(fact_column, 0)

    if table == "content_generation":
        created = utc(value("created_at"))
        assert created is not None
        return {
            "id": int(value("id") or 0),
            "user_id": int(value("user_id") or 0),
            "status": value("status") or "",
            "model_name": value("model_name") or NO_MODEL,
            "prompt_tokens": _int(value("prompt_tokens")) or 0,
            "completion_tokens": _int(value("completion_tokens")) or 0,
            "total_ms": _float(value("total_ms")),
            "first_token_ms": _float(value("time_to_first_token_ms")),
            "created_at": created,
            "day": created.date(),
            "completed_at": utc(value("completed_at")),
            "prompt_bytes": keep("prompt_bytes", lambda: _bytes(value("prompt"))),
            "output_bytes": keep("output_bytes", lambda: _bytes(value("output"))),
            "error_bytes": keep("error_bytes", lambda: _bytes(value("error"))),
            "version": version,
            "deleted": False,
        }
    created = utc(value("created_at"))
    assert created is not None
    return {
        "id": int(value("id") or 0),
        "user_id": int(value("user_id") or 0),
        "kind": value("kind") or "",
        "generation_id": _int(value("generation_id")),
        "tokens": _int(value("tokens")) or 0,
        "created_at": created,
        "day": created.date(),
        "version": version,
        "deleted": False,
    }


def tombstone(table: str, row: dict[str, Value], *, version: int) -> dict[str, Any]:
    """A deleted row: only its key is known (the replica identity)."""
    base: dict[str, Any] = {"id": int(str(row["id"])), "user_id": int(str(row.get("user_id") or 0))}
    epoch = datetime(1970, 1, 1)
    if table == "content_generation":
        base.update(
            status="deleted", model_name=NO_MODEL, prompt_tokens=0, completion_tokens=0, total_ms=None, first_token_ms=None,
            created_at=epoch, day=date(1970, 1, 1), completed_at=None, prompt_bytes=0, output_bytes=0, error_bytes=0,
        )  # fmt: skip
    else:
        base.update(kind="deleted", generation_id=None, tokens=0, created_at=epoch, day=date(1970, 1, 1))
    base.update(version=version, deleted=True)
    return base


class _Unchanged(Exception):
    pass
