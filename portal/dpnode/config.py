"""A DP node's settings: the environment first, defaults that need nothing installed second."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def default_root() -> str:
    """Where a node keeps its content unless told: C:\\Depot on Windows (a branch server's
    habit), data/dp-node in the checkout elsewhere."""
    return "C:\\Depot" if os.name == "nt" else str(BASE_DIR / "data" / "dp-node")


class NodeConfig:
    """A DP node (`python -m portal.dpnode run`): its content root, key and limits."""

    DEPOT_DP_ROOT = os.environ.get("DEPOT_DP_ROOT") or default_root()
    DEPOT_DP_KEY = os.environ.get("DEPOT_DP_KEY")
    # Uploads are refused up front (507) unless they leave this much free on the disk.
    DEPOT_DP_RESERVE_BYTES = _env_int("DEPOT_DP_RESERVE_BYTES", 1024 ** 3)
    # Partial uploads nobody touched for this long are removed.
    DEPOT_DP_UPLOAD_MAX_AGE = _env_int("DEPOT_DP_UPLOAD_MAX_AGE", 7 * 86400)
    DEPOT_DP_MAX_CHUNK = _env_int("DEPOT_DP_MAX_CHUNK", 64 * 1024 ** 2)
    # Set (e.g. "/depot-files/") when nginx serves downloads: see README, "DP nodes behind nginx".
    DEPOT_DP_X_ACCEL_PREFIX = os.environ.get("DEPOT_DP_X_ACCEL_PREFIX")
    # 0: speak only the first protocol (whole files), as a node from before delta copies did.
    DEPOT_DP_DELTA = _env_int("DEPOT_DP_DELTA", 1) == 1
    DEPOT_HASH_THREADS = _env_int("DEPOT_HASH_THREADS", min(os.cpu_count() or 1, 4))
    # 1: serve downloads (and health) only, as central's own node does on central's root.
    DEPOT_DP_DOWNLOADS_ONLY = _env_int("DEPOT_DP_DOWNLOADS_ONLY", 0) == 1
    # Bodies: an upload chunk (or a batch of delta chunks) is at most DEPOT_DP_MAX_CHUNK; a JSON
    # body (an upload's path, size and SHA-256) at most DEPOT_DP_MAX_JSON bytes (413 beyond).
    MAX_CONTENT_LENGTH = DEPOT_DP_MAX_CHUNK + 64 * 1024
    DEPOT_DP_MAX_JSON = _env_int("DEPOT_DP_MAX_JSON", 64 * 1024)
