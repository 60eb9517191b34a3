"""backfill runs: the initial sync of existing leads, resumable per page

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import backend.models

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('backfill',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('new_subscribers_as', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('next_page', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('done', sa.Integer(), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('started_at', backend.models.UTCDateTime(), nullable=False),
    sa.Column('finished_at', backend.models.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('backfill', schema=None) as batch_op:
        batch_op.create_index('ix_backfill_account_started', ['account_id', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('backfill', schema=None) as batch_op:
        batch_op.drop_index('ix_backfill_account_started')
    op.drop_table('backfill')
