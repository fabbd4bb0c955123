"""The agent on Windows, tried on Linux: the facts parsed from recorded outputs of PowerShell and
wmic, the paths that pick Linux or Windows (with the platform swapped and a fake runner for the
commands), the device token protected with DPAPI (a fake in place of the two ctypes calls), and
plain progress lines where a console takes no ANSI."""
import base64
import io
import json
import logging
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from portal.agent import display, facts, state as state_module, winfacts
from portal.agent.state import State, TokenNotSaved
from portal.agent.winfacts import CommandFailed

DATA = Path(__file__).parent / "data"


def recorded(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.fixture
def agent_log(caplog):
    """The agent's log records (its logger stops propagating once the agent sets it up)."""
    logger = logging.getLogger("depot.agent")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="depot.agent")
    yield caplog
    logger.removeHandler(caplog.handler)


class FakeWindows:
    """Answers the commands the agent runs as the recorded outputs say; `fail` names the tools
    that fail ("powershell", "wmic") and how; `calls` lists what ran."""

    def __init__(self, bios="ps-bios.json", adapters="ps-adapters-many.json",
                 wmic_bios="wmic-bios.txt", wmic_adapters="wmic-nicconfig.txt"):
        self.answers = {("powershell", "bios"): bios, ("powershell", "adapters"): adapters,
                        ("wmic", "bios"): wmic_bios, ("wmic", "adapters"): wmic_adapters}
        self.fail: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []
        self.registry = {
            ("SOFTWARE\\Microsoft\\Cryptography", "MachineGuid"):
                "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
            ("SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion", "ProductName"): "Windows 10 Pro",
            ("SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion", "DisplayVersion"): "23H2",
            ("SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion", "CurrentBuildNumber"): "22631",
            ("SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion", "UBR"): "3007",
        }

    def run(self, argv, timeout=winfacts.COMMAND_TIMEOUT):
        tool = "powershell" if argv[0].endswith("powershell.exe") else "wmic"
        assert os.path.basename(argv[0]) in ("powershell.exe", "WMIC.exe")
        asked = " ".join(argv[1:])
        what = "bios" if ("Win32_BIOS" in asked or argv[1:2] == ["bios"]) else "adapters"
        self.calls.append((tool, what))
        if tool in self.fail:
            raise CommandFailed(self.fail[tool])
        answer = self.answers[(tool, what)]
        return answer if isinstance(answer, bytes) else recorded(answer)

    def read(self, key, name):
        return self.registry.get((key, name), "")


@pytest.fixture
def windows(monkeypatch):
    """This process seen as Windows by the agent's facts: sys.platform 'win32', the commands
    and the registry faked, the facts' cache empty."""
    fake = FakeWindows()
    monkeypatch.setattr(winfacts, "run_command", fake.run)
    monkeypatch.setattr(winfacts, "read_registry", fake.read)
    monkeypatch.setattr(facts, "_windows_cache", {})
    monkeypatch.setattr(facts.platform, "machine", lambda: "AMD64")
    monkeypatch.setattr(sys, "platform", "win32")
    return fake


def args(**given):
    return SimpleNamespace(**{"hostname": None, "serial": None, "mac": None, "ip": None, **given})


# --- parsing what Windows prints -------------------------------------------------------------

def test_powershell_bios_serial_and_placeholders():
    """Is the BIOS serial read from PowerShell's JSON (BOM, CRLF), and a firmware placeholder
    ("To be filled by O.E.M.") read as no serial?"""
    assert winfacts.bios_from_json(winfacts.decode(recorded("ps-bios.json"))) == "5CG2147KQ9"
    assert winfacts.bios_from_json(winfacts.decode(recorded("ps-bios-oem.json"))) == ""
    assert winfacts.bios_from_json("") == ""


@pytest.mark.parametrize("serial", ["To be filled by O.E.M.", "", "0", "   ", "Default string",
                                    "System Serial Number", "00000000", None, 17])
def test_placeholder_serials_are_no_serial(serial):
    """Are empty, "0", all-zero and the usual firmware placeholders (or a non-string) no
    serial, so two machines never share one?"""
    assert winfacts.usable_serial(serial) == ""
    text = json.dumps({"SerialNumber": serial})
    assert winfacts.bios_from_json(text) == ""


def test_powershell_one_adapter_is_an_object():
    """ConvertTo-Json prints one adapter as an object, not a list: is it read all the same,
    without the link-local address every adapter has?"""
    macs, ips = winfacts.adapters_from_json(winfacts.decode(recorded("ps-adapters-one.json")))
    assert macs == ["3c:52:82:6a:f1:0e"]
    assert ips == ["10.20.4.37"]


def test_powershell_several_adapters_are_a_list():
    """Are several adapters read in order, MACs lower-case and once each, an IPAddress given
    as a plain string or null taken as it comes, IPv6 kept unless link-local?"""
    macs, ips = winfacts.adapters_from_json(winfacts.decode(recorded("ps-adapters-many.json")))
    assert macs == ["3c:52:82:6a:f1:0e", "f4:8c:50:11:a2:3b", "00:15:5d:01:6e:04",
                    "00:ff:3a:9c:44:10"]
    assert ips == ["10.20.4.37", "2001:db8:4:20::25", "192.168.1.23", "172.29.160.1",
                   "10.250.0.14"]


def test_powershell_output_that_is_not_json_fails():
    """Does an answer that is not JSON (a warning, a broken pipe) count as a failure, so wmic
    is asked instead of reporting nothing?"""
    with pytest.raises(CommandFailed, match="not JSON"):
        winfacts.adapters_from_json("WARNING: something\r\n")


def test_wmic_list_output_in_utf16():
    """Is wmic's /format:list output read: UTF-16 with or without a BOM, CR CR LF line ends,
    blank lines, an array of addresses in braces?"""
    assert winfacts.bios_from_wmic(winfacts.decode(recorded("wmic-bios.txt"))) == "PF2ABC7D"
    assert winfacts.bios_from_wmic(winfacts.decode(recorded("wmic-bios-empty.txt"))) == ""
    macs, ips = winfacts.adapters_from_wmic(winfacts.decode(recorded("wmic-nicconfig.txt")))
    assert macs == ["3c:52:82:6a:f1:0e", "0a:00:27:00:00:0c"]
    assert ips == ["10.20.4.37", "192.168.56.1"]


def test_wmic_records_split_on_a_repeated_name():
    """With no blank line between two instances, does a name seen again start the next one?"""
    text = "IPAddress={\"10.0.0.1\"}\r\nMACAddress=AA:BB:CC:DD:EE:01\r\n" \
           "IPAddress={\"10.0.0.2\"}\r\nMACAddress=AA:BB:CC:DD:EE:02\r\n"
    assert [r["MACAddress"] for r in winfacts.wmic_records(text)] == [
        "AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:02"]


def test_addresses_are_cleaned_and_capped():
    """Are bad MACs and addresses dropped (not sent to a server that would refuse the whole
    heartbeat), zone suffixes cut, and each list capped at what the server takes?"""
    assert winfacts.normal_macs(["00-15-5D-01-02-03", "00:00:00:00:00:00", "nonsense", None,
                                 "00155d010203"]) == ["00:15:5d:01:02:03"]
    assert winfacts.normal_ips(["fe80::1%12", "127.0.0.1", "0.0.0.0", "10.1.2.3%4", "x",
                                "224.0.0.251"]) == ["10.1.2.3"]
    many = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(40)]
    assert len(winfacts.normal_ips(many)) == winfacts.MAX_ADDRESSES


@pytest.mark.parametrize("product, build, expected", [
    ("Windows 10 Pro", "22631", "Windows 11 Pro 23H2 (build 22631.3007, AMD64)"),
    ("Windows 10 Enterprise", "19045", "Windows 10 Enterprise 23H2 (build 19045.3007, AMD64)"),
    ("Windows Server 2022 Standard", "20348",
     "Windows Server 2022 Standard 23H2 (build 20348.3007, AMD64)"),
])
def test_windows_os_name_from_the_registry(product, build, expected):
    """Is the OS named from the registry, with Windows 11 told apart by its build (its
    ProductName still says Windows 10)?"""
    fake = FakeWindows()
    fake.registry[("SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion", "ProductName")] = product
    fake.registry[("SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion", "CurrentBuildNumber")] = build
    assert winfacts.os_name("AMD64", read=fake.read) == expected
    assert winfacts.os_name("AMD64", read=lambda key, name: "") == ""


# --- asking, with PowerShell, then wmic ------------------------------------------------------

def test_wmic_answers_when_powershell_is_missing(agent_log):
    """With PowerShell missing, are the serial and adapters read from wmic, with the reason
    logged?"""
    fake = FakeWindows()
    fake.fail["powershell"] = "cannot start powershell.exe: [WinError 2] not found"
    assert winfacts.bios_serial(run=fake.run) == "PF2ABC7D"
    assert winfacts.adapters(run=fake.run)[0] == ["3c:52:82:6a:f1:0e", "0a:00:27:00:00:0c"]
    assert fake.calls == [("powershell", "bios"), ("wmic", "bios"),
                          ("powershell", "adapters"), ("wmic", "adapters")]
    assert "BIOS serial through PowerShell failed (cannot start powershell.exe" in agent_log.text


def test_wmic_answers_when_powershell_prints_no_json():
    """When PowerShell answers something that is not JSON, is wmic asked?"""
    fake = FakeWindows(adapters=b"\r\nGet-CimInstance : Invalid class\r\n")
    assert winfacts.adapters(run=fake.run)[1] == ["10.20.4.37", "192.168.56.1"]
    assert fake.calls == [("powershell", "adapters"), ("wmic", "adapters")]


def test_no_tool_answers(agent_log):
    """With PowerShell and wmic both failing, is the answer None (not a crash, not a guess),
    with both reasons in the log?"""
    fake = FakeWindows()
    fake.fail.update(powershell="powershell.exe timed out after 20 s",
                     wmic="cannot start WMIC.exe: [WinError 2] not found")
    assert winfacts.bios_serial(run=fake.run) is None
    assert winfacts.adapters(run=fake.run) is None
    assert "powershell.exe timed out after 20 s" in agent_log.text
    assert "no network adapters from this machine: PowerShell and wmic both failed " \
           "(cannot start WMIC.exe" in agent_log.text


def test_commands_are_run_by_full_path(monkeypatch):
    """Are PowerShell and wmic started from %SystemRoot%, never by a bare name Windows would
    look up in the current folder first, and does PowerShell start without a profile?"""
    monkeypatch.setenv("SystemRoot", "D:\\Win")
    command = winfacts.powershell(winfacts.PS_BIOS)
    assert command[0] == os.path.join("D:\\Win", "System32", "WindowsPowerShell", "v1.0",
                                      "powershell.exe")
    assert "-NoProfile" in command and command[-1].endswith(winfacts.PS_BIOS)
    assert winfacts.wmic(winfacts.WMIC_BIOS)[0] == os.path.join("D:\\Win", "System32", "wbem",
                                                                "WMIC.exe")


@pytest.mark.slow
def test_run_command_never_hangs_and_says_why(tmp_path):
    """Does the real runner give stdout, and for a missing tool, a non-zero exit or a command
    that hangs past its timeout a CommandFailed with the reason (the hung one killed)?"""
    python = sys.executable
    assert winfacts.run_command([python, "-c", "print('SerialNumber=X')"]).strip() == \
        b"SerialNumber=X"
    with pytest.raises(CommandFailed, match="cannot start no-such-tool.exe"):
        winfacts.run_command([str(tmp_path / "no-such-tool.exe")])
    with pytest.raises(CommandFailed, match="exited 3: Invalid class"):
        winfacts.run_command([python, "-c", "import sys; sys.stderr.write('Invalid class\\n');"
                              " sys.exit(3)"])
    marker = tmp_path / "still-running"
    with pytest.raises(CommandFailed, match="timed out after 0.5 s"):
        winfacts.run_command([python, "-c", "import time, pathlib; time.sleep(30); "
                              f"pathlib.Path({str(marker)!r}).touch()"], timeout=0.5)
    assert not marker.exists()


# --- which platform's facts -------------------------------------------------------------------

def test_gather_on_windows(windows, monkeypatch):
    """On Windows, are the serial, MACs, adapters' addresses (after the one that reaches the
    server) and OS name from WMI and the registry, and are the commands run once for several
    heartbeats?"""
    monkeypatch.setattr(facts, "source_address", lambda server: ["192.168.1.23"])
    found = facts.gather(args(), "http://depot:8080", "1.2.3")
    assert found["serial"] == "5CG2147KQ9"
    assert found["mac_addresses"][:2] == ["3c:52:82:6a:f1:0e", "f4:8c:50:11:a2:3b"]
    assert found["ip_addresses"] == ["192.168.1.23", "10.20.4.37", "2001:db8:4:20::25",
                                     "172.29.160.1", "10.250.0.14"]
    assert found["os"] == "Windows 11 Pro 23H2 (build 22631.3007, AMD64)"
    assert found["agent_version"] == "1.2.3" and found["hostname"]
    facts.gather(args(), "http://depot:8080", "1.2.3")
    assert windows.calls == [("powershell", "bios"), ("powershell", "adapters")]


def test_gather_on_windows_asks_the_adapters_again_later(windows, monkeypatch):
    """After HARDWARE_TTL, are the adapters asked again (a laptop docked), the serial not?"""
    clock = [1000.0]
    monkeypatch.setattr(facts.time, "monotonic", lambda: clock[0])
    facts.gather(args(), "http://depot:8080", "1")
    clock[0] += facts.HARDWARE_TTL + 1
    windows.answers[("powershell", "adapters")] = "ps-adapters-one.json"
    assert facts.gather(args(), "http://depot:8080", "1")["mac_addresses"] == [
        "3c:52:82:6a:f1:0e"]
    assert windows.calls == [("powershell", "bios"), ("powershell", "adapters"),
                             ("powershell", "adapters")]


def test_gather_on_windows_without_a_firmware_serial(windows):
    """With a BIOS serial "To be filled by O.E.M.", is the MachineGuid reported instead?"""
    windows.answers[("powershell", "bios")] = "ps-bios-oem.json"
    assert facts.gather(args(), "http://x", "1")["serial"] == \
        "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


def test_gather_on_windows_when_wmi_does_not_answer(windows, monkeypatch, agent_log):
    """With every command failing (WMI not up yet at boot), does the agent still heartbeat
    (MachineGuid, no MACs, the source address), and ask again after HARDWARE_TTL, keeping
    the serial it then gets?"""
    clock = [1000.0]
    monkeypatch.setattr(facts.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(facts, "source_address", lambda server: ["10.20.4.37"])
    windows.fail.update(powershell="powershell.exe exited 1", wmic="WMIC.exe exited 1")
    found = facts.gather(args(), "http://x", "1")
    assert found["serial"] == "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
    assert found["mac_addresses"] == [] and found["ip_addresses"] == ["10.20.4.37"]
    assert "no BIOS serial from this machine" in agent_log.text
    facts.gather(args(), "http://x", "1")
    assert len(windows.calls) == 4  # not asked again at once
    windows.fail.clear()
    clock[0] += facts.HARDWARE_TTL + 1
    found = facts.gather(args(), "http://x", "1")
    assert found["serial"] == "5CG2147KQ9" and found["mac_addresses"]


def test_gather_on_windows_runs_nothing_the_command_line_gives(windows):
    """With --serial, --mac and --ip given, is no command run at all?"""
    found = facts.gather(args(serial="SN-1", mac=["52:54:00:00:00:01"], ip=["10.9.0.1"]),
                         "http://x", "1")
    assert (found["serial"], found["mac_addresses"], found["ip_addresses"]) == (
        "SN-1", ["52:54:00:00:00:01"], ["10.9.0.1"])
    assert windows.calls == []


def test_gather_on_linux_runs_no_windows_command(monkeypatch):
    """On Linux, are the facts read from /sys and /etc, without PowerShell, wmic or the
    registry?"""
    def refuse(*a, **k):
        raise AssertionError("a Windows tool was asked on Linux")
    monkeypatch.setattr(winfacts, "run_command", refuse)
    monkeypatch.setattr(winfacts, "read_registry", refuse)
    monkeypatch.setattr(facts, "_read", lambda path: {
        "/sys/class/dmi/id/product_serial": "To be filled by O.E.M.",
        "/etc/machine-id": "0123abcd" * 4,
        "/etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"'}.get(path, ""))
    monkeypatch.setattr(facts, "source_address", lambda server: ["10.1.1.1"])
    found = facts.gather(args(), "http://x", "1")
    assert found["serial"] == "0123abcd" * 4
    assert found["ip_addresses"] == ["10.1.1.1"]
    assert found["os"].startswith("Debian GNU/Linux 12 (bookworm)")


# --- the device token ---------------------------------------------------------------------

class FakeDpapi:
    """Stands in for win32.protect/unprotect: a reversible scramble tied to the entropy and to
    an 'account', so a blob of another account fails as DPAPI's does."""

    def __init__(self, account="NT AUTHORITY\\LocalService"):
        self.account = account.encode()
        self.fail_protect = False

    def protect(self, data, entropy):
        if self.fail_protect:
            raise OSError(1312, "A specified logon session does not exist")
        return b"DPAPI" + self.account + b"|" + entropy + b"|" + data[::-1]

    def unprotect(self, blob, entropy):
        prefix = b"DPAPI" + self.account + b"|" + entropy + b"|"
        if not blob.startswith(prefix):
            raise OSError(13, "The data is invalid")
        return blob[len(prefix):][::-1]


@pytest.fixture
def dpapi(monkeypatch):
    """This process seen as Windows by the state folder, DPAPI faked."""
    fake = FakeDpapi()
    monkeypatch.setattr(state_module, "_win32", lambda: fake)
    monkeypatch.setattr(sys, "platform", "win32")
    return fake


def test_linux_keeps_the_token_in_a_0600_file_without_loading_ctypes(tmp_path, monkeypatch):
    """On Linux, is the token saved as `device_token` (mode 0600), and the progress set up,
    without loading the agent's ctypes module?"""
    import portal.agent

    monkeypatch.delitem(sys.modules, "portal.agent.win32", raising=False)
    monkeypatch.delattr(portal.agent, "win32", raising=False)
    state = State(str(tmp_path / "state"))
    state.save_device("http://depot:8080", 7, "ddt_secret")
    assert json.loads(Path(state.device_file).read_text())["device_token"] == "ddt_secret"
    assert oct(os.stat(state.device_file).st_mode & 0o777) == "0o600"
    assert state.device("http://depot:8080")["device_token"] == "ddt_secret"
    display.ProgressBar(io.StringIO())
    assert "portal.agent.win32" not in sys.modules


def test_windows_protects_the_token_with_dpapi(tmp_path, dpapi):
    """On Windows, does the file hold the DPAPI blob (base64) and no token in clear, and is it
    read back as the token?"""
    state = State(str(tmp_path / "state"))
    state.save_device("http://depot:8080", 7, "ddt_secret")
    raw = Path(state.device_file).read_text()
    assert "ddt_secret" not in raw
    saved = json.loads(raw)
    assert set(saved) == {"server", "device_id", "device_token_dpapi"}
    assert base64.b64decode(saved["device_token_dpapi"]).startswith(b"DPAPI")
    again = State(state.folder).device("http://depot:8080")
    assert (again["device_id"], again["device_token"]) == (7, "ddt_secret")
    assert State(state.folder).device("http://other:8080") == {}


def test_windows_token_of_another_account_means_enrolling_again(tmp_path, dpapi, monkeypatch,
                                                                agent_log):
    """A device.json protected by another account (the folder copied, the service account
    changed): is it read as no token, with the reason logged, rather than a crash?"""
    state = State(str(tmp_path / "state"))
    state.save_device("http://depot:8080", 7, "ddt_secret")
    monkeypatch.setattr(state_module, "_win32", lambda: FakeDpapi("NT AUTHORITY\\SYSTEM"))
    assert state.device("http://depot:8080") == {}
    assert "cannot unprotect the device token" in agent_log.text
    Path(state.device_file).write_text(json.dumps(
        {"server": "http://depot:8080", "device_id": 7, "device_token_dpapi": "not base64!"}))
    assert state.device("http://depot:8080") == {}


def test_windows_protects_a_token_saved_in_clear(tmp_path, dpapi):
    """A device.json an earlier agent saved in clear on Windows: is its token used, and the
    file rewritten protected?"""
    state = State(str(tmp_path / "state"))
    Path(state.device_file).write_text(json.dumps(
        {"server": "http://depot:8080", "device_id": 7, "device_token": "ddt_old"}))
    assert state.device("http://depot:8080")["device_token"] == "ddt_old"
    assert "ddt_old" not in Path(state.device_file).read_text()
    assert state.device("http://depot:8080")["device_token"] == "ddt_old"


def test_windows_refuses_to_save_a_token_dpapi_cannot_protect(tmp_path, dpapi):
    """When DPAPI refuses (an account without a loaded profile), is nothing written, with a
    message naming the cause?"""
    dpapi.fail_protect = True
    state = State(str(tmp_path / "state"))
    with pytest.raises(TokenNotSaved, match="cannot protect the device token with DPAPI"):
        state.save_device("http://depot:8080", 7, "ddt_secret")
    assert not os.path.exists(state.device_file)


def test_linux_cannot_read_a_windows_token(tmp_path, agent_log):
    """A device.json from Windows on Linux: no token (enroll again), with the reason logged?"""
    state = State(str(tmp_path / "state"))
    Path(state.device_file).write_text(json.dumps(
        {"server": "http://depot:8080", "device_id": 7, "device_token_dpapi": "RFBBUEk="}))
    assert state.device("http://depot:8080") == {}
    assert "protected by Windows (DPAPI)" in agent_log.text


def test_dpapi_blob_marshalling():
    """Does the DATA_BLOB handed to crypt32 point at exactly the bytes given (the part of the
    ctypes code that runs on Linux too)?"""
    import ctypes

    from portal.agent import win32

    blob, keep = win32._blob(b"ddt_\x00secret")
    assert blob.cbData == 11 and ctypes.string_at(blob.pbData, blob.cbData) == b"ddt_\x00secret"


# --- progress where the console takes no ANSI --------------------------------------------------

class Tty(io.StringIO):
    def isatty(self):
        return True


def test_when_the_bar_is_drawn(monkeypatch):
    """Is the redrawn bar used on a terminal only: not on a pipe or a file, not with NO_COLOR or
    TERM=dumb, and on Windows only where the console takes VT sequences?"""
    assert display.takes_ansi(Tty(), environ={}) is True
    assert display.takes_ansi(io.StringIO(), environ={}) is False
    assert display.takes_ansi(Tty(), environ={"NO_COLOR": "1"}) is False
    assert display.takes_ansi(Tty(), environ={"TERM": "dumb"}) is False
    assert display.takes_ansi(Tty(), environ={"NO_COLOR": ""}) is True  # empty: see no-color.org
    monkeypatch.setattr(sys, "platform", "win32")
    consoles = []
    monkeypatch.setattr(display, "_enable_vt", lambda stream: consoles.append(stream) or False)
    assert display.takes_ansi(Tty(), environ={}) is False  # an old conhost
    monkeypatch.setattr(display, "_enable_vt", lambda stream: True)
    assert display.takes_ansi(Tty(), environ={}) is True
    assert display.takes_ansi(io.StringIO(), environ={}) is False
    assert len(consoles) == 1


def _progress(bar, monkeypatch, steps):
    clock = iter(t for t, *_ in steps)
    monkeypatch.setattr(display.time, "monotonic", lambda: next(clock))
    bar.begin(0)
    for _, done, total, label, force in steps:
        bar.update(done, total, label, force=force)


GIB = 1024 ** 3
# (time, bytes done, total, file, forced): a 5.2 GiB image over 10 s, then a small pack file.
STEPS = [(0.0, 0, int(5.3 * GIB), "Images/Win11.wim", False),
         (1.0, int(0.2 * GIB), int(5.3 * GIB), "Images/Win11.wim", False),
         (2.0, int(0.4 * GIB), int(5.3 * GIB), "Images/Win11.wim", False),
         (5.5, int(2.2 * GIB), int(5.3 * GIB), "Images/Win11.wim", False),
         (9.0, int(5.2 * GIB), int(5.3 * GIB), "Images/Win11.wim", True),
         (9.5, int(5.3 * GIB), int(5.3 * GIB), "Platform Packs/Dell/a.inf", True)]


def test_plain_progress_lines_every_few_seconds(monkeypatch):
    """Without ANSI, are there plain lines (file, percent, bytes of total, rate) at most every
    PLAIN_EVERY seconds, the end of one file not forced out but the end of all of them?"""
    out = io.StringIO()
    _progress(display.ProgressBar(out, ansi=False), monkeypatch, STEPS)
    lines = out.getvalue().splitlines()
    assert lines == ["Images/Win11.wim 0% 0 B of 5.3 GiB, …",
                     "Images/Win11.wim 41% 2.2 GiB of 5.3 GiB, 409.6 MiB/s",
                     "Platform Packs/Dell/a.inf 100% 5.3 GiB of 5.3 GiB, 571.3 MiB/s"]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_bar_redraws_on_an_ansi_terminal(monkeypatch):
    """On a terminal with ANSI, is one line redrawn in place (every update 0.2 s apart, and
    each file's end), with no newline?"""
    out = Tty()
    _progress(display.ProgressBar(out, ansi=True), monkeypatch, STEPS)
    text = out.getvalue()
    assert "\n" not in text and text.count("\r\x1b[K[") == 6
    assert text.split("\r\x1b[K")[-1].startswith("[##############################] 100% ")


def test_plain_progress_goes_to_the_log(monkeypatch):
    """Does the agent's logging set-up route plain progress lines through its log (timestamped
    in a service's log file) and leave a pipe free of ANSI sequences?"""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    logger = logging.getLogger("depot.agent")
    saved = logger.handlers[:], logger.level, logger.propagate
    try:
        bar = display.setup_logging()
        assert bar.ansi is False
        bar.begin(0)
        bar.update(42, 100, "Images/Win11.wim")
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
    line = stderr.getvalue()
    assert line.endswith(" INFO Images/Win11.wim 42% 42 B of 100 B, …\n")
    assert "\x1b" not in line
