"""The audit log in words: a sentence per action with today's names, filters by who, what and
dates, and the CSV export."""
import csv
import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event as sa_event

from portal.config import BASE_DIR
from portal.extensions import db
from portal.models import AuditEvent, utcnow
from portal.services import audit, audit_words
from portal.services.actors import SYSTEM, Actor
from tests import factories

ADMIN = "admin@example.com"


def _record(action, target=None, who=ADMIN, via="console", ago=None, **details):
    actor = Actor(None, via=via, ip="10.1.2.3", name=who)
    event = audit.record(actor, action, target, **details)
    if ago is not None:
        event.created_at = utcnow() - ago
    db.session.commit()
    return event


def _said(event) -> str:
    return audit_words.describe([event])[0].sentence


def _actions_written_in_the_code() -> set[str]:
    """Every action name the code records: literal ones, job.<kind>.start/cancel, and the refused
    actions two-step sign-in passes along."""
    found = set()
    for path in Path(BASE_DIR, "portal").rglob("*.py"):
        text = path.read_text()
        found |= set(re.findall(r'audit\.record\([^,]+,\s*"([a-z_0-9.]+)"', text))
        found |= set(re.findall(r'"(auth\.2fa_[a-z_]+)"', text))
    from portal.services.jobs import JOB_FUNCS
    found |= {f"job.{kind}.{what}" for kind in JOB_FUNCS for what in ("start", "cancel")}
    return found


def test_every_action_the_code_records_has_a_sentence():
    """Does every audit action written anywhere in portal/ have a sentence of its own?"""
    actions = _actions_written_in_the_code()
    assert len(actions) > 40
    assert actions - set(audit_words.SENTENCES) == set()


def test_sentences_name_dps_groups_and_devices_as_they_are_called_today(app, central):
    """Are ids turned into today's names, a deleted DP named as such, and no digest shown?"""
    seattle = factories.add_dp("Seattle")
    group = factories.make_group("Seattle office", preferred=seattle, fallbacks=[central])
    laptop = factories.make_device("SEA-LT-042", group=group)
    copy = _record("job.copy.start", "5b0c6a3e-0000-4000-8000-000000000001", dp_id=seattle.id,
                   asset_key="Images/Win11.wim")
    assert _said(copy) == f"{ADMIN} copied Images/Win11.wim to Seattle"
    deploy = _record("deployment.create", "batch 3f2a", image="Images/Win11.wim", devices=4,
                     group="Seattle office", dp_ids=[seattle.id],
                     assets=[{"key": "Images/Win11.wim", "digest": "ab" * 32}])
    said = _said(deploy)
    assert said == (f"{ADMIN} deployed Images/Win11.wim to the group Seattle office (4 devices) "
                    "from Seattle")
    moved = _record("device.move", "Seattle office", device_ids=[laptop.id], group_id=group.id)
    assert _said(moved) == f"{ADMIN} moved SEA-LT-042 to the group Seattle office"
    made = _record("group.create", "Seattle office", group_id=group.id,
                   preferred_dp_id=seattle.id, fallback_dp_ids=[central.id])
    assert _said(made) == (f"{ADMIN} created the group Seattle office (it prefers Seattle, then "
                           f"{central.name})")
    gone_id = seattle.id
    db.session.delete(laptop)
    db.session.delete(group)
    db.session.delete(seattle)
    db.session.commit()
    assert _said(copy) == (f"{ADMIN} copied Images/Win11.wim to a deleted distribution point "
                           f"(#{gone_id})")
    assert "a forgotten device" in _said(moved) and "a deleted group" in _said(moved)


def test_one_query_per_kind_of_name_for_a_whole_page(app, central):
    """Does a page of 50 events name its DPs, groups, devices and jobs with at most 4 queries?"""
    dps = [factories.add_dp(f"DP{n}") for n in range(5)]
    for n in range(50):
        _record("job.copy.cancel", f"job-{n}", dp_id=dps[n % 5].id)
        _record("boundary.create", f"10.{n}.0.0/16", name=f"b{n}", dp_id=dps[n % 5].id)
    events, _ = audit.search(per_page=50)
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    sa_event.listen(db.engine, "before_cursor_execute", listener)
    try:
        lines = audit_words.describe(events)
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", listener)
    assert len(lines) == 50 and len(statements) <= 4
    assert all("DP" in line.sentence for line in lines)


# One event of each kind, with the details the code records, and what it reads as.
CASES = [
    ("auth.login", ADMIN, {}, f"{ADMIN} signed in"),
    ("auth.login", ADMIN, {"second_factor": "recovery code", "recovery_codes_left": 9},
     f"{ADMIN} signed in with a recovery code (9 left)"),
    ("auth.login_failed", "x@example.com", {"reason": "wrong password"},
     "Someone failed to sign in as x@example.com (wrong password)"),
    ("auth.logout", ADMIN, {}, f"{ADMIN} signed out"),
    ("auth.sso_login", ADMIN, {"role": "viewer", "created": True},
     f"{ADMIN} signed in through single sign-on as viewer, and the account was created"),
    ("auth.2fa_reset", "tech@example.com", {"sessions_ended": True},
     f"{ADMIN} reset the two-step sign-in of tech@example.com"),
    ("user.create", "tech@example.com", {"role": "technician", "sites": ["Seattle"]},
     f"{ADMIN} added the user tech@example.com as technician for Seattle"),
    ("user.update", "tech@example.com", {"fields": ["password", "role"], "sessions_ended": True},
     f"{ADMIN} changed the password and role of the user tech@example.com; their sessions "
     "were ended"),
    ("user.password_change", ADMIN, {"sessions_ended": True}, f"{ADMIN} changed their password"),
    ("token.revoke", ADMIN, {"name": "ci"}, f"{ADMIN} revoked the API token “ci” of {ADMIN}"),
    ("deployment.cancel", "deployment 12", {"device": "SEA-LT-042"},
     f"{ADMIN} cancelled deployment #12 to SEA-LT-042"),
    ("dp.create", "Seattle", {"kind": "local", "url": "https://seattle.example:8443"},
     f"{ADMIN} added the DP node Seattle at https://seattle.example:8443"),
    ("dp.update", "Seattle", {"fields": ["key", "bandwidth_limit"]},
     f"{ADMIN} changed the key and bandwidth cap of Seattle"),
    ("dp.delete", "Seattle", {"kind": "local"}, f"{ADMIN} forgot the distribution point Seattle"),
    ("device.claim_refuse", "SEA-LT-042", {"device_id": 99, "serial": "X"},
     f"{ADMIN} refused the device claim of SEA-LT-042"),
    ("device.claim_approve", "SEA-LT-042", {"device_id": 99}, f"{ADMIN} approved the device claim "
     "of SEA-LT-042"),
    ("device.forget", "SEA-LT-042", {"device_id": 99}, f"{ADMIN} forgot the device SEA-LT-042"),
    ("device.enroll", "SEA-LT-043", {"enrollment_token": "seattle", "again": False},
     "SEA-LT-043 enrolled with the enrollment token “seattle”"),
    ("boundary.delete", "10.2.0.0/16", {"name": "Seattle LAN"},
     f"{ADMIN} removed the boundary 10.2.0.0/16 (Seattle LAN)"),
    ("group.delete", "Seattle office", {"devices": 3},
     f"{ADMIN} deleted the group Seattle office (3 devices left without a group)"),
    ("enrollment_token.create", "seattle", {"days": 7, "group_id": None},
     f"{ADMIN} created the enrollment token “seattle” for 7 days"),
    ("enrollment_token.installer", "seattle", {},
     f"{ADMIN} downloaded the installer of the enrollment token “seattle”"),
    ("something.new", "thing", {}, f"{ADMIN}: something.new thing"),
]


@pytest.mark.parametrize("action, target, details, words", CASES)
def test_each_action_reads_as_a_sentence_on_the_page(login_as, action, target, details, words):
    """Does the Audit page show the event as a sentence, with its raw record behind Details?"""
    console = login_as("admin")
    who = "anonymous" if action == "auth.login_failed" else ADMIN
    _record(action, target, who=who, **details)
    html = console.get(f"/settings/audit?action={action}", hx=True).get_data(as_text=True)
    assert words.replace("“", "&#8220;") in html or words in html.replace("&#39;", "'")
    assert "<details" in html and f"&#34;action&#34;: &#34;{action}&#34;" in html


def test_a_system_and_an_agent_actor_read_as_such(app):
    """Is "system" told apart: Depot itself, the command line, a device's agent?"""
    cli = audit.record(Actor(None, via="cli"), "job.rescan.start", "j1", dp_id=None)
    agent = audit.record(Actor(None, via="agent"), "device.enroll", "PC-1",
                         enrollment_token="t", again=True)
    depot = audit.record(SYSTEM, "job.verify.start", "j2", dp_id=None)
    db.session.commit()
    assert _said(cli) == "An operator at the command line rescanned no DP"
    assert _said(agent) == "PC-1 enrolled again with the enrollment token “t”"
    assert _said(depot).startswith("Depot verified")


def test_filters_by_who_what_and_dates(login_as):
    """Do who, what (in words) and the date range filter the page, the totals and the CSV link?"""
    console = login_as("admin")
    _record("auth.login", ADMIN, ago=timedelta(days=10))
    _record("user.delete", "old@example.com", ago=timedelta(days=3))
    _record("user.delete", "new@example.com", who="tech@example.com")
    page = console.get("/settings/audit").get_data(as_text=True)
    assert ">User accounts</option>" in page and 'type="date" name="from"' in page
    assert '<option value="tech@example.com">' in page  # the who suggestions
    today, three_days_ago = utcnow().date(), (utcnow() - timedelta(days=3)).date()
    html = console.get(f"/settings/audit?action=user.&from={three_days_ago}&to={three_days_ago}",
                       hx=True).get_data(as_text=True)
    assert "old@example.com" in html and "new@example.com" not in html and "1 event." in html
    assert f"from={three_days_ago}" in html and "audit.csv" in html
    html = console.get(f"/settings/audit?actor=tech@&from={today}", hx=True).get_data(as_text=True)
    assert "new@example.com" in html and "old@example.com" not in html
    nobody = console.get("/settings/audit?actor=nobody@nowhere", hx=True).get_data(as_text=True)
    assert "No events by “nobody@nowhere” match." in nobody and "0 events." in nobody
    assert "audit.csv" not in nobody


@pytest.mark.parametrize("query, said", [
    ("from=yesterday", "The “from” date “yesterday” is not a date"),
    ("to=2026-13-45", "The “to” date “2026-13-45” is not a date"),
    ("from=2026-12-06&to=2026-12-01", "is before the “from” date"),
])
def test_a_bad_date_is_a_message_not_a_500(login_as, query, said):
    """Is a bad or backwards date a 400 page that says what is wrong, keeping the filters?"""
    console = login_as("admin")
    page = console.get(f"/settings/audit?{query}")
    html = page.get_data(as_text=True)
    assert page.status_code == 400 and said in html and 'id="audit"' in html
    assert 'name="from"' in html  # the form is still there to fix it
    fragment = console.get(f"/settings/audit?{query}", hx=True)
    assert fragment.status_code == 200 and said in fragment.get_data(as_text=True)
    assert console.get(f"/settings/audit.csv?{query}").status_code == 400


def test_csv_export_of_the_filtered_log(login_as):
    """Is the CSV a download with headers and sentences, of the filtered events only, and are
    cells that a spreadsheet would run as formulas quoted?"""
    console = login_as("admin")
    _record("token.create", ADMIN, name="=HYPERLINK(\"http://evil\",\"x\")")
    _record("user.create", "-2+3@example.com", role="viewer", sites=[])
    _record("auth.login", ADMIN)
    response = console.get(f"/settings/audit.csv?action=user.&actor={ADMIN}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="depot-audit-')
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == list(audit.CSV_COLUMNS)
    assert len(rows) == 2 and rows[1][3] == "user.create"
    assert rows[1][4] == "'-2+3@example.com"  # the target, quoted
    assert rows[1][2] == f"{ADMIN} added the user -2+3@example.com as viewer"
    everything = list(csv.reader(io.StringIO(console.get("/settings/audit.csv")
                                             .get_data(as_text=True))))
    token_row = next(r for r in everything if r[3] == "token.create")
    assert token_row[2].startswith(f"{ADMIN} created the API token “=HYPERLINK")
    assert audit.safe_cell("=1+1") == "'=1+1" and audit.safe_cell("@SUM(A1)") == "'@SUM(A1)"
    assert audit.safe_cell("+1") == "'+1" and audit.safe_cell("plain") == "plain"
    assert audit.safe_cell(None) == ""


def test_csv_streams_more_than_a_batch(login_as, monkeypatch):
    """Does the CSV hold every matching event past one batch, newest first?"""
    monkeypatch.setattr(audit, "CSV_BATCH", 7)
    console = login_as("admin")
    for n in range(20):
        _record("user.delete", f"u{n}@example.com")
    rows = list(csv.reader(io.StringIO(console.get("/settings/audit.csv?action=user.delete")
                                       .get_data(as_text=True))))
    assert [r[4] for r in rows[1:]] == [f"u{n}@example.com" for n in reversed(range(20))]


@pytest.mark.parametrize("role", ["viewer", "technician"])
def test_only_those_who_may_see_the_audit_log_get_it_or_its_csv(login_as, role):
    """Are the audit page and its CSV refused to viewers and technicians, as before?"""
    console = login_as(role)
    _record("auth.login", ADMIN)
    assert console.get("/settings/audit").status_code == 403
    csv_answer = console.get("/settings/audit.csv")
    assert csv_answer.status_code == 403 and ADMIN not in csv_answer.get_data(as_text=True)


def test_the_api_filters_by_dates_and_refuses_a_bad_one(api_as):
    """Does GET /api/v1/audit take from/to, and answer a bad date with a 400 in words?"""
    api = api_as("admin")
    _record("user.delete", "old@example.com", ago=timedelta(days=5))
    _record("user.delete", "new@example.com")
    today = utcnow().date()
    items = api.get(f"/api/v1/audit?action=user.delete&from={today}").get_json()["items"]
    assert [i["target"] for i in items] == ["new@example.com"]
    bad = api.get("/api/v1/audit?to=someday")
    assert bad.status_code == 400 and "is not a date" in bad.get_json()["error"]["message"]
