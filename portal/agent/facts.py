"""What the agent says about the machine it runs on: hostname, serial, MACs, IPs, OS, free space."""
import glob
import os
import platform
import shutil
import socket
from urllib.parse import urlsplit


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def serial_number() -> str:
    """The firmware's serial (needs root on most Linux), else the machine id."""
    serial = _read("/sys/class/dmi/id/product_serial")
    if serial and serial.lower() not in ("", "none", "not specified", "to be filled by o.e.m.",
                                         "default string", "0"):
        return serial
    return _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id")


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


def gather(args, server: str, version: str) -> dict:
    """The facts, with the command line's overrides."""
    return {
        "hostname": args.hostname or socket.gethostname(),
        "serial": args.serial if args.serial is not None else serial_number(),
        "mac_addresses": args.mac or mac_addresses(),
        "ip_addresses": args.ip or source_address(server),
        "os": os_name(),
        "agent_version": version,
    }
