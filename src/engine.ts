/**
 * `Engine`: what one proxy needs at run time, made once per listener: the proxy and its phase
 * plan, the origin pools, metrics and the logger. `handle` is the `node:http` request listener.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpCache } from '../cache/http-cache.ts';
import type { Logger } from 'pino';
import { HttpTask } from './http-task.ts';
import type { CairnMetrics } from './metrics.ts';
import type { PhasePlan, ProxyHttp } from './proxy-http.ts';
import { phasePlan } from './proxy-http.ts';
import { UpstreamPools } from './upstream-pool.ts';

export class Engine<Ctx> {
  readonly proxy: ProxyHttp<Ctx>;
  readonly plan: PhasePlan;
  readonly pools: UpstreamPools;
  readonly metrics: CairnMetrics;
  readonly logger: Logger;
  readonly scheme: 'http' | 'https';
  /** Whether the default `logging` phase writes anything (decided once, from the log level). */
  readonly accessLog: boolean;
  /** Set while shutting down: responses then ask clients to close their connections. */
  draining: boolean;

  constructor(proxy: ProxyHttp<Ctx>, metrics: CairnMetrics, logger: Logger, scheme: 'http' | 'https') {
    this.proxy = proxy;
    this.plan = phasePlan(proxy);
    this.metrics = metrics;
    this.logger = logger;
    this.scheme = scheme;
    this.accessLog = logger.isLevelEnabled('info');
    this.draining = false;
    this.pools = new UpstreamPools(() => metrics.connectionCreated());
    metrics.addPeerPools(() => this.pools.stats());
  }

  /** Register a cache the first time a request uses it, so its metrics are exported. */
  noteCache(cache: HttpCache): void {
    // Nearly every request uses the cache the last one did.
    if (cache === this.#lastCache) return;
    this.#lastCache = cache;
    if (this.#caches.has(cache)) return;
    this.#caches.add(cache);
    this.metrics.addCache(cache);
  }

  readonly #caches = new WeakSet<HttpCache>();
  #lastCache: HttpCache | undefined = undefined;

  /** The request listener: one task per request. */
  handle(request: IncomingMessage, response: ServerResponse): void {
    this.metrics.requestStarted();
    const task = new HttpTask(this, request, response);
    task.run();
  }
}
