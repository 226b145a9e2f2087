"""fhir subscriptions on the webhook tables

A subscription is a webhook (CloudEvents) or a FHIR one (the Subscriptions Backport IG): ``kind``,
its topic, filter, payload content and channel headers in ``fhir``, and ``events_count``; each
delivery of a FHIR subscription has its ``event_number`` (1, 2, … per subscription) for ``$events``.

Revision ID: 5b7e1c9d2f40
Revises: 746ab8fb5771
Create Date: 2027-01-04 10:12:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision: str = '5b7e1c9d2f40'
down_revision: Union[str, Sequence[str], None] = '746ab8fb5771'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('webhook_subscriptions') as batch:
        batch.add_column(sa.Column('kind', sa.String(length=20), nullable=False, server_default='webhook'))
        batch.add_column(sa.Column('fhir', JSON, nullable=True))
        batch.add_column(sa.Column('events_count', sa.BigInteger(), nullable=False, server_default='0'))
    with op.batch_alter_table('webhook_deliveries') as batch:
        batch.add_column(sa.Column('event_number', sa.BigInteger(), nullable=True))
    op.create_index('ix_webhook_deliveries_event_number', 'webhook_deliveries', ['subscription_id', 'event_number'],
                    unique=False)


def downgrade() -> None:
    # a FHIR subscription has no meaning in the old schema: it and its deliveries go
    op.execute("DELETE FROM webhook_attempts WHERE subscription_id IN "
               "(SELECT id FROM webhook_subscriptions WHERE kind = 'fhir')")
    op.execute("DELETE FROM webhook_deliveries WHERE subscription_id IN "
               "(SELECT id FROM webhook_subscriptions WHERE kind = 'fhir')")
    op.execute("DELETE FROM webhook_subscriptions WHERE kind = 'fhir'")
    op.drop_index('ix_webhook_deliveries_event_number', table_name='webhook_deliveries')
    with op.batch_alter_table('webhook_deliveries') as batch:
        batch.drop_column('event_number')
    with op.batch_alter_table('webhook_subscriptions') as batch:
        batch.drop_column('events_count')
        batch.drop_column('fhir')
        batch.drop_column('kind')
