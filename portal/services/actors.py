"""Who asks for a change: passed from views, the API and the CLI into services."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    user: object | None  # a User, or None for the system itself
    via: str = "system"  # console, api, cli, system
    ip: str | None = None
    name: str | None = None  # who it is when there is no user: "anonymous" for a failed sign-in

    @property
    def user_id(self) -> int | None:
        return getattr(self.user, "id", None)

    @property
    def label(self) -> str:
        return getattr(self.user, "email", None) or self.name or "system"


SYSTEM = Actor(None)
