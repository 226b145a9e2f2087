"""The audit log as a Merkle transparency log (issue 18).

Each record loses the hash chain (``seq``, ``prev_hash``, ``hash``: every append read the previous
record under a global lock) and gains an ``id`` of its own, the fields the access-control work
records (``initiative``, ``break_glass``, ``relationship``) and a ``leaf_index``, null until the
sequencer puts the record into the Merkle log. Two tables hold the log: its perfect subtrees and
its signed tree heads.

Existing records are kept, with ``id`` = their old ``seq``: the sequencer's first run makes them
the log's first leaves, in their old order. Their chain hashes are dropped (check the chain one last
time with the old ``coproduction audit verify`` before upgrading if that matters to you). The
downgrade rebuilds the chain from the records.

Revision ID: c617449e106a
Revises: 9bff45002043
Create Date: 2026-12-01 08:48:57.422638
"""
import hashlib
import json
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'c617449e106a'
down_revision: Union[str, Sequence[str], None] = '9bff45002043'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
COMMON = ('at', 'client_id', 'client_name', 'org', 'role', 'scope', 'nhs_number', 'action', 'resource',
          'purpose', 'outcome', 'status')


#: an old record's initiative, from the path it names (the access decision records it from now on)
INITIATIVE_OF_PATH = ("CASE WHEN resource LIKE '/v1/plans%' THEN 'plans' WHEN resource LIKE '/v1/budgets%' THEN 'budgets' "
                      "WHEN resource LIKE '/v1/decisions%' THEN 'decisions' WHEN resource LIKE '/v1/courses%' "
                      "OR resource LIKE '/v1/enrolments%' THEN 'groups' WHEN resource LIKE '/v1/people/%' "
                      "THEN 'portfolio' END")


def _common_columns():
    return [
        sa.Column('at', sa.String(length=40), nullable=False),
        sa.Column('client_id', sa.String(length=36), nullable=True),
        sa.Column('client_name', sa.String(length=200), nullable=True),
        sa.Column('org', sa.String(length=20), nullable=True),
        sa.Column('role', sa.String(length=20), nullable=True),
        sa.Column('scope', sa.String(length=40), nullable=True),
        sa.Column('nhs_number', sa.String(length=10), nullable=True),
        sa.Column('action', sa.String(length=20), nullable=False),
        sa.Column('resource', sa.String(length=300), nullable=False),
        sa.Column('purpose', sa.String(length=200), nullable=False),
        sa.Column('outcome', sa.String(length=20), nullable=False),
        sa.Column('status', sa.Integer(), nullable=False),
    ]


def _set_aside(old_name: str, pkey: str) -> None:
    """Rename the current audit_log out of the way (its index and key names with it)."""
    op.drop_index(op.f('ix_audit_log_nhs_number') if old_name == 'audit_log_chained' else 'ix_audit_log_person',
                  table_name='audit_log')
    op.rename_table('audit_log', old_name)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f'ALTER INDEX audit_log_pkey RENAME TO {pkey}')


def upgrade() -> None:
    _set_aside('audit_log_chained', 'audit_log_chained_pkey')
    op.create_table(
        'audit_log',
        sa.Column('id', BigId, autoincrement=True, nullable=False),
        *_common_columns(),
        sa.Column('initiative', sa.String(length=20), nullable=True),
        sa.Column('break_glass', sa.Boolean(), nullable=False),
        sa.Column('relationship', sa.String(length=40), nullable=True),
        sa.Column('leaf_index', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sqlite_autoincrement=True,
    )
    columns = ', '.join(COMMON)
    op.execute(f'INSERT INTO audit_log (id, {columns}, initiative, break_glass) '
               f'SELECT seq, {columns}, {INITIATIVE_OF_PATH}, FALSE FROM audit_log_chained ORDER BY seq')
    if op.get_bind().dialect.name == 'postgresql':  # the new ids continue after the old ones
        op.execute("SELECT setval(pg_get_serial_sequence('audit_log', 'id'), "
                   "COALESCE((SELECT max(id) FROM audit_log), 0) + 1, false)")
    op.drop_table('audit_log_chained')
    op.create_index('ix_audit_log_person', 'audit_log', ['nhs_number', 'id'], unique=False)
    op.create_index('ix_audit_log_unsequenced', 'audit_log', ['id'], unique=False,
                    postgresql_where=sa.text('leaf_index IS NULL'), sqlite_where=sa.text('leaf_index IS NULL'))
    op.create_index('ux_audit_log_leaf_index', 'audit_log', ['leaf_index'], unique=True,
                    postgresql_where=sa.text('leaf_index IS NOT NULL'),
                    sqlite_where=sa.text('leaf_index IS NOT NULL'))
    op.create_table(
        'audit_tree_nodes',
        sa.Column('level', sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column('idx', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('hash', sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint('level', 'idx'),
    )
    op.create_table(
        'audit_tree_heads',
        sa.Column('tree_size', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('timestamp', sa.BigInteger(), nullable=False),
        sa.Column('root_hash', sa.LargeBinary(length=32), nullable=False),
        sa.Column('signature', sa.LargeBinary(length=64), nullable=False),
        sa.Column('key_id', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('tree_size'),
    )


def downgrade() -> None:
    """Back to the hash chain: the records in leaf order (then id order for the unsequenced), with
    the chain computed anew; the Merkle log itself is dropped."""
    op.drop_table('audit_tree_heads')
    op.drop_table('audit_tree_nodes')
    op.drop_index('ux_audit_log_leaf_index', table_name='audit_log')
    op.drop_index('ix_audit_log_unsequenced', table_name='audit_log')
    _set_aside('audit_log_merkle', 'audit_log_merkle_pkey')
    chained = op.create_table(
        'audit_log',
        sa.Column('seq', BigId, autoincrement=False, nullable=False),
        *_common_columns(),
        sa.Column('prev_hash', sa.String(length=64), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('seq'),
    )
    rows = op.get_bind().execute(sa.text(
        f"SELECT {', '.join(COMMON)} FROM audit_log_merkle "
        "ORDER BY CASE WHEN leaf_index IS NULL THEN 1 ELSE 0 END, leaf_index, id")).mappings()
    prev, batch = '0' * 64, []
    for seq, row in enumerate(rows, start=1):
        record = dict(row, seq=seq, prev_hash=prev)
        prev = record['hash'] = hashlib.sha256(json.dumps(
            record, sort_keys=True, separators=(',', ':')).encode()).hexdigest()
        batch.append(record)
    if batch:
        op.bulk_insert(chained, batch)
    op.drop_table('audit_log_merkle')
    op.create_index(op.f('ix_audit_log_nhs_number'), 'audit_log', ['nhs_number'], unique=False)
