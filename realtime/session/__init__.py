"""A session's logic without I/O: what each client message does
(:mod:`~realtime.session.dispatch`), the clock seam its timers use
(:mod:`~realtime.session.clock`) and the publish rate limit
(:mod:`~realtime.session.ratelimit`).  Nothing here imports trio; the
trio shell that reads, writes and keeps time is :mod:`realtime.net.websocket`."""
