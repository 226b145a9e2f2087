"""subscriptions use the kernel's idempotency keys

``POST /v1/subscriptions`` keeps its Idempotency-Key and first response in ``idempotency_keys``
(coproduction/idempotency.py, as the services do) instead of two columns of the subscription.

Revision ID: e1f06c19b605
Revises: 5b7e1c9d2f40
Create Date: 2026-12-01 12:30:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = 'e1f06c19b605'
down_revision: Union[str, Sequence[str], None] = '5b7e1c9d2f40'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'idempotency_keys',
        sa.Column('client_id', sa.String(length=64), nullable=False),
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('status', sa.Integer(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('client_id', 'key'),
    )
    # Keys already used stay taken, so a retry across the upgrade cannot make a second subscription.
    # Their requests were hashed another way, so no request matches them: a retry is refused (422),
    # never replayed, and the body is never read.
    op.execute("INSERT INTO idempotency_keys (client_id, key, request_hash, status, body, created_at) "
               "SELECT client_id, idempotency_key, request_hash, 201, '{}', created_at "
               "FROM webhook_subscriptions WHERE idempotency_key IS NOT NULL")
    with op.batch_alter_table('webhook_subscriptions') as batch:
        batch.drop_constraint('uq_webhook_subscriptions_idempotency', type_='unique')
        batch.drop_column('request_hash')
        batch.drop_column('idempotency_key')


def downgrade() -> None:
    # the keys are not carried back: a retry after the downgrade may create again
    with op.batch_alter_table('webhook_subscriptions') as batch:
        batch.add_column(sa.Column('idempotency_key', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('request_hash', sa.String(length=64), nullable=True))
        batch.create_unique_constraint('uq_webhook_subscriptions_idempotency', ['client_id', 'idempotency_key'])
    op.drop_table('idempotency_keys')
