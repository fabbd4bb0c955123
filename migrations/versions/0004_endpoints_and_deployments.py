"""endpoints and deployments: enrollment tokens, devices, groups, boundaries, deployments

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('boundaries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('cidr', sa.String(length=64), nullable=False),
    sa.Column('dp_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['dp_id'], ['distribution_points.id'], name=op.f('fk_boundaries_dp_id_distribution_points'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_boundaries')),
    sa.UniqueConstraint('cidr', name=op.f('uq_boundaries_cidr'))
    )
    op.create_table('device_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=False),
    sa.Column('preferred_dp_id', sa.Integer(), nullable=True),
    sa.Column('fallback_dp_ids', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['preferred_dp_id'], ['distribution_points.id'], name=op.f('fk_device_groups_preferred_dp_id_distribution_points'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_device_groups')),
    sa.UniqueConstraint('name', name=op.f('uq_device_groups_name'))
    )
    op.create_table('enrollment_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('secret', sa.Text(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.Column('uses', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_enrollment_tokens_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['group_id'], ['device_groups.id'], name=op.f('fk_enrollment_tokens_group_id_device_groups'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrollment_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_enrollment_tokens_token_hash'))
    )
    op.create_table('devices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('serial', sa.String(length=128), nullable=False),
    sa.Column('mac_addresses', sa.JSON(), nullable=False),
    sa.Column('ip_addresses', sa.JSON(), nullable=False),
    sa.Column('remote_ip', sa.String(length=64), nullable=True),
    sa.Column('os', sa.String(length=255), nullable=False),
    sa.Column('agent_version', sa.String(length=64), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=True),
    sa.Column('token_hash', sa.String(length=64), nullable=True),
    sa.Column('enrollment_token_id', sa.Integer(), nullable=True),
    sa.Column('enrolled_at', sa.DateTime(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(), nullable=True),
    sa.Column('free_bytes', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['enrollment_token_id'], ['enrollment_tokens.id'], name=op.f('fk_devices_enrollment_token_id_enrollment_tokens'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['group_id'], ['device_groups.id'], name=op.f('fk_devices_group_id_device_groups'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_devices')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_devices_token_hash'))
    )
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_devices_group_id'), ['group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_devices_last_seen_at'), ['last_seen_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_devices_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_devices_serial'), ['serial'], unique=False)

    op.create_table('deployments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.String(length=36), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=True),
    sa.Column('device_name', sa.String(length=255), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=True),
    sa.Column('dp_id', sa.Integer(), nullable=True),
    sa.Column('dp_name', sa.String(length=100), nullable=False),
    sa.Column('selection_reason', sa.String(length=500), nullable=False),
    sa.Column('image', sa.Text(), nullable=False),
    sa.Column('platform_pack', sa.Text(), nullable=True),
    sa.Column('application_packs', sa.JSON(), nullable=False),
    sa.Column('answer_file', sa.Text(), nullable=True),
    sa.Column('assets', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('phase', sa.String(length=200), nullable=True),
    sa.Column('bytes_done', sa.BigInteger(), nullable=False),
    sa.Column('bytes_total', sa.BigInteger(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('report_seq', sa.Integer(), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('reported_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_deployments_device_id_devices'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['dp_id'], ['distribution_points.id'], name=op.f('fk_deployments_dp_id_distribution_points'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['group_id'], ['device_groups.id'], name=op.f('fk_deployments_group_id_device_groups'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_deployments_requested_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployments'))
    )
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deployments_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_deployments_device_id'), ['device_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_deployments_dp_id'), ['dp_id'], unique=False)
        batch_op.create_index('ix_deployments_state', ['state'], unique=False)
        batch_op.create_index('uq_deployments_active_device', ['device_id'], unique=True, sqlite_where=sa.text("state IN ('pending', 'downloading', 'applying')"), postgresql_where=sa.text("state IN ('pending', 'downloading', 'applying')"))

    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deployment_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_notifications_deployment_id_deployments'), 'deployments', ['deployment_id'], ['id'], ondelete='SET NULL')



def downgrade():
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_notifications_deployment_id_deployments'), type_='foreignkey')
        batch_op.drop_column('deployment_id')

    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.drop_index('uq_deployments_active_device', sqlite_where=sa.text("state IN ('pending', 'downloading', 'applying')"), postgresql_where=sa.text("state IN ('pending', 'downloading', 'applying')"))
        batch_op.drop_index('ix_deployments_state')
        batch_op.drop_index(batch_op.f('ix_deployments_dp_id'))
        batch_op.drop_index(batch_op.f('ix_deployments_device_id'))
        batch_op.drop_index(batch_op.f('ix_deployments_batch_id'))

    op.drop_table('deployments')
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_devices_serial'))
        batch_op.drop_index(batch_op.f('ix_devices_name'))
        batch_op.drop_index(batch_op.f('ix_devices_last_seen_at'))
        batch_op.drop_index(batch_op.f('ix_devices_group_id'))

    op.drop_table('devices')
    op.drop_table('enrollment_tokens')
    op.drop_table('device_groups')
    op.drop_table('boundaries')
