"""stage and segment labels; when the ESP refused the stored key

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

import backend.models

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('account_options', schema=None) as batch_op:
        batch_op.add_column(sa.Column('labels', sa.JSON(), nullable=False, server_default='{}'))
    with op.batch_alter_table('account_options', schema=None) as batch_op:
        batch_op.alter_column('labels', server_default=None)
    with op.batch_alter_table('esp_connection', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key_rejected_at', backend.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('esp_connection', schema=None) as batch_op:
        batch_op.drop_column('key_rejected_at')
    with op.batch_alter_table('account_options', schema=None) as batch_op:
        batch_op.drop_column('labels')
