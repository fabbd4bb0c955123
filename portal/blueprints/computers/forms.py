"""The Computer Management forms. The services check the values (the API sends the same), so the
forms carry them as sent; ids stay text until a service reads them."""
from flask_wtf import FlaskForm
from wtforms import Form, StringField

from portal.web.fields import SlotsField, ValuesField, stripped


class _DeviceFilters:
    """The device list's search and filters (a mixin: the bulk form posts them back)."""

    q = StringField("Search", default="", filters=[stripped])
    group_id = StringField("Group", default="")
    status = StringField("Status", default="")

    def filters(self) -> dict:
        """The filters as the list and its links take them."""
        return {"q": self.q.data or "", "group_id": self.group_id.data or "",
                "status": self.status.data or ""}


class DeviceFilterForm(_DeviceFilters, Form):
    """The search form above the device list (a GET: no CSRF token)."""


class DevicesForm(_DeviceFilters, FlaskForm):
    """The device list's bulk form: the ticked devices, where to move them, and the filters to
    show the list with again."""

    device_id = ValuesField()
    to_group_id = StringField("Move the ticked devices to", default="")


class DeviceForm(FlaskForm):
    """Rename a device or move it to another group."""

    name = StringField("Name", default="")
    group_id = StringField("Group", default="")

    def changes(self) -> dict:
        return {"name": self.name.data or "", "group_id": self.group_id.data or None}


class GroupForm(FlaskForm):
    """A group: name, description, preferred DP and the ordered fallbacks (`fallback_1` …)."""

    name = StringField("Name", default="")
    description = StringField("Description", default="")
    preferred_dp_id = StringField("Preferred DP", default="")
    fallback_dp_ids = SlotsField(prefix="fallback_")

    @classmethod
    def for_group(cls, group) -> "GroupForm":
        """The form filled from the group."""
        return cls(formdata=None, name=group.name, description=group.description,
                   preferred_dp_id=group.preferred_dp_id,
                   fallback_dp_ids=list(group.fallback_dp_ids or []))

    def values(self) -> dict:
        """The fields as the group services take them."""
        return {"name": self.name.data or "", "description": self.description.data or "",
                "preferred_dp_id": self.preferred_dp_id.data or None,
                "fallback_dp_ids": self.fallback_dp_ids.data}


class BoundaryForm(FlaskForm):
    """A boundary: a name, a subnet (CIDR) and the DP its devices download from."""

    name = StringField("Name", default="")
    cidr = StringField("Subnet (CIDR)", default="")
    dp_id = StringField("DP", default="")

    @classmethod
    def for_boundary(cls, boundary) -> "BoundaryForm":
        """The form filled from the boundary."""
        return cls(formdata=None, name=boundary.name, cidr=boundary.cidr,
                   dp_id=str(boundary.dp_id))

    def values(self) -> dict:
        return {"name": self.name.data or "", "cidr": self.cidr.data or "",
                "dp_id": self.dp_id.data or None}
