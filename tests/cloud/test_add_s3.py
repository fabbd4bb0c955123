"""Adding an S3 DP through the API and the console (moto's server, keys checked by its IAM):
a connection test before anything is saved, clear refusals that create nothing, keys that can be
replaced and are never shown again."""
import json

import pytest

from portal.extensions import db
from portal.models import AuditEvent, DistributionPoint, Job
from portal.services import secrets
from tests.helpers import csrf_from

DPS = "/api/v1/distribution-points"


def body(s3_settings, keys, **extra):
    return {"name": "Remote (S3)", "kind": "cloud", "provider": "s3", "site": "Remote",
            **s3_settings, **keys, **extra}


def cloud_dps():
    db.session.expire_all()
    return db.session.query(DistributionPoint).filter_by(kind="cloud").all()


def test_api_adds_an_s3_dp_after_its_test_and_never_shows_the_keys(api_as, s3_settings, iam_user):
    """Does POST create the DP after its connection test, start its rescan, and keep the secret
    out of every answer and the audit log?"""
    keys = iam_user(["s3:*"])
    api = api_as("admin")
    tested = api.post(f"{DPS}/test", json=body(s3_settings, keys))
    assert tested.status_code == 200, tested.get_json()
    assert tested.get_json()["bucket"] == {"bucket": "depot-test", "prefix": "depot/hq"}
    created = api.post(DPS, json=body(s3_settings, keys))
    assert created.status_code == 201, created.get_json()
    answer = created.get_json()
    assert (answer["kind"], answer["provider"], answer["status"]) == ("cloud", "s3", "online")
    assert answer["settings"]["prefix"] == "depot/hq" and answer["settings"]["endpoint_url"]
    for text in (created.get_data(as_text=True), api.get(DPS).get_data(as_text=True),
                 api.get(f"{DPS}/{answer['id']}").get_data(as_text=True),
                 json.dumps([e.details for e in db.session.query(AuditEvent)], default=str)):
        assert keys["secret_access_key"] not in text and keys["access_key_id"] not in text
    [dp] = cloud_dps()
    assert json.loads(secrets.decrypt(dp.secret)) == keys
    assert db.session.query(Job).filter_by(kind="rescan", dp_id=dp.id).count() == 1


@pytest.mark.parametrize("change, status, message", [
    ({"secret_access_key": "wrong-secret-0123456789"}, 400, "secret access key does not match"),
    ({"bucket": "no-such-bucket"}, 400, "no-such-bucket"),
    ({"bucket": "Bad_Bucket"}, 400, "bucket must be an S3 bucket name"),
    ({"endpoint_url": "ftp://x"}, 400, "endpoint URL must look like"),
    ({"access_key_id": ""}, 400, "access key id and secret access key are both needed"),
    ({"name": ""}, 400, "name"),
])
def test_api_refusals_are_clear_and_create_nothing(api_as, s3_settings, iam_user, change, status,
                                                   message):
    """Do wrong keys, a missing bucket and bad input give a clear message and no DP?"""
    keys = iam_user(["s3:*"])
    answer = api_as("admin").post(DPS, json=body(s3_settings, keys, **change))
    assert answer.status_code == status, answer.get_json()
    assert message in answer.get_json()["error"]["message"]
    assert keys["secret_access_key"] not in answer.get_data(as_text=True)
    assert cloud_dps() == []


def test_api_unreachable_endpoint_and_other_providers(api_as, s3_settings, iam_user):
    """Is an endpoint that does not answer a 502, an OAuth provider pointed to the console, an
    unknown provider named, and may a technician not add DPs?"""
    keys = iam_user(["s3:*"])
    api = api_as("admin")
    down = api.post(DPS, json=body(s3_settings, keys, endpoint_url="http://127.0.0.1:9"))
    said = down.get_json()["error"]["message"]
    assert down.status_code == 502
    assert "Depot could not connect to 127.0.0.1:9 (connection refused)" in said
    onedrive = api.post(DPS, json={"name": "x", "kind": "cloud", "provider": "onedrive"})
    assert onedrive.status_code == 400
    assert "connected in the console" in onedrive.get_json()["error"]["message"]
    unknown = api.post(DPS, json={"name": "x", "kind": "cloud", "provider": "ftp"})
    assert unknown.status_code == 400
    assert "unknown provider 'ftp'" in unknown.get_json()["error"]["message"]
    assert api_as("technician").post(DPS, json=body(s3_settings, keys)).status_code == 403
    assert cloud_dps() == []


def test_keys_are_replaced_only_by_keys_that_work(api_as, s3, s3_settings, iam_user):
    """Does PATCH test new keys before they replace the old ones?"""
    old = iam_user(["s3:*", "iam:*"], name="old")
    api = api_as("admin")
    dp_id = api.post(DPS, json=body(s3_settings, old)).get_json()["id"]
    refused = api.patch(f"{DPS}/{dp_id}", json={"access_key_id": old["access_key_id"],
                                                "secret_access_key": "wrong-secret-0123456789"})
    assert refused.status_code == 400
    assert json.loads(secrets.decrypt(cloud_dps()[0].secret)) == old
    iam = s3.client("iam", credentials=old)
    created = iam.create_access_key(UserName="old")["AccessKey"]
    iam.close()
    new = {"access_key_id": created["AccessKeyId"], "secret_access_key": created["SecretAccessKey"]}
    assert api.patch(f"{DPS}/{dp_id}", json=new).status_code == 200
    assert json.loads(secrets.decrypt(cloud_dps()[0].secret)) == new
    assert api.patch(f"{DPS}/{dp_id}", json={"url": "http://x"}).status_code == 400


def test_console_tests_then_adds_an_s3_dp(login_as, s3_settings, iam_user):
    """Does the S3 form test in place (saving nothing), refuse with the reason without showing the
    secret again, and add the DP once the test passes?"""
    keys = iam_user(["s3:*"])
    console = login_as("admin")
    page = console.get("/distribution-points/new-cloud?provider=s3").get_data(as_text=True)
    assert "Test connection" in page and 'name="secret_access_key"' in page
    token = csrf_from(page)
    form = dict(body(s3_settings, keys), csrf_token=token)
    tested = console.client.post("/distribution-points/new-cloud/s3/test", data=form,
                                 headers={"HX-Request": "true"})
    assert "listed, wrote and deleted a probe object in depot-test/depot/hq" \
        in tested.get_data(as_text=True)
    assert cloud_dps() == []
    wrong = console.client.post("/distribution-points/new-cloud/s3",
                                data=dict(form, secret_access_key="wrong-secret-0123456789"))
    html = wrong.get_data(as_text=True)
    assert wrong.status_code == 400 and "secret access key does not match" in html
    assert "wrong-secret-0123456789" not in html and keys["access_key_id"] in html
    assert cloud_dps() == []
    added = console.client.post("/distribution-points/new-cloud/s3", data=form)
    assert added.status_code == 303
    [dp] = cloud_dps()
    listed = console.get("/distribution-points/").get_data(as_text=True)
    assert "cloud (S3-compatible)" in listed and "depot-test/depot/hq" in listed
    assert keys["secret_access_key"] not in listed
