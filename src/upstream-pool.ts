/**
 * Origin connections: one undici `Pool` per peer key (address + TLS + SNI + ALPN), shared by every
 * request in the process, with keep-alive and a bound on connections. Also tells, per request,
 * whether it went over a connection that had served earlier requests, and turns undici's errors
 * into coded `CairnError`s.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { Pool, buildConnector, errors as undiciErrors } from 'undici';
import { CairnError } from './errors.ts';
import { H2OriginPool } from './h2-origin.ts';
import type { OriginDispatcher } from './h2-origin.ts';
import type { HttpPeer } from './peer.ts';

/** Something that wants to learn whether its request rides a re-used connection. */
export interface ReuseProbe {
  upstreamReused: boolean;
}

const kUses = Symbol('cairn.socketUses');
const kStats = Symbol('cairn.socketPool');
type TaggedSocket = Socket & { [kUses]?: number; [kStats]?: PeerPoolStats };

// undici calls the handler's onRequestStart (via onConnect) and then publishes `sendHeaders` for
// that same request within one synchronous write (client-h1 writeH1, client-h2 writeH2). The
// request that last announced itself is therefore the one whose headers are being written, and
// the socket in the message tells whether it was used before.
let announced: ReuseProbe | null = null;

/** Called from a dispatch handler's `onRequestStart`, right before undici writes the request. */
export function announceRequest(probe: ReuseProbe): void {
  announced = probe;
}

diagnosticsChannel.subscribe('undici:client:sendHeaders', (message) => {
  const probe = announced;
  if (probe === null) return;
  announced = null;
  const socket = (message as { socket: TaggedSocket }).socket;
  const uses = socket[kUses] ?? 0;
  socket[kUses] = uses + 1;
  probe.upstreamReused = uses > 0;
  const stats = socket[kStats];
  if (stats !== undefined && uses > 0) stats.requestsReused++;
});

/** For Cairn's own HTTP/2 client: the request that just announced itself is on a `reused` session. */
function settleAnnounced(reused: boolean): void {
  const probe = announced;
  if (probe === null) return;
  announced = null;
  probe.upstreamReused = reused;
}

/** Counters for one peer's pool (exported per peer address as metrics). */
export interface PeerPoolStats {
  readonly address: string;
  /** Connections (HTTP/2: sessions) opened. */
  connectionsCreated: number;
  /** Requests sent on a connection that had carried an earlier request. */
  requestsReused: number;
}

/** A pool and its counters. `pool` is an undici `Pool`, or Cairn's HTTP/2 client for `http2` peers. */
export interface PeerPool {
  readonly peer: HttpPeer;
  readonly pool: OriginDispatcher;
  readonly stats: PeerPoolStats;
}

/**
 * Every origin pool of one engine.
 *
 * @example
 * ```ts
 * const pools = new UpstreamPools((peer) => metrics.connectionCreated(peer));
 * pools.get(peer).pool.dispatch({ path: '/', method: 'GET', headers: {} }, handler);
 * await pools.close();
 * ```
 */
export class UpstreamPools {
  readonly #pools = new Map<string, PeerPool>();
  readonly #onConnection: (peer: HttpPeer) => void;

  constructor(onConnection: (peer: HttpPeer) => void) {
    this.#onConnection = onConnection;
  }

  /** The pool for `peer`, created on first use. */
  get(peer: HttpPeer): PeerPool {
    const existing = this.#pools.get(peer.key);
    if (existing !== undefined) return existing;
    const created = this.#create(peer);
    this.#pools.set(peer.key, created);
    return created;
  }

  /** Snapshot of every pool's counters. */
  stats(): PeerPoolStats[] {
    return [...this.#pools.values()].map((p) => p.stats);
  }

  /** Wait for in-flight origin requests, then close every connection. */
  async close(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((p) => p.pool.close()));
  }

  /** Close every connection now, failing in-flight requests. */
  async destroy(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((p) => p.pool.destroy()));
  }

  #create(peer: HttpPeer): PeerPool {
    const stats: PeerPoolStats = { address: peer.address, connectionsCreated: 0, requestsReused: 0 };
    const onConnection = this.#onConnection;
    if (peer.http2) {
      const pool = new H2OriginPool(peer, stats, () => onConnection(peer), settleAnnounced);
      return { peer, pool, stats };
    }
    const tls = peer.tlsOptions;
    const base = buildConnector({
      timeout: peer.connectTimeout,
      rejectUnauthorized: tls?.rejectUnauthorized ?? true,
      ...(tls?.ca === undefined ? {} : { ca: tls.ca as string | Buffer | (string | Buffer)[] }),
      ...(tls?.cert === undefined ? {} : { cert: tls.cert }),
      ...(tls?.key === undefined ? {} : { key: tls.key }),
      ...(peer.sni === undefined ? {} : { servername: peer.sni }),
      allowH2: peer.allowH2,
      keepAlive: true,
      // Passed on to net.connect/tls.connect; undici's option type does not list it.
      ...SOCKET_OPTIONS,
    });
    const connect: buildConnector.connector = (options, callback) => {
      base(options, (error, socket) => {
        if (error === null) {
          (socket as TaggedSocket)[kUses] = 0;
          (socket as TaggedSocket)[kStats] = stats;
          stats.connectionsCreated++;
          onConnection(peer);
        }
        // undici's callback overloads are (error, null) | (null, socket).
        (callback as (e: Error | null, s: unknown) => void)(error, socket);
      });
    };
    const pool = new Pool(peer.origin, {
      connections: peer.maxConnections,
      pipelining: 1,
      keepAliveTimeout: peer.keepAliveTimeout,
      keepAliveMaxTimeout: Math.max(peer.keepAliveTimeout, 600_000),
      headersTimeout: peer.headersTimeout,
      bodyTimeout: peer.idleTimeout,
      allowH2: peer.allowH2,
      connect,
    });
    return { peer, pool, stats };
  }
}

/**
 * How much an origin socket may hold unread before Node stops reading it. undici reads its socket
 * in paused mode with a 64 KiB mark (16 KiB over TLS), and Node reads up to 64 KiB at a time: a
 * 64 KiB body filled the buffer on every read, so every response cost a readStop/readStart pair
 * (two epoll_ctl calls). Backpressure toward the client is unchanged: it pauses undici's parser.
 */
const ORIGIN_HIGH_WATER_MARK = 256 * 1024;
const SOCKET_OPTIONS: object = { highWaterMark: ORIGIN_HIGH_WATER_MARK };

const TLS_CODES: ReadonlySet<string> = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_TLS_HANDSHAKE_TIMEOUT',
]);

/**
 * Give an undici (or socket) error its Cairn code. `sent` tells whether the request had reached a
 * connection (undici called onRequestStart); before that, every failure is a connect failure.
 */
export function upstreamError(error: unknown, sent: boolean, peer: HttpPeer): CairnError {
  if (error instanceof CairnError) return error;
  const code = typeof (error as { code?: unknown }).code === 'string' ? (error as { code: string }).code : '';
  const at = peer.address;
  if (code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new CairnError('CAIRN_ERR_UPSTREAM_CONNECT_TIMEOUT', `connect to ${at} timed out`, {
      cause: error,
    });
  }
  if (TLS_CODES.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) {
    return new CairnError('CAIRN_ERR_UPSTREAM_TLS', `TLS with ${at} failed (${code})`, { cause: error });
  }
  if (!sent) {
    return new CairnError('CAIRN_ERR_UPSTREAM_CONNECT', `cannot connect to ${at} (${code || 'error'})`, {
      cause: error,
    });
  }
  if (code === 'UND_ERR_HEADERS_TIMEOUT') {
    return new CairnError('CAIRN_ERR_UPSTREAM_HEADERS_TIMEOUT', `${at} sent no response headers in time`, {
      cause: error,
    });
  }
  if (code === 'UND_ERR_BODY_TIMEOUT') {
    return new CairnError('CAIRN_ERR_UPSTREAM_BODY_TIMEOUT', `${at} stalled while sending the body`, {
      cause: error,
    });
  }
  // undici's HTTPParserError often has no code (it looks llhttp's error number up in a name->number
  // table), so recognise the class too.
  if (
    error instanceof undiciErrors.HTTPParserError ||
    code.startsWith('HPE_') ||
    code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' ||
    code === 'UND_ERR_INFO'
  ) {
    return new CairnError('CAIRN_ERR_UPSTREAM_PROTOCOL', `invalid response from ${at} (${code})`, {
      cause: error,
    });
  }
  return new CairnError('CAIRN_ERR_UPSTREAM_CLOSED', `${at} closed the connection (${code || 'error'})`, {
    cause: error,
  });
}
