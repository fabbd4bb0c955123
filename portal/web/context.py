"""What every console page's layout needs: the left pane, the DP switcher, the bell."""
from flask_login import current_user

from portal.core.errors import NotFound
from portal.core.libraries import LIBRARIES, SLUGS
from portal.services import distribution_points as dps
from portal.services import notifications
from portal.services.permissions import can
from portal.storage import CLOUD_PROVIDERS


def init_app(app) -> None:
    """The layout's context for signed-in pages, and the `bytes` and `when` filters."""
    @app.context_processor
    def _layout():
        if not current_user.is_authenticated:
            return {}
        try:
            selected = dps.selected_dp(current_user)
        except NotFound:
            selected = None
        return {
            "libraries": [(name, SLUGS[name]) for name in LIBRARIES],
            "visible_dps": dps.visible_dps(current_user),
            "selected_dp": selected,
            "unread_count": notifications.unread_count(current_user.id),
            "can": lambda action: can(current_user, action),
            "provider_titles": CLOUD_PROVIDERS,
        }

    @app.template_filter("bytes")
    def _bytes(value):
        if value is None:
            return "—"
        size = float(value)
        for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
            if size < 1024 or unit == "TiB":
                return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
            size /= 1024

    @app.template_filter("when")
    def _when(value):
        return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"
