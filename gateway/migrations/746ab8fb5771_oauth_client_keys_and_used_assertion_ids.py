"""oauth client keys and used assertion ids

Clients may be registered with public keys (a JWK Set, or a URL to fetch one) instead of a static
token, so ``token_hash`` becomes optional; ``oauth_assertions`` keeps each accepted client
assertion's jti until it expires, so a replay is refused by every gateway replica.

Revision ID: 746ab8fb5771
Revises: c617449e106a
Create Date: 2026-12-01 08:55:21.101744

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = '746ab8fb5771'
down_revision: Union[str, Sequence[str], None] = 'c617449e106a'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('oauth_assertions',
    sa.Column('client_id', sa.String(length=36), nullable=False),
    sa.Column('jti', sa.String(length=255), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'jti')
    )
    op.create_index(op.f('ix_oauth_assertions_expires_at'), 'oauth_assertions', ['expires_at'], unique=False)
    # batch: SQLite (the embedded default) cannot ALTER a column's nullability in place
    with op.batch_alter_table('clients') as batch:
        batch.add_column(sa.Column('jwks', JSON, nullable=True))
        batch.add_column(sa.Column('jwks_uri', sa.String(length=2000), nullable=True))
        batch.alter_column('token_hash', existing_type=sa.VARCHAR(length=64), nullable=True)


def downgrade() -> None:
    # a client registered with keys has no token to go back to: it cannot exist in the old schema
    op.execute("DELETE FROM clients WHERE token_hash IS NULL")
    with op.batch_alter_table('clients') as batch:
        batch.alter_column('token_hash', existing_type=sa.VARCHAR(length=64), nullable=False)
        batch.drop_column('jwks_uri')
        batch.drop_column('jwks')
    op.drop_index(op.f('ix_oauth_assertions_expires_at'), table_name='oauth_assertions')
    op.drop_table('oauth_assertions')
