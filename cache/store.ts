/**
 * The one storage contract every cache tier implements (memory, LMDB, the tiered pair).
 *
 * Meta is stored apart from the body, and bodies are stored in fixed-size chunks, so that a range,
 * a large object or a streamed hit never needs the whole body in memory. Reads may complete
 * synchronously (a memory hit, or an LMDB read, which is a memory-mapped lookup): callers test for a
 * thenable before awaiting (`MaybePromise`).
 *
 * One shared contract test suite (`test/unit/cache-store-contract.ts`) runs against every tier.
 */

export type MaybePromise<T> = T | Promise<T>;

/** Response headers as stored: lower-case names, repeated headers as arrays. */
export type StoredHeaders = Record<string, string | string[]>;

/** What a tier knows about one stored response (one variant of one cache key). */
export interface ObjectMeta {
  /** Primary cache key (default: scheme + host + path + query). */
  readonly key: string;
  /** Variant discriminator computed from the request headers named by `Vary` ('' when none). */
  readonly variant: string;
  /** The URL the object was fetched for; prefix purges match against it. */
  readonly url: string;
  /** Surrogate keys / cache tags (`Surrogate-Key`, `Cache-Tag`) for purge by tag. */
  readonly tags: readonly string[];
  readonly status: number;
  readonly headers: StoredHeaders;
  /** The serialised RFC 9111 policy (`CachePolicy#toObject()`); opaque to the store. */
  readonly policy: unknown;
  /** Epoch ms when the object was stored (or last revalidated). */
  readonly storedAt: number;
  /** Epoch ms after which the object is of no use even as stale; a tier may drop it from then on. */
  readonly expiresAt: number;
  /** Body length in bytes; set by the writer when the body is complete. */
  readonly bodyLength: number;
  /** Size of every body chunk but the last. */
  readonly chunkSize: number;
  /** Unique id of this stored body; a new write of the same key+variant gets a new id. */
  readonly id: string;
}

/** The fields a writer is given; the tier fills in `bodyLength`, `chunkSize` and `id`. */
export type NewObjectMeta = Omit<ObjectMeta, 'bodyLength' | 'chunkSize' | 'id'>;

/** A readable stored object: meta plus random access to its body chunks. */
export interface CachedObject {
  readonly meta: ObjectMeta;
  /** Number of chunks in the body (0 for an empty body). */
  readonly chunkCount: number;
  /**
   * Chunk `index` (0-based). `undefined` means the chunk is gone (evicted or purged while being
   * read): the caller must treat the object as a miss, never serve a truncated body as complete.
   */
  chunk(index: number): MaybePromise<Buffer | undefined>;
  /**
   * Optional: hand back a Buffer that `chunk()` returned, once nothing holds it any more (it was
   * written to a socket and the write completed). A tier that reads into reusable buffers (LMDB)
   * takes it back; a Buffer it did not lend, or one given back twice, is ignored.
   */
  release?(chunk: Buffer): void;
}

/** Writes one object. Nothing is visible to readers until `commit()` resolves. */
export interface CacheWriter {
  /** Append body bytes; a returned promise asks the caller to wait (backpressure). */
  write(chunk: Buffer): MaybePromise<void>;
  /**
   * Make the object visible atomically (meta and every chunk, or nothing) and return its final meta.
   * Replaces any earlier object with the same key + variant. Rejects if the object is larger than
   * the tier allows or the tier failed; the earlier object then stays.
   */
  commit(): Promise<ObjectMeta>;
  /** Drop everything written so far. Safe to call more than once, and after a failed commit. */
  abort(): void;
}

export interface CacheStoreStats {
  readonly bytes: number;
  readonly objects: number;
  readonly evictions: number;
  readonly maxBytes: number;
}

export interface CacheStore {
  /** Tier name for metrics and `Cache-Status` details: 'memory', 'disk', 'tiered', … */
  readonly tier: string;
  /**
   * Every stored variant of `key` (empty array when none). `now` (epoch ms) is the caller's clock
   * reading, so that one lookup reads the clock once; without it the store reads its own clock.
   */
  variants(key: string, now?: number): MaybePromise<readonly ObjectMeta[]>;
  /**
   * Optional, for stores made of tiers: variants of `key` for a lookup that will use the first one
   * `selects` accepts. The answer may leave out slower tiers once a faster tier holds an accepted
   * variant, but its first accepted variant must be the one `variants(key)` would give first.
   * Without it, lookups call `variants(key)`.
   */
  variantsFor?(
    key: string,
    selects: (meta: ObjectMeta) => boolean,
    now?: number,
  ): MaybePromise<readonly ObjectMeta[]>;
  /**
   * Open a stored object for reading; `undefined` if it is gone (or `meta.id` no longer matches).
   * `now` as for `variants`.
   */
  open(meta: ObjectMeta, now?: number): MaybePromise<CachedObject | undefined>;
  /** Start writing a new object. */
  createWriter(meta: NewObjectMeta): CacheWriter;
  /**
   * Replace the meta of a stored object (same key, variant and id), keeping its body: used to merge
   * a 304 into the stored headers (RFC 9111 §4.3.4). Resolves false if the object is gone.
   */
  updateMeta(meta: ObjectMeta): MaybePromise<boolean>;
  /** Delete one variant, or every variant of `key` when `variant` is omitted. Returns objects removed. */
  delete(key: string, variant?: string): MaybePromise<number>;
  /** Delete every object carrying `tag`. */
  purgeTag(tag: string): MaybePromise<number>;
  /** Delete every object whose `url` starts with `prefix`. */
  purgePrefix(prefix: string): MaybePromise<number>;
  stats(): CacheStoreStats;
  close(): Promise<void>;
}
