"""Compatibility module: ``PostgresStore`` lives in ``chipi_session.stores.postgres``.

Kept only so that existing imports (``from chipi_session.pgstore import PostgresStore``) still
work; import from ``chipi_session`` or ``chipi_session.stores`` instead.
"""

from .stores.postgres import SCHEMA_VERSION, Member, PostgresStore

__all__ = ["PostgresStore", "SCHEMA_VERSION", "Member"]
