"""The audit log's sentences: one per action, given the event, who did it (in words), its
details and today's names (audit_words.Names), so the table reads like the page it feeds."""
from collections.abc import Callable

from portal.core.units import human_bytes

FIELD_WORDS = {"preferred_dp_id": "preferred DP", "fallback_dp_ids": "fallback DPs",
               "dp_id": "DP", "group_id": "group", "cidr": "subnet", "allowed_hours": "copy hours",
               "bandwidth_limit": "bandwidth cap", "tls_fingerprint": "certificate",
               "allow_plain_http": "plain HTTP", "url": "URL"}


def and_list(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    items = [i for i in items if i]
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _fields(fields) -> str:
    return and_list([FIELD_WORDS.get(f, f.replace("_", " ")) for f in fields or ()]) or "nothing"


def _changes(d: dict, names, skip=()) -> str:
    """Changed values of an update event in words ("name to X, DP to Seattle")."""
    parts = []
    for key, value in d.items():
        if key in skip:
            continue
        if key in ("dp_id", "preferred_dp_id"):
            value = names.dp(value)
        elif key == "fallback_dp_ids":
            value = names.dp_list(value)
        elif key == "group_id":
            value = names.group(value)
        parts.append(f"{FIELD_WORDS.get(key, key.replace('_', ' '))} to {value}")
    return and_list(parts) or "nothing"


# --- one sentence per action: (event, who, details, names) -> str ------------------------------

Sentence = Callable[[object, str, dict, object], str]  # (event, who, details, names)


def _login(e, w, d, n):
    factor = d.get("second_factor")
    if factor == "recovery code":
        return f"{w} signed in with a recovery code ({d.get('recovery_codes_left', '?')} left)"
    return f"{w} signed in" + (" with a code from the authenticator app" if factor else "")


def _sso_login(e, w, d, n):
    made = ", and the account was created" if d.get("created") else ""
    return f"{w} signed in through single sign-on as {d.get('role', '?')}{made}"


def _user_create(e, w, d, n):
    sites = d.get("sites") or []
    where = f" for {and_list(sites)}" if sites else ""
    return f"{w} added the user {e.target} as {d.get('role', '?')}{where}"


def _user_update(e, w, d, n):
    ended = "; their sessions were ended" if d.get("sessions_ended") else ""
    return f"{w} changed the {_fields(d.get('fields'))} of the user {e.target}{ended}"


def _password_change(e, w, d, n):
    whose = "their password" if e.target == e.actor else f"the password of {e.target}"
    return f"{w} changed {whose}"


def _deployment_create(e, w, d, n):
    devices = d.get("devices") or 0
    to = f"the group {d['group']}" if d.get("group") else _plural(devices, "device")
    if d.get("group"):
        to += f" ({_plural(devices, 'device')})"
    source = d.get("dp_ids") or []
    return f"{w} deployed {d.get('image', 'an image')} to {to} from {n.dp_list(source)}"


def _dp_create(e, w, d, n):
    if d.get("kind") == "local":
        what = f"the DP node {e.target} at {d.get('url')}"
    elif d.get("provider") == "s3":
        what = f"the S3 distribution point {e.target} (bucket {d.get('bucket')})"
    else:
        what = f"the cloud distribution point {e.target} ({d.get('provider')}, {d.get('account')})"
    return f"{w} added {what}"


def _device_update(e, w, d, n):
    parts = []
    if "name" in d:
        parts.append(f"renamed the device to {d['name']}")
    if "group_id" in d:
        parts.append(f"moved {e.target} to {n.group(d['group_id'])}")
    return f"{w} {and_list(parts) or f'changed nothing of {e.target}'}"


def _device_move(e, w, d, n):
    ids = d.get("device_ids") or []
    devices = [n.device(i) for i in ids[:5]]
    if len(ids) > 5:
        devices.append(f"{len(ids) - 5} more")
    to = n.group(d["group_id"]) if d.get("group_id") is not None else "no group"
    return f"{w} moved {and_list(devices) or 'no devices'} to {to}"


def _enroll(e, w, d, n):
    again = " again" if d.get("again") else ""
    return f"{e.target} enrolled{again} with the enrollment token “{d.get('enrollment_token')}”"


def _group_create(e, w, d, n):
    fallbacks = d.get("fallback_dp_ids") or []
    then = f", then {n.dp_list(fallbacks)}" if fallbacks else ""
    return f"{w} created the group {e.target} (it prefers {n.dp(d.get('preferred_dp_id'))}{then})"


def _job(verb: str, cancel: bool = False) -> Sentence:
    def sentence(e, w, d, n):
        asset = d.get("asset_key") or n.job_assets.get(e.target)
        dp = n.dp(d.get("dp_id"))
        if cancel:
            return f"{w} cancelled the {verb.format(asset=asset or 'content', dp=dp)}"
        return f"{w} {verb.format(asset=asset, dp=dp)}"
    return sentence


SENTENCES: dict[str, Sentence] = {
    "auth.login": _login,
    "auth.login_failed": lambda e, w, d, n: f"{w} failed to sign in as {e.target} "
                                            f"({d.get('reason', 'refused')})",
    "auth.login_throttled": lambda e, w, d, n: f"Sign-ins as {e.target} were paused after too "
                                               f"many failures (limit per {d.get('limit', '?')})",
    "auth.password_accepted": lambda e, w, d, n: f"{w} gave the right password; the second step "
                                                 "of signing in comes next",
    "auth.login_refused": lambda e, w, d, n: f"{w} was not let in: {d.get('reason', 'refused')}",
    "auth.logout": lambda e, w, d, n: f"{w} signed out",
    "auth.logout_others": lambda e, w, d, n: f"{w} signed out everywhere else",
    "auth.sso_refused": lambda e, w, d, n: "A single sign-on"
                                           + (f" as {e.target}" if e.target else "")
                                           + f" was refused: {d.get('reason', 'refused')}",
    "auth.sso_login": _sso_login,
    "auth.2fa_failed": lambda e, w, d, n: f"{w} entered a wrong two-step sign-in code",
    "auth.2fa_setup_begun": lambda e, w, d, n: f"{w} began setting up two-step sign-in",
    "auth.2fa_setup_refused": lambda e, w, d, n: f"{w} entered a wrong code while setting up "
                                                 "two-step sign-in",
    "auth.2fa_enable": lambda e, w, d, n: f"{w} turned on two-step sign-in",
    "auth.2fa_recovery_codes": lambda e, w, d, n: f"{w} made new recovery codes",
    "auth.2fa_recovery_codes_refused": lambda e, w, d, n: f"{w} was refused new recovery codes "
                                                          "(wrong code)",
    "auth.2fa_disable": lambda e, w, d, n: f"{w} turned off their two-step sign-in",
    "auth.2fa_disable_refused": lambda e, w, d, n: f"{w} was refused turning off two-step sign-in"
                                                   " (wrong password or code)",
    "auth.2fa_reset": lambda e, w, d, n: f"{w} reset the two-step sign-in of {e.target}",
    "user.password_change": _password_change,
    "user.password_change_refused": lambda e, w, d, n: f"{w} tried to change their password but "
                                                       "gave a wrong current password",
    "user.password_reset": lambda e, w, d, n: f"{w} reset the password of {e.target}; their "
                                              "sessions ended",
    "user.create": _user_create,
    "user.update": _user_update,
    "user.delete": lambda e, w, d, n: f"{w} removed the user {e.target}",
    "token.create": lambda e, w, d, n: f"{w} created the API token “{d.get('name')}” for "
                                       f"{e.target}",
    "token.revoke": lambda e, w, d, n: f"{w} revoked the API token “{d.get('name')}” of "
                                       f"{e.target}",
    "deployment.create": _deployment_create,
    "deployment.cancel": lambda e, w, d, n: f"{w} cancelled "
                                            f"{e.target.replace('deployment ', 'deployment #')}"
                                            f" to {d.get('device') or 'a device'}",
    "content.upload": lambda e, w, d, n: f"{w} uploaded {e.target} to central "
                                          f"({human_bytes(d.get('size'))})",
    "dp.create": _dp_create,
    "dp.accept_certificate": lambda e, w, d, n: f"{w} accepted the new certificate of {e.target}",
    "dp.update": lambda e, w, d, n: f"{w} changed the {_fields(d.get('fields'))} of {e.target}",
    "dp.delete": lambda e, w, d, n: f"{w} forgot the distribution point {e.target}",
    "dp.reconnect": lambda e, w, d, n: f"{w} reconnected {e.target} to its {d.get('provider')} "
                                       f"account {d.get('account')}",
    "job.copy.start": _job("copied {asset} to {dp}"),
    "job.copy.cancel": _job("copy of {asset} to {dp}", cancel=True),
    "job.delete.start": _job("deleted {asset} from {dp}"),
    "job.delete.cancel": _job("deletion of {asset} from {dp}", cancel=True),
    "job.rescan.start": _job("rescanned {dp}"),
    "job.rescan.cancel": _job("rescan of {dp}", cancel=True),
    "job.verify.start": _job("verified the content of {dp}"),
    "job.verify.cancel": _job("verification of {dp}", cancel=True),
    "device.update": _device_update,
    "device.move": _device_move,
    "device.claim": lambda e, w, d, n: f"A new enrollment ({d.get('hostname') or '?'}) claims to "
                                       f"be {n.device(d.get('device_id'), e.target)}",
    "device.claim_approve": lambda e, w, d, n: f"{w} approved the device claim of {e.target}",
    "device.claim_refuse": lambda e, w, d, n: f"{w} refused the device claim of {e.target}"
                                              + (f" ({d['reason']})" if d.get("reason") else ""),
    "device.forget": lambda e, w, d, n: f"{w} forgot the device {e.target}",
    "device.enroll": _enroll,
    "boundary.create": lambda e, w, d, n: f"{w} added the boundary {e.target} ({d.get('name')}), "
                                          f"served by {n.dp(d.get('dp_id'))}",
    "boundary.update": lambda e, w, d, n: f"{w} changed the boundary {e.target}: "
                                          f"{_changes(d, n, skip=('boundary_id',))}",
    "boundary.delete": lambda e, w, d, n: f"{w} removed the boundary {e.target} ({d.get('name')})",
    "group.create": _group_create,
    "group.update": lambda e, w, d, n: f"{w} changed the group {e.target}: "
                                       f"{_changes(d, n, skip=('group_id',))}",
    "group.delete": lambda e, w, d, n: f"{w} deleted the group {e.target}"
                                       + (f" ({_plural(d['devices'], 'device')} left without a "
                                          "group)" if d.get("devices") else ""),
    "enrollment_token.create": lambda e, w, d, n: f"{w} created the enrollment token "
                                                  f"“{e.target}” for {d.get('days')} days"
                                                  + (f", into {n.group(d['group_id'])}"
                                                     if d.get("group_id") is not None else ""),
    "enrollment_token.revoke": lambda e, w, d, n: f"{w} revoked the enrollment token “{e.target}”",
    "enrollment_token.installer": lambda e, w, d, n: f"{w} downloaded the installer of the "
                                                     f"enrollment token “{e.target}”",
}
