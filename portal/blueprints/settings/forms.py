"""The Settings forms: add a user, your password, create an API token or an enrollment token."""
from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from portal.core.numbers import clean_id


class UserForm(FlaskForm):
    """A person who can sign in: email, first password, role, and the sites a viewer sees."""

    email = StringField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password (at least 12 characters, not easy to guess)",
                             validators=[DataRequired(), Length(max=1024)])
    role = SelectField("Role", choices=[SelectChoice("admin", "Admin"),
                                        SelectChoice("technician", "Technician"),
                                        SelectChoice("viewer", "Viewer (read-only)")])
    sites = StringField("Sites (viewers; comma-separated, empty = all)",
                        validators=[Length(max=500)])

    def site_list(self) -> list[str]:
        """The sites entered, blanks dropped."""
        return [s for s in (self.sites.data or "").split(",") if s.strip()]


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
