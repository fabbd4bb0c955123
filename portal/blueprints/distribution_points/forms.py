"""The Distribution Points forms: add or edit a DP node, add an S3 bucket or an OAuth DP, and the
DP switcher."""
from decimal import Decimal

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, PasswordField, StringField
from wtforms.validators import NumberRange, Optional

from portal.web.fields import FiniteDecimalField, IdField

# The fields are checked by services.dp_management, so the console and the API say the same thing;
# the forms carry the CSRF token, render the fields and convert units.
MB = 1_000_000  # bandwidth is entered in MB/s (decimal megabytes, as network speeds are quoted)


class LocalDpForm(FlaskForm):
    name = StringField("Name")
    url = StringField("URL of the DP node")
    key = PasswordField("Key (the node's DEPOT_DP_KEY)")  # never rendered back
    site = StringField("Site")
    allow_plain_http = BooleanField("Allow plain HTTP (the key crosses the network in clear)")
    # The certificate fingerprint shown by Test connection: Add pins that one or refuses.
    tls_fingerprint = HiddenField()


def _bandwidth_field():
    return FiniteDecimalField(
        "Bandwidth limit for copies (MB/s, empty: no limit)", places=None,
        validators=[Optional(), NumberRange(min=Decimal("0.1"), max=Decimal(100_000))])


def _mb(dp) -> Decimal | None:
    """The DP's bandwidth cap in MB/s as the form shows it (None: no cap)."""
    return (Decimal(dp.bandwidth_limit) / MB).normalize() if dp.bandwidth_limit else None


class EditLocalDpForm(FlaskForm):
    name = StringField("Name")
    site = StringField("Site")
    url = StringField("URL of the DP node")
    key = PasswordField("New key (empty: keep the current one)")
    disabled = BooleanField("Disable for maintenance")
    bandwidth_limit = _bandwidth_field()
    allowed_hours = StringField("Copies only during (e.g. 22-6, empty: any time)")
    allow_plain_http = BooleanField("Allow plain HTTP (the key crosses the network in clear)")

    @classmethod
    def for_dp(cls, dp) -> "EditLocalDpForm":
        """The form filled from the DP, the bandwidth in MB/s and the key left empty."""
        return cls(formdata=None, name=dp.name, site=dp.site, url=dp.url, disabled=dp.disabled,
                   bandwidth_limit=_mb(dp),
                   allowed_hours=dp.allowed_hours or "", allow_plain_http=dp.allow_plain_http)

    def changes(self, dp) -> dict:
        """What update_dp should change: the URL only if edited and the key only if entered, so
        that settings of a node that is down (disabling it, say) need no connection test."""
        limit = self.bandwidth_limit.data
        changes = {"name": self.name.data, "site": self.site.data or "",
                   "disabled": bool(self.disabled.data),
                   "bandwidth_limit": int(limit * MB) if limit else None,
                   "allowed_hours": (self.allowed_hours.data or "").strip() or None,
                   "allow_plain_http": bool(self.allow_plain_http.data)}
        if (self.url.data or "").strip().rstrip("/") != dp.url:
            changes["url"] = self.url.data
        if self.key.data:
            changes["key"] = self.key.data
        return changes


class EditCloudDpForm(FlaskForm):
    """A cloud DP's name, site, folder (an S3 DP's prefix), maintenance flag, bandwidth cap and
    copy hours; its keys or consent are not asked again."""

    name = StringField("Name")
    site = StringField("Site")
    folder = StringField("Folder in the account")
    disabled = BooleanField("Disable for maintenance")
    bandwidth_limit = _bandwidth_field()
    allowed_hours = StringField("Copies only during (e.g. 22-6, empty: any time)")

    @classmethod
    def for_dp(cls, dp, folder: str) -> "EditCloudDpForm":
        """The form filled from the DP (`folder`: where it keeps its libraries now)."""
        return cls(formdata=None, name=dp.name, site=dp.site, folder=folder, disabled=dp.disabled,
                   bandwidth_limit=_mb(dp), allowed_hours=dp.allowed_hours or "")

    def changes(self) -> dict:
        """What update_dp should change (the service checks each value as Add does)."""
        limit = self.bandwidth_limit.data
        return {"name": self.name.data, "site": self.site.data or "",
                "folder": self.folder.data or "", "disabled": bool(self.disabled.data),
                "bandwidth_limit": int(limit * MB) if limit else None,
                "allowed_hours": (self.allowed_hours.data or "").strip() or None}


class AcceptCertificateForm(FlaskForm):
    fingerprint = HiddenField()  # the one the admin was shown


class S3DpForm(FlaskForm):
    name = StringField("Name")
    site = StringField("Site")
    endpoint_url = StringField("Endpoint URL (empty for AWS S3)")
    region = StringField("Region")
    bucket = StringField("Bucket")
    prefix = StringField("Prefix (folder in the bucket)")
    access_key_id = StringField("Access key id")
    secret_access_key = PasswordField("Secret access key")  # never rendered back

    def values(self) -> dict:
        return {field.name: field.data for field in self if field.name != "csrf_token"}


class OAuthDpForm(FlaskForm):
    name = StringField("Name")
    site = StringField("Site")
    folder = StringField("Folder in the account")


class SelectDpForm(FlaskForm):
    """The DP switcher in the top bar: which DP's content the library pages show."""

    dp_id = IdField("Distribution point", message="choose a distribution point", required=True)
