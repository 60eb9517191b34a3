"""address changed at the ESP: a fact of its own, not an ESP status; MailerLite Classic: its own kind

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contact_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('address_changed', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    with op.batch_alter_table('contact_state', schema=None) as batch_op:
        batch_op.alter_column('address_changed', server_default=None)
    op.execute("UPDATE contact_state SET address_changed = true, esp_status = NULL "
               "WHERE esp_status = 'email_changed'")
    op.execute("UPDATE esp_connection SET kind = 'mailerlite_classic' "
               "WHERE kind = 'mailerlite' AND classic")


def downgrade() -> None:
    op.execute("UPDATE esp_connection SET kind = 'mailerlite' WHERE kind = 'mailerlite_classic'")
    op.execute("UPDATE contact_state SET esp_status = 'email_changed' WHERE address_changed")
    with op.batch_alter_table('contact_state', schema=None) as batch_op:
        batch_op.drop_column('address_changed')
