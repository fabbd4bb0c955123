"""What every console page's layout needs: the left pane, the DP switcher, the bell; the lists of
statuses the badges and filters show, and the template filters."""
from flask_login import current_user

from portal.core import tls
from portal.core.errors import NotFound
from portal.core.libraries import LIBRARIES, SLUGS
from portal.core.units import human_bytes
from portal.models.content import ASSET_STATUSES
from portal.models.deployments import DEPLOYMENT_STATES
from portal.services import deltas, devices, failures, notifications, progress_words
from portal.services import distribution_points as dps
from portal.services.job_lists import JOB_STATES
from portal.services.permissions import can
from portal.web import nav
from portal.storage import CLOUD_PROVIDERS

# The one list of each kind of status, as the models and services define them: templates loop
# over these (filters, counts) instead of writing the values out.
STATUSES = {
    "content": ASSET_STATUSES,
    "job": JOB_STATES,
    "deployment": DEPLOYMENT_STATES,
    "dp": dps.HEALTH,
    "device": devices.STATUSES,
}


def init_app(app) -> None:
    """STATUSES and copy_words for every template; the layout's context for signed-in pages; the
    `bytes` and `when` filters."""
    app.jinja_env.globals["STATUSES"] = STATUSES
    app.jinja_env.globals["copy_words"] = deltas.copy_words  # the job widget's network line
    # A job card's title and line, a deployment's line (queued waits, running counts, done is done).
    app.jinja_env.globals["job_title"] = progress_words.job_title
    app.jinja_env.globals["job_progress"] = progress_words.job_progress
    app.jinja_env.globals["deployment_progress"] = progress_words.deployment_progress
    app.jinja_env.globals["deployment_failure"] = failures.deployment_failure  # summary + output

    @app.context_processor
    def _layout():
        if not current_user.is_authenticated:
            return {}
        visible = dps.visible_dps(current_user)
        try:
            selected = dps.selected_dp(current_user)
        except NotFound:
            selected = None
        return {
            "libraries": [(name, SLUGS[name]) for name in LIBRARIES],
            "visible_dps": visible,
            "selected_dp": selected,
            "may_follow": nav.may_follow(current_user, visible),
            "unread_count": notifications.unread_count(current_user.id),
            "can": lambda action: can(current_user, action),
            "provider_titles": CLOUD_PROVIDERS,
        }

    app.add_template_filter(human_bytes, "bytes")
    app.add_template_filter(tls.display, "fingerprint")  # "AB:CD:..." as dp-node prints it

    @app.template_filter("when")
    def _when(value):
        return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"
