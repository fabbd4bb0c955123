"""portal.core.numbers and portal.core.jsonbody: the one reading of ids, whole numbers, decimals
and JSON bodies that the API, the console and the DP node share."""
from decimal import Decimal

import pytest

from portal.core.errors import DepotError
from portal.core.jsonbody import MAX_DEPTH, TooDeep, UnsupportedMediaType, loads, parse_object
from portal.core.numbers import MAX_ID, clean_id, finite_decimal, id_from_text, whole_number


@pytest.mark.parametrize("value, expected", [(1, 1), (MAX_ID, MAX_ID), ("7", 7), (" 7 ", 7)])
def test_ids_that_a_column_holds(value, expected):
    """Are ints and ASCII digit strings 1 to MAX_ID ids?"""
    assert clean_id(value, "id", from_text=True) == expected


@pytest.mark.parametrize("value", [0, -1, MAX_ID + 1, 2 ** 64, True, False, 1.0, None, [1],
                                   "", "-1", "+1", "1_0", "1e3", "1.0", "²", "١", "Infinity",
                                   "NaN", "sNaN", "1" * 5000, "0x10"])
def test_what_is_no_id(value):
    """Are bools, floats, signs, underscores, exponents, non-ASCII digits, names of infinities
    and numbers past the column refused with the field's name?"""
    with pytest.raises(DepotError, match="dp_id must be an id"):
        clean_id(value, "dp_id", from_text=True)
    assert id_from_text(value) is None


def test_text_is_read_only_when_asked():
    """Is "7" refused where the caller takes JSON integers only?"""
    with pytest.raises(DepotError, match="days must be a whole number from 1 to 365"):
        whole_number("7", "days", minimum=1, maximum=365)


@pytest.mark.parametrize("text, expected", [("12.5", Decimal("12.5")), (" 1 ", Decimal(1)),
                                            ("sNaN", None), ("NaN", None), ("-Infinity", None),
                                            ("fast", None), ("1" * 41, None), (None, None)])
def test_finite_decimals(text, expected):
    """Are only finite decimals read (sNaN's comparisons would raise)?"""
    assert finite_decimal(text) == expected


def test_json_depth_is_counted_without_recursion():
    """Is MAX_DEPTH taken, one more refused, and json.loads's RecursionError a TooDeep?"""
    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    with pytest.raises(TooDeep):
        loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(TooDeep):
        loads("[" * 200_000)
    with pytest.raises(TooDeep):  # depth through objects, not arrays only
        loads('{"a": ' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1))


def test_flasks_reader_lets_nan_through_but_not_depth():
    """Is strict=False (under request.get_json) lenient on NaN and still depth-limited?"""
    assert loads("[NaN]", strict=False)[0] != 0
    with pytest.raises(TooDeep):
        loads("[" * 5000, strict=False)


def test_parse_object_says_what_is_wrong():
    """Empty, not JSON typed, not an object: each its own error."""
    with pytest.raises(DepotError, match="send a JSON object"):
        parse_object(b"", True, "application/json")
    with pytest.raises(UnsupportedMediaType, match="this request sent text/plain"):
        parse_object(b"{}", False, "text/plain")
    with pytest.raises(DepotError, match="must be a JSON object"):
        parse_object(b"[]", True, "application/json")
    assert parse_object(b'{"a": 1}', True, "application/json") == {"a": 1}
