"""Who may do what: one table shared by the console and the API."""
from portal.core.errors import PermissionDenied

ROLE_ACTIONS = {
    "admin": {
        "rescan", "cancel_job", "copy", "verify", "delete_content", "deploy", "cancel_deployment",
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


def can_see_dp(user, dp) -> bool:
    """Viewers scoped to sites see only those sites' DPs; everyone else sees every DP."""
    if user.role != "viewer" or not user.sites:
        return True
    return dp.site in user.sites
