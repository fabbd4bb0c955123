"""The Windows API calls of the agent, through ctypes: DPAPI for the device token (`state`) and
the console's VT mode for the progress bar (`display`).

Imported only on Windows, from inside the functions that need it; on Linux nothing loads it
(and the tests replace the functions that would call it). DPAPI is used in user scope: the
token can be unprotected by the account that protected it (the service account), on this
machine, and no other (no CRYPTPROTECT_LOCAL_MACHINE, which any local account could undo).
"""
import ctypes
from ctypes import wintypes

CRYPTPROTECT_UI_FORBIDDEN = 0x1
ENABLE_VIRTUAL_TERMINAL_PROCESSING = 0x0004


class DataBlob(ctypes.Structure):
    _fields_ = [("cbData", wintypes.DWORD), ("pbData", ctypes.POINTER(ctypes.c_char))]


def _blob(data: bytes) -> tuple[DataBlob, ctypes.Array]:
    """A DATA_BLOB over `data`, with the buffer it points into (keep it alive as long)."""
    buffer = ctypes.create_string_buffer(data, len(data))
    return DataBlob(len(data), ctypes.cast(buffer, ctypes.POINTER(ctypes.c_char))), buffer


def _dpapi(name: str, data: bytes, entropy: bytes) -> bytes:
    crypt32 = ctypes.WinDLL("crypt32", use_last_error=True)
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    call = getattr(crypt32, name)
    call.argtypes = [ctypes.POINTER(DataBlob), ctypes.c_void_p, ctypes.POINTER(DataBlob),
                     ctypes.c_void_p, ctypes.c_void_p, wintypes.DWORD, ctypes.POINTER(DataBlob)]
    call.restype = wintypes.BOOL
    kernel32.LocalFree.argtypes = [ctypes.c_void_p]
    kernel32.LocalFree.restype = ctypes.c_void_p
    data_in, keep_data = _blob(data)
    extra, keep_extra = _blob(entropy)
    out = DataBlob()
    if not call(ctypes.byref(data_in), None, ctypes.byref(extra), None, None,
                CRYPTPROTECT_UI_FORBIDDEN, ctypes.byref(out)):
        raise ctypes.WinError(ctypes.get_last_error())
    try:
        return ctypes.string_at(out.pbData, out.cbData)
    finally:
        kernel32.LocalFree(ctypes.cast(out.pbData, ctypes.c_void_p))


def protect(data: bytes, entropy: bytes) -> bytes:
    """CryptProtectData in the current account's scope; OSError when Windows refuses."""
    return _dpapi("CryptProtectData", data, entropy)


def unprotect(blob: bytes, entropy: bytes) -> bytes:
    """CryptUnprotectData; OSError for a blob of another account or machine, or damaged."""
    return _dpapi("CryptUnprotectData", blob, entropy)


def enable_vt(stream) -> bool:
    """Whether `stream` is a console that now interprets ANSI sequences (Windows 10 1511 and
    later can be asked to; older consoles and redirected handles cannot)."""
    import msvcrt

    try:
        handle = wintypes.HANDLE(msvcrt.get_osfhandle(stream.fileno()))
    except (OSError, ValueError, AttributeError):
        return False
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    mode = wintypes.DWORD()
    if not kernel32.GetConsoleMode(handle, ctypes.byref(mode)):
        return False
    if mode.value & ENABLE_VIRTUAL_TERMINAL_PROCESSING:
        return True
    return bool(kernel32.SetConsoleMode(handle, mode.value | ENABLE_VIRTUAL_TERMINAL_PROCESSING))
