/**
 * Lazy, cached route resolution (as Rivet Guard does it): a user function maps a request's host and
 * path to targets the first time they are seen; the answer is cached per host + path prefix for a
 * TTL, so the function is asked once per route, not once per request, and there is no
 * "state of the world" to push. A cache hit is synchronous. Concurrent misses for the same host and
 * path share one call. `invalidate` drops an entry (the gateway does it when a cached target refuses
 * the connection) so the next lookup asks the function again. Built only from the public API.
 */
import { performance } from 'node:perf_hooks';
import { HttpPeer } from '../src/index.ts';
import type { HttpPeerOptions } from '../src/index.ts';

/** What the user's function answers for a host and path. */
export interface RouteAnswer {
  /** Origin URLs (`http://10.0.0.7:8080`); empty means "no route" (404). */
  readonly targets: readonly string[];
  /** The path prefix the answer holds for (default `/`: the whole host). */
  readonly prefix?: string;
  /** How long to cache it, ms (default the resolver's `ttlMs`). */
  readonly ttlMs?: number;
}

/** The user's routing function; may be async. `undefined` means no route. */
export type RouteLookup = (
  host: string,
  path: string,
) => RouteAnswer | undefined | Promise<RouteAnswer | undefined>;

export interface RouteResolverOptions {
  readonly resolve: RouteLookup;
  /** Cache lifetime of an answer, ms. Default 30,000. */
  readonly ttlMs?: number;
  /** Cache lifetime of "no route", ms. Default 1,000. */
  readonly negativeTtlMs?: number;
  /** Most cached routes; the oldest host's routes go first. Default 10,000. */
  readonly maxRoutes?: number;
  /** Connection options for every target. */
  readonly peer?: HttpPeerOptions;
  /** Monotonic clock, ms (default `performance.now`); injectable for tests. */
  readonly now?: () => number;
}

/** A cached route: targets as pooled peers, and a round-robin cursor over them. */
export class Route {
  readonly host: string;
  readonly prefix: string;
  readonly targets: readonly HttpPeer[];
  readonly expiresAt: number;
  /** Round-robin cursor (shared by every request on this route). */
  next: number;

  constructor(host: string, prefix: string, targets: readonly HttpPeer[], expiresAt: number) {
    this.host = host;
    this.prefix = prefix;
    this.targets = targets;
    this.expiresAt = expiresAt;
    this.next = 0;
  }

  /** The next target, round robin; `undefined` for a "no route" entry. */
  pick(): HttpPeer | undefined {
    const n = this.targets.length;
    if (n === 0) return undefined;
    const peer = this.targets[this.next % n];
    this.next = (this.next + 1) % n;
    return peer;
  }
}

/**
 * @example
 * ```ts
 * const routes = new RouteResolver({
 *   resolve: async (host, path) => {
 *     const service = await registry.lookup(host, path.split('/')[1]);
 *     return service && { targets: service.urls, prefix: `/${service.name}/`, ttlMs: 10_000 };
 *   },
 * });
 * const route = await routes.lookup('api.example', '/users/42'); // asks the registry
 * routes.lookup('api.example', '/users/43');                      // cached: returns the Route at once
 * ```
 */
export class RouteResolver {
  readonly #resolve: RouteLookup;
  readonly #ttlMs: number;
  readonly #negativeTtlMs: number;
  readonly #maxRoutes: number;
  readonly #peerOptions: HttpPeerOptions | undefined;
  readonly #now: () => number;
  /** host -> its routes, longest prefix first. Map order = insertion order: the oldest host first. */
  readonly #routes = new Map<string, Route[]>();
  readonly #pending = new Map<string, Promise<Route | undefined>>();
  readonly #peers = new Map<string, HttpPeer>();
  #count = 0;
  #resolutions = 0;

  constructor(options: RouteResolverOptions) {
    this.#resolve = options.resolve;
    this.#ttlMs = options.ttlMs ?? 30_000;
    this.#negativeTtlMs = options.negativeTtlMs ?? 1000;
    this.#maxRoutes = options.maxRoutes ?? 10_000;
    this.#peerOptions = options.peer;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Calls made to the routing function so far. */
  get resolutions(): number {
    return this.#resolutions;
  }

  /**
   * The route for `host` + `path`: synchronous when cached and fresh, else a promise of the
   * function's answer (`undefined`: no route).
   */
  lookup(host: string, path: string): Route | undefined | Promise<Route | undefined> {
    const h = host.toLowerCase();
    const q = path.indexOf('?');
    const p = q < 0 ? path : path.slice(0, q);
    const cached = this.#cached(h, p);
    if (cached !== undefined) return cached.targets.length === 0 ? undefined : cached;
    const key = `${h}\n${p}`;
    let pending = this.#pending.get(key);
    if (pending === undefined) {
      pending = this.#ask(h, p).finally(() => this.#pending.delete(key));
      this.#pending.set(key, pending);
    }
    return pending;
  }

  /**
   * Drop a cached route (e.g. its target refused the connection): the next lookup asks the
   * function again. Harmless if it was already replaced.
   */
  invalidate(route: Route): void {
    const list = this.#routes.get(route.host);
    if (list === undefined) return;
    const i = list.indexOf(route);
    if (i < 0) return;
    list.splice(i, 1);
    this.#count--;
    if (list.length === 0) this.#routes.delete(route.host);
  }

  #cached(host: string, path: string): Route | undefined {
    const list = this.#routes.get(host);
    if (list === undefined) return undefined;
    const now = this.#now();
    for (let i = 0; i < list.length; i++) {
      const r = list[i]!;
      if (!path.startsWith(r.prefix)) continue;
      if (r.expiresAt > now) return r;
      // Expired: a miss (a shorter prefix must not answer for it), asked again by the caller.
      list.splice(i, 1);
      this.#count--;
      if (list.length === 0) this.#routes.delete(host);
      return undefined;
    }
    return undefined;
  }

  async #ask(host: string, path: string): Promise<Route | undefined> {
    this.#resolutions++;
    const answer = await this.#resolve(host, path);
    const targets = answer === undefined ? [] : answer.targets.map((url) => this.#peer(url));
    // "No route" is cached for the exact path only; an answer for the prefix it names.
    let prefix = answer?.prefix ?? (targets.length === 0 ? path : '/');
    if (!path.startsWith(prefix)) prefix = path;
    const ttl = targets.length === 0 ? this.#negativeTtlMs : (answer?.ttlMs ?? this.#ttlMs);
    const route = new Route(host, prefix, targets, this.#now() + ttl);
    this.#store(route);
    return targets.length === 0 ? undefined : route;
  }

  #store(route: Route): void {
    let list = this.#routes.get(route.host);
    if (list === undefined) {
      while (this.#count >= this.#maxRoutes && this.#routes.size > 0) {
        const [oldest, routes] = this.#routes.entries().next().value as [string, Route[]];
        this.#routes.delete(oldest);
        this.#count -= routes.length;
      }
      list = [];
      this.#routes.set(route.host, list);
    }
    const same = list.findIndex((r) => r.prefix === route.prefix);
    if (same >= 0) {
      list.splice(same, 1);
      this.#count--;
    }
    let at = 0;
    while (at < list.length && list[at]!.prefix.length >= route.prefix.length) at++;
    list.splice(at, 0, route);
    this.#count++;
  }

  #peer(url: string): HttpPeer {
    let peer = this.#peers.get(url);
    if (peer === undefined) {
      peer = new HttpPeer(url, this.#peerOptions);
      this.#peers.set(url, peer);
    }
    return peer;
  }
}
