"""portfolios keep their recent changes

The admission summary's recent changes are kept with each portfolio by the consumer
(``portfolios.recent_changes``, gateway/portfolio.py) instead of being read from the change log's
event bodies on every request. Existing portfolios get theirs from the change log here.

Revision ID: 3f8a2d6c1b07
Revises: e1f06c19b605
Create Date: 2026-12-01 19:30:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision: str = '3f8a2d6c1b07'
down_revision: Union[str, Sequence[str], None] = 'e1f06c19b605'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BATCH = 500


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')
    op.add_column('portfolios', sa.Column('recent_changes', json_type, nullable=True))
    # The same reading and shaping the consumer does (it reads only the change log, whose columns
    # this revision relies on), so a migrated portfolio is the one a rebuild would make.
    from gateway.portfolio import recent_changes
    from gateway.projection import newest_changes
    portfolios = sa.table('portfolios', sa.column('nhs_number', sa.String),
                          sa.column('recent_changes', json_type))
    connection = op.get_bind()
    people = list(connection.execute(sa.select(portfolios.c.nhs_number).order_by(portfolios.c.nhs_number)).scalars())
    for start in range(0, len(people), BATCH):
        recent = newest_changes(connection, people[start:start + BATCH])
        connection.execute(portfolios.update().where(portfolios.c.nhs_number == sa.bindparam('person'))
                        .values(recent_changes=sa.bindparam('changes')),
                        [{'person': n, 'changes': recent_changes(changes)} for n, changes in recent.items()])
    with op.batch_alter_table('portfolios') as batch:
        batch.alter_column('recent_changes', existing_type=json_type, nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('portfolios') as batch:
        batch.drop_column('recent_changes')
