import base64
import hashlib
import os
import random

import pytest

from portal.core.hashes import DROPBOX_BLOCK, Hasher, provider_hashes


def quickxor_reference(data: bytes) -> str:
    """QuickXorHash as Microsoft publishes it: byte i is XORed in at bit (11 * i) mod 160 of a
    160-bit ring, then the length (64-bit little-endian) is XORed into the last 8 bytes."""
    ring = 0
    for i, byte in enumerate(data):
        shifted = byte << ((11 * i) % 160)
        ring ^= (shifted & ((1 << 160) - 1)) | (shifted >> 160)
    out = bytearray(ring.to_bytes(20, "little"))
    for i, b in enumerate(len(data).to_bytes(8, "little")):
        out[12 + i] ^= b
    return base64.b64encode(bytes(out)).decode()


def dropbox_reference(data: bytes) -> str:
    blocks = b"".join(hashlib.sha256(data[i:i + DROPBOX_BLOCK]).digest()
                      for i in range(0, len(data), DROPBOX_BLOCK))
    return hashlib.sha256(blocks).hexdigest()


def test_quickxor_matches_the_published_algorithm():
    """Does the C extension compute Microsoft's QuickXorHash (several lengths, seeded)?"""
    rng = random.Random(4)
    for length in (0, 1, 19, 20, 21, 159, 160, 161, 1000, 4099):
        data = rng.randbytes(length)
        assert provider_hashes(data, ("quickxor",))["quickxor"] == quickxor_reference(data), length


@pytest.mark.parametrize("piece", [1_000_003, 3 * 1024 * 1024 + 5])
def test_dropbox_content_hash_over_block_boundaries(piece):
    """Is Dropbox's content_hash right for empty, one-byte, exact-block and odd sizes, fed in
    pieces that straddle its 4 MiB blocks?"""
    for length in (0, 1, 5, DROPBOX_BLOCK - 1, DROPBOX_BLOCK, DROPBOX_BLOCK + 1,
                   2 * DROPBOX_BLOCK + 12345):
        data = os.urandom(length)
        hasher = Hasher(("dropbox",))
        for start in range(0, length, piece):
            hasher.update(memoryview(data)[start:start + piece])
        assert hasher.hashes()["dropbox"] == dropbox_reference(data), length


def test_one_pass_gives_every_hash():
    """Does one pass give the SHA-256 and each provider's hash as the provider writes it?"""
    data = os.urandom(300_000)
    hasher = Hasher(("quickxor", "md5", "dropbox"))
    hasher.update(data)
    assert hasher.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    assert hasher.hashes() == {"quickxor": quickxor_reference(data),
                               "md5": hashlib.md5(data).hexdigest(),
                               "dropbox": dropbox_reference(data)}
    assert Hasher().hashes() == {}
