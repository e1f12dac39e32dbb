/** A sign-in or token failure: `error` is the OAuth error code (or
 *  state_mismatch, no_flow, issuer_mismatch, login_required, network). */
export class AuthError extends Error {
  error: string;
  /** A retry cannot help: sign in again. */
  final?: boolean;
  status?: number;
  constructor(error: string, message: string, extra?: Record<string, unknown>);
}

/** Where the refresh token (and the flow during the redirect) is kept. */
export interface TokenStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface PkceOptions {
  clientId: string;
  redirectUri: string;
  scope?: string;
  /** Base URL of the server; default this page's origin. */
  server?: string;
  /** Holds the refresh token; default sessionStorage. */
  storage?: TokenStorage;
  /** Holds state and verifier during the redirect; default sessionStorage. */
  flowStorage?: TokenStorage;
  storageKey?: string;
  fetch?: typeof fetch;
  timeout?: number;
  navigate?: (url: string) => void;
}

export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
  scope?: string;
  refresh_token?: string;
  [key: string]: unknown;
}

export function createPkcePair(): Promise<{ verifier: string; challenge: string }>;
export function jwtClaims(token: string): Record<string, any>;

export class PkceClient {
  constructor(options: PkceOptions);
  accessToken: string | null;
  /** Epoch seconds. */
  expiresAt: number;
  sub: string | null;
  hasSession(): boolean;
  /** Go to /oauth2/authorize (S256); resolves with the URL it navigated to. */
  login(extra?: Record<string, string>): Promise<string>;
  /** Check the redirect's answer and trade the code for tokens. */
  handleCallback(url?: string): Promise<TokenResponse>;
  /** For Realtime's getToken: the current token, or a refreshed one. */
  getToken(info?: { reason?: string }): Promise<string>;
  refresh(): Promise<TokenResponse>;
  logout(): Promise<void>;
}
