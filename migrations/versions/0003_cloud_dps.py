"""cloud DPs: settings, provider hashes in the inventory, resumable upload sessions

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('distribution_points') as batch:
        batch.add_column(sa.Column('config', sa.Text(), nullable=True))
    with op.batch_alter_table('inventory_files') as batch:
        batch.add_column(sa.Column('hashes', sa.Text(), nullable=True))
    op.create_table(
        'upload_sessions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('dp_id', sa.Integer(), nullable=False),
        sa.Column('path', sa.Text(), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('data', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['dp_id'], ['distribution_points.id'],
                                name=op.f('fk_upload_sessions_dp_id_distribution_points'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_upload_sessions')),
        sa.UniqueConstraint('dp_id', 'path', name='uq_upload_sessions_dp_path'),
    )


def downgrade():
    op.drop_table('upload_sessions')
    with op.batch_alter_table('inventory_files') as batch:
        batch.drop_column('hashes')
    with op.batch_alter_table('distribution_points') as batch:
        batch.drop_column('config')
