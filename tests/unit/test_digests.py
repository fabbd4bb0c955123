import hashlib

from portal.core.libraries import (
    ManifestEntry,
    library_for_slug,
    manifest_digest,
    manifest_text,
    split_inventory_path,
)


def test_manifest_is_sorted_and_canonical():
    """Is the manifest the sorted path, size and SHA-256 lines that SPEC section 2 defines?"""
    entries = [ManifestEntry("b.bin", 2, "bb" * 32), ManifestEntry("a/c.txt", 1, "aa" * 32)]
    text = manifest_text(entries)
    assert text == f"a/c.txt\t1\t{'aa' * 32}\nb.bin\t2\t{'bb' * 32}\n"
    assert manifest_digest(entries) == hashlib.sha256(text.encode()).hexdigest()
    assert manifest_digest(list(reversed(entries))) == manifest_digest(entries)


def test_digest_covers_every_file():
    """Does changing, adding or renaming any file of a folder asset change its digest?"""
    base = [ManifestEntry("a", 1, "11" * 32), ManifestEntry("sub/b", 2, "22" * 32)]
    digest = manifest_digest(base)
    assert manifest_digest([base[0], ManifestEntry("sub/b", 2, "33" * 32)]) != digest
    assert manifest_digest(base + [ManifestEntry("c", 0, hashlib.sha256(b"").hexdigest())]) != digest
    assert manifest_digest([base[0], ManifestEntry("sub/renamed", 2, "22" * 32)]) != digest


def test_split_paths_into_assets():
    """Are library files, folder assets and ignored entries told apart?"""
    assert split_inventory_path("Images/Win11.wim") == ("Images", "Win11.wim", "Win11.wim")
    assert split_inventory_path("Reference Machines/Ref/disk/a.vhdx") == (
        "Reference Machines", "Ref", "disk/a.vhdx")
    assert split_inventory_path("Other/x") is None
    assert split_inventory_path("Images/.hidden") is None
    assert split_inventory_path("Images/copy.wim.partial") is None
    assert library_for_slug("platform-packs") == "Platform Packs"
    assert library_for_slug("nope") is None
