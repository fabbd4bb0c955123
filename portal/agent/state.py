"""What the agent keeps across restarts, in its state folder: the device token and, per
deployment, the last report number and a final report the server has not confirmed yet.

The device token is readable by the agent's own account only. On POSIX: mode 0600 in a 0700
folder. On Windows, where those modes mean nothing: the token is protected with DPAPI in the
scope of the account the agent runs as (the service account), so the file holds
`device_token_dpapi` (base64 of the DPAPI blob) instead of `device_token`. The ctypes calls are
in `win32`, loaded only on Windows through `_win32()`.
"""
import base64
import json
import logging
import os
import sys

log = logging.getLogger("depot.agent")
# Ties the DPAPI blob to this use: another program of the same account that unprotects blobs
# it is handed cannot be made to unprotect this one without knowing it.
TOKEN_ENTROPY = b"depot-agent device token"


class TokenNotSaved(Exception):
    """The device token could not be protected (DPAPI refused): it is not written in clear."""


def protects_with_dpapi() -> bool:
    return sys.platform == "win32"


def _win32():
    from . import win32  # ctypes and the Windows DLLs: only ever imported on Windows

    return win32


class State:
    def __init__(self, folder: str):
        self.folder = folder
        os.makedirs(os.path.join(folder, "deployments"), mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)

    def _write(self, path: str, data: dict) -> None:
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # a .tmp left over by someone else keeps its mode otherwise
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def _read(self, path: str) -> dict:
        try:
            with open(path) as fh:
                data = json.load(fh)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    @property
    def device_file(self) -> str:
        return os.path.join(self.folder, "device.json")

    def device(self, server: str) -> dict:
        """{device_id, device_token} saved for this server, or {}."""
        data = self._read(self.device_file)
        if data.get("server") != server:
            return {}
        token = self._token(data)
        if not token:
            return {}
        return {"server": server, "device_id": data.get("device_id"), "device_token": token}

    def _token(self, data: dict) -> str | None:
        if "device_token_dpapi" in data:
            if not protects_with_dpapi():
                log.warning("%s holds a token protected by Windows (DPAPI), which only its own "
                            "account on its own machine can read; enrolling again",
                            self.device_file)
                return None
            try:
                blob = base64.b64decode(str(data["device_token_dpapi"]), validate=True)
                return _win32().unprotect(blob, TOKEN_ENTROPY).decode()
            except (OSError, ValueError) as exc:
                log.warning("cannot unprotect the device token in %s (%s): saved by another "
                            "account or on another machine? Enrolling again", self.device_file,
                            exc)
                return None
        token = data.get("device_token")
        if not isinstance(token, str) or not token:
            return None
        if protects_with_dpapi():  # saved in clear by an agent before DPAPI: protect it now
            try:
                self.save_device(data["server"], data.get("device_id"), token)
            except TokenNotSaved as exc:
                log.warning("%s", exc)
        return token

    def save_device(self, server: str, device_id: int, token: str) -> None:
        record = {"server": server, "device_id": device_id}
        if protects_with_dpapi():
            try:
                blob = _win32().protect(token.encode(), TOKEN_ENTROPY)
            except OSError as exc:
                raise TokenNotSaved(
                    f"cannot protect the device token with DPAPI ({exc}); run the agent as a "
                    "service account with a profile (see docs/windows-agent.md)") from None
            record["device_token_dpapi"] = base64.b64encode(blob).decode("ascii")
        else:
            record["device_token"] = token
        self._write(self.device_file, record)

    def forget_device(self) -> None:
        try:
            os.remove(self.device_file)
        except FileNotFoundError:
            pass

    def _deployment_file(self, deployment_id: int) -> str:
        return os.path.join(self.folder, "deployments", f"{int(deployment_id)}.json")

    def deployment(self, deployment_id: int) -> dict:
        return self._read(self._deployment_file(deployment_id))

    def save_deployment(self, deployment_id: int, data: dict) -> None:
        self._write(self._deployment_file(deployment_id), data)

    def forget_deployment(self, deployment_id: int) -> None:
        try:
            os.remove(self._deployment_file(deployment_id))
        except FileNotFoundError:
            pass
