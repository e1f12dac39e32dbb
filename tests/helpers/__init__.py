"""What more than one test module needs, in one place.

Test modules import from here, never from one another nor from a
``conftest.py`` (conftest modules hold fixtures only).

* :mod:`tests.helpers.settings`: the channel rules, apps and users of the
  default test server.
* :mod:`tests.helpers.server`: the server harnesses: :class:`Running`, a
  real :class:`~realtime.net.server.Server` in this process (in the test's
  trio run, or in a thread of its own for sync tests), and
  :class:`ServerProcess`, ``python -m realtime serve`` in a subprocess
  where real signals, pid files and exit codes are the point.
* :mod:`tests.helpers.tokens`: bearer headers.
* :mod:`tests.helpers.ws`: WebSocket and HTTP client helpers for a
  :class:`Running` server (trio-websocket, httpx, a raw wsproto client).
* :mod:`tests.helpers.fuzz`: a blocking raw-socket WebSocket client and the
  watched server the hypothesis tests run against.
* :mod:`tests.helpers.oauth`: the OAuth 2 apps, users and secrets, and
  :class:`Env`, an ``App`` driven through the router without sockets.
* :mod:`tests.helpers.oauth1`: an OAuth 1.0a consumer and a browser that
  approves its request tokens.
* :mod:`tests.helpers.hub`: a hub and fake connections for the hub tests.
* :mod:`tests.helpers.redis`: a real ``redis-server`` for the broker tests.
"""
