"""jobs.bytes_sent: what a copy sent over the network, beside bytes_done (what it covered, reused
parts included)

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bytes_sent', sa.BigInteger(), nullable=True))


def downgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('bytes_sent')
