"""Names from disks and from people: escaping for display and storage, and validation."""
import unicodedata

MAX_NAME_LENGTH = 100


def escape_component(raw: bytes) -> str:
    """One path component as text: invalid UTF-8 bytes and control characters as \\xNN escapes.

    Backslashes are doubled, so the escaped form is unambiguous and reversible; it is the form
    stored in the inventory, shown in the console and used in manifests.
    """
    text = raw.decode("utf-8", errors="surrogateescape")
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not valid UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) == "Cc":
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


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


def has_control_characters(value: str) -> bool:
    """True when a person-supplied string holds control characters (tabs and newlines included)."""
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value)


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
