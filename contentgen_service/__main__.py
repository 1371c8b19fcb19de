"""Entry point: ``python -m contentgen_service serve``."""

from __future__ import annotations

from contentgen_service.cli import main

raise SystemExit(main())
