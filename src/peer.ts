/**
 * `HttpPeer`: one origin as the engine connects to it. Peers with the same `key` share one undici
 * pool, so connections are re-used across every request (and every hook) that picks that origin.
 */

/** TLS settings for connections to the origin. Verification is on unless switched off here. */
export interface PeerTlsOptions {
  /** Extra CA certificates (PEM) to trust, e.g. a private CA pinned for this origin. */
  readonly ca?: string | Buffer | readonly (string | Buffer)[];
  /** Verify the origin's certificate chain and name (default true). */
  readonly rejectUnauthorized?: boolean;
  /** Client certificate and key for mutual TLS. */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
}

/**
 * How the `Host` header sent to the origin is chosen:
 * - `'keep'` (default): the client's `Host`, as Varnish and Pingora pass it through;
 * - `'peer'`: the origin's own `host:port`, as nginx's `proxy_set_header Host $proxy_host` does;
 * - any other string: that value.
 */
export type HostHeaderMode = 'keep' | 'peer' | (string & {});

export interface HttpPeerOptions {
  /** ms to open a TCP (+TLS) connection; default 5000. */
  readonly connectTimeout?: number;
  /** ms from the request being sent to the response headers; default 60000. */
  readonly headersTimeout?: number;
  /** ms the response body may stall between two chunks; default 60000. */
  readonly idleTimeout?: number;
  /** ms an unused pooled connection is kept open; default 4000 (below common origin keep-alive timeouts). */
  readonly keepAliveTimeout?: number;
  /** Most connections open to this peer at once; default 128. */
  readonly maxConnections?: number;
  /** TLS server name to send (default: the URL's host name, unless it is an IP address). */
  readonly sni?: string;
  readonly tls?: PeerTlsOptions;
  /** Offer HTTP/2 via ALPN to a TLS origin, falling back to HTTP/1.1 (default false; undici's client). */
  readonly allowH2?: boolean;
  /**
   * Speak only HTTP/2 to this origin: h2c with prior knowledge for `http://`, ALPN `h2` for
   * `https://` (default false). Requests are multiplexed over few connections, bodies stream both
   * ways and trailers are kept — what gRPC origins need (Cairn's own client, src/h2-origin.ts).
   */
  readonly http2?: boolean;
  readonly hostHeader?: HostHeaderMode;
}

const DEFAULTS = {
  connectTimeout: 5000,
  headersTimeout: 60_000,
  idleTimeout: 60_000,
  keepAliveTimeout: 4000,
  maxConnections: 128,
} as const;

/**
 * An origin server: its URL (scheme, host, port), connection limits, timeouts and TLS settings.
 *
 * @example
 * ```ts
 * const origin = new HttpPeer('http://127.0.0.1:3000', { connectTimeout: 2000, hostHeader: 'peer' });
 * class MyProxy extends ProxyHttp {
 *   override upstreamPeer() { return origin; }
 * }
 * ```
 */
export class HttpPeer {
  /** `scheme://host:port` (the URL's origin). */
  readonly origin: string;
  /** `host:port`, for logs and metrics. */
  readonly address: string;
  readonly tls: boolean;
  readonly hostname: string;
  readonly port: number;
  readonly connectTimeout: number;
  readonly headersTimeout: number;
  readonly idleTimeout: number;
  readonly keepAliveTimeout: number;
  readonly maxConnections: number;
  readonly sni: string | undefined;
  readonly tlsOptions: PeerTlsOptions | undefined;
  readonly allowH2: boolean;
  /** HTTP/2 only (h2c with prior knowledge, or TLS + ALPN h2). */
  readonly http2: boolean;
  readonly hostHeader: HostHeaderMode;
  /** Pool key: address + TLS + SNI + ALPN preference. Peers with equal keys share connections. */
  readonly key: string;

  constructor(url: string | URL, options: HttpPeerOptions = {}) {
    const parsed = typeof url === 'string' ? new URL(url) : url;
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new TypeError(`HttpPeer: unsupported scheme ${parsed.protocol} in ${parsed.href}`);
    }
    this.tls = parsed.protocol === 'https:';
    this.hostname = parsed.hostname;
    this.port = parsed.port === '' ? (this.tls ? 443 : 80) : Number(parsed.port);
    this.origin = `${parsed.protocol}//${parsed.host}`;
    this.address = `${parsed.hostname}:${this.port}`;
    this.connectTimeout = positive(options.connectTimeout, DEFAULTS.connectTimeout, 'connectTimeout');
    this.headersTimeout = positive(options.headersTimeout, DEFAULTS.headersTimeout, 'headersTimeout');
    this.idleTimeout = positive(options.idleTimeout, DEFAULTS.idleTimeout, 'idleTimeout');
    this.keepAliveTimeout = positive(options.keepAliveTimeout, DEFAULTS.keepAliveTimeout, 'keepAliveTimeout');
    this.maxConnections = positive(options.maxConnections, DEFAULTS.maxConnections, 'maxConnections');
    this.sni = options.sni;
    this.tlsOptions = options.tls;
    this.allowH2 = options.allowH2 ?? false;
    this.http2 = options.http2 ?? false;
    this.hostHeader = options.hostHeader ?? 'keep';
    this.key = `${this.origin}|sni=${this.sni ?? ''}|h2=${this.http2 ? 'only' : this.allowH2 ? 1 : 0}|v=${
      this.tlsOptions?.rejectUnauthorized === false ? 0 : 1
    }|ca=${this.tlsOptions?.ca === undefined ? 0 : 1}`;
  }
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) {
    throw new TypeError(`HttpPeer: ${name} must be a positive number (got ${String(value)})`);
  }
  return value;
}
