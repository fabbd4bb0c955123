"""local DPs (secret, disabled, bandwidth, allowed hours), job retries and run ids

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('distribution_points') as batch:
        batch.add_column(sa.Column('secret', sa.Text(), nullable=True))
        batch.add_column(sa.Column('disabled', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column('bandwidth_limit', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('allowed_hours', sa.String(length=11), nullable=True))
        batch.add_column(sa.Column('checked_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('retries', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('retry_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('run_id', sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('run_id')
        batch.drop_column('retry_at')
        batch.drop_column('retries')
    with op.batch_alter_table('distribution_points') as batch:
        batch.drop_column('checked_at')
        batch.drop_column('allowed_hours')
        batch.drop_column('bandwidth_limit')
        batch.drop_column('disabled')
        batch.drop_column('secret')
