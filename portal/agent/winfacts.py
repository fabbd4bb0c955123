"""The machine's facts on Windows: the firmware serial (Win32_BIOS), the MACs and addresses of
the network adapters (Win32_NetworkAdapterConfiguration), the MachineGuid and the OS name.

WMI is asked through PowerShell's CIM cmdlets, as JSON; where PowerShell is missing or fails,
through `wmic` (deprecated, and gone from new Windows 11 installs, but present on older ones).
Every command runs with a timeout and its output goes to temporary files, not pipes, so neither
a hung WMI nor a grandchild holding a pipe can hang the agent. A failure gives empty facts and a
logged reason, never an exception. Parsing is kept apart from running, so the tests feed it
outputs recorded on Windows machines.
"""
import ipaddress
import json
import logging
import os
import re
import subprocess
import tempfile

log = logging.getLogger("depot.agent")

COMMAND_TIMEOUT = 20.0
MAX_ADDRESSES = 32  # what the server accepts in one list
# What firmware puts where no serial was set: not a serial, two machines would share it.
NO_SERIAL = {"", "none", "not specified", "to be filled by o.e.m.", "default string", "0",
             "system serial number", "chassis serial number", "not applicable", "n/a",
             "not available", "default", "oem", "123456789", "0123456789"}

_PS_PRELUDE = ("$ProgressPreference = 'SilentlyContinue'; "
               "[Console]::OutputEncoding = [System.Text.Encoding]::UTF8; ")
PS_BIOS = "Get-CimInstance Win32_BIOS | Select-Object SerialNumber | ConvertTo-Json -Compress"
PS_ADAPTERS = ("Get-CimInstance Win32_NetworkAdapterConfiguration -Filter 'IPEnabled=True' | "
               "Select-Object MACAddress,IPAddress | ConvertTo-Json -Compress")
WMIC_BIOS = ["bios", "get", "SerialNumber", "/format:list"]
WMIC_ADAPTERS = ["nicconfig", "where", "IPEnabled=true", "get", "MACAddress,IPAddress",
                 "/format:list"]


class CommandFailed(Exception):
    """A command could not give an answer: missing, timed out, exited non-zero, unreadable."""


# --- running commands --------------------------------------------------------------------

def run_command(argv: list[str], timeout: float = COMMAND_TIMEOUT) -> bytes:
    """The command's stdout; CommandFailed saying why when it has none to give."""
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # no console flashing up (Windows)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    creationflags=flags)
        except OSError as exc:
            raise CommandFailed(f"cannot start {os.path.basename(argv[0])}: {exc}") from None
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise CommandFailed(f"{os.path.basename(argv[0])} timed out after {timeout:g} s") \
                from None
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code != 0:
        said = decode(stderr).strip().splitlines()
        raise CommandFailed(f"{os.path.basename(argv[0])} exited {code}"
                            + (f": {said[0][:200]}" if said else ""))
    return stdout


def system_tool(*parts: str) -> str:
    """A tool under %SystemRoot% by its full path: Windows looks for a bare name in the current
    folder before the system ones, which a service must not."""
    root = os.environ.get("SystemRoot") or os.environ.get("SYSTEMROOT") or r"C:\Windows"
    return os.path.join(root, *parts)


def powershell(script: str) -> list[str]:
    return [system_tool("System32", "WindowsPowerShell", "v1.0", "powershell.exe"),
            "-NoProfile", "-NonInteractive", "-Command", _PS_PRELUDE + script]


def wmic(args: list[str]) -> list[str]:
    return [system_tool("System32", "wbem", "WMIC.exe"), *args]


# --- reading what they print ---------------------------------------------------------------

def decode(data: bytes) -> str:
    """Text of a Windows tool's output: wmic writes UTF-16 (with or without a BOM) when its
    output is not a console, PowerShell UTF-8 (asked for) with a BOM now and then."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    if len(data) >= 2 and data[1:2] == b"\0" and data[0:1] != b"\0":
        return data.decode("utf-16-le", errors="replace")
    return data.decode("utf-8-sig", errors="replace")


def _json_records(text: str) -> list[dict]:
    """ConvertTo-Json prints one object for one instance and a list for several (and nothing
    for none): always a list of objects here."""
    text = text.strip()
    if not text:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        raise CommandFailed(f"not JSON: {text[:80]!r}") from None
    items = data if isinstance(data, list) else [data]
    return [item for item in items if isinstance(item, dict)]


def wmic_records(text: str) -> list[dict]:
    """The instances of `wmic ... /format:list`: Name=Value lines, one instance after another,
    blank lines (and the CR CR LF wmic ends lines with) in between. A name seen again starts
    the next instance, so the blank lines need not be trusted."""
    records, current = [], {}
    for line in text.splitlines():
        line = line.strip()
        if "=" not in line:
            continue
        name, value = line.split("=", 1)
        if name in current:
            records.append(current)
            current = {}
        current[name] = value.strip()
    if current:
        records.append(current)
    return records


def usable_serial(value) -> str:
    """The serial, or "" when it is a placeholder firmware left ("To be filled by O.E.M.")."""
    serial = value.strip() if isinstance(value, str) else ""
    if serial.lower() in NO_SERIAL or not serial.strip("0. -"):
        return ""
    return serial


def normal_macs(values) -> list[str]:
    """Lower-case colon MACs, no duplicates or zeros, at most MAX_ADDRESSES."""
    macs = []
    for value in values:
        digits = re.sub(r"[:-]", "", value.strip().lower()) if isinstance(value, str) else ""
        if not re.fullmatch(r"[0-9a-f]{12}", digits) or digits == "0" * 12:
            continue
        mac = ":".join(digits[i:i + 2] for i in range(0, 12, 2))
        if mac not in macs:
            macs.append(mac)
    return macs[:MAX_ADDRESSES]


def normal_ips(values) -> list[str]:
    """Addresses an office's boundaries can match: no loopback, link-local or unspecified ones
    (every adapter has an fe80:: address), no zone suffix, no duplicates."""
    ips = []
    for value in values:
        if not isinstance(value, str):
            continue
        try:
            ip = ipaddress.ip_address(value.strip().split("%", 1)[0])
        except ValueError:
            continue
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
            continue
        if str(ip) not in ips:
            ips.append(str(ip))
    return ips[:MAX_ADDRESSES]


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def bios_from_json(text: str) -> str:
    records = _json_records(text)
    return usable_serial(records[0].get("SerialNumber")) if records else ""


def adapters_from_json(text: str) -> tuple[list[str], list[str]]:
    records = _json_records(text)
    macs = normal_macs(r.get("MACAddress") for r in records)
    ips = normal_ips(ip for r in records for ip in _as_list(r.get("IPAddress")))
    return macs, ips


def bios_from_wmic(text: str) -> str:
    records = wmic_records(text)
    return usable_serial(records[0].get("SerialNumber", "")) if records else ""


def adapters_from_wmic(text: str) -> tuple[list[str], list[str]]:
    records = wmic_records(text)
    macs = normal_macs(r.get("MACAddress", "") for r in records)
    ips = normal_ips(ip for r in records for ip in re.findall(r'"([^"]*)"', r.get("IPAddress", "")))
    return macs, ips


# --- asking ----------------------------------------------------------------------------------

def _ask(what: str, script: str, wmic_args: list[str], from_json, from_wmic, run):
    """from_json(PowerShell's answer), else from_wmic(wmic's); None when neither answered."""
    run = run or run_command
    try:
        return from_json(decode(run(powershell(script))))
    except CommandFailed as exc:
        log.info("%s through PowerShell failed (%s); trying wmic", what, exc)
    try:
        return from_wmic(decode(run(wmic(wmic_args))))
    except CommandFailed as exc:
        log.warning("no %s from this machine: PowerShell and wmic both failed (%s)", what, exc)
        return None


def bios_serial(run=None) -> str | None:
    """The firmware's serial number, "" when it has none, None when no tool would say."""
    return _ask("BIOS serial", PS_BIOS, WMIC_BIOS, bios_from_json, bios_from_wmic, run)


def adapters(run=None) -> tuple[list[str], list[str]] | None:
    """(MACs, addresses) of the network adapters that have IP enabled; None when no tool
    would say."""
    return _ask("network adapters", PS_ADAPTERS, WMIC_ADAPTERS, adapters_from_json,
                adapters_from_wmic, run)


def read_registry(key: str, name: str) -> str:
    """A value under HKEY_LOCAL_MACHINE as text, "" when absent. The 64-bit view is asked
    for: a 32-bit Python would otherwise not see MachineGuid on 64-bit Windows."""
    import winreg  # Windows only: this function is only called there

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, key, 0,
                            winreg.KEY_READ | winreg.KEY_WOW64_64KEY) as handle:
            value, _ = winreg.QueryValueEx(handle, name)
    except OSError:
        return ""
    return str(value).strip()


def machine_guid(read=None) -> str:
    """Windows' own machine id (set at install, unique per installed Windows)."""
    return (read or read_registry)(r"SOFTWARE\Microsoft\Cryptography", "MachineGuid")


def os_name(machine: str, read=None) -> str:
    """'Windows 11 Pro 23H2 (build 22631.3007, AMD64)', from the registry. ProductName still
    says 'Windows 10' on Windows 11; the build number (22000 and up) tells them apart."""
    read = read or read_registry
    key = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion"
    product = read(key, "ProductName")
    if not product:
        return ""
    build = read(key, "CurrentBuildNumber") or read(key, "CurrentBuild")
    if product.startswith("Windows 10") and build.isdigit() and int(build) >= 22000:
        product = "Windows 11" + product[len("Windows 10"):]
    release = read(key, "DisplayVersion") or read(key, "ReleaseId")
    patch = read(key, "UBR")
    name = f"{product} {release}".strip()
    if build:
        return f"{name} (build {build}{'.' + patch if patch else ''}, {machine})"
    return f"{name} ({machine})"
