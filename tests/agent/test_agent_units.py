"""Pieces of the reference agent on their own: path confinement, the state folder, the transfer
of one file (resume, a server that ignores Range, a damaged file)."""
import hashlib
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from portal.agent.staging import BadPath, confined
from portal.agent.state import State
from portal.agent.transfer import HashMismatch, LinkRefused, RateCap, TransferError, fetch


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "Images/../../x", "Images//x", "",
                                  "Images/./x", "C:/Windows", "Images/\0x", None])
def test_confined_refuses_paths_leaving_the_target(tmp_path, path):
    """Are absolute paths, '..', empty or '.' parts, drive letters and NUL refused?"""
    with pytest.raises(BadPath):
        confined(str(tmp_path), path)


def test_confined_refuses_a_symlink_out(tmp_path):
    """Is a path through a symlink leading out of the folder refused, and a plain one kept?"""
    (tmp_path / "staged").mkdir()
    os.symlink("/etc", tmp_path / "staged" / "Images")
    with pytest.raises(BadPath):
        confined(str(tmp_path / "staged"), "Images/passwd")
    assert confined(str(tmp_path / "staged"), "Media/a b.iso") == str(
        tmp_path / "staged" / "Media" / "a b.iso")


def test_state_keeps_the_device_token_private(tmp_path):
    """Is the device token saved mode 0600 in a 0700 folder, and only for its own server?"""
    state = State(str(tmp_path / "state"))
    state.save_device("http://depot:8080", 7, "ddt_secret")
    assert oct(os.stat(state.device_file).st_mode & 0o777) == "0o600"
    assert oct(os.stat(state.folder).st_mode & 0o777) == "0o700"
    assert State(state.folder).device("http://depot:8080")["device_token"] == "ddt_secret"
    assert State(state.folder).device("http://other:8080") == {}


DATA = os.urandom(100_000)


class _Handler(BaseHTTPRequestHandler):
    mode = "range"  # range, ignore-range, forbidden

    def do_GET(self):
        if self.server.mode == "forbidden":
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data, start = self.server.data, 0
        asked = self.headers.get("Range")
        self.server.ranges.append(asked)
        if asked and self.server.mode in ("range", "wrong-range"):
            start = int(asked.split("=")[1].rstrip("-"))
            if self.server.mode == "wrong-range":  # a broken proxy: another range than asked
                start = start // 2
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def files_server():
    """A plain HTTP file server (stdlib) serving DATA; `mode` says how it treats Range."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads, server.block_on_close = True, False
    server.mode, server.data, server.ranges = "range", DATA, []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _fetch(server, partial, sha=None):
    url = f"http://127.0.0.1:{server.server_address[1]}/f"
    fetch(url, str(partial), len(DATA), sha or hashlib.sha256(DATA).hexdigest(), "f",
          RateCap(0), lambda: None, lambda n: None)


@pytest.mark.parametrize("mode, expected_range", [("range", "bytes=40000-"),
                                                  ("ignore-range", "bytes=40000-")])
def test_fetch_resumes_or_starts_over(files_server, tmp_path, mode, expected_range):
    """Does a partial file resume with a Range request, and start over whole when the server
    answers 200 to it, ending verified either way?"""
    files_server.mode = mode
    partial = tmp_path / "p"
    partial.write_bytes(DATA[:40_000])
    _fetch(files_server, partial)
    assert partial.read_bytes() == DATA and files_server.ranges == [expected_range]


def test_fetch_starts_over_when_the_dp_answers_another_range(files_server, tmp_path):
    """When the DP answers 206 from another byte than the one asked for, is nothing written at
    the wrong place: the partial is dropped, the try fails as passing, and the next try, asking
    for the whole file, ends verified?"""
    files_server.mode = "wrong-range"
    partial = tmp_path / "p"
    partial.write_bytes(DATA[:40_000])
    with pytest.raises(TransferError, match="from byte 20000, not 40000"):
        _fetch(files_server, partial)
    assert partial.read_bytes() == b""
    _fetch(files_server, partial)
    assert partial.read_bytes() == DATA and files_server.ranges == ["bytes=40000-", None]


def test_fetch_refuses_a_damaged_file_and_a_refused_link(files_server, tmp_path):
    """Is a file whose SHA-256 differs removed with HashMismatch, and a 403 a LinkRefused?"""
    partial = tmp_path / "p"
    with pytest.raises(HashMismatch):
        _fetch(files_server, partial, sha="0" * 64)
    assert not partial.exists()
    files_server.mode = "forbidden"
    with pytest.raises(LinkRefused):
        _fetch(files_server, partial)


def test_space_check_counts_what_a_resumed_download_holds(tmp_path, monkeypatch):
    """An agent resuming a big download on a nearly full disk: does the space check ask only for
    the bytes still to come (the partial and the files already staged hold the rest), and still
    refuse when even those do not fit?"""
    from types import SimpleNamespace

    from portal.agent import runner as runner_module

    image, pack = b"i" * 1000, b"p" * 300
    files = [{"path": "Images/a.img", "size": 1000, "sha256": hashlib.sha256(image).hexdigest()},
             {"path": "Platform Packs/P/d.inf", "size": 300,
              "sha256": hashlib.sha256(pack).hexdigest()}]
    runner = runner_module.Runner(SimpleNamespace(target=str(tmp_path)), 7)
    os.makedirs(runner.partial_dir)
    with open(os.path.join(runner.partial_dir, files[0]["sha256"]), "wb") as fh:
        fh.write(image[:900])
    staged = os.path.join(runner.staged_dir, "Platform Packs", "P", "d.inf")
    os.makedirs(os.path.dirname(staged))
    with open(staged, "wb") as fh:
        fh.write(pack)
    manifest = {"bytes_total": 1300, "files": files}
    monkeypatch.setattr(runner_module.shutil, "disk_usage", lambda path: SimpleNamespace(free=150))
    runner._check_space(manifest)  # 100 bytes still to come
    monkeypatch.setattr(runner_module.shutil, "disk_usage", lambda path: SimpleNamespace(free=50))
    with pytest.raises(runner_module.Failed, match="need 100 bytes, 50 free"):
        runner._check_space(manifest)


def test_progress_bar_rate_leaves_out_what_was_there_before(monkeypatch):
    """After a restart, does the bar's rate count only the bytes that arrive now, not the 900 MiB
    the partial file already held?"""
    import io

    from portal.agent import display

    class Tty(io.StringIO):
        def isatty(self):
            return True

    clock = iter([100.0, 101.0])
    monkeypatch.setattr(display.time, "monotonic", lambda: next(clock))
    out = Tty()
    bar = display.ProgressBar(out, ansi=True)
    bar.begin(0)
    mib = 1024 * 1024
    bar.update(900 * mib, 1000 * mib, "Images/x.wim")  # the resumed prefix, at once
    bar.update(910 * mib, 1000 * mib, "Images/x.wim")  # 10 MiB in the next second
    assert "10.0 MiB/s" in out.getvalue().split("\r")[-1]
