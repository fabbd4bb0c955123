import random

import pytest

from portal.core.names import clean_name, escape_component, unescape_component


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
    # U+0085 (a C1 control, valid UTF-8 as C2 85) against the lone invalid byte 0x85.
    assert escape_component("\u0085".encode()) == "\\u0085"
    assert escape_component(b"\xc2\x85") != escape_component(b"\x85")


def test_escape_round_trips_every_byte_pattern():
    """Does any sequence of bytes, valid UTF-8 or not, come back unchanged (seeded, bounded)?"""
    rng = random.Random(2026)
    for raw in [bytes([b]) for b in range(256)] + [rng.randbytes(rng.randint(1, 16)) for _ in range(5000)]:
        escaped = escape_component(raw)
        assert unescape_component(escaped) == raw, (raw, escaped)
        assert not any(ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f for ch in escaped)


@pytest.mark.parametrize("value, message", [
    ("", "must not be empty"), ("   ", "must not be empty"), ("a" * 101, "at most 100"),
    ("bad\x00name", "control characters"), ("new\nline", "control characters"),
    (42, "must be a string"),
])
def test_clean_name_refuses_bad_names_with_a_reason(value, message):
    """Are empty, over-long, control-character and non-string names refused with a reason?"""
    with pytest.raises(ValueError, match=message):
        clean_name(value)


def test_clean_name_strips_surrounding_spaces():
    """Are spaces around a name dropped, and those inside kept?"""
    assert clean_name("  Seattle office ") == "Seattle office"
