/**
 * `GatewayProxy`: a gateway whose routes come from a function, resolved lazily and cached
 * (`RouteResolver`), as Rivet Guard does it:
 * - the first request for a host + path asks the routing function; later ones use the cached answer
 *   until its TTL runs out;
 * - when a cached target refuses the connection, the entry is invalidated and the function asked
 *   again before the request fails (cache invalidation without a message bus);
 * - while a target is starting (still refusing connections), the request waits and retries with
 *   exponential backoff up to a deadline instead of failing at once, so a container that is still
 *   booting, or a singleton that restarts, receives the request as soon as it accepts connections.
 * Only connection refusals (nothing sent yet) are retried; the engine still refuses any retry that
 * would send a request body twice. Built only from the public API.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { CairnError, ProxyHttp } from '../src/index.ts';
import type { HttpPeer, ProxyHttpOptions, Session } from '../src/index.ts';
import { RouteResolver } from './route-resolver.ts';
import type { Route, RouteResolverOptions } from './route-resolver.ts';

export interface GatewayProxyOptions extends ProxyHttpOptions, RouteResolverOptions {
  /** How long a request may wait for a refusing target to start, ms (0: fail at once). Default 10,000. */
  readonly waitForTargetMs?: number;
  /** First backoff pause, ms (doubling up to `maxBackoffMs`). Default 25. */
  readonly backoffMs?: number;
  /** Longest backoff pause, ms. Default 1,000. */
  readonly maxBackoffMs?: number;
}

/** Per-request state of a `GatewayProxy`. */
export interface GatewayCtx {
  route: Route | undefined;
  /** The route was invalidated after a refusal: look it up again before the next attempt. */
  lookupAgain: boolean;
  /** Already asked the function again for this request (only once per request). */
  reResolved: boolean;
  /** `Date.now()` after which waiting stops (0 until the first wait). */
  deadline: number;
  /** Pause before the next attempt, ms. */
  backoff: number;
}

/**
 * @example
 * ```ts
 * import { serve } from 'cairn';
 * import { GatewayProxy } from 'cairn/proxies';
 * const gateway = new GatewayProxy({
 *   resolve: async (host) => {
 *     const actor = await orchestrator.find(host);          // your service registry
 *     return actor && { targets: [`http://${actor.ip}:${actor.port}`], ttlMs: 5_000 };
 *   },
 *   waitForTargetMs: 15_000,                                 // a starting actor gets the request
 * });
 * await serve(gateway, { listen: '0.0.0.0:8080' });
 * ```
 */
export class GatewayProxy extends ProxyHttp<GatewayCtx> {
  readonly routes: RouteResolver;
  readonly waitForTargetMs: number;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;

  constructor(options: GatewayProxyOptions) {
    // The deadline, not a count, bounds waiting for a target: allow many attempts.
    super({ ...options, maxRetries: options.maxRetries ?? 1000 });
    this.routes = new RouteResolver(options);
    this.waitForTargetMs = options.waitForTargetMs ?? 10_000;
    this.backoffMs = options.backoffMs ?? 25;
    this.maxBackoffMs = options.maxBackoffMs ?? 1000;
  }

  override newCtx(): GatewayCtx {
    return { route: undefined, lookupAgain: false, reResolved: false, deadline: 0, backoff: 0 };
  }

  /** Resolve the route (cached: synchronous); no route answers 404. */
  override proxyUpstreamFilter(session: Session, ctx: GatewayCtx): boolean | Promise<boolean> {
    const found = this.routes.lookup(session.host, session.path);
    if (found instanceof Promise) return found.then((route) => this.#routed(session, ctx, route));
    return this.#routed(session, ctx, found);
  }

  #routed(session: Session, ctx: GatewayCtx, route: Route | undefined): boolean {
    if (route === undefined) {
      session.respond(
        404,
        { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' },
        '404 Not Found: no route for this host and path\n',
      );
      return false;
    }
    ctx.route = route;
    return true;
  }

  /** The route's next target; after a refusal, first the backoff pause and a fresh lookup. */
  override upstreamPeer(session: Session, ctx: GatewayCtx): HttpPeer | Promise<HttpPeer> {
    if (!ctx.lookupAgain && ctx.backoff === 0) return this.#pick(ctx);
    return this.#retryPeer(session, ctx);
  }

  async #retryPeer(session: Session, ctx: GatewayCtx): Promise<HttpPeer> {
    if (ctx.backoff > 0) await delay(ctx.backoff);
    if (session.aborted)
      throw new CairnError('CAIRN_ERR_DOWNSTREAM_CLOSED', 'client went away while its target was starting');
    if (ctx.lookupAgain) {
      ctx.lookupAgain = false;
      const route = await this.routes.lookup(session.host, session.path);
      if (route === undefined) throw new CairnError('CAIRN_ERR_UPSTREAM_UNAVAILABLE', 'the route is gone');
      ctx.route = route;
    }
    return this.#pick(ctx);
  }

  #pick(ctx: GatewayCtx): HttpPeer {
    const peer = ctx.route?.pick();
    if (peer === undefined) throw new CairnError('CAIRN_ERR_UPSTREAM_UNAVAILABLE', 'the route has no target');
    return peer;
  }

  /**
   * A refused connection: the first time, drop the cached route and ask again; after that, wait
   * with backoff for the target to start, until the deadline.
   */
  override failToConnect(_session: Session, _peer: HttpPeer, ctx: GatewayCtx, error: CairnError): CairnError {
    if (error.code !== 'CAIRN_ERR_UPSTREAM_CONNECT' || ctx.route === undefined) return error;
    if (!ctx.reResolved) {
      ctx.reResolved = true;
      ctx.lookupAgain = true;
      this.routes.invalidate(ctx.route);
      error.retry = true;
      return error;
    }
    if (this.waitForTargetMs <= 0) return error;
    const now = Date.now();
    if (ctx.deadline === 0) ctx.deadline = now + this.waitForTargetMs;
    const pause = ctx.backoff === 0 ? this.backoffMs : Math.min(ctx.backoff * 2, this.maxBackoffMs);
    if (now + pause > ctx.deadline) return error;
    ctx.backoff = pause;
    // The cached route may have been refreshed meanwhile (another request re-resolved it).
    ctx.lookupAgain = true;
    error.retry = true;
    return error;
  }
}
