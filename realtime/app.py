"""The server's live state: the current config snapshot and the services
built from it.  Route handlers and sessions receive one ``ServerState``.

``settings`` is replaced whole on reload; nothing else holds a reference
to an older snapshot for longer than one request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import trio

from realtime.api.metrics import Counters
from realtime.config.settings import Settings
from realtime.protocol.close import CloseCode

if TYPE_CHECKING:
    from realtime.hub import Hub
    from realtime.store import Store
    from realtime.tokens.keyring import KeyRing, RevokedSet


@attrs.define(eq=False)
class ServerState:
    settings: Settings
    keyring: "KeyRing"
    revoked: "RevokedSet"
    hub: "Hub"
    store: "Store | None" = None
    # Services added by later layers (oauth, metrics, ...) keyed by name.
    extras: dict[str, Any] = attrs.field(factory=dict)
    # Set by the server so handlers can ask for a reload (None in unit tests).
    request_reload: Any = None
    last_reload: dict[str, Any] = attrs.field(factory=dict)
    metrics: Counters = attrs.field(factory=Counters)
    # Set (and replaced) each time a reload finishes, whatever its result.
    reload_done: trio.Event = attrs.field(factory=trio.Event)

    def revoke_access(self, jti: str, exp: float, *, share: bool = True) -> int:
        """Mark an access token revoked and close its live sockets with 4003.

        Returns how many live connections were closed.  Callers persist the
        revocation in the store themselves; this keeps the hot-path set and
        the sockets in step.  With a remote broker the revocation also goes
        to every other node (``share``; the broker passes ``False`` for the
        ones it brings in).
        """
        self.revoked.add(jti, exp)
        if share and self.hub.remote:
            self.hub.broker.share_revocation(jti, exp)  # type: ignore[attr-defined]
        closed = 0
        for conn in list(self.hub.connections.by_jti(jti)):
            conn.withdraw(CloseCode.REVOKED, "token revoked")
            closed += 1
        return closed
