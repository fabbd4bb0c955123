"""The deploy form: whom to deploy to, what, and from which DP. A GET (a link to the form, the
preview htmx asks for as things change) sends the same fields as the POST that creates them."""
from flask_wtf import FlaskForm
from wtforms import StringField

from portal.web.fields import IdField, IdsField, ValuesField


class DeployForm(FlaskForm):
    """Deploy to devices or a group: image, packs, answer file, and a DP or the rules' choice."""

    target = StringField("Deploy to")
    device_id = IdsField("Devices", message="device_id must be ids")
    group_id = IdField("Group", message="group_id must be ids")
    image = StringField("Image")
    platform_pack = StringField("Platform Pack")
    application_pack = ValuesField("Application Packs")
    answer_file = StringField("Answer File")
    dp_id = IdField("Distribution point", message="dp_id must be ids")

    def chosen(self) -> dict:
        """What the form asks to deploy, and to whom (only what its target names); DepotError
        for an id that is not a number."""
        group, devices = self.group_id.number(), self.device_id.numbers()
        target = self.target.data or ("group" if group is not None and not devices else "devices")
        return {"device_ids": devices if target == "devices" else [],
                "group_id": group if target == "group" else None,
                "image": self.image.data or None,
                "platform_pack": self.platform_pack.data or None,
                "application_packs": [p for p in self.application_pack.data if p],
                "answer_file": self.answer_file.data or None,
                "dp_id": self.dp_id.number(), "target": target}
