"""Names from disks and from people: escaping for display and storage, and validation."""
import re
import unicodedata

MAX_NAME_LENGTH = 100


# What escape_component rewrites: backslashes, control characters (Unicode category Cc is exactly
# U+0000-001F and U+007F-009F) and the lone surrogates that stand for bytes that are not UTF-8.
_NEEDS_ESCAPE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\udc80-\udcff]")


def _escape_char(match: re.Match) -> str:
    code = ord(match.group())
    if code >= 0xDC80:  # a byte that is not valid UTF-8
        return f"\\x{code - 0xDC00:02x}"
    if code == 0x5C:
        return "\\\\"
    if code >= 0x80:  # a C1 control: \u, so it cannot be read back as the invalid byte \x80-\x9f
        return f"\\u{code:04x}"
    return f"\\x{code:02x}"


def escape_component(raw: bytes) -> str:
    """One path component as text: invalid UTF-8 bytes and control characters as \\xNN escapes.

    Backslashes are doubled, so the escaped form is unambiguous and reversible; it is the form
    stored in the inventory, shown in the console and used in manifests.
    """
    return _NEEDS_ESCAPE.sub(_escape_char, raw.decode("utf-8", errors="surrogateescape"))


def unescape_component(text: str) -> bytes:
    """The raw bytes of a component escaped by escape_component."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "\\":
                out += b"\\"
                i += 2
                continue
            if nxt == "x" and len(text) >= i + 4:
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
                continue
            if nxt == "u" and len(text) >= i + 6:
                out += chr(int(text[i + 2:i + 6], 16)).encode("utf-8")
                i += 6
                continue
        out += ch.encode("utf-8")
        i += 1
    return bytes(out)


# Control (C0, DEL, C1) and format characters (the bidirectional overrides and isolates
# U+202A-202E and U+2066-2069, the marks U+200E/F, zero-width ones), line and paragraph
# separators: invisible, or making a name read other than it is.
CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def has_control_characters(value: str) -> bool:
    """True when a person-supplied string holds control characters (tabs and newlines included)."""
    return any(unicodedata.category(ch) in CONTROL_CATEGORIES for ch in value)


def without_control_characters(value: str) -> str:
    """`value` without the characters has_control_characters finds."""
    return "".join(ch for ch in value if unicodedata.category(ch) not in CONTROL_CATEGORIES)


def clean_name(value, field: str = "name", max_length: int = MAX_NAME_LENGTH) -> str:
    """A person-supplied display name, stripped; ValueError with a message when it is unusable."""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string")
    value = value.strip()
    if not value:
        raise ValueError(f"{field} must not be empty")
    if len(value) > max_length:
        raise ValueError(f"{field} must be at most {max_length} characters")
    if has_control_characters(value):
        raise ValueError(f"{field} must not contain control characters")
    return value
