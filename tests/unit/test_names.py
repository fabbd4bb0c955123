import pytest

from portal.services.names import clean_name, escape_component, unescape_component


@pytest.mark.parametrize("raw", [b"Win11.wim", b"bad\xffname", b"bell\x07", b"back\\slash",
                                 "caf\u00e9".encode(), b"\\x41 literal", b"tab\there"])
def test_escape_round_trips(raw):
    """Does every byte name survive escaping and unescaping unchanged?"""
    assert unescape_component(escape_component(raw)) == raw


def test_escape_shows_invalid_bytes_and_controls():
    """Are invalid UTF-8 and control characters shown as escapes, never raw?"""
    assert escape_component(b"bad\xffname.wim") == "bad\\xffname.wim"
    assert escape_component(b"ctl\x07.wim") == "ctl\\x07.wim"
    assert escape_component("Ünïcode.wim".encode()) == "Ünïcode.wim"


def test_escaped_forms_never_collide():
    """Can a literal backslash-x name be told apart from the byte it looks like?"""
    assert escape_component(b"\\xff") != escape_component(b"\xff")


@pytest.mark.parametrize("value, message", [
    ("", "must not be empty"), ("   ", "must not be empty"), ("a" * 101, "at most 100"),
    ("bad\x00name", "control characters"), ("new\nline", "control characters"),
    (42, "must be a string"),
])
def test_clean_name_refuses(value, message):
    """Are empty, over-long, control-character and non-string names refused with a reason?"""
    with pytest.raises(ValueError, match=message):
        clean_name(value)


def test_clean_name_strips():
    assert clean_name("  Seattle office ") == "Seattle office"
