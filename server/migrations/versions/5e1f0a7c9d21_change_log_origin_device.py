"""change log rows name the device whose push caused them

Revision ID: 5e1f0a7c9d21
Revises: 2e8de8ae4a3f
Create Date: 2026-11-22 21:05:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5e1f0a7c9d21'
down_revision = '2e8de8ae4a3f'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('change_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('origin_device_id', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('change_log', schema=None) as batch_op:
        batch_op.drop_column('origin_device_id')
