/** The subprotocol the server selects (SPEC §4). */
export const SUBPROTOCOL: "realtime.v1";

/** What a transport hands the client: send text, close, and three handlers the client sets. */
export interface Connection {
  send(text: string): void;
  close(code?: number, reason?: string): void;
  onopen: (() => void) | null;
  onmessage: ((text: string) => void) | null;
  onclose: ((ev: { code: number; reason: string; wasClean: boolean }) => void) | null;
}

/** Opens one connection. `available` is false where the transport cannot
 *  work here (no WebSocket / EventSource constructor); `reason` says why. */
export interface Transport {
  (args: { url: string; token: string }): Connection;
  readonly kind: "websocket" | "sse" | "fallback";
  readonly available: boolean;
  readonly reason?: string;
}

/** WebSocket with the token as the `bearer.<token>` subprotocol beside `realtime.v1`. */
export function webSocketTransport(options?: { WebSocket?: unknown }): Transport;

/** Server-Sent Events (SPEC §13): a ticket from `POST /api/ticket`, then
 *  `EventSource(/sse?ticket=...&channel=...&last_event_id=...)`; client
 *  messages go over HTTP (`/api/publish`, `/api/presence`,
 *  `/api/streams/ID/refresh`). EventSource's own reconnect is not used. */
export function sseTransport(options?: { EventSource?: unknown; fetch?: typeof fetch; path?: string }): Transport;

/** Try `transports` in order; move to the next after `after` (default 2)
 *  failures in a row without a welcome (round to the first after the last),
 *  skipping unavailable ones. Once a transport has had a welcome the client
 *  stays on it. `current` is the kind in use. */
export function fallbackTransport(
  transports: Transport[],
  options?: { after?: number; onSwitch?: (kind: string) => void },
): Transport & { readonly current: string };

/** A stream event id `CHANNEL=SEQ,...` as a Map, and back. */
export function decodePositions(text: string): Map<string, number>;
export function encodePositions(positions: Map<string, number>): string;
