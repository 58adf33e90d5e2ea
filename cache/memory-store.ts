/**
 * The in-process memory tier: a byte-bounded LRU of chunked bodies.
 *
 * Every read (`variants`, `open`, `chunk`) is synchronous, so a memory hit never allocates a promise.
 */
import { CairnError } from '../src/errors.ts';
import { StoreChunker, DEFAULT_CHUNK_SIZE } from './store-chunker.ts';
import { newObjectId } from './store-ids.ts';
import { metaSize, positiveInteger, type SyncCachedObject, type WriterOptions } from './store-util.ts';
import type { CacheStore, CacheStoreStats, CacheWriter, NewObjectMeta, ObjectMeta } from './store.ts';

export interface MemoryStoreOptions {
  /** Hard limit on the bytes held (bodies plus an estimate of each meta). */
  readonly maxBytes: number;
  /** Largest object (body bytes) the tier accepts. Default: the smaller of 1 MiB and `maxBytes`. */
  readonly maxObjectBytes?: number;
  /** Body chunk size. Default 64 KiB. */
  readonly chunkSize?: number;
  /** Clock for `expiresAt` (epoch ms); injectable for tests. Default `Date.now`. */
  readonly now?: () => number;
}

const NO_METAS: readonly ObjectMeta[] = [];
const DEFAULT_MAX_OBJECT_BYTES = 1024 * 1024;

/**
 * One stored object. It is also the `CachedObject` handed to readers: its chunk array is never
 * mutated, so a reader that opened it may finish reading even if it is evicted meanwhile.
 */
class MemoryEntry implements SyncCachedObject {
  meta: ObjectMeta;
  readonly chunkCount: number;
  readonly chunks: readonly Buffer[];
  /** Bytes charged against `maxBytes` (body plus meta estimate). */
  size: number;
  /** LRU links: `newer` points towards the most recently used end. */
  newer: MemoryEntry | undefined = undefined;
  older: MemoryEntry | undefined = undefined;
  linked = false;

  constructor(meta: ObjectMeta, chunks: readonly Buffer[], size: number) {
    this.meta = meta;
    this.chunks = chunks;
    this.chunkCount = chunks.length;
    this.size = size;
  }

  chunk(index: number): Buffer | undefined {
    return this.chunks[index];
  }
}

/**
 * Byte-bounded LRU memory tier (tier name `'memory'`).
 *
 * Eviction is least-recently-opened first; objects past `expiresAt` are dropped when a lookup meets
 * them and are evicted like any other cold object. `evictions` counts objects removed to make room.
 *
 * @example
 * ```ts
 * const store = new MemoryStore({ maxBytes: 256 * 1024 * 1024, maxObjectBytes: 1024 * 1024 });
 * const writer = store.createWriter({ key, variant: '', url, tags: [], status: 200, headers, policy,
 *   storedAt: Date.now(), expiresAt: Date.now() + 60_000 });
 * writer.write(body);
 * const meta = await writer.commit();
 * const hit = store.open(meta); // synchronous: a CachedObject or undefined
 * ```
 */
export class MemoryStore implements CacheStore {
  readonly tier = 'memory';
  readonly maxBytes: number;
  readonly maxObjectBytes: number;
  readonly chunkSize: number;
  #now: () => number;
  /** key -> variant -> entry */
  #byKey = new Map<string, Map<string, MemoryEntry>>();
  #byTag = new Map<string, Set<MemoryEntry>>();
  /** Most and least recently used ends of the LRU list. */
  #newest: MemoryEntry | undefined = undefined;
  #oldest: MemoryEntry | undefined = undefined;
  #bytes = 0;
  #objects = 0;
  #evictions = 0;
  #closed = false;

  constructor(options: MemoryStoreOptions) {
    this.maxBytes = positiveInteger('maxBytes', options.maxBytes, 0);
    this.maxObjectBytes = Math.min(
      positiveInteger(
        'maxObjectBytes',
        options.maxObjectBytes,
        Math.min(DEFAULT_MAX_OBJECT_BYTES, this.maxBytes),
      ),
      this.maxBytes,
    );
    this.chunkSize = positiveInteger('chunkSize', options.chunkSize, DEFAULT_CHUNK_SIZE);
    this.#now = options.now ?? Date.now;
  }

  variants(key: string, now: number = this.#now()): readonly ObjectMeta[] {
    const variants = this.#byKey.get(key);
    if (variants === undefined) return NO_METAS;
    const metas: ObjectMeta[] = [];
    for (const entry of variants.values()) {
      if (entry.meta.expiresAt <= now) this.#remove(entry);
      else metas.push(entry.meta);
    }
    return metas;
  }

  open(meta: ObjectMeta, now: number = this.#now()): SyncCachedObject | undefined {
    const entry = this.#byKey.get(meta.key)?.get(meta.variant);
    if (entry === undefined || entry.meta.id !== meta.id) return undefined;
    if (entry.meta.expiresAt <= now) {
      this.#remove(entry);
      return undefined;
    }
    this.#touch(entry);
    return entry;
  }

  createWriter(meta: NewObjectMeta, options?: WriterOptions): CacheWriter {
    return new MemoryWriter(this, meta, options?.id ?? newObjectId());
  }

  updateMeta(meta: ObjectMeta): boolean {
    const entry = this.#byKey.get(meta.key)?.get(meta.variant);
    if (entry === undefined || entry.meta.id !== meta.id) return false;
    const old = entry.meta;
    // The body is the stored one: never let a caller's meta change its length, chunking or id.
    const next: ObjectMeta = { ...meta, bodyLength: old.bodyLength, chunkSize: old.chunkSize, id: old.id };
    this.#untag(entry);
    entry.meta = next;
    this.#tag(entry);
    const size = old.bodyLength + metaSize(next);
    this.#bytes += size - entry.size;
    entry.size = size;
    this.#touch(entry);
    this.#evictFor(0, entry);
    return true;
  }

  delete(key: string, variant?: string): number {
    const variants = this.#byKey.get(key);
    if (variants === undefined) return 0;
    if (variant !== undefined) {
      const entry = variants.get(variant);
      if (entry === undefined) return 0;
      this.#remove(entry);
      return 1;
    }
    let removed = 0;
    for (const entry of [...variants.values()]) {
      this.#remove(entry);
      removed++;
    }
    return removed;
  }

  purgeTag(tag: string): number {
    const entries = this.#byTag.get(tag);
    if (entries === undefined) return 0;
    let removed = 0;
    for (const entry of [...entries]) {
      this.#remove(entry);
      removed++;
    }
    return removed;
  }

  /** Walks every object: a ban is rare and the memory tier is small, so no URL index is kept. */
  purgePrefix(prefix: string): number {
    let removed = 0;
    let entry = this.#oldest;
    while (entry !== undefined) {
      const next = entry.newer;
      if (entry.meta.url.startsWith(prefix)) {
        this.#remove(entry);
        removed++;
      }
      entry = next;
    }
    return removed;
  }

  stats(): CacheStoreStats {
    return {
      bytes: this.#bytes,
      objects: this.#objects,
      evictions: this.#evictions,
      maxBytes: this.maxBytes,
    };
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#byKey.clear();
    this.#byTag.clear();
    this.#newest = undefined;
    this.#oldest = undefined;
    this.#bytes = 0;
    this.#objects = 0;
    return Promise.resolve();
  }

  /**
   * Store a complete object synchronously under its existing meta (id and chunking kept), replacing
   * any object with the same key + variant. Writers commit through it and the tiered store promotes
   * disk hits with it. Returns the stored object, or `undefined` if the store is closed or the object
   * does not fit (over `maxObjectBytes`, or over `maxBytes` once its meta is counted).
   */
  admit(meta: ObjectMeta, chunks: readonly Buffer[]): SyncCachedObject | undefined {
    if (this.#closed || meta.bodyLength > this.maxObjectBytes) return undefined;
    const size = meta.bodyLength + metaSize(meta);
    if (size > this.maxBytes) return undefined;
    return this.#insert(meta, chunks, size);
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  #insert(meta: ObjectMeta, chunks: readonly Buffer[], size: number): MemoryEntry {
    const entry = new MemoryEntry(meta, chunks, size);
    const old = this.#byKey.get(meta.key)?.get(meta.variant);
    if (old !== undefined) this.#remove(old);
    this.#evictFor(entry.size, undefined);
    // Looked up after removal and eviction: either may have dropped the key's (then empty) map.
    let variants = this.#byKey.get(meta.key);
    if (variants === undefined) {
      variants = new Map();
      this.#byKey.set(meta.key, variants);
    }
    variants.set(meta.variant, entry);
    this.#tag(entry);
    this.#link(entry);
    this.#bytes += entry.size;
    this.#objects++;
    return entry;
  }

  /** Evict from the cold end until `incoming` more bytes fit (never `keep`). */
  #evictFor(incoming: number, keep: MemoryEntry | undefined): void {
    let victim = this.#oldest;
    while (victim !== undefined && this.#bytes + incoming > this.maxBytes) {
      const next = victim.newer;
      if (victim !== keep) {
        this.#remove(victim);
        this.#evictions++;
      }
      victim = next;
    }
  }

  #remove(entry: MemoryEntry): void {
    if (!entry.linked) return;
    const variants = this.#byKey.get(entry.meta.key);
    if (variants?.get(entry.meta.variant) === entry) {
      variants.delete(entry.meta.variant);
      if (variants.size === 0) this.#byKey.delete(entry.meta.key);
    }
    this.#untag(entry);
    this.#unlink(entry);
    this.#bytes -= entry.size;
    this.#objects--;
  }

  #tag(entry: MemoryEntry): void {
    for (const tag of entry.meta.tags) {
      let set = this.#byTag.get(tag);
      if (set === undefined) {
        set = new Set();
        this.#byTag.set(tag, set);
      }
      set.add(entry);
    }
  }

  #untag(entry: MemoryEntry): void {
    for (const tag of entry.meta.tags) {
      const set = this.#byTag.get(tag);
      if (set === undefined) continue;
      set.delete(entry);
      if (set.size === 0) this.#byTag.delete(tag);
    }
  }

  #link(entry: MemoryEntry): void {
    entry.linked = true;
    entry.older = this.#newest;
    entry.newer = undefined;
    if (this.#newest !== undefined) this.#newest.newer = entry;
    this.#newest = entry;
    this.#oldest ??= entry;
  }

  #unlink(entry: MemoryEntry): void {
    entry.linked = false;
    if (entry.newer !== undefined) entry.newer.older = entry.older;
    else this.#newest = entry.older;
    if (entry.older !== undefined) entry.older.newer = entry.newer;
    else this.#oldest = entry.newer;
    entry.newer = undefined;
    entry.older = undefined;
  }

  #touch(entry: MemoryEntry): void {
    if (this.#newest === entry) return;
    this.#unlink(entry);
    this.#link(entry);
  }
}

/**
 * Buffers one object's chunks until `commit()`. Once the body passes the tier's `maxObjectBytes`
 * it drops what it holds (no point keeping memory for an object that will be refused) and
 * `commit()` rejects with `CAIRN_ERR_CACHE_OBJECT_TOO_LARGE`.
 */
class MemoryWriter implements CacheWriter {
  #store: MemoryStore;
  #meta: NewObjectMeta;
  #id: string;
  #chunker: StoreChunker;
  #chunks: Buffer[] = [];
  #bytes = 0;
  #state: 'open' | 'too-large' | 'done' = 'open';

  constructor(store: MemoryStore, meta: NewObjectMeta, id: string) {
    this.#store = store;
    this.#meta = meta;
    this.#id = id;
    this.#chunker = new StoreChunker(store.chunkSize);
  }

  /** Body bytes written so far (counted even after the object became too large). */
  get bytes(): number {
    return this.#bytes;
  }

  write(chunk: Buffer): void {
    if (this.#state === 'done') return;
    this.#bytes += chunk.length;
    if (this.#state === 'too-large') return;
    if (this.#bytes > this.#store.maxObjectBytes) {
      this.#state = 'too-large';
      this.#chunks = [];
      this.#chunker.reset();
      return;
    }
    const full = this.#chunker.push(chunk);
    for (const c of full) this.#chunks.push(c);
  }

  commit(): Promise<ObjectMeta> {
    const state = this.#state;
    this.#state = 'done';
    if (state === 'too-large') {
      return Promise.reject(
        new CairnError(
          'CAIRN_ERR_CACHE_OBJECT_TOO_LARGE',
          `object of ${this.#bytes}+ bytes exceeds the memory tier's maxObjectBytes (${this.#store.maxObjectBytes})`,
        ),
      );
    }
    if (state === 'done') {
      return Promise.reject(
        new CairnError('CAIRN_ERR_CACHE_STORE_WRITE', 'this cache writer was already committed or aborted'),
      );
    }
    const last = this.#chunker.finish();
    if (last !== undefined) this.#chunks.push(last);
    const meta: ObjectMeta = {
      ...this.#meta,
      bodyLength: this.#bytes,
      chunkSize: this.#store.chunkSize,
      id: this.#id,
    };
    if (this.#store.admit(meta, this.#chunks) === undefined) {
      this.#chunks = [];
      return Promise.reject(
        this.#store.closed
          ? new CairnError('CAIRN_ERR_CACHE_STORE_WRITE', 'the memory cache store is closed')
          : new CairnError(
              'CAIRN_ERR_CACHE_OBJECT_TOO_LARGE',
              'object and its meta exceed the memory tier maxBytes',
            ),
      );
    }
    this.#chunks = [];
    return Promise.resolve(meta);
  }

  abort(): void {
    this.#state = 'done';
    this.#chunks = [];
    this.#chunker.reset();
  }
}
