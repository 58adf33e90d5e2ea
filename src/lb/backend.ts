/**
 * A backend (origin server) as load balancing sees it: an immutable, validated descriptor.
 * Mutable state (health, in-flight, counters) lives in the `Upstream`, never here, so a selector
 * built over a list of backends can be shared and swapped atomically.
 */

import { CairnError } from '../errors.ts';

/** How a backend is configured: an address and a weight. */
export interface BackendConfig {
  /**
   * `'host:port'`, `'host'` (port 80), `'[v6]:port'`, or an `http(s)://` URL / `URL` (port from the
   * URL or the scheme's default).
   */
  readonly address: string | URL;
  /** Positive integer, default 1. */
  readonly weight?: number;
  /**
   * Identity used for hashing (ketama) and for `remove`/`drain`. Default: the address string as
   * written (as nginx hashes its `server` argument), or `host:port` for a URL. Give the exact
   * string of the nginx `server` line to keep nginx's key mapping.
   */
  readonly id?: string;
}

/** An immutable backend descriptor. */
export interface Backend {
  readonly id: string;
  /** The address as configured (`URL.href` for a URL). */
  readonly address: string;
  /** Host name or IP, without IPv6 brackets. */
  readonly host: string;
  readonly port: number;
  readonly protocol: 'http:' | 'https:';
  readonly weight: number;
}

/**
 * Validate and freeze a backend descriptor.
 * @example
 * ```ts
 * createBackend({ address: '10.0.0.1:8080', weight: 2 });
 * // { id: '10.0.0.1:8080', address: '10.0.0.1:8080', host: '10.0.0.1', port: 8080, protocol: 'http:', weight: 2 }
 * createBackend({ address: new URL('https://origin.example') }); // port 443, id 'origin.example:443'
 * ```
 */
export function createBackend(config: BackendConfig): Backend {
  const weight = config.weight ?? 1;
  if (!Number.isInteger(weight) || weight < 1) {
    throw new CairnError(
      'CAIRN_ERR_CONFIG_INVALID',
      `backend ${String(config.address)}: weight must be a positive integer, got ${weight}`,
    );
  }
  const raw = config.address;
  let host: string;
  let port: number;
  let protocol: 'http:' | 'https:' = 'http:';
  let address: string;
  let id: string;
  if (raw instanceof URL || /^https?:\/\//i.test(raw)) {
    let url: URL;
    try {
      url = raw instanceof URL ? raw : new URL(raw);
    } catch (error) {
      throw new CairnError('CAIRN_ERR_CONFIG_INVALID', `backend ${String(raw)}: not a valid URL`, {
        cause: error,
      });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new CairnError('CAIRN_ERR_CONFIG_INVALID', `backend ${url.href}: scheme must be http or https`);
    }
    protocol = url.protocol;
    host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    port = url.port === '' ? (protocol === 'https:' ? 443 : 80) : Number(url.port);
    address = url.href;
    id = `${url.hostname}:${port}`;
  } else {
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+))(?::(\d{1,5}))?$/.exec(raw);
    if (m === null) {
      throw new CairnError(
        'CAIRN_ERR_CONFIG_INVALID',
        `backend "${raw}": expected host:port, [v6]:port or an http(s) URL`,
      );
    }
    host = (m[1] ?? m[2])!;
    port = m[3] === undefined ? 80 : Number(m[3]);
    address = raw;
    id = raw;
  }
  if (!(port >= 1 && port <= 65535)) {
    throw new CairnError('CAIRN_ERR_CONFIG_INVALID', `backend ${address}: port must be 1-65535`);
  }
  return Object.freeze({ id: config.id ?? id, address, host, port, protocol, weight });
}

/**
 * The same backend with another weight (a new frozen object; descriptors are never mutated).
 * @example
 * ```ts
 * const heavier = withWeight(backend, 5);
 * ```
 */
export function withWeight(backend: Backend, weight: number): Backend {
  if (!Number.isInteger(weight) || weight < 1) {
    throw new CairnError(
      'CAIRN_ERR_CONFIG_INVALID',
      `backend ${backend.id}: weight must be a positive integer, got ${weight}`,
    );
  }
  return Object.freeze({ ...backend, weight });
}
