"""The lean agent path (DEPOT_AGENT_LEAN): quiet heartbeats and idle work polls answered from
Redis before Flask, without the database; what must reach them at once (new or cancelled work,
a revoked token) does; last-seen times reach the database through the flush job."""
from contextlib import contextmanager
from datetime import timedelta

import pytest
from rq import Queue
from sqlalchemy import event
from werkzeug.middleware.proxy_fix import ProxyFix

from portal.blueprints.agent_api.fast import AgentFastPath
from portal.extensions import db, get_redis
from portal.models import Deployment, Device, utcnow
from portal.services import agent_cache, agent_deployments, agent_flush, devices
from portal.services.deployments import cancel_deployment
from portal.services.enrollment import hash_token
from tests.factories import AGENT_FACTS, write_file
from tests.helpers import run_worker


@contextmanager
def statements():
    """Every SQL statement the app's engine runs inside the block, in a list."""
    seen = []

    def record(conn, cursor, statement, params, context, executemany):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


@pytest.fixture
def image(central, rescan):
    write_file(central.root, "Images/Win11.wim", b"w" * 1000)
    rescan(central)
    return "Images/Win11.wim"


@pytest.fixture
def settled(agent_calls, enroll_secret):
    """An enrolled device whose heartbeat and empty work poll went the slow path once, so the
    next ones are quiet: (device id, token)."""
    device_id, token = agent_calls.enrolled(enroll_secret)
    assert agent_calls.call("POST", "/heartbeat", token, json=AGENT_FACTS).status_code == 200
    assert agent_calls.call("GET", "/work", token).json["deployments"] == []
    return device_id, token


def last_seen(device_id):
    db.session.expire_all()
    return db.session.get(Device, device_id).last_seen_at


def test_fast_path_sits_inside_proxyfix_and_before_flask(app):
    """Is the fast path the app's outermost layer but ProxyFix's (so it sees forwarded client
    addresses), whatever DEPOT_TRUSTED_PROXIES says?"""
    from portal import create_app
    from portal.config import TestConfig

    assert isinstance(app.wsgi_app, AgentFastPath)
    proxied = create_app(type("Proxied", (TestConfig,), {
        "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": app.config["REDIS_URL"], "INSTANCE_DIR": app.config["INSTANCE_DIR"],
        "DEPOT_TRUSTED_PROXIES": "1"}))
    try:
        assert isinstance(proxied.wsgi_app, ProxyFix)
        assert isinstance(proxied.wsgi_app.app, AgentFastPath)
    finally:
        with proxied.app_context():
            db.engine.dispose()


def test_fast_path_sees_the_forwarded_address(app, settled):
    """Behind one proxy: is a heartbeat from another client address (X-Forwarded-For) not quiet,
    so the device's remote address is written at once?"""
    from portal import create_app
    from portal.config import TestConfig

    device_id, token = settled
    proxied = create_app(type("Proxied", (TestConfig,), {
        "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": app.config["REDIS_URL"], "INSTANCE_DIR": app.config["INSTANCE_DIR"],
        "DEPOT_TRUSTED_PROXIES": "1", "DEPOT_AGENT_INTERVAL": 1, "DEPOT_AGENT_REPORT_INTERVAL": 1}))
    client = proxied.test_client()

    def beat(address):
        return client.post("/agent/v1/heartbeat", json=AGENT_FACTS, headers={
            "Authorization": f"Bearer {token}", "X-Forwarded-For": address}).status_code

    try:
        assert beat("203.0.113.7") == 200  # a new address: written
        assert last_seen(device_id) and db.session.get(Device, device_id).remote_ip == "203.0.113.7"
        get_redis().delete(agent_cache.SEEN)
        assert beat("203.0.113.7") == 200  # quiet: its time went to Redis
        assert get_redis().hexists(agent_cache.SEEN, str(device_id))
        assert beat("198.51.100.4") == 200
        db.session.expire_all()
        assert db.session.get(Device, device_id).remote_ip == "198.51.100.4"
    finally:
        with proxied.app_context():
            db.engine.dispose()


def test_quiet_heartbeat_and_idle_poll_touch_no_database(agent_calls, settled, app):
    """Are a quiet heartbeat and an idle poll answered without one SQL statement, with the bodies
    the slow path gives, and the heartbeat's time kept in Redis for the flush?"""
    device_id, token = settled
    before = last_seen(device_id)
    with statements() as seen:
        beat = agent_calls.call("POST", "/heartbeat", token, json=AGENT_FACTS)
        work = agent_calls.call("GET", "/work", token)
    assert seen == []
    assert beat.status_code == 200 and beat.json == {"interval": 1, "report_interval": 1}
    assert work.status_code == 200 and work.json == {"deployments": [], "interval": 1}
    assert get_redis().hget(agent_cache.SEEN, str(device_id)) is not None
    app.config["DEPOT_AGENT_LEAN"] = False  # the same bodies, byte for byte, from Flask
    assert agent_calls.call("POST", "/heartbeat", token, json=AGENT_FACTS).data == beat.data
    assert agent_calls.call("GET", "/work", token).data == work.data
    assert last_seen(device_id) >= before


def test_quiet_calls_carry_the_security_headers_flask_gives(agent_calls, settled, app):
    """Does the fast path answer with the same security headers as the slow path (no-store,
    the CSP, nosniff), a rate-limited answer included?"""
    _, token = settled
    names = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options",
             "Referrer-Policy", "Cache-Control")
    quiet = agent_calls.call("POST", "/heartbeat", token, json=AGENT_FACTS)
    assert get_redis().hget(agent_cache.SEEN, str(settled[0])) is not None  # the fast path's
    app.config["DEPOT_AGENT_LEAN"] = False
    slow = agent_calls.call("POST", "/heartbeat", token, json=AGENT_FACTS)
    assert [quiet.headers[n] for n in names] == [slow.headers[n] for n in names]
    assert quiet.headers["Cache-Control"] == "no-store"
    assert quiet.headers["X-Content-Type-Options"] == "nosniff"
    app.config.update(DEPOT_AGENT_LEAN=True, DEPOT_AGENT_RATE_LIMIT=0)
    limited = agent_calls.call("GET", "/work", token)
    assert limited.status_code == 429
    assert [limited.headers[n] for n in names] == [slow.headers[n] for n in names]


def test_quiet_calls_work_with_the_database_gone(agent_calls, settled, app, monkeypatch):
    """With every database connection refused, do quiet calls still get 200?"""
    _, token = settled

    def refuse(*args, **kwargs):
        raise AssertionError("the fast path asked the database")

    monkeypatch.setattr(db.engine, "connect", refuse)
    monkeypatch.setattr(db.engine, "raw_connection", refuse)
    assert agent_calls.call("POST", "/heartbeat", token, json=AGENT_FACTS).status_code == 200
    assert agent_calls.call("GET", "/work", token).status_code == 200


def test_changed_facts_go_the_slow_path_and_are_written_at_once(agent_calls, settled):
    """Does a heartbeat with a changed fact write it (and last seen) at once, and is the same
    heartbeat again quiet?"""
    device_id, token = settled
    changed = {**AGENT_FACTS, "os": "Debian 14"}
    with statements() as seen:
        assert agent_calls.call("POST", "/heartbeat", token, json=changed).status_code == 200
    assert any(s.lstrip().upper().startswith("UPDATE") for s in seen)
    db.session.expire_all()
    assert db.session.get(Device, device_id).os == "Debian 14"
    with statements() as seen:
        assert agent_calls.call("POST", "/heartbeat", token, json=changed).status_code == 200
    assert seen == []


def test_new_deployment_is_seen_on_the_next_poll(agent_calls, settled, enroll_secret, central,
                                                 image, deploy):
    """After an idle poll, does a deployment created for the device show in the next poll, and
    leave another device's marker alone?"""
    device_id, token = settled
    _, other = agent_calls.enrolled(enroll_secret, serial="SN-0002",
                                    mac_addresses=["52:54:00:aa:bb:02"])
    assert agent_calls.call("GET", "/work", other).json["deployments"] == []
    deployment = deploy(device_id, central, image)
    work = agent_calls.call("GET", "/work", token).json
    assert [d["id"] for d in work["deployments"]] == [deployment.id]
    with statements() as seen:
        assert agent_calls.call("GET", "/work", other).json["deployments"] == []
    assert seen == []


def test_deployment_committed_during_a_poll_is_not_missed(agent_calls, enroll_secret, central,
                                                          image, deploy, monkeypatch):
    """A deployment committed after a poll read the database but before it set the idle marker:
    is it seen on the next poll all the same (the marker holds the version read before)?"""
    device_id, token = agent_calls.enrolled(enroll_secret)
    real_work = agent_deployments.work
    made = []

    def work_then_deploy(device):
        found = real_work(device)
        if not made:
            made.append(deploy(device_id, central, image).id)
        return found

    monkeypatch.setattr(agent_deployments, "work", work_then_deploy)
    assert agent_calls.call("GET", "/work", token).json["deployments"] == []
    monkeypatch.setattr(agent_deployments, "work", real_work)
    assert [d["id"] for d in agent_calls.call("GET", "/work", token).json["deployments"]] == made


def test_cancelled_deployment_reaches_the_next_poll(agent_calls, settled, central, image, deploy,
                                                    admin):
    """Is a pending deployment cancelled from the console gone from the next poll, and a
    downloading one's cancel_requested seen, both through the bulk UPDATEs of the service?"""
    device_id, token = settled
    pending = deploy(device_id, central, image)
    assert len(agent_calls.call("GET", "/work", token).json["deployments"]) == 1
    cancel_deployment(admin, pending.id)
    assert agent_calls.call("GET", "/work", token).json["deployments"] == []
    assert agent_calls.call("GET", "/work", token).json["deployments"] == []  # idle again

    running = deploy(device_id, central, image)
    db.session.get(Deployment, running.id).state = "downloading"
    db.session.commit()
    [item] = agent_calls.call("GET", "/work", token).json["deployments"]
    assert item["cancel_requested"] is False
    cancel_deployment(admin, running.id)
    [item] = agent_calls.call("GET", "/work", token).json["deployments"]
    assert item["cancel_requested"] is True


def test_silent_sweep_bumps_the_work_version(agent_calls, enroll_secret, central, image, deploy,
                                             app):
    """Does a deployment the silent sweep ends (a bulk UPDATE) change the device's version?"""
    device_id, _ = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, central, image)
    deployment.state, deployment.started_at = "downloading", utcnow() - timedelta(hours=2)
    db.session.commit()
    before = agent_cache.work_version(device_id)
    agent_deployments.fail_silent_deployments(silent_after=60)
    assert agent_cache.work_version(device_id) != before


def test_forgotten_device_token_is_refused_at_once(agent_calls, settled, admin):
    """A cached token of a device an admin forgets: 401 on the very next call, both paths."""
    device_id, token = settled
    devices.forget_device(admin, db.session.get(Device, device_id))
    for method, path in (("POST", "/heartbeat"), ("GET", "/work")):
        response = agent_calls.call(method, path, token, json=AGENT_FACTS if method == "POST"
                                    else None)
        assert response.status_code == 401, path
        assert response.json["error"]["code"] == "unauthorized"
    assert get_redis().get(agent_cache.token_key(hash_token(token))) == b"-"


def test_enrolling_again_kills_the_old_token_at_once(agent_calls, settled, enroll_secret):
    """Enrolled again (same serial and MAC, with its device token): is the old, cached token
    refused at once and the new one answered, its first heartbeat written (not mistaken for the
    old quiet one)?"""
    device_id, old = settled
    again, new = agent_calls.enrolled(enroll_secret, os="Windows 11", device_token=old)
    assert again == device_id
    assert agent_calls.call("GET", "/work", old).status_code == 401
    with statements() as seen:
        assert agent_calls.call("POST", "/heartbeat", new, json=AGENT_FACTS).status_code == 200
    assert seen  # the slow path: the enrollment's facts were not the heartbeat's
    db.session.expire_all()
    assert db.session.get(Device, device_id).os == AGENT_FACTS["os"]


def test_a_tombstone_is_not_overwritten_by_a_late_lookup(app, settled):
    """A request that looked the device up just before its token was revoked caches it after:
    does the tombstone stay?"""
    device_id, token = settled
    agent_cache.revoke([hash_token(token)], [device_id])
    agent_cache.cache_device(hash_token(token), device_id)
    assert get_redis().get(agent_cache.token_key(hash_token(token))) == b"-"


def test_flush_job_writes_last_seen_on_a_real_worker(agent_calls, settled, app):
    """Do quiet heartbeats' times reach last_seen_at through the flush job on an RQ worker,
    never moving a newer time back?"""
    device_id, token = settled
    past = utcnow() - timedelta(hours=1)
    db.session.get(Device, device_id).last_seen_at = past
    db.session.commit()
    assert agent_calls.call("POST", "/heartbeat", token, json=AGENT_FACTS).status_code == 200
    assert last_seen(device_id) == past  # not written at once
    Queue("default", connection=get_redis()).enqueue("portal.jobs.maintenance.flush_agent_seen")
    run_worker()
    flushed = last_seen(device_id)
    assert flushed > past and utcnow() - flushed < timedelta(minutes=1)
    assert get_redis().exists(agent_cache.SEEN) == 0

    get_redis().hset(agent_cache.SEEN, str(device_id), str(past.timestamp() - 7200))
    assert agent_flush.flush_seen() == 0  # older than what the database has: left alone
    assert last_seen(device_id) == flushed
    assert agent_flush.flush_seen() == 0  # nothing pending


def test_flush_puts_times_back_when_the_database_refuses(app, settled, monkeypatch):
    """If the database refuses the batch, are the pending times kept for the next run?"""
    device_id, _ = settled
    get_redis().hset(agent_cache.SEEN, str(device_id), "1700000000.5")

    def refuse(*args, **kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr(db.session, "execute", refuse)
    with pytest.raises(RuntimeError):
        agent_flush.flush_seen()
    assert get_redis().hget(agent_cache.SEEN, str(device_id)) == b"1700000000.5"


def test_lean_off_is_the_slow_path_unchanged(agent_calls, enroll_secret, app):
    """DEPOT_AGENT_LEAN=0: does every heartbeat write last seen at once and nothing of the fast
    path go to Redis?"""
    app.config["DEPOT_AGENT_LEAN"] = False
    device_id, token = agent_calls.enrolled(enroll_secret)
    for _ in range(2):
        with statements() as seen:
            assert agent_calls.call("POST", "/heartbeat", token, json=AGENT_FACTS).status_code == 200
        assert any("last_seen_at" in s for s in seen if s.lstrip().upper().startswith("UPDATE"))
        with statements() as seen:
            assert agent_calls.call("GET", "/work", token).json["deployments"] == []
        assert any("deployments" in s for s in seen)
    assert get_redis().keys(agent_cache.PREFIX + "*") == []


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer ddt_unknown"])
def test_bad_tokens_get_401_on_the_fast_routes(client, settled, header):
    """No token, an empty one, another scheme, an unknown token: 401 JSON, fast path or not."""
    headers = {"Authorization": header} if header else {}
    for method, path in (("POST", "/agent/v1/heartbeat"), ("GET", "/agent/v1/work")):
        response = client.open(path, method=method, headers=headers, json=AGENT_FACTS)
        assert response.status_code == 401, (path, header)
        assert response.json["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("body, code", [(b"{not json", "malformed_json"), (b"[1]", "invalid"),
                                        (b"", "invalid")])
def test_malformed_heartbeats_get_400(client, settled, body, code):
    """A settled device sending a broken body: a clear 400, never a quiet 200."""
    _, token = settled
    response = client.post("/agent/v1/heartbeat", data=body,
                           headers={"Authorization": f"Bearer {token}",
                                    "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json["error"]["code"] == code and response.json["error"]["message"]


@pytest.mark.parametrize("config_overrides", [{"DEPOT_AGENT_INTERVAL": 1,
                                               "DEPOT_AGENT_REPORT_INTERVAL": 1,
                                               "DEPOT_AGENT_RATE_LIMIT": 4}])
def test_fast_path_counts_the_rate_limit(agent_calls, settled, config_overrides):
    """Do quiet calls count toward DEPOT_AGENT_RATE_LIMIT and get the same 429 beyond it?"""
    _, token = settled  # its two calls counted
    assert agent_calls.call("GET", "/work", token).status_code == 200
    assert agent_calls.call("POST", "/heartbeat", token, json=AGENT_FACTS).status_code == 200
    limited = agent_calls.call("GET", "/work", token)
    assert limited.status_code == 429 and limited.json["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


def test_redis_down_falls_back_to_the_database(agent_calls, settled, app, monkeypatch):
    """With Redis refusing every call, are heartbeats and polls still answered (slow path)?"""
    device_id, token = settled
    fast = app.wsgi_app

    class Broken:
        def __call__(self, *args, **kwargs):
            raise ConnectionError("Redis refused")

        def __getattr__(self, name):
            raise ConnectionError("Redis refused")

    monkeypatch.setattr(fast, "_script", Broken())
    monkeypatch.setitem(app.extensions, "depot_redis", Broken())
    before = last_seen(device_id)
    assert agent_calls.call("POST", "/heartbeat", token, json=AGENT_FACTS).status_code == 200
    assert agent_calls.call("GET", "/work", token).json["deployments"] == []
    assert last_seen(device_id) >= before


def test_device_pages_show_pending_last_seen(agent_calls, settled, app):
    """Before the flush, do the device list and the device's own record show the last seen of
    a quiet heartbeat (newer than the database's), and leave the row unchanged?"""
    device_id, token = settled
    past = utcnow() - timedelta(hours=1)
    db.session.get(Device, device_id).last_seen_at = past
    db.session.commit()
    assert agent_calls.call("POST", "/heartbeat", token, json=AGENT_FACTS).status_code == 200
    db.session.expire_all()
    [listed], _ = devices.list_devices()
    assert listed.last_seen_at > past and devices.device_status(listed) == "online"
    assert devices.get_device(device_id).last_seen_at > past
    assert not db.session.dirty
    db.session.expire_all()
    assert db.session.get(Device, device_id).last_seen_at == past
    get_redis().hset(agent_cache.SEEN, str(device_id), "not a time")
    db.session.expire_all()
    assert devices.get_device(device_id).last_seen_at == past


def test_rolled_back_changes_bump_nothing(agent_calls, settled, central, image, deploy):
    """A deployment changed and flushed, then rolled back (a change that failed): is the work
    version left as it was (nothing reaches Redis before a commit), and a commit bumps it?"""
    device_id, _ = settled
    deployment = deploy(device_id, central, image)
    version = agent_cache.work_version(device_id)
    deployment.state = "cancelled"
    db.session.flush()
    db.session.rollback()
    assert agent_cache.work_version(device_id) == version
    deployment.state = "cancelled"
    db.session.commit()
    assert agent_cache.work_version(device_id) != version
