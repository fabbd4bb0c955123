"""distribution_points.tls_fingerprint and allow_plain_http: TLS to DP nodes (pinned certificates)

DP nodes already reached over http:// keep working: they are marked allow_plain_http, which an
admin can untick once the node serves HTTPS.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('distribution_points', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tls_fingerprint', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('allow_plain_http', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    dps = sa.table('distribution_points', sa.column('kind', sa.String),
                   sa.column('url', sa.String), sa.column('allow_plain_http', sa.Boolean))
    op.execute(dps.update().where(dps.c.kind == 'local', dps.c.url.like('http://%'))
               .values(allow_plain_http=True))


def downgrade():
    with op.batch_alter_table('distribution_points', schema=None) as batch_op:
        batch_op.drop_column('allow_plain_http')
        batch_op.drop_column('tls_fingerprint')
