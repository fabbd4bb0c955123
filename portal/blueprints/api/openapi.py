"""The OpenAPI 3.1 document of /api/v1/ and /agent/v1/, written by hand and served at
/api/v1/openapi.json to anyone (it holds no secret: it says what the routes take and answer).

`tests/api/test_openapi.py` checks that every URL rule of both blueprints is here and nothing
else, that the document is valid OpenAPI 3.1, and runs Schemathesis against the app with it: a
route added without its entry here, or answering a status or shape not written here, fails.
"""
from portal.blueprints.api import bp
from portal.models.deployments import DEPLOYMENT_STATES
from portal.models.jobs import JOB_KINDS
from portal.services.computers import MAX_ID
from portal.web.views import MAX_PAGE, MAX_PER_PAGE

API_TOKEN = [{"apiToken": []}]
DEVICE_TOKEN = [{"deviceToken": []}]
ANONYMOUS: list = []

# --- schemas ---------------------------------------------------------------------------------

ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
NULLABLE_ID = {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_ID}
TIME = {"type": ["string", "null"], "description": "ISO 8601, UTC; null when it never happened"}
TEXT = {"type": "string"}
NULLABLE_TEXT = {"type": ["string", "null"]}
COUNT = {"type": "integer", "minimum": 0}
NULLABLE_COUNT = {"type": ["integer", "null"], "minimum": 0}
BOOL = {"type": "boolean"}
STRINGS = {"type": "array", "items": TEXT}
IDS = {"type": "array", "items": ID}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: tuple = (), **properties) -> dict:
    """A JSON object with these properties (answers may carry more: clients ignore the rest)."""
    return {"type": "object", "required": list(required), "properties": properties}


def _items(schema: dict) -> dict:
    return _object(("items",), items={"type": "array", "items": schema})


def _page(schema: dict) -> dict:
    """One page of a paginated list (`?page=` and `?per_page=`)."""
    return _object(("items", "page", "per_page", "total", "next_page"),
                   items={"type": "array", "items": schema}, page=COUNT, per_page=COUNT,
                   total=COUNT, next_page=NULLABLE_COUNT)


SCHEMAS = {
    "Error": _object(("error",), error=_object(
        ("code", "message"),
        code={"type": "string",
              "description": "stable, for programs: invalid, not_found, forbidden, "
                             "unauthorized, conflict, rate_limited…"},
        message={"type": "string", "description": "for people"},
        reasons={"type": "array", "description": "a deployment's 409: why no DP fits"})),
    "User": _object(("id", "email", "role", "sites", "active"), id=ID, email=TEXT,
                    role={"enum": ["admin", "technician", "viewer"]}, sites=STRINGS,
                    active=BOOL, created_at=TIME),
    "DistributionPoint": _object(
        ("id", "name", "kind", "status"), id=ID, name=TEXT,
        kind={"enum": ["central", "local", "cloud"]},
        provider=NULLABLE_TEXT, site=NULLABLE_TEXT, url=NULLABLE_TEXT, status=TEXT,
        status_reason=NULLABLE_TEXT, free_bytes=NULLABLE_COUNT, total_bytes=NULLABLE_COUNT,
        last_scan_at=TIME, disabled=BOOL, bandwidth_limit=NULLABLE_COUNT,
        allowed_hours={}, counts={"type": "object", "additionalProperties": COUNT},
        tls_fingerprint=NULLABLE_TEXT, allow_plain_http=BOOL, settings={"type": "object"}),
    "Asset": _object(("key", "library", "name"), key=TEXT, library=TEXT, name=TEXT,
                     kind=NULLABLE_TEXT, size=NULLABLE_COUNT, file_count=NULLABLE_COUNT,
                     digest=NULLABLE_TEXT, modified_at=TIME, status=NULLABLE_TEXT,
                     status_by_dp={"type": "object", "additionalProperties": TEXT}),
    "Job": _object(("id", "kind", "state"), id=TEXT, kind={"enum": list(JOB_KINDS)}, state=TEXT,
                   dp_id=NULLABLE_ID, asset_key=NULLABLE_TEXT, bytes_done=NULLABLE_COUNT,
                   bytes_total=NULLABLE_COUNT, error=NULLABLE_TEXT, warnings={"type": "array"},
                   requested_by=NULLABLE_TEXT, created_at=TIME, started_at=TIME,
                   finished_at=TIME),
    "JobStarted": _object(("job", "created"), job=_ref("Job"), created=BOOL),
    "Jobs": _object(("jobs",), jobs={"type": "array", "items": _ref("Job")}),
    "Deployment": _object(
        ("id", "batch_id", "state"), id=ID, batch_id=TEXT, device_id=NULLABLE_ID,
        device_name=NULLABLE_TEXT, group_id=NULLABLE_ID, dp_id=NULLABLE_ID,
        dp_name=NULLABLE_TEXT, selection_reason=NULLABLE_TEXT, image=NULLABLE_TEXT,
        platform_pack=NULLABLE_TEXT, application_packs=STRINGS, answer_file=NULLABLE_TEXT,
        state={"enum": list(DEPLOYMENT_STATES)}, bytes_done=NULLABLE_COUNT,
        bytes_total=NULLABLE_COUNT, error=NULLABLE_TEXT, cancel_requested=BOOL,
        created_at=TIME, started_at=TIME, finished_at=TIME),
    "Device": _object(
        ("id", "name", "serial", "mac_addresses", "ip_addresses"), id=ID, name=TEXT,
        serial=TEXT, mac_addresses=STRINGS, ip_addresses=STRINGS, remote_ip=NULLABLE_TEXT,
        os=TEXT, agent_version=TEXT, group_id=NULLABLE_ID, group=NULLABLE_TEXT,
        status=NULLABLE_TEXT, enrolled_at=TIME, last_seen_at=TIME, free_bytes=NULLABLE_COUNT,
        claims_device_id=NULLABLE_ID,
        deployments={"type": "array", "items": _ref("Deployment"),
                     "description": "one device's answer only: its latest deployments"}),
    "Group": _object(("id", "name", "fallback_dp_ids"), id=ID, name=TEXT, description=TEXT,
                     preferred_dp_id=NULLABLE_ID, fallback_dp_ids=IDS, created_at=TIME,
                     device_count=COUNT),
    "Boundary": _object(("id", "name", "cidr", "dp_id"), id=ID, name=TEXT, cidr=TEXT, dp_id=ID,
                        created_at=TIME),
    "EnrollmentToken": _object(("id", "name", "revoked"), id=ID, name=TEXT, prefix=TEXT,
                               state=TEXT, group_id=NULLABLE_ID, created_at=TIME,
                               expires_at=TIME, revoked=BOOL, last_used_at=TIME, uses=COUNT),
    "Notification": _object(("id", "kind", "level", "message", "read"), id=ID, kind=TEXT,
                            level=TEXT, message=TEXT, dp_id=NULLABLE_ID, job_id=NULLABLE_TEXT,
                            deployment_id=NULLABLE_ID, created_at=TIME, read=BOOL),
    "AuditEvent": _object(("id", "at", "actor", "via", "action"), id=ID, at=TIME, actor=TEXT,
                          via=TEXT, action=TEXT, target=NULLABLE_TEXT,
                          details={"type": "object"}, ip=NULLABLE_TEXT),
    "Intervals": _object(("interval", "report_interval"), interval=COUNT,
                         report_interval=COUNT),
    "Changed": _object(("changed",), changed=COUNT),
}

# --- responses -------------------------------------------------------------------------------

ERROR_STATUSES = {
    "400": "Invalid input: a body that is not a JSON object, a missing or wrong field, a bad "
           "query parameter (code `invalid`, `malformed_json`, …).",
    "401": "No credential, or one that is unknown, revoked or expired (code `unauthorized`).",
    "403": "The caller's role may not do this (code `forbidden`).",
    "404": "No such record, or not one the caller may see (code `not_found`).",
    "409": "The record's state forbids it (code `conflict`, or a specific one with `reasons`).",
    "413": "The request body is larger than the server takes.",
    "429": "Too many calls or sign-in failures: wait the seconds of Retry-After.",
}
REMOTE_STATUSES = {
    "502": "The DP did not answer, or refused (code `dp_unreachable` or `dp_error`).",
    "503": "A content root is not available (code `content_root_unavailable`).",
}
RESPONSES = {
    status: {"description": text,
             "content": {"application/json": {"schema": _ref("Error")}}}
    for status, text in {**ERROR_STATUSES, **REMOTE_STATUSES}.items()
}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: str) -> dict:
    return {status: {"$ref": f"#/components/responses/{status}"} for status in statuses}


# The errors any call may answer: every one checks its input and its caller; 413 and 429 come
# from the server before the route runs.
COMMON = ("400", "401", "403", "404", "409", "413", "429")

# --- parameters ------------------------------------------------------------------------------


def _path_id(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": ID}


def _query(name: str, schema: dict | None = None, description: str = "", **extra) -> dict:
    param = {"name": name, "in": "query", "required": False, "schema": schema or TEXT}
    if description:
        param["description"] = description
    param.update(extra)
    return param


PAGING = [_query("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
          _query("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE})]

# --- operations ------------------------------------------------------------------------------


def _op(tag: str, summary: str, answer: dict | None, *, status: str = "200",
        body: dict | None = None, params: tuple = (), security: list = API_TOKEN,
        errors: tuple = COMMON, body_required: bool = True) -> dict:
    """One operation: what it takes (`params`, a JSON `body`), answers (`answer` with `status`,
    or no content when None), who may call it and its errors."""
    op = {"tags": [tag], "summary": summary, "security": security,
          "responses": {status: _json(answer) if answer is not None
                        else {"description": "Done; no content."}, **_errors(*errors)}}
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = {"required": body_required,
                             "content": {"application/json": {"schema": body}}}
    return op


def _body(required: tuple = (), **properties) -> dict:
    return {"type": "object", "required": list(required), "properties": properties}


DP_BODY = _body(
    ("kind",), kind={"enum": ["local", "cloud"]}, name=TEXT, url=TEXT, key=TEXT, site=TEXT,
    allow_plain_http=BOOL, tls_fingerprint=NULLABLE_TEXT, provider={"const": "s3"},
    endpoint_url=TEXT, region=TEXT, bucket=TEXT, prefix=TEXT, access_key_id=TEXT,
    secret_access_key=TEXT)
DP_PATCH = _body(name=TEXT, site=TEXT, url=TEXT, key=TEXT, disabled=BOOL,
                 bandwidth_limit={"type": ["integer", "null"], "minimum": 0}, allowed_hours={},
                 allow_plain_http=BOOL)
ENROLL_TOKEN = {"type": "string", "description": "The enrollment token (det_…) an admin made: "
               "the credential of an enrollment, sent in the body (OpenAPI has no security scheme "
               "for a body field)."}
DEVICE_FACTS = dict(hostname=TEXT, serial=TEXT, mac_addresses=STRINGS, ip_addresses=STRINGS,
                    os=TEXT, agent_version=TEXT, free_bytes=COUNT)
REMOTE = COMMON + tuple(REMOTE_STATUSES)


def _paths() -> dict:
    users = "Users and tokens"
    dps = "Distribution points"
    computers = "Computer Management"
    work = "Jobs, deployments, events"
    agent = "Agent"
    dp_id = _path_id("dp_id")
    return {
        "/api/v1/openapi.json": {"get": _op(
            "Document", "This document (anyone may read it).", {"type": "object"},
            security=ANONYMOUS, errors=("429",))},
        "/api/v1/tokens": {"post": _op(
            users, "Exchange email and password for a personal API token.",
            _object(("token", "id", "name"), token=TEXT, id=ID, name=TEXT), status="201",
            body=_body(("email", "password"), email=TEXT, password=TEXT, name=TEXT,
                       code={"type": "string", "description": "the authenticator's code or a "
                             "recovery code, for an account with two-step sign-in (401 "
                             "second_factor_required without it)"}),
            security=ANONYMOUS, errors=("400", "401", "403", "413", "429"))},
        "/api/v1/users": {
            "get": _op(users, "Every user (admins).", _items(_ref("User"))),
            "post": _op(users, "Add a user (admins).", _ref("User"), status="201",
                        body=_body(("email", "password", "role"), email=TEXT, password=TEXT,
                                   role={"enum": ["admin", "technician", "viewer"]},
                                   sites=STRINGS))},
        "/api/v1/users/{user_id}": {
            "parameters": [_path_id("user_id")],
            "get": _op(users, "One user (admins).", _ref("User")),
            "patch": _op(users, "Change role, sites, password, email or active (admins).",
                         _ref("User"), body=_body(email=TEXT, password=TEXT, role=TEXT,
                                                  sites=STRINGS, active=BOOL)),
            "delete": _op(users, "Remove a user (admins).", None, status="204")},
        "/api/v1/distribution-points": {
            "get": _op(dps, "Every DP the caller may see, with counts per content status.",
                       _items(_ref("DistributionPoint"))),
            "post": _op(dps, "Add a DP node (kind local) or an S3 bucket (kind cloud, provider "
                             "s3) after a connection test (admins).",
                        _ref("DistributionPoint"), status="201", body=DP_BODY, errors=REMOTE)},
        "/api/v1/distribution-points/test": {"post": _op(
            dps, "Try a DP node's {url, key} or an S3 bucket's settings without saving (admins).",
            _object(("ok",), ok=BOOL, health={"type": "object"}, bucket={}), body=DP_BODY,
            errors=REMOTE)},
        "/api/v1/distribution-points/{dp_id}": {
            "parameters": [dp_id],
            "get": _op(dps, "One DP.", _ref("DistributionPoint")),
            "patch": _op(dps, "Change a DP's settings (admins).", _ref("DistributionPoint"),
                         body=DP_PATCH, errors=REMOTE),
            "delete": _op(dps, "Forget a DP; its files are never deleted (admins).", None,
                          status="204")},
        "/api/v1/distribution-points/{dp_id}/accept-certificate": {
            "parameters": [dp_id],
            "post": _op(dps, "Pin the certificate a DP node presents now (admins).",
                        _ref("DistributionPoint"), body=_body(("fingerprint",), fingerprint=TEXT),
                        errors=REMOTE)},
        "/api/v1/distribution-points/{dp_id}/rescan": {
            "parameters": [dp_id],
            "post": _op(dps, "Start a rescan, or return the one queued or running.",
                        _ref("JobStarted"), status="202")},
        "/api/v1/distribution-points/{dp_id}/content": {
            "parameters": [dp_id],
            "get": _op(dps, "What the DP holds and lacks against central.",
                       _items({"type": "object"}), params=(_query("library"),))},
        "/api/v1/distribution-points/{dp_id}/copy-missing": {
            "parameters": [dp_id],
            "post": _op(dps, "Copy every asset missing or outdated at the DP.", _ref("Jobs"),
                        status="202")},
        "/api/v1/distribution-points/{dp_id}/verify": {
            "parameters": [dp_id],
            "post": _op(dps, "Hash again everything the DP holds.", _ref("JobStarted"),
                        status="202")},
        "/api/v1/distribution-points/{dp_id}/assets": {
            "parameters": [dp_id],
            "delete": _op(dps, "Remove ?key= from the DP; from central also with "
                               "?confirm=central.",
                          _object(("job",), job=_ref("Job")), status="202",
                          params=(_query("key", required=True), _query("confirm",
                                                                      {"const": "central"})))},
        "/api/v1/assets": {"get": _op(dps, "Central's assets with their status at each DP.",
                                      _items(_ref("Asset")))},
        "/api/v1/copies": {"post": _op(
            dps, "Copy {asset_keys} (or a whole {library}) to {dp_ids}: one job per asset and DP.",
            _ref("Jobs"), status="202",
            body=_body(("dp_ids",), asset_keys=STRINGS, library=TEXT, dp_ids=IDS))},
        "/api/v1/jobs": {"get": _op(
            work, "Jobs newest first.", _page(_ref("Job")),
            params=(_query("state"), _query("kind", {"enum": list(JOB_KINDS)}), *PAGING))},
        "/api/v1/jobs/{job_id}": {
            "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": TEXT}],
            "get": _op(work, "One job.", _ref("Job"))},
        "/api/v1/jobs/{job_id}/cancel": {
            "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": TEXT}],
            "post": _op(work, "Cancel a queued job or stop a running one (409 once finished).",
                        _ref("Job"))},
        "/api/v1/deployments": {
            "get": _op(work, "Deployments newest first.", _page(_ref("Deployment")), params=(
                _query("state", {"enum": list(DEPLOYMENT_STATES)}), _query("device_id", ID),
                _query("group_id", ID), _query("batch_id"), _query("dp_id", ID),
                _query("site"), *PAGING)),
            "post": _op(work, "Deploy to {device_ids} or a {group_id}, from {dp_id} or the DP "
                              "the rules choose (409 with `reasons` when none fits).",
                        _object(("items", "batch_id"),
                                items={"type": "array", "items": _ref("Deployment")},
                                batch_id=TEXT), status="201",
                        body={**_body(device_ids=IDS, group_id=ID, image=TEXT,
                                      platform_pack=TEXT, application_packs=STRINGS,
                                      answer_file=NULLABLE_TEXT, dp_id=ID),
                              "additionalProperties": False})},
        "/api/v1/deployments/preview": {"get": _op(
            work, "What a deployment would do: per device the DP and why.", {"type": "object"},
            params=(_query("device_id", {"type": "array", "items": ID}, explode=True),
                    _query("group_id", ID), _query("image"), _query("platform_pack"),
                    _query("application_pack", STRINGS, explode=True), _query("answer_file"),
                    _query("dp_id", ID)))},
        "/api/v1/deployments/{deployment_id}": {
            "parameters": [_path_id("deployment_id")],
            "get": _op(work, "One deployment.", _ref("Deployment"))},
        "/api/v1/deployments/{deployment_id}/cancel": {
            "parameters": [_path_id("deployment_id")],
            "post": _op(work, "Cancel a pending deployment or stop a running one.",
                        _ref("Deployment"))},
        "/api/v1/devices": {"get": _op(
            computers, "Devices by name.", _page(_ref("Device")),
            params=(_query("q", description="name, serial, MAC or IP"),
                    _query("group_id", description="a group's id, or `none`"),
                    _query("status"), *PAGING))},
        "/api/v1/devices/move": {"post": _op(
            computers, "Move devices to a group (null: none), all or none (admins).",
            _items(_ref("Device")),
            body={**_body(("device_ids", "group_id"), device_ids=IDS, group_id=NULLABLE_ID),
                  "additionalProperties": False})},
        "/api/v1/devices/{device_id}": {
            "parameters": [_path_id("device_id")],
            "get": _op(computers, "One device with its latest deployments.", _ref("Device")),
            "patch": _op(computers, "Rename a device or move it (admins).", _ref("Device"),
                         body=_body(name=TEXT, group_id=NULLABLE_ID)),
            "delete": _op(computers, "Forget a device; its history stays (admins).", None,
                          status="204")},
        "/api/v1/groups": {
            "get": _op(computers, "Every group with its device count.",
                       {**_items(_ref("Group")), "properties": {
                           "items": {"type": "array", "items": _ref("Group")},
                           "ungrouped": COUNT}}),
            "post": _op(computers, "Add a group (admins).", _ref("Group"), status="201",
                        body={**_body(("name",), name=TEXT, description=TEXT,
                                      preferred_dp_id=NULLABLE_ID, fallback_dp_ids=IDS),
                              "additionalProperties": False})},
        "/api/v1/groups/{group_id}": {
            "parameters": [_path_id("group_id")],
            "get": _op(computers, "One group.", _ref("Group")),
            "patch": _op(computers, "Change a group (admins).", _ref("Group"),
                         body=_body(name=TEXT, description=TEXT, preferred_dp_id=NULLABLE_ID,
                                    fallback_dp_ids=IDS)),
            "delete": _op(computers, "Delete a group; its devices stay (admins).", None,
                          status="204")},
        "/api/v1/boundaries": {
            "get": _op(computers, "Every boundary (subnet -> DP).", _items(_ref("Boundary"))),
            "post": _op(computers, "Add a boundary (admins).", _ref("Boundary"), status="201",
                        body={**_body(("name", "cidr", "dp_id"), name=TEXT, cidr=TEXT,
                                      dp_id=ID),
                              "additionalProperties": False})},
        "/api/v1/boundaries/{boundary_id}": {
            "parameters": [_path_id("boundary_id")],
            "get": _op(computers, "One boundary.", _ref("Boundary")),
            "patch": _op(computers, "Change a boundary (admins).", _ref("Boundary"),
                         body=_body(name=TEXT, cidr=TEXT, dp_id=ID)),
            "delete": _op(computers, "Remove a boundary (admins).", None, status="204")},
        "/api/v1/enrollment-tokens": {
            "get": _op(computers, "Every enrollment token, never the secret (admins).",
                       _items(_ref("EnrollmentToken"))),
            "post": _op(computers, "A new enrollment token; the secret is shown once (admins).",
                        _object(("token", "enrollment_token", "command"), token=TEXT,
                                enrollment_token=_ref("EnrollmentToken"), command=TEXT),
                        status="201",
                        body={**_body(name=TEXT, days={"type": "integer", "minimum": 1,
                                                       "maximum": 365},
                                      group_id=NULLABLE_ID),
                              "additionalProperties": False})},
        "/api/v1/enrollment-tokens/{token_id}/revoke": {
            "parameters": [_path_id("token_id")],
            "post": _op(computers, "Revoke an enrollment token (admins).",
                        _ref("EnrollmentToken"))},
        "/api/v1/notifications": {"get": _op(
            work, "The caller's notifications, newest first.",
            {**_page(_ref("Notification")), "required": ["items", "unread"]},
            params=(_query("unread", {"enum": ["0", "1", "true", "false"]}), *PAGING))},
        "/api/v1/notifications/{notification_id}/read": {
            "parameters": [_path_id("notification_id")],
            "post": _op(work, "Mark one notification read.", _ref("Changed"))},
        "/api/v1/notifications/read-all": {"post": _op(
            work, "Mark every notification read.", _ref("Changed"))},
        "/api/v1/audit": {"get": _op(
            work, "The audit log, newest first (admins).", _page(_ref("AuditEvent")),
            params=(_query("actor"), _query("action"), _query("from"), _query("to"), *PAGING))},
        # --- the agent API ---
        "/agent/v1/enroll": {"post": _op(
            agent, "Enroll a device with an enrollment token (and its device token when it "
                   "still holds one: then no claim).",
            _object(("device_id", "device_token", "interval", "report_interval"), device_id=ID,
                    device_token=TEXT, interval=COUNT, report_interval=COUNT,
                    claim={"const": "pending"}),
            status="201",
            body=_body(("enroll_token", "hostname"), enroll_token=ENROLL_TOKEN,
                       device_token=TEXT, **DEVICE_FACTS),
            security=[{}, DEVICE_TOKEN[0]],
            errors=("400", "401", "409", "413", "429"))},
        "/agent/v1/heartbeat": {"post": _op(
            agent, "The device is alive: its facts as it sees them now.", _ref("Intervals"),
            body=_body(**DEVICE_FACTS), security=DEVICE_TOKEN)},
        "/agent/v1/work": {"get": _op(
            agent, "The device's unfinished deployments.",
            _object(("deployments", "interval"), interval=COUNT, deployments={
                "type": "array", "items": _object(("id", "state", "cancel_requested"), id=ID,
                                                  state=TEXT, cancel_requested=BOOL)}),
            security=DEVICE_TOKEN)},
        "/agent/v1/deployments/{deployment_id}": {
            "parameters": [_path_id("deployment_id")],
            "get": _op(agent, "What to download for one deployment, with fresh links.",
                       _object(("id", "state", "files"), id=ID, state=TEXT,
                               cancel_requested=BOOL, dp={"type": "object"},
                               image=NULLABLE_TEXT, files={"type": "array"},
                               bytes_total=NULLABLE_COUNT),
                       security=DEVICE_TOKEN, errors=REMOTE)},
        "/agent/v1/deployments/{deployment_id}/progress": {
            "parameters": [_path_id("deployment_id")],
            "post": _op(agent, "One progress report (idempotent by seq).",
                        _object(("state", "cancel"), state=TEXT, cancel=BOOL),
                        body=_body(("seq", "state"), seq={"type": "integer", "minimum": 1,
                                                          "maximum": 2 ** 31 - 1},
                                   state=TEXT, bytes_done=COUNT, phase=TEXT, error=TEXT),
                        security=DEVICE_TOKEN)},
        "/agent/v1/download": {"get": {
            "tags": [agent], "security": ANONYMOUS,
            "summary": "A central download link of an older Depot: checked, then sent on (307) "
                       "to the same file at central's DP node. The link's signature is its "
                       "credential.",
            "parameters": [_query("path", required=True), _query("expires", required=True),
                           _query("sig", required=True)],
            "responses": {"307": {"description": "Go to the file at central's DP node.",
                                  "headers": {"Location": {"schema": TEXT}}},
                          **_errors("400", "403", "404", "429")}}},
    }


def document() -> dict:
    """The whole OpenAPI 3.1 document (a new dict each call: callers may change theirs)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Depot API", "version": "1",
            "description": "The JSON API of Depot (/api/v1/, personal bearer tokens from "
                           "POST /api/v1/tokens) and the agent API (/agent/v1/, device tokens "
                           "from enrollment). Every error answers "
                           '{"error": {"code": "...", "message": "..."}}.',
        },
        "tags": [{"name": name} for name in (
            "Document", "Users and tokens", "Distribution points", "Jobs, deployments, events",
            "Computer Management", "Agent")],
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {
                "apiToken": {"type": "http", "scheme": "bearer",
                             "description": "A personal API token (dpt_…) from POST /api/v1/tokens "
                                            "or the console."},
                "deviceToken": {"type": "http", "scheme": "bearer",
                                "description": "A device token (ddt_…) from "
                                               "POST /agent/v1/enroll."},
            },
        },
    }


@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 document of /api/v1/ and /agent/v1/ (anyone may read it)."""
    return document()
