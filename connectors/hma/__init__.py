"""Migration from an upstream HMA (OpenMediaMatch) deployment: `hmas migrate from-hma`.

source: its PostgreSQL database as typed rows; api_source: the same rows through its HTTP API, as
far as its routes list them; migration: those rows compared with this deployment's topics and
written through the project's own record makers. upstream_schema.sql: upstream's tables, for tests
and the bench.
"""

from __future__ import annotations

from pathlib import Path

UPSTREAM_SCHEMA = Path(__file__).with_name("upstream_schema.sql")
