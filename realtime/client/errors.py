"""The exceptions :mod:`realtime.client` raises on purpose."""

from __future__ import annotations


class ClientError(Exception):
    """Base class of everything this module raises on purpose."""


class TransportError(ClientError):
    """The server could not be reached or the connection broke: retryable."""


class AuthError(ClientError):
    """The server refused the credentials or the token: retrying will not help."""


class ChannelError(ClientError):
    """A subscription was refused (unknown channel, missing scope)."""

    def __init__(self, channel: str, code: str, message: str) -> None:
        super().__init__(f"{channel}: {code}: {message}")
        self.channel, self.code, self.message = channel, code, message


class PublishError(ClientError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message
