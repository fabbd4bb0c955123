"""What a request may send (issue 13, items 1, 5 and 12): bodies past DEPOT_MAX_BODY_MB (413),
JSON nested too deep (400), bodies not sent as JSON (415), and ids and numbers that are not
whole numbers a column holds (400 or a form error), each with a message and never a 500."""
import io
import re

import pytest

from portal.core.jsonbody import MAX_DEPTH
from portal.extensions import db
from portal.models import DeviceGroup, DistributionPoint, EnrollmentToken
from portal.web.bodies import max_body_bytes
from portal.web.proxies import BadSetting
from tests.factories import PASSWORD, make_user
from tests.node_fixtures import IMAGE

JSON = "application/json"
HUGE = 2 ** 64  # past every integer column


def error_of(response):
    body = response.get_json()
    assert set(body) == {"error"}, body
    return body["error"]["code"], body["error"]["message"]


def nested(depth: int) -> bytes:
    return b"{\"a\": " + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


# --- how large ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/v1/tokens", "/agent/v1/enroll"])
def test_a_body_past_the_limit_is_a_413_before_it_is_read(client, path):
    """Is a 3 MB JSON body to the sign-in-free endpoints refused with a 413 that names the limit?"""
    body = b'{"email": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    response = client.post(path, data=body, content_type=JSON)
    assert response.status_code == 413
    code, message = error_of(response)
    assert code == "too_large" and "2 MB" in message


class CountingBody(io.RawIOBase):
    """A request body of `size` bytes that counts what the server reads of it."""

    def __init__(self, size: int):
        self.left, self.read_bytes = size, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.left)
        buffer[:n] = b" " * n
        self.left -= n
        self.read_bytes += n
        return n


def test_a_200_mb_body_is_not_read(client):
    """Is a 200 MB body announced by Content-Length refused without reading a byte of it?"""
    body = CountingBody(200 * 1024 * 1024)
    response = client.post("/agent/v1/enroll", content_type=JSON, environ_overrides={
        "wsgi.input": body, "CONTENT_LENGTH": str(200 * 1024 * 1024)})
    assert response.status_code == 413 and body.read_bytes == 0


def test_a_chunked_body_is_read_no_further_than_the_limit(client):
    """Is a body without Content-Length (chunked) read only up to the limit, then a 413?"""
    body = CountingBody(200 * 1024 * 1024)
    response = client.post("/api/v1/tokens", content_type=JSON, environ_overrides={
        "wsgi.input": body, "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True})
    assert response.status_code == 413 and "(2 MB)" in error_of(response)[1]
    assert body.read_bytes <= 2 * 1024 * 1024 + 64 * 1024


def test_a_console_form_past_the_limit_is_a_page_with_the_message(client):
    """Is an oversized form to the sign-in page a 413 page (not JSON) that says why?"""
    response = client.post("/login", data={"email": "a@example.com", "password": "x" * (3 << 20)})
    assert response.status_code == 413
    assert response.mimetype == "text/html"
    assert "larger than this server takes (2 MB)" in response.get_data(as_text=True)


@pytest.mark.parametrize("config_overrides", [{"DEPOT_MAX_BODY_MB": "1"}])
def test_the_limit_is_a_setting(client, config_overrides):
    """Does DEPOT_MAX_BODY_MB=1 refuse 1.5 MB, while a body under the limit is read as before?"""
    user = make_user("admin")
    big = {"email": user.email, "password": PASSWORD, "name": "x" * (1536 * 1024)}
    response = client.post("/api/v1/tokens", json=big)
    assert response.status_code == 413 and "(1 MB)" in error_of(response)[1]
    fits = client.post("/api/v1/tokens", json=dict(big, name="y" * (512 * 1024)))
    assert fits.status_code == 400 and "at most 100 characters" in error_of(fits)[1]


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "2000", ""])
def test_a_bad_body_limit_stops_the_start(value):
    """Is a DEPOT_MAX_BODY_MB that is no size a clear error at start?"""
    with pytest.raises(BadSetting, match="DEPOT_MAX_BODY_MB"):
        max_body_bytes(value)


# --- how deep, and JSON only when it says so ---------------------------------------------------

@pytest.mark.parametrize("path", ["/api/v1/tokens", "/agent/v1/enroll"])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deep_json_is_a_400(client, path, depth):
    """Is JSON nested past the limit (or past json.loads's own) a 400 saying so, not a 500?"""
    response = client.post(path, data=nested(depth), content_type=JSON)
    assert response.status_code == 400
    code, message = error_of(response)
    assert code == "too_deep" and f"more than {MAX_DEPTH} levels" in message


def test_json_at_the_depth_limit_is_read(client):
    """Is a body nested exactly MAX_DEPTH levels read as before (here: a wrong password)?"""
    user = make_user("admin")
    body = b'{"email": "' + user.email.encode() + b'", "password": "nope", "x": ' + \
        b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert client.post("/api/v1/tokens", data=body, content_type=JSON).status_code == 401


def test_deep_json_to_a_console_form_is_a_400(login_as):
    """Is a console form sent as deep JSON (Flask-WTF reads it with request.get_json) a 400?"""
    console = login_as("admin")
    response = console.client.post("/distribution-points/select", data=b"[" * 100_000,
                                   content_type=JSON, headers={"X-CSRFToken": console.csrf})
    assert response.status_code == 400


@pytest.mark.parametrize("body, reason", [
    (b'{"email": NaN}', "NaN is not a JSON number"),
    (b'{"email": -Infinity}', "-Infinity is not a JSON number"),
    (b'{"email": 1e999}', "too large a number"),
    (b'{"email": ' + b"1" * 5000 + b"}", "too many digits"),
    (b'{"email": "\xff"}', "not UTF-8"),
])
def test_what_is_not_json_is_a_400(client, body, reason):
    """Are NaN, Infinity, infinite floats, numbers past Python's digits and bad bytes refused?"""
    response = client.post("/api/v1/tokens", data=body, content_type=JSON)
    assert response.status_code == 400
    code, message = error_of(response)
    assert code == "malformed_json" and reason in message


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
@pytest.mark.parametrize("path", ["/api/v1/tokens", "/agent/v1/enroll"])
def test_a_body_not_sent_as_json_is_a_415(app, path, content_type):
    """Is a JSON text sent as text/plain (as a cross-site form can), a form or untyped a 415?"""
    user = make_user("admin")
    body = f'{{"email": "{user.email}", "password": "{PASSWORD}"}}'.encode()
    client = app.test_client()
    environ = {"CONTENT_TYPE": content_type} if content_type else {}
    response = client.post(path, data=body, environ_overrides=environ)
    assert response.status_code == 415
    code, message = error_of(response)
    assert code == "unsupported_media_type" and "Content-Type: application/json" in message
    assert (content_type or "no Content-Type") in message


def test_json_with_a_charset_or_a_json_suffix_is_read(app, client):
    """Do `application/json; charset=utf-8` and `application/vnd.x+json` still work?"""
    user = make_user("admin")
    body = f'{{"email": "{user.email}", "password": "{PASSWORD}"}}'
    for content_type in ("application/json; charset=utf-8", "application/vnd.depot+json"):
        response = client.post("/api/v1/tokens", data=body, content_type=content_type)
        assert response.status_code == 201, response.get_data(as_text=True)


# --- ids and numbers ---------------------------------------------------------------------------

@pytest.mark.parametrize("dp_ids", [[HUGE], [2 ** 31], [True], [1.0], [-1], [0]])
def test_copies_refuse_ids_no_column_holds(api_as, content, dp_ids):
    """Are DP ids past the id column, bools, floats and non-positive ones a 400 (not a 500)
    when the asset is at central, hashed?"""
    response = api_as("admin").post("/api/v1/copies", json={"asset_keys": [IMAGE],
                                                            "dp_ids": dp_ids})
    assert response.status_code == 400
    assert "dp_ids must be a non-empty list of distribution point ids" in error_of(response)[1]


@pytest.mark.parametrize("value", [str(HUGE), "1" * 5000, "1_0", "1e3", " ", "-1", "Infinity"])
def test_the_console_copy_form_refuses_ids_no_column_holds(login_as, content, value):
    """Is a DP id past the column (or not digits) in the copy form a message, not a 500?"""
    console = login_as("admin")
    response = console.post("/copies/", {"asset_keys": IMAGE, "dp_ids": value}, hx=True)
    assert response.status_code == 400
    assert "dp_ids must be distribution point ids" in response.get_data(as_text=True)


@pytest.mark.parametrize("value", [str(HUGE), "²", "1" * 5000, "sNaN"])
def test_the_dp_switcher_refuses_ids_no_column_holds(login_as, value):
    """Is the DP switcher's dp_id past the column a 400 with its message?"""
    console = login_as("admin")
    response = console.post("/distribution-points/select", {"dp_id": value}, hx=True)
    assert response.status_code == 400
    assert "choose a distribution point" in response.get_data(as_text=True)


@pytest.mark.parametrize("value", [str(HUGE), "²", "1" * 5000, "-1", "abc"])
def test_a_hand_edited_connected_link_shows_the_list(login_as, central, value):
    """Does ?connected= with an id no column holds show the list (as an unknown id does)?"""
    response = login_as("admin").get(f"/distribution-points/?connected={value}")
    assert response.status_code == 200
    assert "Central" in response.get_data(as_text=True)


@pytest.mark.parametrize("query", [f"device_id={HUGE}", "device_id=1.5", f"dp_id={HUGE}",
                                   "group_id=" + "9" * 5000])
def test_deployment_preview_refuses_ids_no_column_holds(api_as, query):
    """Are the preview's query ids past the column a 400 naming the argument?"""
    response = api_as("admin").get(f"/api/v1/deployments/preview?image=x&{query}")
    assert response.status_code == 400
    assert query.split("=")[0] + " must be an id" in error_of(response)[1]


@pytest.mark.parametrize("value", [HUGE, 2 ** 63, False, True, 1.5, 0.0, 1e6, "1000000", [],
                                   -70_000])
def test_bandwidth_limit_refuses_what_is_no_whole_number_of_bytes(api_as, app, value, monkeypatch):
    """Is a bandwidth cap past the column, a bool, a float or a string a 400, changing nothing?"""
    from portal.services import dp_management

    dp = DistributionPoint(name="Branch", kind="local", url="http://127.0.0.1:1", secret="x",
                           allow_plain_http=True)
    db.session.add(dp)
    db.session.commit()
    monkeypatch.setattr(dp_management, "test_connection", lambda *a, **k: pytest.fail("no test"))
    response = api_as("admin").patch(f"/api/v1/distribution-points/{dp.id}",
                                     json={"bandwidth_limit": value})
    assert response.status_code == 400
    assert "bandwidth limit must be a whole number of bytes per second" in error_of(response)[1]
    db.session.expire_all()
    assert db.session.get(DistributionPoint, dp.id).bandwidth_limit is None


@pytest.mark.parametrize("site, message", [(0, "site must be a string"),
                                           ([], "site must be a string"),
                                           (False, "site must be a string")])
def test_a_site_must_be_a_name(api_as, central, site, message):
    """Are 0, [] and false refused as a DP's site, not taken as "no site"?"""
    api = api_as("admin")
    assert api.patch(f"/api/v1/distribution-points/{central.id}",
                     json={"site": "HQ"}).status_code == 200
    response = api.patch(f"/api/v1/distribution-points/{central.id}", json={"site": site})
    assert response.status_code == 400 and message in error_of(response)[1]
    db.session.expire_all()
    assert db.session.get(DistributionPoint, central.id).site == "HQ"


@pytest.mark.parametrize("days", [True, 1.5, 7.0, HUGE, "Infinity", "1e2", [7]])
def test_enrollment_days_must_be_a_whole_number(api_as, days):
    """Are true, 1.5, a huge number and strings that are not digits refused as days?"""
    response = api_as("admin").post("/api/v1/enrollment-tokens", json={"name": "x", "days": days})
    assert response.status_code == 400
    assert "whole number of days" in error_of(response)[1]
    assert db.session.query(EnrollmentToken).count() == 0


def test_enrollment_days_infinity_as_json_is_a_400(api_as):
    """Is `"days": Infinity` (not JSON, but json.loads takes it) a 400, creating nothing?"""
    api = api_as("admin")
    response = api.client.post("/api/v1/enrollment-tokens", data=b'{"name": "x", "days": Infinity}',
                               content_type=JSON, headers=api._h())
    assert response.status_code == 400 and error_of(response)[0] == "malformed_json"
    assert db.session.query(EnrollmentToken).count() == 0


@pytest.mark.parametrize("days, group", [("Infinity", ""), ("1.5", ""), ("7", str(HUGE)),
                                         ("7", "1" * 5000)])
def test_the_enrollment_form_refuses_what_is_no_number(login_as, days, group):
    """Is the console's enrollment form with days or a group that is not a number a message?"""
    console = login_as("admin")
    response = console.post("/settings/enrollment", {"name": "x", "days": days, "group_id": group},
                            hx=True)
    assert response.status_code == 400
    assert "must be" in response.get_data(as_text=True)
    assert db.session.query(EnrollmentToken).count() == 0


@pytest.mark.parametrize("created", [str(HUGE), "1" * 5000, "²"])
def test_a_hand_edited_created_link_shows_the_page(login_as, created):
    """Does the enrollment page's ?created= past the column show the page, not a 500?"""
    response = login_as("admin").get(f"/settings/enrollment?created={created}")
    assert response.status_code == 200


@pytest.mark.parametrize("slot", ["fallback_²", "fallback_" + "9" * 5000])
def test_a_slot_that_is_no_number_is_not_a_slot(login_as, central, slot):
    """Is a numbered input whose number is not ASCII digits (or far too long) left out, not a
    500, when a group is added?"""
    console = login_as("admin")
    response = console.post("/computers/groups", {"name": "Remote", "fallback_1": central.id,
                                                  slot: central.id}, hx=True)
    assert response.status_code < 400, response.get_data(as_text=True)
    assert db.session.query(DeviceGroup).one().fallback_dp_ids == [central.id]


# --- a sweep: odd values in every field are an answer, never a 500 -----------------------------

ODD_JSON = [HUGE, -HUGE, True, 1.5, 1e308, None, [], {}, "", "\x00", "²", "sNaN", [HUGE],
            {"a": [HUGE]}, "x" * 5000]
# A body that gets past its endpoint's first checks; each field in turn is made odd.
JSON_BODIES = {
    "/api/v1/tokens": {"email": "a@example.com", "password": "x" * 12, "name": "x"},
    "/api/v1/users": {"email": "b@example.com", "password": "x" * 12, "role": "viewer",
                      "sites": ["HQ"]},
    "/api/v1/copies": {"asset_keys": ["Images/a.wim"], "dp_ids": [1]},
    "/api/v1/deployments": {"device_ids": [1], "image": "a.wim", "dp_id": 1,
                            "application_packs": []},
    "/api/v1/groups": {"name": "x", "description": "", "preferred_dp_id": 1,
                       "fallback_dp_ids": [1]},
    "/api/v1/boundaries": {"name": "x", "cidr": "10.9.0.0/16", "dp_id": 1},
    "/api/v1/enrollment-tokens": {"name": "x", "days": 7, "group_id": None},
    "/api/v1/devices/move": {"device_ids": [1], "group_id": None},
    "/agent/v1/enroll": {"enroll_token": "det_x", "serial": "S1", "hostname": "h",
                         "mac_addresses": ["00:11:22:33:44:55"]},
}
ODD_TEXT = [str(HUGE), "²", "٣", "sNaN", "Infinity", "1.5", "-1", "\x00", "1" * 5000]
FORM_FIELDS = {
    "/computers/move": ["device_id", "to_group_id"],
    "/computers/groups": ["preferred_dp_id", "fallback_1"],
    "/computers/boundaries": ["cidr", "dp_id"],
    "/computers/deploy": ["device_id"],
    "/deployments/": ["device_id", "group_id", "dp_id"],
    "/copies/": ["dp_ids"],
    "/distribution-points/select": ["dp_id"],
    "/settings/enrollment": ["days", "group_id"],
}
LINKS = ["/computers/?group_id={}", "/deployments/new?device_id={}", "/deployments/new?dp_id={}",
         "/deployments/?page={}", "/distribution-points/?connected={}",
         "/settings/enrollment?created={}", "/deployments/preview?device_id={}"]


@pytest.mark.parametrize("config_overrides", [{"DEPOT_ENROLL_RATE_LIMIT": 10_000}])
def test_odd_json_values_are_never_a_500(api_as, central, config_overrides):
    """Does every field of the JSON endpoints answer odd values (past every column, bools,
    floats, NUL, non-ASCII digits, nesting) with a 4xx?"""
    api = api_as("admin")
    local = DistributionPoint(name="Branch", kind="local", url="http://127.0.0.1:1", secret="x",
                              allow_plain_http=True)
    db.session.add(local)
    db.session.commit()
    answered = [(path, field, repr(value)[:12], api.post(
        path, json=dict(body, **{field: value})).status_code)
        for path, body in JSON_BODIES.items() for field in body for value in ODD_JSON]
    answered += [(f"PATCH DP {dp_id}", field, repr(value)[:12], api.patch(
        f"/api/v1/distribution-points/{dp_id}", json={field: value}).status_code)
        for dp_id, fields in ((central.id, ("name", "site")),
                              (local.id, ("bandwidth_limit", "allowed_hours", "disabled")))
        for field in fields for value in ODD_JSON]
    assert [a for a in answered if a[3] >= 500] == []


def test_odd_form_values_and_links_are_never_a_500(login_as, central):
    """Do the console's forms and links answer odd numbers with a message or a page?"""
    console = login_as("admin")
    answered = [(path, field, value[:12], console.post(path, {field: value, "name": "x"},
                                                       hx=True).status_code)
                for path, fields in FORM_FIELDS.items() for field in fields for value in ODD_TEXT]
    answered += [(link, value[:12], console.get(link.format(value)).status_code)
                 for link in LINKS for value in ODD_TEXT]
    assert [a for a in answered if a[-1] >= 500] == []


# --- NUL characters (PostgreSQL refuses them in any text: a 500 there otherwise) -------------

def test_a_nul_in_a_json_string_is_a_400_that_says_so(client):
    """Is a NUL in the sign-in-free token request refused before any query, on every database?"""
    response = client.post("/api/v1/tokens", json={"email": "a\x00@example.com",
                                                   "password": "x" * 12})
    assert response.status_code == 400
    code, message = error_of(response)
    assert code == "nul_character" and "NUL" in message


def test_a_nul_in_a_form_field_or_a_query_argument_is_a_400(client):
    """Are the console's sign-in form and a page's query argument with a NUL refused (400)?"""
    page = client.get("/login")
    assert page.status_code == 200
    answer = client.post("/login", data={"email": "a\x00@example.com", "password": "x" * 12})
    assert answer.status_code == 400
    assert client.get("/login?next=%00").status_code == 400


def test_an_agent_s_nul_padded_serial_is_taken_without_its_nuls(client, admin):
    """A BIOS may pad its serial with NULs: does an agent reporting one enroll, its serial
    stored without them (agents report what the machine says; refusing would cut it off)?"""
    from portal.models import Device
    from portal.services import enrollment
    from tests.factories import AGENT_FACTS
    from tests.helpers import AgentCalls
    _, secret = enrollment.create_enrollment_token(admin, "tests", days=1)
    device_id, _ = AgentCalls(client, AGENT_FACTS).enrolled(secret, serial="SN-77\x00\x00")
    assert db.session.get(Device, device_id).serial == "SN-77"


# --- ids in paths past the column ------------------------------------------------------------

def id_routes(app):
    """(method, url template) for every routed method of every rule with an <int:...> id."""
    int_converter = app.url_map.converters["int"]
    for rule in app.url_map.iter_rules():
        names = [name for name, conv in rule._converters.items()
                 if isinstance(conv, int_converter)]
        if not names:
            continue
        url = rule.rule
        for name in names:
            url = url.replace(f"<int:{name}>", "{id}")
        url = re.sub(r"<[^>]+>", "x", url)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, url


def test_ids_past_the_column_in_a_path_are_a_404_for_every_routed_method(app, api_as, login_as):
    """Does every route with an id in its path answer 2**63 and 2**64 with a 404 (JSON for
    programs, the console's page for people), never a 405 for a routed method nor a 5xx?"""
    routes = sorted(set(id_routes(app)))
    assert ("PATCH", "/api/v1/users/{id}") in routes and len(routes) > 20
    api, console = api_as("admin"), login_as("admin")
    answered = []
    for method, url in routes:
        for value in (2 ** 63, HUGE, "0" * 30 + "1" + "0" * 5000):
            path = url.format(id=value)
            if path.startswith(("/api/", "/agent/")):
                response = api.client.open(path, method=method, headers=api._h(), json={})
                ok = response.status_code == 404 and error_of(response)[0] == "not_found"
            else:
                response = console.client.open(path, method=method,
                                               headers={"X-CSRFToken": console.csrf})
                ok = response.status_code == 404 and response.mimetype == "text/html"
            if not ok:
                answered.append((method, url, str(value)[:8], response.status_code))
    assert answered == []


def test_an_id_the_column_holds_still_reaches_the_view(api_as):
    """Are the largest id a column holds and an id written with leading zeros still routed to
    the view?"""
    api = api_as("admin")
    other = make_user(role="viewer")
    response = api.patch(f"/api/v1/users/{2 ** 31 - 1}", json={"role": "technician"})
    assert response.status_code == 404 and "user" in error_of(response)[1].lower()
    response = api.patch(f"/api/v1/users/000{other.id}", json={"role": "technician"})
    assert response.status_code == 200 and response.get_json()["role"] == "technician"
