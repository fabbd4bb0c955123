"""What the agent says about the machine it runs on: hostname, serial, MACs, IPs, OS, free space.

Linux reads /sys and /etc; Windows asks WMI and the registry (`winfacts`), which costs a
PowerShell start or two, so what it says about the hardware is kept for HARDWARE_TTL seconds
rather than asked again at every heartbeat.
"""
import glob
import os
import platform
import shutil
import socket
import sys
import time
from urllib.parse import urlsplit

from . import winfacts

HARDWARE_TTL = 600.0
_windows_cache: dict = {}


def on_windows() -> bool:
    return sys.platform == "win32"


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def serial_number() -> str:
    """The firmware's serial (needs root on most Linux), else the machine id."""
    serial = winfacts.usable_serial(_read("/sys/class/dmi/id/product_serial"))
    return serial or _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id")


def mac_addresses() -> list[str]:
    """MACs of the network interfaces (not loopback, not all zeros)."""
    macs = []
    for path in sorted(glob.glob("/sys/class/net/*/address")):
        if os.path.basename(os.path.dirname(path)) == "lo":
            continue
        mac = _read(path).lower()
        if len(mac) == 17 and mac != "00:00:00:00:00:00" and mac not in macs:
            macs.append(mac)
    return macs


def source_address(server: str) -> list[str]:
    """The local address this machine reaches the server from (no packet is sent)."""
    parts = urlsplit(server)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family[0], socket.SOCK_DGRAM) as sock:
            sock.connect(family[4])
            return [sock.getsockname()[0]]
    except OSError:
        return []


def os_name() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"') + f" ({platform.machine()})"
    return f"{platform.system()} {platform.release()} ({platform.machine()})"


def free_bytes(path: str) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def windows_hardware(need_serial: bool, need_adapters: bool) -> dict:
    """{serial, macs, ips, os} of this Windows machine. The serial is asked once (it does not
    change while the agent runs), the adapters every HARDWARE_TTL seconds; a question no tool
    answered (WMI not up yet at boot) is asked again after HARDWARE_TTL, and until then the
    last answer, or nothing, stands."""
    cache, now = _windows_cache, time.monotonic()
    if need_serial and "serial" not in cache and now >= cache.get("serial_retry", 0.0):
        serial = winfacts.bios_serial()
        if serial is None:
            cache["serial_retry"] = now + HARDWARE_TTL
        else:
            cache["serial"] = serial
    if need_adapters and now >= cache.get("adapters_until", 0.0):
        found = winfacts.adapters()
        if found is not None:
            cache["adapters"] = found
        cache["adapters_until"] = now + HARDWARE_TTL
    if "os" not in cache:
        cache["os"] = (winfacts.os_name(platform.machine())
                       or f"{platform.system()} {platform.release()} ({platform.machine()})")
    if need_serial and not cache.get("serial") and "machine_guid" not in cache:
        cache["machine_guid"] = winfacts.machine_guid()
    macs, ips = cache.get("adapters", ([], []))
    # Without a firmware serial (a VM, a board "To be filled by O.E.M."), the MachineGuid,
    # as /etc/machine-id stands in on Linux.
    serial = cache.get("serial") or cache.get("machine_guid", "")
    return {"serial": serial, "macs": macs, "ips": ips, "os": cache["os"]}


def _merged(*lists: list[str]) -> list[str]:
    merged = []
    for item in (i for one in lists for i in one):
        if item not in merged:
            merged.append(item)
    return merged[:winfacts.MAX_ADDRESSES]


def gather(args, server: str, version: str) -> dict:
    """The facts, with the command line's overrides."""
    if on_windows():
        found = windows_hardware(need_serial=args.serial is None,
                                 need_adapters=not (args.mac and args.ip))
        serial, macs, os_text = found["serial"], found["macs"], found["os"]
        # The address that reaches the server first (the one boundaries are most likely
        # written for), then the adapters' others.
        ips = _merged(source_address(server), found["ips"]) if not args.ip else []
    else:
        serial = serial_number() if args.serial is None else ""
        macs = mac_addresses() if not args.mac else []
        ips, os_text = source_address(server) if not args.ip else [], os_name()
    return {
        "hostname": args.hostname or socket.gethostname(),
        "serial": args.serial if args.serial is not None else serial,
        "mac_addresses": args.mac or macs,
        "ip_addresses": args.ip or ips,
        "os": os_text,
        "agent_version": version,
    }
