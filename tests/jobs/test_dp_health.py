"""Health checks of DP nodes: offline when a node stops, online when it is back, each change notified
once; and the scheduled check as a job a worker runs."""
import os

from rq.cron import CronScheduler

from portal.config import Config
from portal.extensions import db, get_queue, get_redis
from portal.models import DistributionPoint, Notification
from portal.services import dp_management
from portal.storage.answers import host_port


def notes(user_id):
    """The DP status notifications (dp.offline / dp.online) the user got, oldest first."""
    db.session.expire_all()
    return [(n.kind, n.level, n.message) for n in db.session.query(Notification).filter(
        Notification.user_id == user_id, Notification.kind.startswith("dp."))
        .order_by(Notification.id)]


def fresh(dp_id):
    db.session.expire_all()
    return db.session.get(DistributionPoint, dp_id)


def test_node_going_away_and_coming_back(admin, seattle, node):
    """Does a stopped node turn its DP offline with dp.offline, and a restarted one online with dp.online?"""
    assert dp_management.check_health() == {seattle.id: "online"}
    assert notes(admin.user.id) == []
    node.stop()
    assert dp_management.check_health() == {seattle.id: "offline"}
    dp = fresh(seattle.id)
    assert dp.status == "offline"
    assert dp.status_reason == (f"Depot could not connect to {host_port(node.url)} "
                                "(connection refused)")
    [(kind, level, message)] = notes(admin.user.id)
    assert (kind, level) == ("dp.offline", "error")
    assert message == f"Seattle went offline: {dp.status_reason}"
    dp_management.check_health()  # still down: no second notification
    assert len(notes(admin.user.id)) == 1
    node.start()
    assert dp_management.check_health() == {seattle.id: "online"}
    dp = fresh(seattle.id)
    assert (dp.status, dp.status_reason) == ("online", None) and dp.free_bytes > 0
    assert notes(admin.user.id)[1:] == [("dp.online", "info", "Seattle is back online")]


def test_disabled_dp_is_left_alone(admin, seattle, node):
    """Is a DP disabled for maintenance neither checked nor reported when its node is down?"""
    dp_management.update_dp(admin, seattle, {"disabled": True})
    node.stop()
    assert dp_management.check_health() == {}
    assert fresh(seattle.id).status == "online" and notes(admin.user.id) == []


def test_health_entry_point_runs_on_a_worker(admin, seattle, node, work):
    """Is the scheduled health check itself a job a plain worker runs, notifying the change?"""
    node.stop()
    get_queue("default").enqueue("portal.jobs.maintenance.check_dp_health")
    work()
    assert fresh(seattle.id).status == "offline"
    assert [n[0] for n in notes(admin.user.id)] == ["dp.offline"]


def test_one_health_check_at_a_time(admin, seattle, node):
    """While one scheduled check runs (holds the lock), does a second one step aside?"""
    from portal.jobs.maintenance import check_dp_health

    node.stop()
    lock = get_redis().lock("depot:check-dp-health", timeout=30)
    assert lock.acquire(blocking=False)
    try:
        assert check_dp_health() == {}
        assert fresh(seattle.id).status == "online" and notes(admin.user.id) == []
    finally:
        lock.release()
    assert check_dp_health() == {seattle.id: "offline"}


def test_health_check_is_scheduled(app):
    """Does `rq cron portal.jobs.cron` schedule the health check every DEPOT_HEALTH_INTERVAL seconds?"""
    scheduler = CronScheduler(connection=get_redis())
    scheduler.load_config_from_file("portal.jobs.cron")
    by_name = {job.func_name: job for job in scheduler._cron_jobs}
    health = by_name["portal.jobs.maintenance.check_dp_health"]
    assert (health.queue_name, health.interval) == ("default", Config.DEPOT_HEALTH_INTERVAL)
    assert Config.DEPOT_HEALTH_INTERVAL == 60 or "DEPOT_HEALTH_INTERVAL" in os.environ
    assert "portal.jobs.maintenance.recover_lost_jobs" in by_name
