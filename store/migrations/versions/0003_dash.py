"""account keys up to 64 characters (per-member shadow accounts `paper:shadow:<member>`)

Revision ID: 0003_dash
Revises: 0003_live
"""
from alembic import op
import sqlalchemy as sa


revision = '0003_dash'
down_revision = '0003_live'
branch_labels = None
depends_on = None

TABLES = ('accounts', 'equity_snapshots', 'halts', 'orders', 'positions')


def upgrade() -> None:
    # SQLite does not enforce VARCHAR lengths (and a batch rebuild of `positions` would fight its
    # foreign keys): only the other dialects need the wider column.
    if op.get_bind().dialect.name == 'sqlite':
        return
    for table in TABLES:
        op.alter_column(table, 'mode', type_=sa.String(length=64), existing_type=sa.String(length=8),
                        existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        return
    for table in TABLES:
        op.alter_column(table, 'mode', type_=sa.String(length=8), existing_type=sa.String(length=64),
                        existing_nullable=False)
