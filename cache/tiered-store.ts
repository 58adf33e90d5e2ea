/**
 * Memory over disk: the tier pair the engine uses by default.
 *
 * Both tiers give one object the same body id, so a meta read from either tier opens the object in
 * the other, and `updateMeta`/`delete` address both copies at once.
 */
import { isCairnError, type CairnError } from '../src/errors.ts';
import { LmdbStore, type LmdbStoreOptions } from './lmdb-store.ts';
import { MemoryStore, type MemoryStoreOptions } from './memory-store.ts';
import { newObjectId } from './store-ids.ts';
import type { SyncCachedObject } from './store-util.ts';
import type {
  CacheStore,
  CacheStoreStats,
  CacheWriter,
  MaybePromise,
  NewObjectMeta,
  ObjectMeta,
} from './store.ts';

/** One tier's stats, labelled with its tier name (for per-tier metrics). */
export interface TierStats extends CacheStoreStats {
  readonly tier: string;
}

export interface TieredStoreOpenOptions {
  readonly memory: MemoryStoreOptions;
  /** The disk tier; if it cannot be opened the store runs memory-only (see `diskError`). */
  readonly disk?: LmdbStoreOptions;
}

function noop(): void {}

/**
 * Memory tier over LMDB disk tier (tier name `'tiered'`).
 *
 * Lookups try memory, then disk; a disk hit small enough for the memory tier is promoted into it.
 * Writes stream every chunk to both tiers as it arrives, or to disk only once the body outgrows
 * the memory tier's `maxObjectBytes`. Purges and deletes hit both tiers. Without a disk tier (it
 * failed to open) the store is memory-only. `stats()` sums both tiers (an object held by both
 * counts in both: bytes and objects are storage used); `tiers()` gives each tier's own stats.
 *
 * @example
 * ```ts
 * const store = await TieredStore.open({
 *   memory: { maxBytes: 256 * 1024 ** 2, maxObjectBytes: 1024 ** 2 },
 *   disk: { path: '/var/cache/cairn', maxBytes: 20 * 1024 ** 3 },
 * });
 * if (store.diskError) logger.warn({ err: store.diskError }, 'serving from memory only');
 * for (const { tier, bytes } of store.tiers()) cacheBytes.labels(tier).set(bytes);
 * ```
 */
export class TieredStore implements CacheStore {
  readonly tier = 'tiered';
  #memory: MemoryStore;
  #disk: LmdbStore | undefined;
  #diskError: CairnError | undefined;

  /**
   * Open the memory tier and the disk tier. A disk tier that fails with
   * `CAIRN_ERR_CACHE_STORE_OPEN` leaves a memory-only store with `diskError` set; any other error
   * (e.g. an invalid option) is thrown.
   */
  static async open(options: TieredStoreOpenOptions): Promise<TieredStore> {
    const memory = new MemoryStore(options.memory);
    if (options.disk === undefined) return new TieredStore(memory);
    try {
      return new TieredStore(memory, await LmdbStore.open(options.disk));
    } catch (error) {
      if (isCairnError(error) && error.code === 'CAIRN_ERR_CACHE_STORE_OPEN') {
        return new TieredStore(memory, undefined, error);
      }
      throw error;
    }
  }

  constructor(memory: MemoryStore, disk?: LmdbStore, diskError?: CairnError) {
    this.#memory = memory;
    this.#disk = disk;
    this.#diskError = diskError;
  }

  get memory(): MemoryStore {
    return this.#memory;
  }

  /** The disk tier, or `undefined` when running memory-only. */
  get disk(): LmdbStore | undefined {
    return this.#disk;
  }

  /** Why the disk tier is missing, when `open()` could not open it. */
  get diskError(): CairnError | undefined {
    return this.#diskError;
  }

  variants(key: string, now?: number): readonly ObjectMeta[] {
    return this.#withDisk(key, this.#memory.variants(key, now), now);
  }

  /**
   * Memory's variants alone when one of them is accepted: `variants()` lists memory's first and
   * prefers memory's copy of a variant both tiers hold, so the disk could add nothing a lookup would
   * use. A memory hit then costs no disk read.
   */
  variantsFor(key: string, selects: (meta: ObjectMeta) => boolean, now?: number): readonly ObjectMeta[] {
    const inMemory = this.#memory.variants(key, now);
    if (inMemory.some(selects)) return inMemory;
    return this.#withDisk(key, inMemory, now);
  }

  /** Memory's variants of `key` merged with the disk's, memory first and preferred. */
  #withDisk(key: string, inMemory: readonly ObjectMeta[], now: number | undefined): readonly ObjectMeta[] {
    const disk = this.#disk;
    if (disk === undefined) return inMemory;
    // Both lookups are synchronous. Memory may hold only some variants, so merge, preferring memory.
    const onDisk = disk.variants(key, now);
    if (onDisk.length === 0) return inMemory;
    if (inMemory.length === 0) return onDisk;
    const merged = [...inMemory];
    for (const meta of onDisk) {
      if (!inMemory.some((m) => m.variant === meta.variant)) merged.push(meta);
    }
    return merged;
  }

  open(meta: ObjectMeta, now?: number): SyncCachedObject | undefined {
    const hit = this.#memory.open(meta, now);
    if (hit !== undefined || this.#disk === undefined) return hit;
    const object = this.#disk.open(meta, now);
    if (object === undefined || object.meta.bodyLength > this.#memory.maxObjectBytes) return object;
    return this.#promote(object) ?? object;
  }

  createWriter(meta: NewObjectMeta): CacheWriter {
    return new TieredWriter(this.#memory, this.#disk, meta, newObjectId());
  }

  updateMeta(meta: ObjectMeta): MaybePromise<boolean> {
    const inMemory = this.#memory.updateMeta(meta);
    if (this.#disk === undefined) return inMemory;
    return this.#disk.updateMeta(meta).then((onDisk) => onDisk || inMemory);
  }

  /** Counts each object once: the larger of the two tiers' counts (memory holds a subset of disk). */
  delete(key: string, variant?: string): MaybePromise<number> {
    const inMemory = this.#memory.delete(key, variant);
    return this.#disk === undefined
      ? inMemory
      : this.#disk.delete(key, variant).then((n) => Math.max(n, inMemory));
  }

  purgeTag(tag: string): MaybePromise<number> {
    const inMemory = this.#memory.purgeTag(tag);
    return this.#disk === undefined ? inMemory : this.#disk.purgeTag(tag).then((n) => Math.max(n, inMemory));
  }

  purgePrefix(prefix: string): MaybePromise<number> {
    const inMemory = this.#memory.purgePrefix(prefix);
    return this.#disk === undefined
      ? inMemory
      : this.#disk.purgePrefix(prefix).then((n) => Math.max(n, inMemory));
  }

  stats(): CacheStoreStats {
    const memory = this.#memory.stats();
    const disk = this.#disk?.stats();
    if (disk === undefined) return memory;
    return {
      bytes: memory.bytes + disk.bytes,
      objects: memory.objects + disk.objects,
      evictions: memory.evictions + disk.evictions,
      maxBytes: memory.maxBytes + disk.maxBytes,
    };
  }

  /** Each tier's stats: `memory`, then `disk` when present. */
  tiers(): readonly TierStats[] {
    const memory: TierStats = { tier: this.#memory.tier, ...this.#memory.stats() };
    return this.#disk === undefined ? [memory] : [memory, { tier: this.#disk.tier, ...this.#disk.stats() }];
  }

  async close(): Promise<void> {
    await Promise.all([this.#memory.close(), this.#disk?.close()]);
  }

  /** Copy a disk hit into memory (synchronous reads); `undefined` if a chunk vanished meanwhile. */
  #promote(object: SyncCachedObject): SyncCachedObject | undefined {
    const chunks: Buffer[] = [];
    for (let i = 0; i < object.chunkCount; i++) {
      const chunk = object.chunk(i);
      if (chunk === undefined) return undefined;
      // A small disk read may be a slice of Node's shared buffer pool: keep only its own bytes.
      chunks.push(chunk.byteLength === chunk.buffer.byteLength ? chunk : Buffer.copyBytesFrom(chunk));
    }
    return this.#memory.admit(object.meta, chunks);
  }
}

/**
 * Streams each chunk to the memory and disk writers; drops the memory writer as soon as the body
 * outgrows the memory tier, so large bodies are never buffered in memory.
 */
class TieredWriter implements CacheWriter {
  #memoryStore: MemoryStore;
  #memory: CacheWriter | undefined;
  #diskStore: LmdbStore | undefined;
  #disk: CacheWriter | undefined;
  #meta: NewObjectMeta;
  #bytes = 0;

  constructor(memoryStore: MemoryStore, diskStore: LmdbStore | undefined, meta: NewObjectMeta, id: string) {
    this.#memoryStore = memoryStore;
    this.#diskStore = diskStore;
    this.#memory = memoryStore.createWriter(meta, { id });
    this.#disk = diskStore?.createWriter(meta, { id });
    this.#meta = meta;
  }

  write(chunk: Buffer): MaybePromise<void> {
    this.#bytes += chunk.length;
    if (this.#memory !== undefined) {
      if (this.#disk !== undefined && this.#bytes > this.#memoryStore.maxObjectBytes) {
        this.#memory.abort();
        this.#memory = undefined;
      } else {
        // MemoryWriter#write is synchronous: nothing to wait for.
        void this.#memory.write(chunk);
      }
    }
    return this.#disk?.write(chunk);
  }

  async commit(): Promise<ObjectMeta> {
    const { key, variant } = this.#meta;
    const disk = this.#disk === undefined ? undefined : await settle(this.#disk.commit());
    const memory = this.#memory === undefined ? undefined : await settle(this.#memory.commit());
    if (disk === undefined) {
      // Memory-only store: the memory writer is never dropped without a disk tier.
      if (memory?.meta !== undefined) return memory.meta;
      throw memory?.error;
    }
    if (disk.meta !== undefined) {
      // Memory may hold an earlier, smaller copy of this key + variant that would shadow the new one.
      if (memory?.meta === undefined) this.#memoryStore.delete(key, variant);
      return memory?.meta ?? disk.meta;
    }
    if (memory?.meta !== undefined && this.#diskStore !== undefined) {
      // Memory has the new object but disk may still hold an older one, which would resurface once
      // memory evicts the new one: drop it (best effort; the disk tier is failing anyway).
      await this.#diskStore.delete(key, variant).then(noop, noop);
      return memory.meta;
    }
    throw disk.error;
  }

  abort(): void {
    this.#memory?.abort();
    this.#disk?.abort();
  }
}

interface Settled {
  readonly meta: ObjectMeta | undefined;
  readonly error: unknown;
}

function settle(commit: Promise<ObjectMeta>): Promise<Settled> {
  return commit.then(
    (meta): Settled => ({ meta, error: undefined }),
    (error: unknown): Settled => ({ meta: undefined, error }),
  );
}
