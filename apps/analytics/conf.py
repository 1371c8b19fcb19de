"""The warehouse's configuration, built once from settings (``WAREHOUSE``, filled from the environment)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings


@dataclass(frozen=True)
class WarehouseConfig:
    """Where the warehouse lives: a PostgreSQL URL, or else a DuckDB file."""

    url: str = ""
    duckdb_path: Path = Path("var/warehouse.duckdb")
    poll_seconds: float = 0.5
    batch_changes: int = 20_000
    psql: str = ""  # the psql an initial load into DuckDB reads with: "" finds one, "off" reads through the driver

    @property
    def engine(self) -> str:
        return "postgresql" if self.url else "duckdb"

    @property
    def label(self) -> str:
        if self.url:
            return "PostgreSQL " + self.url.split("@")[-1]
        return f"DuckDB {self.duckdb_path}"


def get_config() -> WarehouseConfig:
    raw = getattr(settings, "WAREHOUSE", {})
    return WarehouseConfig(
        url=raw.get("URL", ""),
        duckdb_path=Path(raw.get("DUCKDB_PATH", WarehouseConfig.duckdb_path)),
        poll_seconds=float(raw.get("POLL_SECONDS", WarehouseConfig.poll_seconds)),
        batch_changes=int(raw.get("BATCH_CHANGES", WarehouseConfig.batch_changes)),
        psql=str(raw.get("PSQL", WarehouseConfig.psql)),
    )
