/**
 * `ReverseProxy`: the plain ready-made proxy — one or more origins, round robin, the next origin
 * on a connect failure. Built only from Cairn's public API, exactly as a user could write it.
 */
import { HttpPeer, ProxyHttp } from '../src/index.ts';
import type { CairnError, HttpPeerOptions, ProxyHttpOptions, Session } from '../src/index.ts';

export interface ReverseProxyOptions extends ProxyHttpOptions {
  /** Origin URLs (`http://host:port`); at least one. */
  readonly origins: readonly string[];
  /** Connection options applied to every origin. */
  readonly peer?: HttpPeerOptions;
}

/**
 * @example
 * ```ts
 * import { serve } from 'cairn';
 * import { ReverseProxy } from 'cairn/proxies';
 * await serve(new ReverseProxy({ origins: ['http://127.0.0.1:3000'] }), { listen: '127.0.0.1:8080' });
 * ```
 */
export class ReverseProxy extends ProxyHttp<{ first: number }> {
  readonly peers: readonly HttpPeer[];
  #next = 0;

  constructor(options: ReverseProxyOptions) {
    // Allow one attempt per origin, so a connect failure can walk the whole list.
    super({ ...options, maxRetries: options.maxRetries ?? Math.max(2, options.origins.length - 1) });
    if (options.origins.length === 0) throw new TypeError('ReverseProxy: origins must name at least one origin');
    this.peers = options.origins.map((url) => new HttpPeer(url, options.peer));
  }

  override newCtx(): { first: number } {
    return { first: -1 };
  }

  /** Round robin; on a retry, the origin after the one that failed. */
  override upstreamPeer(session: Session, ctx: { first: number }): HttpPeer {
    const peers = this.peers;
    if (ctx.first < 0) {
      ctx.first = this.#next;
      this.#next = (this.#next + 1) % peers.length;
    }
    return peers[(ctx.first + session.attempts - 1) % peers.length] as HttpPeer;
  }

  /** Nothing was sent on a failed connect: trying the next origin is always safe. */
  override failToConnect(session: Session, _peer: HttpPeer, _ctx: { first: number }, error: CairnError): CairnError {
    if (session.attempts < this.peers.length) error.retry = true;
    return error;
  }
}
