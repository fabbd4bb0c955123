"""Form fields the console's forms share beyond WTForms' own: repeated inputs, ids and numbered
slots. Values stay as sent; the services check them (the API sends the same), and a field only
turns what cannot be read into the message a person sees."""
from wtforms import Field, StringField
from wtforms.utils import unset_value

from portal.core.errors import DepotError


def stripped(value):
    """A filter: the text without surrounding blanks (None stays None)."""
    return value.strip() if isinstance(value, str) else value


class ValuesField(Field):
    """Every value of a repeated input (`device_id=1&device_id=2`), as sent."""

    def process_data(self, value):
        self.data = list(value or [])

    def process_formdata(self, valuelist):
        self.data = list(valuelist)


class IdsField(ValuesField):
    """Repeated ids: `numbers()` reads them as whole numbers or raises DepotError(message)."""

    def __init__(self, label=None, validators=None, *, message: str, skip_blank: bool = True,
                 **kwargs):
        super().__init__(label, validators, **kwargs)
        self.message, self.skip_blank = message, skip_blank

    def numbers(self) -> list[int]:
        """The ids as numbers (blanks skipped unless the field says otherwise)."""
        try:
            return [int(value) for value in self.data if value != "" or not self.skip_blank]
        except ValueError:
            raise DepotError(self.message) from None


class IdField(StringField):
    """One id: `number()` reads it as a whole number (None when blank) or raises
    DepotError(message); a `required` one refuses a blank with the same message."""

    def __init__(self, label=None, validators=None, *, message: str, required: bool = False,
                 **kwargs):
        super().__init__(label, validators, default="", **kwargs)
        self.message, self.required = message, required

    def number(self) -> int | None:
        """The id as a number (a field's `id` is its HTML id)."""
        if (self.data or "") == "" and not self.required:
            return None
        try:
            return int(self.data)
        except (TypeError, ValueError):
            raise DepotError(self.message) from None


class SlotsField(Field):
    """Numbered inputs `<prefix>1`, `<prefix>2` … in slot order, blanks skipped: a form may show
    as many slots as it needs (a group's ordered fallback DPs)."""

    def __init__(self, label=None, validators=None, *, prefix: str, **kwargs):
        super().__init__(label, validators, **kwargs)
        self.prefix = prefix

    def process(self, formdata, data=unset_value, extra_filters=None):
        super().process(None, data, extra_filters)
        if formdata is not None:
            slots = sorted((key for key in formdata
                            if key.startswith(self.prefix) and key[len(self.prefix):].isdigit()),
                           key=lambda key: int(key[len(self.prefix):]))
            self.raw_data = [formdata[key] for key in slots]
            self.data = [value for value in self.raw_data if value]

    def process_data(self, value):
        self.data = list(value or [])
