"""Database models, one module per aggregate; import them from here."""
from portal.models.accounts import ApiToken, RecoveryCode, User
from portal.models.base import utcnow
from portal.models.content import Asset, DistributionPoint, InventoryFile, UploadSession
from portal.models.deployments import Deployment
from portal.models.devices import Boundary, Device, DeviceGroup, EnrollmentToken
from portal.models.events import AuditEvent, Notification
from portal.models.jobs import Job

__all__ = [
    "ApiToken", "Asset", "AuditEvent", "Boundary", "Deployment", "Device", "DeviceGroup",
    "DistributionPoint", "EnrollmentToken", "InventoryFile", "Job", "Notification", "RecoveryCode",
    "UploadSession", "User", "utcnow",
]
