"""The pieces the cloud drivers share (portal.storage.kit): one parser of the providers'
modification times and one stream their downloads are read through."""
from datetime import datetime, timedelta, timezone

import pytest

from portal.storage.kit import BodyStream, mtime_ns

NOON = 1714564800  # 2024-05-01T12:00:00Z


@pytest.mark.parametrize("stamp, expected", [
    ("2024-05-01T12:00:00Z", NOON * 10**9),  # Dropbox: whole seconds
    ("2024-05-01T12:00:00.123Z", NOON * 10**9 + 123_000_000),  # Drive: milliseconds
    ("2024-05-01T12:00:00.1234567Z", NOON * 10**9 + 123_456_700),  # Graph: up to seven digits
    ("2024-05-01T14:30:00.5+02:30", NOON * 10**9 + 500_000_000),  # an offset
    ("2024-05-01T09:00:00-0300", NOON * 10**9),
    ("2024-05-01T12:00:00", NOON * 10**9),  # no offset: UTC
])
def test_provider_timestamps_become_nanoseconds(stamp, expected):
    """Does each provider's way of writing a time give the same instant, fraction kept?"""
    assert mtime_ns(stamp) == expected


@pytest.mark.parametrize("stamp", [None, "", "yesterday", "2024-05-01 12:00:00Z", 12])
def test_an_unreadable_time_is_none(stamp):
    assert mtime_ns(stamp) is None


def test_datetimes_and_whole_seconds():
    """Are boto3's datetimes read in any zone, and does `whole_seconds` drop the fraction, as S3
    needs (a listing has milliseconds, a HEAD of the same object only seconds)?"""
    listed = datetime(2024, 5, 1, 12, 0, 0, 789000, tzinfo=timezone.utc)
    head = datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert mtime_ns(listed) == NOON * 10**9 + 789_000_000
    assert mtime_ns(listed, whole_seconds=True) == mtime_ns(head, whole_seconds=True) \
        == NOON * 10**9


def test_a_body_stream_reads_in_pieces_and_closes_its_source():
    """Does the stream give the bytes through readinto and read, and close its source once?"""
    data, closed = bytes(range(256)) * 40, []
    position = [0]

    def read(n):
        piece = data[position[0]:position[0] + min(n, 1000)]
        position[0] += len(piece)
        return piece

    with BodyStream(read, lambda: closed.append(1), "the test") as stream:
        buffer = bytearray(700)
        assert stream.readinto(buffer) == 700 and bytes(buffer) == data[:700]
        assert stream.read() == data[700:]
    stream.close()
    assert closed == [1]


def test_a_broken_download_is_an_oserror():
    """Is a failure of the connection (not an OSError in urllib3 or botocore) an OSError naming
    where the download came from, as a hasher expects of a file it cannot read?"""
    class ProtocolError(Exception):
        pass

    def read(n):
        raise ProtocolError("connection reset")

    stream = BodyStream(read, lambda: None, "Dropbox")
    with pytest.raises(OSError, match="download from Dropbox broke off .ProtocolError."):
        stream.read(10)
    stream.close()
