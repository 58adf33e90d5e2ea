/**
 * Cairn's errors: one base class, one table of stable codes.
 *
 * Every error says *who hung up* (`source`), whether trying again could help (`retryable`), and
 * carries a code that never changes meaning (`CAIRN_ERR_<AREA>_<WHAT>`). Library errors are wrapped
 * with the original as `cause`. Code must branch on `code`, never on a message.
 *
 * This module is a leaf (it imports nothing), so `cache/` may use it too.
 */

/** Which side the failure came from: the origin, the client, or Cairn itself. */
export type ErrorSource = 'upstream' | 'downstream' | 'internal';

/**
 * Whether a retry may help: always, never, or only when the request failed on a re-used origin
 * connection (the origin may have closed an idle keep-alive socket just as we wrote to it).
 */
export type Retryable = true | false | 'if-reused';

interface CodeInfo {
  readonly source: ErrorSource;
  readonly retryable: Retryable;
  /** Status written to the client by the default `failToProxy`, when one is written. */
  readonly status: number;
  readonly description: string;
}

/**
 * The table of every code. Documented in docs/errors.md; a test checks the two agree.
 * Never reuse or renumber a code: add new ones.
 */
export const ERROR_CODES = {
  // Upstream (origin) side
  CAIRN_ERR_UPSTREAM_CONNECT: {
    source: 'upstream',
    retryable: true,
    status: 502,
    description: 'Could not open a connection to the origin (refused, unreachable, DNS failure).',
  },
  CAIRN_ERR_UPSTREAM_CONNECT_TIMEOUT: {
    source: 'upstream',
    retryable: true,
    status: 504,
    description: 'Opening a connection to the origin took longer than the peer connect timeout.',
  },
  CAIRN_ERR_UPSTREAM_HEADERS_TIMEOUT: {
    source: 'upstream',
    retryable: false,
    status: 504,
    description: 'The origin did not send response headers within the peer response-header timeout.',
  },
  CAIRN_ERR_UPSTREAM_BODY_TIMEOUT: {
    source: 'upstream',
    retryable: false,
    status: 504,
    description: 'The origin stopped sending the response body for longer than the peer idle timeout.',
  },
  CAIRN_ERR_UPSTREAM_CLOSED: {
    source: 'upstream',
    retryable: 'if-reused',
    status: 502,
    description: 'The origin closed or reset the connection before the response was complete.',
  },
  CAIRN_ERR_UPSTREAM_PROTOCOL: {
    source: 'upstream',
    retryable: false,
    status: 502,
    description: 'The origin answered with something that is not valid HTTP.',
  },
  CAIRN_ERR_UPSTREAM_TLS: {
    source: 'upstream',
    retryable: false,
    status: 502,
    description: 'The TLS handshake with the origin failed (certificate, SNI, protocol).',
  },
  CAIRN_ERR_UPSTREAM_UNAVAILABLE: {
    source: 'upstream',
    retryable: false,
    status: 503,
    description: 'No healthy origin is available for this request.',
  },
  CAIRN_ERR_UPSTREAM_REQUEST_BODY: {
    source: 'upstream',
    retryable: false,
    status: 502,
    description: 'The origin failed while the request body was being sent to it.',
  },
  // Downstream (client) side
  CAIRN_ERR_DOWNSTREAM_CLOSED: {
    source: 'downstream',
    retryable: false,
    status: 499,
    description: 'The client closed the connection before the response was complete.',
  },
  CAIRN_ERR_DOWNSTREAM_BAD_REQUEST: {
    source: 'downstream',
    retryable: false,
    status: 400,
    description: 'The client sent a malformed or ambiguous request (bad framing, bad headers).',
  },
  CAIRN_ERR_DOWNSTREAM_HEADERS_TOO_LARGE: {
    source: 'downstream',
    retryable: false,
    status: 431,
    description: 'The request headers were larger or more numerous than the listener allows.',
  },
  CAIRN_ERR_DOWNSTREAM_TIMEOUT: {
    source: 'downstream',
    retryable: false,
    status: 408,
    description: 'The client did not send the complete request in time.',
  },
  CAIRN_ERR_DOWNSTREAM_BODY: {
    source: 'downstream',
    retryable: false,
    status: 400,
    description: 'Reading the request body from the client failed (aborted or malformed).',
  },
  // Internal (Cairn itself, or a user hook)
  CAIRN_ERR_INTERNAL_HOOK: {
    source: 'internal',
    retryable: false,
    status: 500,
    description: 'A phase hook threw or returned a rejected promise.',
  },
  CAIRN_ERR_INTERNAL_NO_PEER: {
    source: 'internal',
    retryable: false,
    status: 502,
    description: 'upstreamPeer returned no peer for the request.',
  },
  CAIRN_ERR_INTERNAL: {
    source: 'internal',
    retryable: false,
    status: 500,
    description: 'An unexpected failure inside Cairn.',
  },
  CAIRN_ERR_CONFIG_INVALID: {
    source: 'internal',
    retryable: false,
    status: 500,
    description: 'A configuration value is missing, of the wrong type or out of range.',
  },
  // Cache
  CAIRN_ERR_CACHE_STORE_OPEN: {
    source: 'internal',
    retryable: false,
    status: 500,
    description:
      'A cache tier could not be opened (e.g. the LMDB path is not writable); Cairn serves without it.',
  },
  CAIRN_ERR_CACHE_STORE_WRITE: {
    source: 'internal',
    retryable: false,
    status: 500,
    description: 'Writing to a cache tier failed (disk full, map full); the response is served, not stored.',
  },
  CAIRN_ERR_CACHE_OBJECT_TOO_LARGE: {
    source: 'internal',
    retryable: false,
    status: 500,
    description: 'A response is larger than the tier may store; it is served, not stored.',
  },
  CAIRN_ERR_CACHE_LOCK_TIMEOUT: {
    source: 'internal',
    retryable: true,
    status: 504,
    description: 'A request waited for another request fetching the same key longer than the lock timeout.',
  },
  CAIRN_ERR_CACHE_WRITER_FAILED: {
    source: 'upstream',
    retryable: true,
    status: 502,
    description: 'The request whose origin fetch a waiter was sharing failed or was cancelled.',
  },
  // Protocols: TLS, upgrades, gRPC bridging
  CAIRN_ERR_TLS_CERTIFICATE: {
    source: 'internal',
    retryable: false,
    status: 500,
    description:
      'A listener certificate or key could not be loaded (bad PEM, key does not match); on reload the previous one stays.',
  },
  CAIRN_ERR_UPGRADE_IDLE_TIMEOUT: {
    source: 'internal',
    retryable: false,
    status: 504,
    description:
      'An upgraded connection (WebSocket tunnel) carried no byte in either direction for the idle timeout.',
  },
  CAIRN_ERR_GRPC_BAD_REQUEST: {
    source: 'downstream',
    retryable: false,
    status: 400,
    description: 'A gRPC or gRPC-web request body could not be translated (bad framing, bad base64).',
  },
  CAIRN_ERR_GRPC_BAD_RESPONSE: {
    source: 'upstream',
    retryable: false,
    status: 502,
    description:
      'A gRPC or gRPC-web response from the origin could not be translated (bad framing, bad trailer frame).',
  },
} as const satisfies Record<string, CodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface CairnErrorOptions {
  readonly cause?: unknown;
  /** Override the table's source (e.g. a body error noticed on the client side). */
  readonly source?: ErrorSource;
  readonly retryable?: Retryable;
  readonly status?: number;
}

/**
 * The one error class of Cairn.
 *
 * @example
 * ```ts
 * throw new CairnError('CAIRN_ERR_UPSTREAM_UNAVAILABLE', 'no healthy backend in group "api"');
 * // err.code === 'CAIRN_ERR_UPSTREAM_UNAVAILABLE', err.source === 'upstream', err.status === 503
 * ```
 */
export class CairnError extends Error {
  readonly code: ErrorCode;
  readonly source: ErrorSource;
  readonly retryable: Retryable;
  readonly status: number;
  /**
   * Set by `failToConnect` / `errorWhileProxy` to ask the engine for another attempt. The engine
   * still refuses when a retry would be unsafe (body already sent, non-idempotent request sent).
   */
  retry: boolean;

  constructor(code: ErrorCode, message: string, options: CairnErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    const info: CodeInfo = ERROR_CODES[code];
    this.name = 'CairnError';
    this.code = code;
    this.source = options.source ?? info.source;
    this.retryable = options.retryable ?? info.retryable;
    this.status = options.status ?? info.status;
    this.retry = false;
  }
}

/** True for a `CairnError`, including one from a second copy of Cairn (checked by shape, not class). */
export function isCairnError(value: unknown): value is CairnError {
  if (value instanceof CairnError) return true;
  if (!(value instanceof Error)) return false;
  const code: unknown = (value as { code?: unknown }).code;
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}
