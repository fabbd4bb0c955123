"""devices.claims_device_id: an enrollment that matches a known device's serial and MAC without
its device token is a pending claim on that device until an admin approves or refuses it

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claims_device_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_devices_claims_device_id'), ['claims_device_id'],
                              unique=False)
        batch_op.create_foreign_key('fk_devices_claims_device_id_devices', 'devices',
                                    ['claims_device_id'], ['id'], ondelete='CASCADE')


def downgrade():
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_constraint('fk_devices_claims_device_id_devices', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_devices_claims_device_id'))
        batch_op.drop_column('claims_device_id')
