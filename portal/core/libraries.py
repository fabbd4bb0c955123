"""The six content libraries, asset identity, and the canonical manifest digest of SPEC 2."""
import hashlib
from dataclasses import dataclass

LIBRARIES = (
    "Reference Machines", "Images", "Platform Packs", "Application Packs", "Answer Files", "Media",
)
SLUGS = {name: name.lower().replace(" ", "-") for name in LIBRARIES}
BY_SLUG = {slug: name for name, slug in SLUGS.items()}


def library_for_slug(slug: str) -> str | None:
    """The library named by a URL slug such as 'platform-packs'."""
    return BY_SLUG.get(slug)


def is_ignored_entry(name: str) -> bool:
    """Top-level entries that are not assets: hidden files and the temp files of copy tools."""
    return name.startswith(".") or name.startswith("~$") or name.endswith((".tmp", ".partial"))


@dataclass(frozen=True)
class ManifestEntry:
    path: str  # relative to the asset's own root; for a file asset, its name
    size: int
    sha256: str


def manifest_text(entries: list[ManifestEntry]) -> str:
    """The canonical manifest: one 'path<TAB>size<TAB>sha256' line a file, sorted by path bytes."""
    ordered = sorted(entries, key=lambda e: e.path.encode("utf-8"))
    return "".join(f"{e.path}\t{e.size}\t{e.sha256}\n" for e in ordered)


def manifest_digest(entries: list[ManifestEntry]) -> str:
    """The asset digest: SHA-256 of its canonical manifest."""
    return hashlib.sha256(manifest_text(entries).encode("utf-8")).hexdigest()


def split_inventory_path(path: str) -> tuple[str, str, str] | None:
    """(library, asset name, path inside the asset) for an inventory path, None outside libraries.

    A file directly in a library folder is a file asset whose inner path is its own name; a file
    deeper down belongs to the folder asset named by the first component.
    """
    parts = path.split("/")
    if len(parts) < 2 or parts[0] not in LIBRARIES or is_ignored_entry(parts[1]):
        return None
    if len(parts) == 2:
        return parts[0], parts[1], parts[1]
    return parts[0], parts[1], "/".join(parts[2:])
