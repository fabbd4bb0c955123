"""The content actions' forms: Copy to… (the ticked assets or a whole library, to chosen DPs) and
Delete. The services check the keys and the DPs."""
from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField

from portal.web.fields import IdsField, ValuesField


class CopyForm(FlaskForm):
    """Copy to…, and the Copy here, Repair and Copy now buttons, which send the same fields."""

    asset_keys = ValuesField()
    whole_library = BooleanField("the whole library")
    library = StringField()
    dp_ids = IdsField("Copy to", message="dp_ids must be distribution point ids", skip_blank=False)


class DeleteForm(FlaskForm):
    """Delete an asset from a DP; from central, `confirm=central` (or htmx's prompt) as well."""

    key = StringField()
    confirm = StringField()
