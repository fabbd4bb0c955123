"""Routes of /branch/."""
from portal.blueprints.branch import bp  # noqa: F401


@bp.get("/")
def index():
    """Placeholder until this area is built (keeps the nav's link valid)."""
    return "not built yet", 501
