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

/** Opens one connection; the seam where an EventSource transport plugs in. */
export type Transport = (args: { url: string; token: string }) => Connection;

/** WebSocket with the token as the `bearer.<token>` subprotocol beside `realtime.v1`. */
export function webSocketTransport(options?: { WebSocket?: unknown }): Transport;
