"""What the agent keeps across restarts, in its state folder: the device token (mode 0600) and,
per deployment, the last report number and a final report the server has not confirmed yet."""
import json
import os


class State:
    def __init__(self, folder: str):
        self.folder = folder
        os.makedirs(os.path.join(folder, "deployments"), mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)

    def _write(self, path: str, data: dict) -> None:
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
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
        return data if data.get("server") == server and data.get("device_token") else {}

    def save_device(self, server: str, device_id: int, token: str) -> None:
        self._write(self.device_file, {"server": server, "device_id": device_id,
                                       "device_token": token})

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
