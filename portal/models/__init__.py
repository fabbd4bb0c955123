"""Database models, one module per aggregate; import them from here."""
from portal.models.accounts import ApiToken, User
from portal.models.content import Asset, DistributionPoint, InventoryFile, UploadSession
from portal.models.events import AuditEvent, Notification
from portal.models.jobs import Job
from portal.models.base import utcnow

__all__ = [
    "ApiToken", "Asset", "AuditEvent", "DistributionPoint", "InventoryFile", "Job", "Notification",
    "UploadSession", "User", "utcnow",
]
