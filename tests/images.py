"""Images for delta-copy tests and the updates a month brings them: random bytes (what compressed
WIM data looks like), changed in place, shifted, or appended to with a new header."""
import os
import random

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.factories import write_file

IMAGE = "Images/Win11.wim"


def image(size: int, seed: int) -> bytes:
    """`size` random-looking bytes, the same for the same seed: AES-CTR's keystream, about five
    times faster than random.Random's (tests make tens of MiB of these)."""
    keystream = Cipher(algorithms.AES(seed.to_bytes(32, "big")), modes.CTR(bytes(16))).encryptor()
    return keystream.update(bytes(size)) + keystream.finalize()


def change_in_place(data: bytes, places: int, share: float, seed: int = 7) -> bytes:
    """`share` of the bytes rewritten, in `places` spots spread over the file."""
    rng, out = random.Random(seed), bytearray(data)
    span = int(len(data) * share / places)
    for n in range(places):
        start = (len(data) // places) * n + rng.randrange(len(data) // places - span)
        out[start:start + span] = rng.randbytes(span)
    return bytes(out)


def shift(data: bytes) -> bytes:
    """Bytes inserted in one place and deleted in another: everything between moves."""
    third = len(data) // 3
    return data[:third] + os.urandom(40_000) + data[third:2 * third] + data[2 * third + 30_000:]


def append_with_header(data: bytes) -> bytes:
    """What a WIM update does: new resources appended, the header at the start rewritten."""
    return os.urandom(4096) + data[4096:] + os.urandom(len(data) // 100)


def at_node(node, rel: str) -> bytes:
    with open(node.file(rel), "rb") as fh:
        return fh.read()


def update(central, rescan, rel: str, data: bytes) -> None:
    write_file(central.root, rel, data)
    rescan(central)
