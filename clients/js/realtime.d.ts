import type { Transport } from "./transports.js";

export { webSocketTransport, SUBPROTOCOL, Transport, Connection } from "./transports.js";
export { PkceClient, AuthError, createPkcePair, jwtClaims, PkceOptions, TokenStorage, TokenResponse } from "./pkce.js";

export const CloseCodes: {
  readonly NORMAL: 1000; readonly GOING_AWAY: 1001; readonly TOKEN_EXPIRED: 4001;
  readonly ACCESS_WITHDRAWN: 4003; readonly RATE_LIMITED: 4008; readonly SLOW_CONSUMER: 4009;
};

/** The server's error `code` (publish, subscribe, presence: e.g. forbidden)
 *  or the client's own: not_connected, connection_lost, timeout, closed,
 *  access_withdrawn, token_unavailable, queue_overflow. */
export class RealtimeError extends Error {
  code: string;
  /** The WebSocket close code, for access_withdrawn (4003). */
  closeCode?: number;
  reason?: string;
  channel?: string;
  /** token_unavailable: getToken threw an error with `final: true`, so the client stopped. */
  final?: boolean;
  constructor(code: string, message: string, extra?: Record<string, unknown>);
}

/** Why getToken is called: the first connect (or a reconnect that may reuse
 *  the current token), an in-band refresh, after a 4001, after a refused handshake. */
export interface TokenRequest {
  reason: "connect" | "expiring" | "expired" | "rejected";
  expiresAt?: number;
}

export interface RealtimeOptions {
  /** Returns (a promise of) an access token.  Throw an error with
   *  `final: true` when no token will ever come (sign in again): the
   *  client stops; any other error is retried with backoff. */
  getToken: (info: TokenRequest) => string | Promise<string>;
  /** The constructor where there is no global WebSocket (e.g. `ws` on Node 20). */
  WebSocket?: unknown;
  /** Replaces the WebSocket transport (the seam for SSE). */
  transport?: Transport;
  /** Used when `url` has no path; default "/ws". */
  path?: string;
  minBackoff?: number;
  maxBackoff?: number;
  connectTimeout?: number;
  requestTimeout?: number;
  pingInterval?: number;
  pingTimeout?: number;
  maxQueue?: number;
}

export interface Welcome {
  type: "welcome";
  sub: string;
  expires_at: number;
  [key: string]: unknown;
}

export interface Message<T = unknown> {
  channel: string;
  seq: number;
  from: string;
  data: T;
}

export interface PresenceMember {
  sub: string;
  connections: number;
  display_name?: string;
}

export type State = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface CloseInfo {
  /** The socket's close code; null when no socket was involved (getToken failed for good). */
  code: number | null;
  reason: string;
  wasClean?: boolean;
  /** false once the client has stopped for good (4003, close(), a final token error). */
  willReconnect: boolean;
  delay?: number;
  error?: RealtimeError | Error;
}

export interface StateInfo {
  previous: State;
  code?: number | null;
  reason?: string;
  delay?: number;
  attempt?: number;
  welcome?: Welcome;
  error?: RealtimeError | Error;
}

export interface Events {
  state: (state: State, info: StateInfo) => void;
  token: (info: { token: string; expiresAt: number; reason: "connect" | "refresh" }) => void;
  error: (error: RealtimeError | Error) => void;
  close: (info: CloseInfo) => void;
  message: (message: Message) => void;
  /** Messages that could not be recovered: a seq jump, or `recovered: false` after a reconnect. */
  gap: (info: { channel: string; missing?: number; recovered?: false }) => void;
  join: (event: { type: "join"; channel: string; sub: string }) => void;
  leave: (event: { type: "leave"; channel: string; sub: string }) => void;
}

export class Subscription<T = unknown> implements AsyncIterable<Message<T>> {
  readonly channel: string;
  /** The last seq delivered on this channel (null: none yet). */
  lastSeq: number | null;
  active: boolean;
  unsubscribe(): Promise<void>;
  presence(): Promise<PresenceMember[]>;
  [Symbol.asyncIterator](): AsyncIterator<Message<T>>;
}

export class Realtime {
  constructor(url: string, options: RealtimeOptions);
  readonly url: string;
  state: State;
  sub: string | null;
  /** Epoch seconds of the connection's deadline. */
  expiresAt: number;
  welcome: Welcome | null;
  lastClose: { code: number; reason: string } | null;
  /** Set once the client has stopped for good. */
  closeReason: CloseInfo | null;
  stats: { connects: number; refreshes: number; gaps: number };
  connect(): Promise<Welcome>;
  subscribe<T = unknown>(channel: string, options?: { since?: number; onMessage?: (message: Message<T>) => void }): Promise<Subscription<T>>;
  publish(channel: string, data: unknown): Promise<{ seq: number }>;
  on<E extends keyof Events>(event: E, fn: Events[E]): () => void;
  off<E extends keyof Events>(event: E, fn: Events[E]): void;
  close(): void;
}
