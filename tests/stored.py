"""What a part of the platform has stored, read straight from its database."""
from __future__ import annotations

from sqlalchemy import func, select


def count_rows(platform, service: str, table, *where) -> int:
    """How many rows of ``table`` (matching ``where``) the ``service``'s database holds."""
    db = platform.database(service)
    try:
        with db.session() as s:
            return s.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
    finally:
        db.dispose()
