"""covering index for the value analysis: effective valued readings by read_at, with meter and consumption

Revision ID: 7a3c2b9e4f10
Revises: 5e1f0a7c9d21
Create Date: 2026-11-22 22:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '7a3c2b9e4f10'
down_revision = '5e1f0a7c9d21'
branch_labels = None
depends_on = None

# partial: only the readings the analysis sums (not superseded, with a value); the same text as models.py
EFFECTIVE_VALUED = "superseded_by IS NULL AND value IS NOT NULL"


def upgrade():
    op.create_index(
        'ix_readings_effective_read_at',
        'meter_readings',
        ['read_at', 'meter_id', 'consumption'],
        unique=False,
        sqlite_where=sa.text(EFFECTIVE_VALUED),
        postgresql_where=sa.text(EFFECTIVE_VALUED),
    )


def downgrade():
    op.drop_index('ix_readings_effective_read_at', table_name='meter_readings')
