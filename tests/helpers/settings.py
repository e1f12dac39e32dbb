"""The channel rules, apps and users of the default test server
(the ``make_settings`` fixture of tests/conftest.py)."""

from __future__ import annotations

from realtime.config.settings import App, ChannelRule, User

CHANNELS = (
    ChannelRule("chat:*", subscribe_scope="chat:read", publish_scope="chat:write", history=100),
    ChannelRule("news:*", subscribe_scope="news:read", publish_scope="news:write", history=5),
    ChannelRule("user:*", subscribe_scope=None, publish_scope="notify", history=10),
)

APPS = {
    "chat-app": App(name="Chat", client_id="chat-app", public=True,
                    redirect_uris=("http://127.0.0.1/cb",),
                    scopes=("chat:read", "chat:write", "news:read", "notify", "profile")),
}

USERS = {
    "alice": User(name="alice", scopes=("chat:read", "chat:write")),
    "bob": User(name="bob", scopes=("chat:read",)),
    "carol": User(name="carol", scopes=("profile",)),
}
