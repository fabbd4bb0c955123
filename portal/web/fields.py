"""Form fields the console's forms share beyond WTForms' own: repeated inputs, ids, numbered
slots and finite decimals. Values stay as sent; the services check them (the API sends the
same), and a field only turns what cannot be read into the message a person sees. Ids are read
by portal.core.numbers: ASCII digits up to the id column's largest, nothing else."""
import re

from wtforms import DecimalField, Field, StringField
from wtforms.utils import unset_value

from portal.core.numbers import clean_id, finite_decimal

SLOT_NUMBER = re.compile(r"[0-9]{1,4}")  # ASCII (isdigit takes "²", which int() refuses)


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
        return [clean_id(value, self.name, from_text=True, message=self.message)
                for value in self.data if value != "" or not self.skip_blank]


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
        return clean_id(self.data, self.name, from_text=True, message=self.message)


class SlotsField(Field):
    """Numbered inputs `<prefix>1`, `<prefix>2` … in slot order, blanks skipped: a form may show
    as many slots as it needs (a group's ordered fallback DPs)."""

    def __init__(self, label=None, validators=None, *, prefix: str, **kwargs):
        super().__init__(label, validators, **kwargs)
        self.prefix = prefix

    def process(self, formdata, data=unset_value, extra_filters=None):
        super().process(None, data, extra_filters)
        if formdata is not None:
            slots = sorted((key for key in formdata if key.startswith(self.prefix)
                            and SLOT_NUMBER.fullmatch(key[len(self.prefix):])),
                           key=lambda key: int(key[len(self.prefix):]))
            self.raw_data = [formdata[key] for key in slots]
            self.data = [value for value in self.raw_data if value]

    def process_data(self, value):
        self.data = list(value or [])


class FiniteDecimalField(DecimalField):
    """WTForms' DecimalField taking finite numbers only: `NaN`, `sNaN` (whose comparisons in a
    NumberRange raise InvalidOperation, a 500), `Infinity` and what is not a number are the
    field's error "Not a valid decimal value." like any other text."""

    def process_formdata(self, valuelist):
        if valuelist and valuelist[0] not in ("", None) and finite_decimal(valuelist[0]) is None:
            self.data = None
            raise ValueError(self.gettext("Not a valid decimal value."))
        super().process_formdata(valuelist)
