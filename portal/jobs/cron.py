"""Schedule for `rq cron portal.jobs.cron`: the recovery sweep and the DP health check, each run
at start and then every few seconds, a weekly verify of every DP, and a daily sweep of partial
cloud uploads nobody continued; every minute, deployments whose agent went silent fail; every
DEPOT_AGENT_SEEN_FLUSH seconds, the last-seen times of quiet heartbeats go to the database; every
DEPOT_CENTRAL_CHECK_INTERVAL seconds, a stat-only check of central's files (a rescan if changed).

The schedule lives here in code, not in Redis, so a Redis that restarts empty loses nothing.
"""
from rq import cron

from portal.config import Config
from portal.jobs.maintenance import (
                                     HEALTH_JOB_TIMEOUT,
                                     check_central_changes,
                                     check_dp_health,
                                     fail_silent_deployments,
                                     flush_agent_seen,
                                     recover_lost_jobs,
                                     sweep_abandoned_uploads,
                                     verify_everything,
)

cron.register(recover_lost_jobs, "default", interval=Config.DEPOT_RECOVER_INTERVAL,
              ttl=max(60, 4 * Config.DEPOT_RECOVER_INTERVAL), result_ttl=600,
              job_timeout=300)
cron.register(check_dp_health, "default", interval=Config.DEPOT_HEALTH_INTERVAL,
              ttl=max(120, 4 * Config.DEPOT_HEALTH_INTERVAL), result_ttl=600,
              job_timeout=HEALTH_JOB_TIMEOUT)
cron.register(verify_everything, "default", cron=Config.DEPOT_VERIFY_CRON, result_ttl=600,
              job_timeout=300)
cron.register(sweep_abandoned_uploads, "default", cron=Config.DEPOT_SWEEP_CRON, result_ttl=600,
              job_timeout=900)
cron.register(check_central_changes, "default", interval=Config.DEPOT_CENTRAL_CHECK_INTERVAL,
              ttl=max(120, 4 * Config.DEPOT_CENTRAL_CHECK_INTERVAL), result_ttl=600,
              job_timeout=600)
cron.register(fail_silent_deployments, "default", interval=60, ttl=240, result_ttl=600,
              job_timeout=300)
cron.register(flush_agent_seen, "default", interval=Config.DEPOT_AGENT_SEEN_FLUSH,
              ttl=max(60, 4 * Config.DEPOT_AGENT_SEEN_FLUSH), result_ttl=60, job_timeout=120)
