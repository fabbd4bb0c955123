"""What a DP node takes in a request (issue 13, items 1, 5 and 12): upload ids of the shape it
gives (NUL and control characters are a 400), JSON bodies that say they are JSON (415), not
nested too deep (400) and no larger than DEPOT_DP_MAX_JSON (413), while upload chunks up to
DEPOT_DP_MAX_CHUNK still go through."""
import hashlib
import os

import pytest

from portal.core.jsonbody import MAX_DEPTH

MB = 1024 * 1024


def error_of(response):
    return response.json()["error"]["code"], response.json()["error"]["message"]


@pytest.mark.parametrize("uid", ["%00abc", "abc%00" + "0" * 26, "%01" + "0" * 31, "%7f", "a.b",
                                 "0" * 31 + "G", "0" * 33])
@pytest.mark.parametrize("method, suffix", [("GET", ""), ("PATCH", ""), ("DELETE", ""),
                                            ("PUT", "/index"), ("POST", "/finish"),
                                            ("POST", "/chunks?first=0&last=0")])
def test_an_upload_id_not_of_the_nodes_shape_is_a_400(node, uid, method, suffix):
    """Is an upload id with a NUL, a control character or another shape a 400, not a 500?"""
    response = node.call(method, f"/uploads/{uid}{suffix}", data=b"x",
                         headers={"Upload-Offset": "0"})
    assert response.status_code == 400
    code, message = error_of(response)
    assert code == "bad_upload_id" and "32 hexadecimal characters" in message


def test_an_unknown_upload_id_of_the_right_shape_is_still_a_404(node):
    """Is an id of the node's shape that names no upload still a 404 "no upload"?"""
    response = node.call("GET", "/uploads/" + "0" * 32)
    assert response.status_code == 404 and "no upload" in error_of(response)[1]


def test_the_key_is_asked_before_the_upload_id(node):
    """Does a caller without the key learn nothing about ids (401 first)?"""
    response = node.call("GET", "/uploads/%00", headers={"Authorization": ""})
    assert response.status_code == 401


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 50_000])
def test_deep_json_is_a_400(node, depth):
    """Is JSON nested past the limit (or past json.loads's own) a 400 saying so?"""
    body = b"[" * depth + b"]" * depth if depth < 1000 else b"[" * depth
    response = node.call("POST", "/uploads", data=body,
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    code, message = error_of(response)
    assert code == "too_deep" and f"more than {MAX_DEPTH} levels" in message


def test_a_body_not_sent_as_json_is_a_415(node):
    """Is a JSON text sent as text/plain refused (415), creating no upload?"""
    body = b'{"path": "Images/a.wim", "size": 3, "sha256": "%s"}' % \
        hashlib.sha256(b"abc").hexdigest().encode()
    response = node.call("POST", "/uploads", data=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert error_of(response)[0] == "unsupported_media_type"
    assert os.listdir(os.path.join(node.root, ".depot", "uploads")) == []


def test_a_json_body_past_its_limit_is_a_413_while_chunks_are_not(node):
    """Is a JSON body past DEPOT_DP_MAX_JSON a 413 naming the limit, while a chunk 16 times as
    large (an upload body, not JSON) is written as before?"""
    big = b'{"path": "' + b"a" * (64 * 1024) + b'"}'
    response = node.call("POST", "/uploads", data=big,
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    code, message = error_of(response)
    assert code == "too_large" and "65,536 bytes" in message
    data = os.urandom(MB)
    created = node.call("POST", "/uploads", json={"path": "Images/a.wim", "size": len(data),
                                                  "sha256": hashlib.sha256(data).hexdigest()})
    assert created.status_code == 201
    sent = node.call("PATCH", f"/uploads/{created.json()['id']}", data=data,
                     headers={"Upload-Offset": "0"})
    assert sent.status_code == 200 and sent.json()["offset"] == MB


@pytest.mark.parametrize("size", [2 ** 63, 2 ** 64, True, 1.0, "3"])
def test_an_upload_size_no_file_can_have_is_a_400(node, size):
    """Is a size past what a file (and the inventory's column) can have a 400, not a 507?"""
    response = node.call("POST", "/uploads", json={"path": "Images/a.wim", "size": size,
                                                   "sha256": hashlib.sha256(b"abc").hexdigest()})
    assert response.status_code == 400
    assert "size must be a whole number of bytes" in error_of(response)[1]
