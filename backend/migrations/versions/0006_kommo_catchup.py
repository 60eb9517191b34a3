"""catch-up from Kommo's event log: the sweep cursor per account; our answers to Kommo's webhooks
per account and 10-minute bucket

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

import backend.models

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('kommo_catchup',
    sa.Column('account_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('next_at', backend.models.UTCDateTime(), nullable=False),
    sa.Column('cursor_at', backend.models.UTCDateTime(), nullable=False),
    sa.Column('window_to', backend.models.UTCDateTime(), nullable=True),
    sa.Column('next_page', sa.Integer(), nullable=False),
    sa.Column('seen', sa.JSON(), nullable=False),
    sa.Column('email_field_id', sa.Integer(), nullable=True),
    sa.Column('webhook_missing_since', backend.models.UTCDateTime(), nullable=True),
    sa.Column('last_run_at', backend.models.UTCDateTime(), nullable=True),
    sa.Column('enqueued_total', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id')
    )
    with op.batch_alter_table('kommo_catchup', schema=None) as batch_op:
        batch_op.create_index('ix_kommo_catchup_next_at', ['next_at'], unique=False)

    op.create_table('hook_answer',
    sa.Column('account_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('bucket', backend.models.UTCDateTime(), nullable=False),
    sa.Column('ok', sa.Integer(), nullable=False),
    sa.Column('bad', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'bucket')
    )
    with op.batch_alter_table('hook_answer', schema=None) as batch_op:
        batch_op.create_index('ix_hook_answer_bucket', ['bucket'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('hook_answer', schema=None) as batch_op:
        batch_op.drop_index('ix_hook_answer_bucket')
    op.drop_table('hook_answer')
    with op.batch_alter_table('kommo_catchup', schema=None) as batch_op:
        batch_op.drop_index('ix_kommo_catchup_next_at')
    op.drop_table('kommo_catchup')
