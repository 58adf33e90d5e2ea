/**
 * `HttpCache`: one cache as the engine uses it — a store (memory, LMDB, or both), the cache lock,
 * the resolved RFC 9111 policy options, the `Cache-Status` vocabulary, who may purge, and the
 * lookup counters exported as metrics. A proxy turns caching on for a request by returning an
 * `HttpCache` from `requestCacheFilter`.
 */
import { isIP } from 'node:net';
import type { CairnError } from '../src/errors.ts';
import { CACHE_STATUS, CacheStatusBuilder } from './cache-status.ts';
import { purgeElsewhere, registerCache } from './cluster-purge.ts';
import type { PurgeKind } from './cluster-purge.ts';
import { cacheKey } from './key.ts';
import { CacheLock } from './lock.ts';
import type { CacheLockOptions } from './lock.ts';
import type { LmdbStoreOptions } from './lmdb-store.ts';
import type { MemoryStoreOptions } from './memory-store.ts';
import type { PolicyOptions, ResolvedPolicyOptions } from './policy.ts';
import { resolvePolicyOptions } from './policy.ts';
import type { CacheStore, CacheStoreStats } from './store.ts';
import { TieredStore } from './tiered-store.ts';

/** How a lookup ended, for metrics. */
export type LookupResult = 'hit' | 'miss' | 'stale' | 'revalidated' | 'bypass' | 'collapsed';
export const LOOKUP_RESULTS: readonly LookupResult[] = [
  'hit',
  'miss',
  'stale',
  'revalidated',
  'bypass',
  'collapsed',
];

export interface HttpCacheOptions {
  readonly store: CacheStore;
  /** Collapse concurrent misses (default on, 5 s wait); `false` lets every miss fetch. */
  readonly lock?: CacheLockOptions | false;
  readonly policy?: PolicyOptions;
  /** The cache's name in `Cache-Status` (default `Cairn`). */
  readonly name?: string;
  /**
   * Client addresses allowed to send `PURGE` (exact IPs; default loopback only). The admin API's
   * purge is separate: it is guarded by where the admin listener listens.
   */
  readonly purgeFrom?: readonly string[];
}

export interface OpenHttpCacheOptions extends Omit<HttpCacheOptions, 'store'> {
  readonly memory: MemoryStoreOptions;
  /** The LMDB disk tier; omit for memory only. */
  readonly disk?: LmdbStoreOptions;
}

const LOOPBACK = ['127.0.0.1', '::1', '::ffff:127.0.0.1'];

/**
 * @example
 * ```ts
 * const cache = await HttpCache.open({
 *   memory: { maxBytes: 256 * 1024 ** 2, maxObjectBytes: 1024 ** 2 },
 *   disk: { path: '/var/cache/cairn', maxBytes: 10 * 1024 ** 3 },
 * });
 * class MyCdn extends ProxyHttp {
 *   override requestCacheFilter() { return cache; }
 *   override upstreamPeer() { return origin; }
 * }
 * ```
 */
export class HttpCache {
  readonly store: CacheStore;
  readonly lock: CacheLock | null;
  readonly policy: ResolvedPolicyOptions;
  readonly status: CacheStatusBuilder;
  /** Lookups by result since start. */
  readonly lookups: Record<LookupResult, number>;
  readonly #purgeFrom: ReadonlySet<string>;
  readonly #revalidating = new Set<string>();
  /** Its number in the cluster's purge relay (the same cache in every worker has the same one). */
  readonly #relayId: number;

  constructor(options: HttpCacheOptions) {
    this.store = options.store;
    this.lock = options.lock === false ? null : new CacheLock(options.lock ?? {});
    this.policy = resolvePolicyOptions(options.policy);
    this.status =
      options.name === undefined || options.name === 'Cairn'
        ? CACHE_STATUS
        : new CacheStatusBuilder(options.name);
    const lookups = {} as Record<LookupResult, number>;
    for (const result of LOOKUP_RESULTS) lookups[result] = 0;
    this.lookups = lookups;
    const allowed = options.purgeFrom ?? LOOPBACK;
    for (const address of allowed) {
      if (isIP(address) === 0)
        throw new TypeError(`HttpCache: purgeFrom entry "${address}" is not an IP address`);
    }
    this.#purgeFrom = new Set(allowed);
    this.#relayId = registerCache((kind, value) => this.#purgeHere(kind, value));
  }

  /** Open a memory tier over an optional LMDB disk tier (memory only if the disk cannot open). */
  static async open(options: OpenHttpCacheOptions): Promise<HttpCache> {
    const store = await TieredStore.open({
      memory: options.memory,
      ...(options.disk === undefined ? {} : { disk: options.disk }),
    });
    return new HttpCache({ ...options, store });
  }

  /**
   * Why the disk tier is missing, when `open()` could not open it and the cache runs memory-only
   * (`CAIRN_ERR_CACHE_STORE_OPEN`); `undefined` otherwise.
   *
   * @example
   * ```ts
   * const cache = await HttpCache.open({ memory, disk: { path: '/var/cache/cairn', maxBytes } });
   * if (cache.diskError) logger.error({ err: cache.diskError }, 'caching in memory only');
   * ```
   */
  get diskError(): CairnError | undefined {
    const store = this.store;
    return store instanceof TieredStore ? store.diskError : undefined;
  }

  /** May this client address purge? */
  mayPurge(address: string): boolean {
    return this.#purgeFrom.has(address);
  }

  /**
   * Claim the background revalidation of `key` (at most one per key at a time). Returns false when
   * another one is already running.
   */
  claimRevalidation(key: string): boolean {
    if (this.#revalidating.has(key)) return false;
    this.#revalidating.add(key);
    return true;
  }

  releaseRevalidation(key: string): void {
    this.#revalidating.delete(key);
  }

  /** The default cache key for a URL's parts (what `ProxyHttp#cacheKey` computes by default). */
  keyFor(scheme: string, host: string, pathAndQuery: string): string | undefined {
    return cacheKey(scheme, host, pathAndQuery);
  }

  /**
   * Purge every variant of one key. Under `serve({ workers })` the purge reaches every worker's
   * memory tier before this resolves; the count is the most any one process removed (they share
   * the disk tier, so adding them up would count one object once per worker).
   */
  purgeKey(key: string): Promise<number> {
    return this.#purge('key', key);
  }

  /** Purge every object stored with this `Surrogate-Key` / `Cache-Tag` tag (in every worker). */
  purgeTag(tag: string): Promise<number> {
    return this.#purge('tag', tag);
  }

  /** Purge every object whose key starts with `prefix` (in every worker). */
  purgePrefix(prefix: string): Promise<number> {
    return this.#purge('prefix', prefix);
  }

  async #purge(kind: PurgeKind, value: string): Promise<number> {
    const here = await this.#purgeHere(kind, value);
    const elsewhere = purgeElsewhere(this.#relayId, kind, value);
    if (elsewhere === undefined) return here;
    return Math.max(here, ...(await elsewhere));
  }

  /** Apply a purge to this process's store (both tiers) and lock only. */
  async #purgeHere(kind: PurgeKind, value: string): Promise<number> {
    switch (kind) {
      case 'key':
        // A response still arriving was fetched before this purge: it must not be stored either.
        this.lock?.inflight(value)?.purge();
        return this.store.delete(value);
      case 'tag':
        return this.store.purgeTag(value);
      case 'prefix':
        return this.store.purgePrefix(value);
    }
  }

  /** Per-tier statistics (a tiered store reports each tier). */
  tierStats(): readonly (CacheStoreStats & { readonly tier: string })[] {
    const store = this.store;
    if (store instanceof TieredStore) return store.tiers();
    return [{ tier: store.tier, ...store.stats() }];
  }

  close(): Promise<void> {
    return this.store.close();
  }
}
