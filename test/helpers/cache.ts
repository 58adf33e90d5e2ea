/**
 * Helpers for the cache integration tests (on top of `servers.ts`):
 * - `observedStore(store)` → `ObservedStore`: a `CacheStore` that passes everything to `store` and
 *   lets a test await what the engine did to it (`committed(key?)`, `updated(key?)`), so tests wait
 *   for events instead of sleeping.
 * - `memoryCache(options?)` → `{ cache, store }`: an `HttpCache` over an observed memory store.
 * - `startCdn(t, origin, options?)` → `{ cairn, cache, store, proxy }`: a `CdnProxy` (or a subclass)
 *   over a memory cache, served on 127.0.0.1:0 with an admin listener.
 * - `tempDir(t)`: an `fs.mkdtemp` directory removed after the test.
 * - `signal()`: a promise with its `resolve`, for origins that wait for the test.
 * - `statusOf(res)`: the `Cache-Status` header as a string.
 */
import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpCache, MemoryStore } from '../../src/index.ts';
import type {
  CacheStore,
  CacheStoreStats,
  CacheWriter,
  CachedObject,
  HttpCacheOptions,
  MemoryStoreOptions,
  NewObjectMeta,
  ObjectMeta,
  ServeOptions,
} from '../../src/index.ts';
import { CdnProxy } from '../../hooks/index.ts';
import type { CdnProxyOptions } from '../../hooks/index.ts';
import { startCairn, type Cairn, type Cleanup, type HttpResult } from './servers.ts';

type MaybePromise<T> = T | Promise<T>;

/** A `CacheStore` wrapper whose commits and meta updates can be awaited. */
export class ObservedStore implements CacheStore {
  readonly inner: CacheStore;
  readonly tier: string;
  /** Metas committed so far, in order. */
  readonly commits: ObjectMeta[] = [];
  /** Metas updated (304 merges) so far, in order. */
  readonly updates: ObjectMeta[] = [];
  /** Writers aborted so far (a response that was not stored after all). */
  aborts = 0;
  readonly #events = new EventEmitter();

  constructor(inner: CacheStore) {
    this.inner = inner;
    this.tier = inner.tier;
  }

  /** The first commit of `key` (any key if omitted) from now on, or already seen when `seen`. */
  committed(key?: string): Promise<ObjectMeta> {
    return this.#next('commit', key);
  }

  updated(key?: string): Promise<ObjectMeta> {
    return this.#next('update', key);
  }

  #next(event: string, key: string | undefined): Promise<ObjectMeta> {
    return new Promise((resolve) => {
      const on = (meta: ObjectMeta): void => {
        if (key !== undefined && meta.key !== key) return;
        this.#events.off(event, on);
        resolve(meta);
      };
      this.#events.on(event, on);
    });
  }

  variants(key: string, now?: number): MaybePromise<readonly ObjectMeta[]> {
    return this.inner.variants(key, now);
  }

  open(meta: ObjectMeta, now?: number): MaybePromise<CachedObject | undefined> {
    return this.inner.open(meta, now);
  }

  createWriter(meta: NewObjectMeta): CacheWriter {
    const writer = this.inner.createWriter(meta);
    return {
      write: (chunk) => writer.write(chunk),
      commit: async () => {
        const stored = await writer.commit();
        this.commits.push(stored);
        this.#events.emit('commit', stored);
        return stored;
      },
      abort: () => {
        this.aborts++;
        writer.abort();
      },
    };
  }

  updateMeta(meta: ObjectMeta): MaybePromise<boolean> {
    const done = (ok: boolean): boolean => {
      this.updates.push(meta);
      this.#events.emit('update', meta);
      return ok;
    };
    const r = this.inner.updateMeta(meta);
    return typeof r === 'boolean' ? done(r) : r.then(done);
  }

  delete(key: string, variant?: string): MaybePromise<number> {
    return this.inner.delete(key, variant);
  }

  purgeTag(tag: string): MaybePromise<number> {
    return this.inner.purgeTag(tag);
  }

  purgePrefix(prefix: string): MaybePromise<number> {
    return this.inner.purgePrefix(prefix);
  }

  stats(): CacheStoreStats {
    return this.inner.stats();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

export type CacheOptions = Omit<HttpCacheOptions, 'store'> & { readonly memory?: MemoryStoreOptions };

export function memoryCache(options: CacheOptions = {}): { cache: HttpCache; store: ObservedStore } {
  const { memory, ...rest } = options;
  const store = new ObservedStore(
    new MemoryStore(memory ?? { maxBytes: 16 * 1024 * 1024, maxObjectBytes: 4 * 1024 * 1024 }),
  );
  return { cache: new HttpCache({ ...rest, store }), store };
}

export interface Cdn<P> {
  readonly cairn: Cairn;
  readonly cache: HttpCache;
  readonly store: ObservedStore;
  readonly proxy: P;
}

/**
 * A `CdnProxy` (or `make(options)`, e.g. a subclass) in front of `origin` over a memory cache. The
 * admin listener carries the purge API.
 */
export async function startCdn<P extends CdnProxy = CdnProxy>(
  t: Cleanup,
  origin: { readonly url: string },
  options: {
    cache?: CacheOptions;
    serve?: ServeOptions;
    make?: (options: CdnProxyOptions) => P;
  } = {},
): Promise<Cdn<P>> {
  const { cache, store } = memoryCache(options.cache);
  const proxyOptions: CdnProxyOptions = { origins: [origin.url], cache };
  const proxy = options.make === undefined ? (new CdnProxy(proxyOptions) as P) : options.make(proxyOptions);
  const cairn = await startCairn(t, proxy, { adminRoutes: (a) => proxy.adminRoutes(a), ...options.serve });
  return { cairn, cache, store, proxy };
}

/** A temporary directory, removed after the test. */
export async function tempDir(t: Cleanup, prefix = 'cairn-cache-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export interface Signal<T = void> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
}

export function signal<T = void>(): Signal<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

export function statusOf(res: HttpResult): string {
  const value = res.headers['cache-status'];
  return Array.isArray(value) ? value.join(', ') : (value ?? '');
}
