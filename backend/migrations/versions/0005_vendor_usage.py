"""vendor usage and hourly activity: calls and 429s per account, vendor and hour; activity
outcomes per account and hour

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import backend.models

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('vendor_usage',
    sa.Column('account_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('vendor', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('hour', backend.models.UTCDateTime(), nullable=False),
    sa.Column('calls', sa.Integer(), nullable=False),
    sa.Column('rate_limited', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'vendor', 'hour')
    )
    with op.batch_alter_table('vendor_usage', schema=None) as batch_op:
        batch_op.create_index('ix_vendor_usage_hour', ['hour'], unique=False)

    op.create_table('activity_hourly',
    sa.Column('account_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('hour', backend.models.UTCDateTime(), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'hour', 'outcome')
    )
    with op.batch_alter_table('activity_hourly', schema=None) as batch_op:
        batch_op.create_index('ix_activity_hourly_hour', ['hour'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('activity_hourly', schema=None) as batch_op:
        batch_op.drop_index('ix_activity_hourly_hour')
    op.drop_table('activity_hourly')
    with op.batch_alter_table('vendor_usage', schema=None) as batch_op:
        batch_op.drop_index('ix_vendor_usage_hour')
    op.drop_table('vendor_usage')
