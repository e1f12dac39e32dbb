"""The open file limit: one descriptor per connection."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("realtime.server")

FD_HEADROOM = 100  # listeners, the store, logs, worker threads: beside one fd per connection


def raise_fd_limit(max_connections: int) -> int:
    """Lift the soft RLIMIT_NOFILE to the hard one (systemd starts services
    at 1024 soft, 524288 hard): each connection is a file descriptor.
    Warn when even the hard limit is below ``max_connections``: past it,
    accept fails and new clients wait in the queue.  Returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open file limit from %d to %d: %s", soft, hard, exc)
    if soft != resource.RLIM_INFINITY and soft < max_connections + FD_HEADROOM:
        log.warning("[server] max_connections = %d but the open file limit is %d: raise it "
                    "(LimitNOFILE= in the systemd unit, ulimit -n)", max_connections, soft)
    return soft
