"""Frozen configuration snapshots.

Everything the operator writes (``realtime.toml``, ``apps.toml``,
``users.json``) is read into these classes by :mod:`realtime.config.load`.  A
snapshot is never mutated: a reload builds a whole new :class:`Settings`
and swaps the reference (DESIGN.md §7), so a request that started under
one snapshot finishes under it.

Durations are float seconds, sizes are int bytes.
"""

from __future__ import annotations

from pathlib import Path
import attrs

from realtime.config.login_provider import Provider


@attrs.frozen
class Addr:
    """A listener address; ``port`` 0 asks the OS for a free port."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@attrs.frozen
class ServerSettings:
    http: Addr | None = Addr("127.0.0.1", 8080)
    https: Addr | None = Addr("127.0.0.1", 8443)
    tls_cert: Path | None = None  # None: generate a self-signed cert in state_dir
    tls_key: Path | None = None
    state_dir: Path = Path("var")
    public_url: str = "https://localhost:8443"
    shutdown_grace: float = 10.0
    watch: bool = False
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 1024 * 1024
    header_timeout: float = 10.0  # a request's head must arrive within this
    keepalive_timeout: float = 75.0  # idle HTTP connection is closed after this
    handshake_timeout: float = 10.0  # TLS handshake must finish within this
    max_connections: int = 10_000
    max_connections_per_ip: int = 1_000
    log_level: str = "info"
    # "text" or "json" (one object a line on stderr).
    log_format: str = "text"
    # HTTPS: Strict-Transport-Security on HTTPS answers (0:
    # off; never sent when public_url is a loopback host), and the peers
    # whose plain-HTTP OAuth requests are trusted as TLS-terminated (a proxy
    # on this host, local development); others are refused or redirected.
    hsts_max_age: float = 365 * 86400.0
    tls_termination_from: tuple[str, ...] = ("127.0.0.0/8", "::1/128")  # CIDR blocks, normalised


@attrs.frozen
class OAuthSettings:
    apps: Path | None = None  # resolved path of apps.toml
    users: Path | None = None  # resolved path of users.json / users.toml
    providers: Path | None = None
    access_token_ttl: float = 15 * 60.0
    refresh_token_ttl: float = 30 * 86400.0
    code_ttl: float = 60.0
    signing_alg: str = "RS256"  # RS256 | ES256 | EdDSA
    leeway: float = 5.0  # clock skew tolerated on iat/nbf (never extends exp)
    audience: str | None = None  # None: public_url
    login_rate: str = "10/m"  # failed logins per (user, address) and per address
    # Refresh-token families: a used token presented again by its
    # client within refresh_reuse_grace of its rotation gets a fresh pair, at
    # most refresh_reuse_count times (0s: off, reuse revokes the family); a
    # family lives at most refresh_family_ttl from its first token.
    refresh_reuse_grace: float = 0.0
    refresh_reuse_count: int = 1
    refresh_family_ttl: float = 90 * 86400.0
    # The shortest password `realtime user add|passwd` accepts (NIST
    # 800-63B's floor; OWASP ASVS recommends 12).
    min_password_length: int = 8
    # Brute force and unauthenticated argon2 work.
    login_user_rate: str = "30/m"  # failed logins per user from all addresses together
    client_auth_rate: str = "20/m"  # failed client authentications per address (x10 per client_id)
    hash_queue: int = 32  # argon2 checks waiting per limiter (logins, clients); more: 503
    # How long a browser login session lasts after its sign-in.
    session_ttl: float = 12 * 3600.0
    # Device grant (RFC 8628 §5.1): wrong user codes per address.
    user_code_rate: str = "10/m"


@attrs.frozen
class WebSocketSettings:
    path: str = "/ws"
    expiry_warning: float = 30.0
    token_in_query: bool = False
    max_message_bytes: int = 65536
    ping_interval: float = 25.0
    pong_timeout: float = 10.0
    echo_path: str | None = None
    max_backlog_bytes: int = 1024 * 1024
    allowed_origins: tuple[str, ...] = ()  # empty: any origin
    publish_rate: str = "50/s"  # token bucket: rate per second, burst = rate
    max_subscriptions: int = 100
    max_channel_name: int = 200
    max_presence_members: int = 1000  # a presence answer lists at most this many ("truncated")
    # Every client message passes this per-connection bucket
    # (close 4008; burst at least 2 * max_subscriptions); a sub's leave is
    # held this long and dropped with the join if it comes back; kept
    # history across all channels (bytes; the largest channel's oldest
    # frame evicted first); idle channels whose counter and history are kept.
    message_rate: str = "100/s"
    join_leave_debounce: float = 0.5
    max_history_bytes: int = 64 * 1024 * 1024
    max_idle_channels: int = 1000


@attrs.frozen
class BrokerSettings:
    """Optional ``[broker]``: several nodes share channels through Redis (SPEC §2)."""

    url: str | None = None  # redis://HOST:PORT/DB; None: in-process broker
    # A node whose heartbeat is older than this is dead: its presence goes
    # (leave events) at the next heartbeat of a live node, so within
    # node_ttl * 1.25.  Heartbeats go every node_ttl / 4.
    node_ttl: float = 10.0


@attrs.frozen
class StoreSettings:
    """Optional ``[store]``: the OAuth state on PostgreSQL, shared by every node (SPEC §14)."""

    url: str | None = None  # postgresql://USER:PASSWORD@HOST:PORT/DB; None: state_dir/state.sqlite3
    # 32 random bytes (mode 0600) that encrypt the private keys kept in the
    # store; `realtime store migrate` generates it when missing.
    key_file: Path | None = None
    # Connections per node to the database (and worker threads running store calls).
    pool_size: int = 8
    # How often a node reads the store's revocations (revoked jti, cut-offs)
    # made by other nodes, as the safety net under the broker's push (and the
    # only way without a broker); 0 turns the poll off.  Unused on SQLite.
    revocation_poll: float = 1.0


@attrs.frozen
class DemoSettings:
    """``[demo]``: the browser chat page at ``/demo/`` (off unless enabled)."""

    enabled: bool = False


@attrs.frozen
class ChannelRule:
    pattern: str
    subscribe_scope: str | None = None  # None: any token may subscribe
    publish_scope: str | None = None  # None: any token may publish
    history: int = 100
    presence: bool = False
    join_leave: bool = False
    # Kept history of this channel in bytes (frames), oldest first out.
    history_bytes: int = 1024 * 1024


@attrs.frozen
class ApiSettings:
    """``[api]``: the HTTP API (``/api/publish``)."""

    publish_rate: str = "50/s"  # per principal (sub + client_id); 429 past it
    # An idempotency_key seen within this window answers the first
    # publish's result again and publishes nothing.
    idempotency_window: float = 300.0


@attrs.frozen
class MetricsSettings:
    """``[metrics]``: who may read ``/metrics``."""

    scope: str | None = None  # None: open; else a bearer token with this scope


@attrs.frozen
class RetiredSecret:
    """An old client secret kept valid until ``expires_at`` (epoch seconds)."""

    hash: str
    expires_at: float


@attrs.frozen
class App:
    name: str
    client_id: str
    client_secret_hash: str | None = None  # argon2id; None for public apps
    retired_secrets: tuple[RetiredSecret, ...] = ()
    redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")
    scopes: tuple[str, ...] = ()
    public: bool = False
    access_token_ttl: float | None = None  # None: [oauth] default
    refresh_token_ttl: float | None = None
    oauth1: bool = False
    # OAuth 1.0a (realtime.oauth1): the consumer credentials of an app with
    # oauth1 = true.  The secret is AES-GCM-encrypted under
    # state_dir/oauth1.key (HMAC-SHA1/-SHA256 need it in clear on the
    # server); an RSA public key (PEM) allows RSA-SHA1 without a secret.
    consumer_key: str | None = None
    consumer_secret_enc: str | None = None
    rsa_public_key: str | None = None
    oauth1_token_ttl: float | None = None  # None: tokens live until revoked
    # OIDC RP-initiated logout: where /oauth2/logout may send the browser (exact match).
    post_logout_redirect_uris: tuple[str, ...] = ()


@attrs.frozen
class User:
    name: str
    password_hash: str | None = None  # argon2id; None: cannot log in with a password
    scopes: tuple[str, ...] = ()
    disabled: bool = False
    display_name: str | None = None
    email: str | None = None


@attrs.frozen
class Settings:
    """One complete, validated configuration."""

    server: ServerSettings = ServerSettings()
    oauth: OAuthSettings = OAuthSettings()
    websocket: WebSocketSettings = WebSocketSettings()
    channels: tuple[ChannelRule, ...] = ()
    broker: BrokerSettings = BrokerSettings()
    store: StoreSettings = StoreSettings()
    demo: DemoSettings = DemoSettings()
    apps: dict[str, App] = attrs.field(factory=dict)  # by client_id
    users: dict[str, User] = attrs.field(factory=dict)  # by name (= sub)
    # External login providers ([oauth] providers), by name.
    providers: dict[str, "Provider"] = attrs.field(factory=dict)
    config_path: Path | None = None  # None: the embedded default
    # Every file the snapshot was read from, for `watch` and error messages.
    sources: tuple[Path, ...] = ()
    # [api] (publish rate) and [metrics] (scrape access).
    api: ApiSettings = ApiSettings()
    metrics: MetricsSettings = MetricsSettings()
    # [[webhook]] tables (SPEC §12) and [admin] (the console at /admin/).
    webhooks: tuple["WebhookSettings", ...] = ()
    admin: "AdminSettings" = attrs.field(factory=lambda: AdminSettings())

    @property
    def issuer(self) -> str:
        return self.server.public_url.rstrip("/")

    @property
    def audience(self) -> str:
        return self.oauth.audience or self.issuer

    @property
    def key_retire_after(self) -> float:
        """Seconds a retired signing key keeps verifying (SPEC §1: "old keys
        verify until every token they signed has expired"): the longest
        access token lifetime, any app's own included, plus the leeway.
        Used by the server's key ring and by ``realtime key rotate``."""
        ttls = [self.oauth.access_token_ttl]
        ttls += [app.access_token_ttl for app in self.apps.values() if app.access_token_ttl]
        return max(ttls) + self.oauth.leeway


# One [[webhook]] table (SPEC §12); read by realtime.config.webhooks.
WEBHOOK_EVENTS = ("connect", "disconnect", "subscribe", "unsubscribe", "publish", "join", "leave",
                  "channel_occupied", "channel_vacated", "revoked")


@attrs.frozen
class WebhookSettings:
    """One ``[[webhook]]`` table; ``secret`` is never shown in a repr (logs)."""

    url: str
    secret: bytes = attrs.field(repr=False)
    events: tuple[str, ...] = WEBHOOK_EVENTS
    timeout: float = 5.0  # per attempt
    max_attempts: int = 5  # 2xx ends it; timeout, refused or 5xx retried up to this; 4xx not
    queue_size: int = 10_000  # events waiting; the overflow is dropped and counted


@attrs.frozen
class AdminSettings:
    """``[admin]``: the web console at ``/admin/`` (off unless enabled)."""

    enabled: bool = False
    client_id: str = "admin"  # the public app (PKCE) it signs in as; it must allow realtime:admin

