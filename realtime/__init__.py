"""realtime: a trio HTTP + WebSocket server with an embedded OAuth 2 server."""

__version__ = "0.1.0"
