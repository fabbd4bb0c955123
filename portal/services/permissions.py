"""Who may do what: one table shared by the console and the API."""
from portal.core.errors import PermissionDenied

ROLE_ACTIONS = {
    "admin": {
        "rescan", "cancel_job", "copy", "verify", "delete_content", "edit_content", "deploy",
        "cancel_deployment",
        "manage_users", "manage_dps", "manage_settings", "view_audit", "manage_devices",
    },
    "technician": {"rescan", "cancel_job", "copy", "verify", "deploy", "cancel_deployment"},
    "viewer": set(),
}


def can(user, action: str) -> bool:
    """True when the user's role allows the action."""
    return bool(user) and action in ROLE_ACTIONS.get(user.role, set())


def require(user, action: str) -> None:
    """Raise PermissionDenied unless the user's role allows the action."""
    if not can(user, action):
        raise PermissionDenied(f"your role ({user.role}) may not {action.replace('_', ' ')}")


def scoped_sites(user) -> list[str] | None:
    """The sites a viewer scoped to sites is limited to; None for everyone who sees every site
    (other roles, unscoped viewers, and no user at all: the CLI and the system)."""
    if user is None or user.role != "viewer" or not user.sites:
        return None
    return list(user.sites)


def can_see_dp(user, dp) -> bool:
    """Viewers scoped to sites see only those sites' DPs; everyone else sees every DP."""
    sites = scoped_sites(user)
    return sites is None or dp.site in sites
