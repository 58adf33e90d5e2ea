/**
 * `CdnProxy`: the ready-made caching tier. A `ReverseProxy` that turns the cache on for every
 * request, normalises `Accept-Encoding` for `Vary`, and adds a purge API to the admin listener.
 * Built only from Cairn's public API.
 */
import { acceptEncodingNormaliser, HttpCache } from '../src/index.ts';
import type { AdminServer, OpenHttpCacheOptions, ServiceRuntime, Session } from '../src/index.ts';
import { purgeLocally, readPurgeTarget, sendJson } from './admin-json.ts';
import { ReverseProxy } from './reverse-proxy.ts';
import type { ReverseProxyCtx, ReverseProxyOptions } from './reverse-proxy.ts';

export interface CdnProxyOptions extends ReverseProxyOptions {
  readonly cache: HttpCache;
}

/**
 * @example
 * ```ts
 * import { HttpCache, serve } from 'cairn';
 * import { CdnProxy } from 'cairn/proxies';
 * const cache = await HttpCache.open({ memory: { maxBytes: 256 << 20 }, disk: { path: './cache', maxBytes: 4 << 30 } });
 * const proxy = new CdnProxy({ origins: ['http://127.0.0.1:3000'], cache });
 * await serve(proxy, { listen: '127.0.0.1:8080', admin: '127.0.0.1:9090', adminRoutes: (a) => proxy.adminRoutes(a) });
 * ```
 */
export class CdnProxy<Ctx extends object = ReverseProxyCtx> extends ReverseProxy<Ctx> {
  readonly cache: HttpCache;

  constructor(options: CdnProxyOptions) {
    super(options);
    this.cache = options.cache;
  }

  /** Open a memory (+ LMDB) cache and a CdnProxy over it. */
  static async open(
    options: ReverseProxyOptions & { readonly cache: OpenHttpCacheOptions },
  ): Promise<CdnProxy> {
    const cache = await HttpCache.open(options.cache);
    return new CdnProxy({ ...options, cache });
  }

  /**
   * Start the upstream services; first say (once, as an error) when the cache could not open its
   * disk tier and serves from memory only, so a bad `--cache-dir` is not a silent slowdown.
   */
  override async start(runtime?: ServiceRuntime): Promise<void> {
    const error = this.cache.diskError;
    if (error !== undefined && runtime !== undefined && !this.#diskErrorLogged) {
      this.#diskErrorLogged = true;
      runtime.logger.error({ err: error }, 'cache disk tier unavailable: caching in memory only');
    }
    await super.start(runtime);
  }

  #diskErrorLogged = false;

  /**
   * Stop the upstream services, then close the cache, so LMDB commits still pending at SIGTERM are
   * written before the process exits (the next start serves them as hits).
   */
  override async stop(): Promise<void> {
    await super.stop();
    await this.cache.close();
  }

  override requestCacheFilter(_session: Session, _ctx: Ctx): HttpCache {
    return this.cache;
  }

  /** One variant per coding actually served (br, gzip, identity), not one per browser's header. */
  override cacheVaryFilter(
    _session: Session,
    name: string,
    value: string | undefined,
    _ctx: Ctx,
  ): string | undefined {
    return acceptEncodingNormaliser(name, value);
  }

  /**
   * `POST /purge` on the admin listener, with a JSON body naming what to drop:
   * `{"url": "http://host/path"}` (every variant), `{"tag": "product-42"}` (Surrogate-Key /
   * Cache-Tag), or `{"prefix": "http://host/static/"}`. Answers `{"purged": N}`. Also the
   * upstream API of `ReverseProxy.adminRoutes`.
   */
  override adminRoutes(admin: AdminServer): void {
    super.adminRoutes(admin);
    admin.route('POST', '/purge', async (req, res) => {
      const target = await readPurgeTarget(req, res, this.cache);
      if (target === undefined) return;
      sendJson(res, 200, { purged: await purgeLocally(this.cache, target) });
    });
  }
}
