"""jobs.bytes_per_second: a running copy's throughput over its last seconds, as the worker saw
it; distribution_points.status_changed_at: since when a DP is offline or needs reconnecting (the
copy form says "offline since 10:42")

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bytes_per_second', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('distribution_points', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status_changed_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('distribution_points', schema=None) as batch_op:
        batch_op.drop_column('status_changed_at')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('bytes_per_second')
