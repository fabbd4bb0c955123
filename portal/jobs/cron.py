"""Schedule for `rq cron portal.jobs.cron`: the recovery sweep, run at start and every few seconds.

The schedule lives here in code, not in Redis, so a Redis that restarts empty loses nothing.
"""
from rq import cron

from portal.config import Config
from portal.jobs.maintenance import recover_lost_jobs

cron.register(recover_lost_jobs, "default", interval=Config.DEPOT_RECOVER_INTERVAL,
              ttl=max(60, 4 * Config.DEPOT_RECOVER_INTERVAL), result_ttl=600,
              job_timeout=300)
