"""Rules of a refresh-token family that are not rotation itself.

* Its absolute lifetime: every refresh token of a family expires by
  ``created_at + [oauth] refresh_family_ttl``, however often it rotates.
* Its binding to the user's credential: the family records a fingerprint
  of the user's password hash when it begins; a refresh after the
  password changed (``realtime user passwd``, an edit of the users file,
  then a reload) no longer matches and the family is revoked.
* The retry grace: a used token presented again by its own client, soon
  after its rotation, is a retry after a lost answer, not a replay
  (``[oauth] refresh_reuse_grace`` and ``refresh_reuse_count``).
"""

from __future__ import annotations

import hmac

from realtime.config.settings import App, Settings, User
from realtime.oauth.common import refresh_ttl
from realtime.oauth.passwords import credential_hmac
from realtime.store import RefreshRecord


def credential_fingerprint(key: bytes, user: User | None) -> str:
    """HMAC-SHA256 under the server key of who the user is and their password hash.

    Never the hash itself: the state store is not the users file.  A user
    without a password (an external provider's) has a fixed fingerprint,
    so only a password set or changed moves it.
    """
    if user is None:
        return ""
    return credential_hmac(key, "refresh-family-credential", user.name, user.password_hash or "").hex()


def credential_changed(key: bytes, user: User, record: RefreshRecord) -> bool:
    """True when the family was bound to another credential than the user's now.

    A family from before fingerprints (``credential`` None) is not refused:
    its next rotation binds it to the current credential.
    """
    if record.credential is None:
        return False
    return not hmac.compare_digest(record.credential, credential_fingerprint(key, user))


def family_deadline(settings: Settings, family_started: float) -> float:
    return family_started + settings.oauth.refresh_family_ttl


def refresh_expiry(settings: Settings, app: App, now: float, family_started: float) -> float:
    """A new refresh token's expiry: the token's TTL, cut at the family's end (I5)."""
    return min(now + refresh_ttl(settings, app), family_deadline(settings, family_started))


def may_retry(settings: Settings, record: RefreshRecord, now: float) -> bool:
    """Whether a used token could still be answered again.

    A first look, to avoid signing tokens for a plain replay; the store's
    :meth:`~realtime.store.Store.retry_refresh` decides, atomically.
    """
    grace = settings.oauth.refresh_reuse_grace
    return (
        grace > 0
        and record.used_at is not None
        and not record.superseded
        and now - record.used_at <= grace
        and record.retries < settings.oauth.refresh_reuse_count
    )
