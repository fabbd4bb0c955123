"""The Settings forms: add a user, your password, create an API token or an enrollment token."""
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from portal.core.numbers import clean_id
from portal.web.fields import ValuesField

ROLE_CHOICES = [SelectChoice("viewer", "Viewer (read-only)"),
                SelectChoice("technician", "Technician"),
                SelectChoice("admin", "Admin")]


class _Sites:
    """The sites a viewer sees: ticked boxes, one per site Depot knows (a script may also send
    them comma-separated in one value); none ticked: every site. The service refuses a site
    Depot does not know."""

    sites = ValuesField("Sites (viewers; none ticked: every site)")

    def site_list(self) -> list[str]:
        """The sites sent, blanks dropped."""
        return [s for value in self.sites.data for s in str(value).split(",") if s.strip()]


class UserForm(_Sites, FlaskForm):
    """A person who can sign in: email, first password, role (the safest, viewer, unless an
    admin picks another), and the sites a viewer sees."""

    email = StringField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password (at least 12 characters, not easy to guess)",
                             validators=[DataRequired(), Length(max=1024)])
    role = SelectField("Role", choices=ROLE_CHOICES, default="viewer")


class EditUserForm(_Sites, FlaskForm):
    """A person's role, sites, whether they may sign in, and a new password (empty: kept)."""

    role = SelectField("Role", choices=ROLE_CHOICES)
    active = BooleanField("May sign in")
    password = PasswordField("New password (empty: keep the current one)",
                             validators=[Length(max=1024)])
    confirm = PasswordField("New password again", validators=[Length(max=1024)])

    @classmethod
    def for_user(cls, user) -> "EditUserForm":
        """The form filled from the person (no password: it is never shown)."""
        return cls(formdata=None, role=user.role, active=user.active,
                   sites=list(user.sites or []))

    def changes(self) -> dict:
        """What update_user should change: the password only when one was entered."""
        changes = {"role": self.role.data, "sites": self.site_list(),
                   "active": bool(self.active.data)}
        if self.password.data:
            changes["password"] = self.password.data
        return changes


class PasswordForm(FlaskForm):
    """A person's own new password: the current one, the new one twice. The service checks
    the policy (length, guessability) and says why a password will not do."""

    current = PasswordField("Current password", validators=[DataRequired(), Length(max=1024)])
    new = PasswordField("New password (at least 12 characters, not easy to guess)",
                        validators=[DataRequired(), Length(max=1024)])
    confirm = PasswordField("New password again", validators=[DataRequired(), Length(max=1024)])


class TotpCodeForm(FlaskForm):
    """A code from the authenticator app (or, where it is accepted, a recovery code)."""

    code = StringField("Code", validators=[DataRequired(), Length(max=64)])


class TotpDisableForm(FlaskForm):
    """Turning two-step sign-in off: the password and a current code."""

    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    code = StringField("Code from the app, or a recovery code",
                       validators=[DataRequired(), Length(max=64)])


class TokenForm(FlaskForm):
    """A personal API token: its name."""

    name = StringField("Token name", validators=[DataRequired(), Length(max=100)])


class EnrollmentTokenForm(FlaskForm):
    """An enrollment token: its name, how many days it is valid, the group its devices join.
    The service checks name and days; a group that is not an id means no group."""

    name = StringField("Name", default="")
    days = StringField("Valid for (days)", default="")
    group_id = StringField("Devices join group", default="")

    def values(self) -> dict:
        """The service's arguments; DepotError when the group is not an id (called where the
        service's own errors are caught)."""
        group = (self.group_id.data or "").strip()
        return {"name": self.name.data or "", "days": self.days.data or 7,
                "group_id": clean_id(group, "the group", from_text=True) if group else None}
