from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length


class UserForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(min=8, max=1024)])
    role = SelectField("Role", choices=[SelectChoice("admin", "Admin"),
                                        SelectChoice("technician", "Technician"),
                                        SelectChoice("viewer", "Viewer (read-only)")])
    sites = StringField("Sites (viewers; comma-separated, empty = all)", validators=[Length(max=500)])


class TokenForm(FlaskForm):
    name = StringField("Token name", validators=[DataRequired(), Length(max=100)])
