/**
 * The disk tier: an LMDB environment shared by every worker process on the machine.
 *
 * Layout (named databases in one environment, all keys binary so ranges are plain byte ranges):
 *
 * | db        | key                                  | value                                  |
 * |-----------|--------------------------------------|----------------------------------------|
 * | `meta`    | h(key) ‖ h(variant)  (32 bytes)      | `{ meta, seq, size }` (JSON)           |
 * | `chunks`  | body id (16) ‖ index (uint32 BE)     | chunk bytes                            |
 * | `pending` | body id (16)                         | `{ pid, instance, startedAt }` (JSON)  |
 * | `order`   | seq (uint64 BE)                      | meta key: oldest-first eviction order  |
 * | `tags`    | h(tag) ‖ meta key                    | empty                                  |
 * | `urls`    | url (first 400 chars) ‖ 0x00 ‖ meta key | empty                               |
 * | `state`   | 'counters'                           | `{ bytes, objects, evictions, seq }`   |
 *
 * `h` is the first 16 bytes of SHA-256: fixed-size keys stay far below LMDB's key size limit
 * whatever the URL or `Vary` values, and the stored meta carries the real key, which every read
 * checks, so a hash collision can only cost a miss, never serve the wrong object.
 *
 * Atomicity: body chunks are written under a fresh body id as they arrive (registered in `pending`
 * first); the meta record, its indexes, the byte counters and the removal of the `pending` entry
 * are one LMDB transaction at `commit()`. A writer killed at any point leaves at most unreferenced
 * chunks plus their `pending` entry, which the next `open()` of the path deletes once the writer's
 * process is gone. Byte and object counters live in the `state` record, updated in the same
 * transactions, so every process sharing the path sees the same totals.
 */
import { hash } from 'node:crypto';
import { open as openLmdb, type Database, type RootDatabase } from 'lmdb';
import { CairnError } from '../src/errors.ts';
import { StoreChunker, DEFAULT_CHUNK_SIZE } from './store-chunker.ts';
import { newObjectId, objectIdBytes } from './store-ids.ts';
import {
  isThenable,
  metaSize,
  positiveInteger,
  type SyncCachedObject,
  type WriterOptions,
} from './store-util.ts';
import type { CacheStore, CacheStoreStats, CacheWriter, NewObjectMeta, ObjectMeta } from './store.ts';

export interface LmdbStoreOptions {
  /** Directory of the LMDB environment (created if missing). */
  readonly path: string;
  /** Hard limit on the bytes of stored objects (bodies plus an estimate of each meta). */
  readonly maxBytes: number;
  /** Largest object (body bytes) the tier accepts. Default: `maxBytes`. */
  readonly maxObjectBytes?: number;
  /** Body chunk size. Default 64 KiB. */
  readonly chunkSize?: number;
  /** Clock for `expiresAt` (epoch ms); injectable for tests. Default `Date.now`. */
  readonly now?: () => number;
  /**
   * Initial LMDB map size in bytes. lmdb-js grows the map on demand, so this is a starting point,
   * not a limit: `maxBytes` is the limit.
   */
  readonly mapSize?: number;
  /**
   * A pending body older than this is collected on open even if a process with the writer's pid
   * still runs (pids are reused). Default one hour. A writer whose chunks were collected fails its
   * `commit()` rather than publish a body with holes.
   */
  readonly orphanMaxAgeMs?: number;
}

/** What `verify()` found: a consistency report over the whole environment. */
export interface LmdbStoreAudit {
  readonly objects: number;
  /** Sum of the stored objects' sizes, recomputed from their records. */
  readonly countedBytes: number;
  /** The shared byte counter (should equal `countedBytes`). */
  readonly bytes: number;
  /** Chunk records in the environment. */
  readonly chunks: number;
  /** Chunks that visible objects reference (should equal `chunks` when no write is in flight). */
  readonly referencedChunks: number;
  /** Chunks that a visible object references but that are missing (should be 0). */
  readonly missingChunks: number;
  /** Bodies being written (or left by a crashed writer and not yet collected). */
  readonly pendingBodies: number;
}

interface StoredRecord {
  readonly meta: ObjectMeta;
  /** Position in the eviction order; renewed on commit and on `updateMeta`. */
  readonly seq: number;
  /** Bytes charged against `maxBytes`. */
  readonly size: number;
}

interface PendingRecord {
  readonly pid: number;
  readonly instance: string;
  readonly startedAt: number;
}

/**
 * The shared totals. Every transaction that changes a meta record rewrites this record, with a
 * `stamp` no transaction used before: unchanged bytes here mean an unchanged `meta` database,
 * which lets a lookup reuse the variants it listed last time (see `KeyMemo.variantsFor`).
 */
interface Counters {
  bytes: number;
  objects: number;
  evictions: number;
  seq: number;
  stamp?: string;
}

interface Databases {
  readonly meta: Database<StoredRecord, Buffer>;
  /**
   * The same `meta` database for the hit path: its decoder sees the record's bytes in lmdb-js's
   * read buffer (no copy) and decodes them only when they differ from the last decoded ones.
   */
  readonly metaRead: Database<StoredRecord, Buffer>;
  readonly chunks: Database<Buffer, Buffer>;
  readonly pending: Database<PendingRecord, Buffer>;
  readonly order: Database<Buffer, Buffer>;
  readonly tags: Database<Buffer, Buffer>;
  readonly urls: Database<Buffer, Buffer>;
  readonly state: Database<Counters, string>;
  /** The same `state` database read as bytes, to compare the counters record without decoding it. */
  readonly stateRaw: Database<Buffer, string>;
}

const COUNTERS_KEY = 'counters';
const HASH_BYTES = 16;
const META_KEY_BYTES = 2 * HASH_BYTES;
/** URL characters kept in the prefix-purge index: 400 chars stay under LMDB's ~1978-byte key limit in UTF-8. */
const URL_INDEX_CHARS = 400;
const DEFAULT_ORPHAN_MAX_AGE_MS = 60 * 60 * 1000;
/** Chunk puts in flight before `write()` asks the caller to wait. */
const HIGH_WATER_PUTS = 4;
const EMPTY = Buffer.alloc(0);
const ZERO = Buffer.from([0]);
const FF = Buffer.from([0xff]);
/** Appended to a prefix, sorts after every key of the layout that starts with that prefix. */
const RANGE_TAIL = Buffer.alloc(META_KEY_BYTES + 1, 0xff);
const NO_METAS: readonly ObjectMeta[] = [];
const EMPTY_VARIANT_HASH = digest('');

/** Cache keys whose hashes and decoded meta records are kept (see `KeyMemo`); cleared when full. */
const KEY_MEMO_LIMIT = 2048;
/** Decoded records kept per cache key (variants, and a version or two being replaced). */
const DECODED_PER_KEY = 4;
/** Meta keys kept per cache key, by variant. */
const META_KEYS_PER_KEY = 32;

/** A meta record's bytes as read, and what they decode to. */
interface DecodedRecord {
  readonly raw: Buffer;
  readonly record: StoredRecord;
}

/**
 * What the hit path would otherwise recompute on every lookup of one cache key: its hashed range
 * prefix and end, its meta keys by variant, and the records last decoded from its meta bytes. A
 * record is reused only when the bytes just read are identical to the ones it was decoded from, so
 * a change made by any process (a new id, a 304 merge, a new seq) is seen at once; memoised
 * records are shared and never mutated (`ObjectMeta` is read-only), which also lets
 * `StoredPolicy.fromObject` memoise per record.
 */
class KeyMemo {
  readonly prefix: Buffer;
  readonly end: Buffer;
  readonly metaKeys = new Map<string, Buffer>();
  decoded: DecodedRecord[] = [];
  /** The body id last opened under this key, and its bytes. */
  #id: string | undefined = undefined;
  #idBytes: Buffer | undefined = undefined;
  /** The store's counters generation (see `LmdbStore#generation`) `#variants` was listed under. */
  #generation = -1;
  #variants: readonly ObjectMeta[] = NO_METAS;

  constructor(key: string) {
    this.prefix = digest(key);
    this.end = Buffer.concat([this.prefix, RANGE_TAIL]);
  }

  metaKey(variant: string): Buffer {
    let metaKey = this.metaKeys.get(variant);
    if (metaKey === undefined) {
      metaKey = Buffer.concat(
        [this.prefix, variant === '' ? EMPTY_VARIANT_HASH : digest(variant)],
        META_KEY_BYTES,
      );
      if (this.metaKeys.size < META_KEYS_PER_KEY) this.metaKeys.set(variant, metaKey);
    }
    return metaKey;
  }

  /** The variants last listed for this key, if listed under counters generation `generation`. */
  variantsFor(generation: number): readonly ObjectMeta[] | undefined {
    return generation === this.#generation ? this.#variants : undefined;
  }

  rememberVariants(generation: number, variants: readonly ObjectMeta[]): void {
    this.#generation = generation;
    this.#variants = variants;
  }

  /** `objectIdBytes(id)`, remembered for the id last asked for. */
  idBytes(id: string): Buffer | undefined {
    if (id !== this.#id) {
      this.#id = id;
      this.#idBytes = objectIdBytes(id);
    }
    return this.#idBytes;
  }

  /**
   * The record `bytes` encode (lmdb-js's `json` encoding: UTF-8 JSON). `bytes` may be lmdb-js's
   * reusable read buffer (its `length` is the value's size): it is compared in place, and copied
   * only when it is new.
   */
  decode(bytes: Buffer): StoredRecord {
    const decoded = this.decoded;
    for (let i = 0; i < decoded.length; i++) {
      const d = decoded[i]!;
      if (sameBytes(d.raw, bytes)) return d.record;
    }
    const raw = ownCopy(bytes);
    const record = JSON.parse(raw.toString('utf8')) as StoredRecord;
    if (decoded.length >= DECODED_PER_KEY) decoded.shift();
    decoded.push({ raw, record });
    return record;
  }
}

/** True when `kept` holds exactly the bytes of `read` (lmdb-js's read buffer: its `length` is the value's size). */
function sameBytes(kept: Buffer, read: Buffer): boolean {
  const size = read.length;
  return kept.length === size && kept.compare(read, 0, size) === 0;
}

/**
 * A copy of a value in lmdb-js's reusable read buffer, to keep past the next read. An explicit
 * view: Buffer#copy trusts `length`, which lmdb-js overrides on that buffer.
 */
function ownCopy(read: Buffer): Buffer {
  const size = read.length;
  const copy = Buffer.allocUnsafeSlow(size);
  copy.set(new Uint8Array(read.buffer, read.byteOffset, size));
  return copy;
}

/** The memo of the key a `metaRead` read is for, set just before the (synchronous) read. */
let reading: KeyMemo | undefined;

/** Live store instances of this process, so `open()` can tell our own abandoned bodies from live ones. */
const liveInstances = new Set<string>();

function digest(text: string): Buffer {
  return hash('sha256', text, 'buffer').subarray(0, HASH_BYTES);
}

function metaKeyOf(key: string, variant: string): Buffer {
  return Buffer.concat([digest(key), variant === '' ? EMPTY_VARIANT_HASH : digest(variant)], META_KEY_BYTES);
}

/** The key of chunk `index` of body `id`, written into `key` (a new buffer unless given one to reuse). */
function chunkKey(id: Buffer, index: number, key = Buffer.allocUnsafe(HASH_BYTES + 4)): Buffer {
  key.set(id);
  key.writeUInt32BE(index, HASH_BYTES);
  return key;
}

function seqKey(seq: number): Buffer {
  const key = Buffer.alloc(8);
  key.writeUIntBE(seq, 2, 6);
  return key;
}

function tagKey(tag: string, metaKey: Buffer): Buffer {
  return Buffer.concat([digest(tag), metaKey]);
}

function urlIndexPrefix(url: string): Buffer {
  return Buffer.from(url.length > URL_INDEX_CHARS ? url.slice(0, URL_INDEX_CHARS) : url);
}

function urlKey(url: string, metaKey: Buffer): Buffer {
  return Buffer.concat([urlIndexPrefix(url), ZERO, metaKey]);
}

function chunkCountOf(meta: ObjectMeta): number {
  return meta.bodyLength === 0 ? 0 : Math.ceil(meta.bodyLength / meta.chunkSize);
}

function noop(): void {}

/** Values up to this size are copied into a shared slab (see `smallCopyTarget`), like any socket read. */
const SMALL_VALUE_BYTES = 4096;
/** Read buffers kept for reuse per store (at the default 64 KiB chunk size: 4 MiB). */
const READ_POOL_BUFFERS = 64;

/**
 * Reusable buffers for chunk reads. A 64 KiB hit used to allocate a 64 KiB ArrayBuffer, and the
 * garbage collector then spent more time on those than the read itself took. A buffer is lent by
 * `take()` and comes back through `release()` only from a caller that owned it alone (the
 * engine's write of it finished); one not given back is simply collected.
 */
class ReadBufferPool {
  readonly #size: number;
  readonly #free: ArrayBuffer[] = [];
  readonly #lent = new WeakSet<Buffer>();

  constructor(size: number) {
    this.#size = size;
  }

  /** A Buffer of `length` bytes (at most the pool's size), contents undefined. */
  take(length: number): Buffer {
    const buffer = Buffer.from(this.#free.pop() ?? new ArrayBuffer(this.#size), 0, length);
    this.#lent.add(buffer);
    return buffer;
  }

  release(buffer: Buffer): void {
    // `delete` is true once per lent Buffer: a second release of it cannot hand it out twice.
    if (this.#lent.delete(buffer) && this.#free.length < READ_POOL_BUFFERS)
      this.#free.push(buffer.buffer as ArrayBuffer);
  }
}

/**
 * Small copies are cut from one 64 KiB slab at a time. `Buffer.allocUnsafe` cuts them from Node's
 * 8 KiB pool, which a 1 KiB hit path used up every eighth read (a new ArrayBuffer each time, about
 * 0.2 µs a hit on average). A slab lives while any copy cut from it does, as Node's pool does.
 */
const SLAB_BYTES = 64 * 1024;
let slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
let slabOffset = 0;

function smallCopyTarget(size: number): Buffer {
  if (slabOffset + size > SLAB_BYTES) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    slabOffset = 0;
  }
  const target = slab.subarray(slabOffset, slabOffset + size);
  // 8-byte aligned, like Node's pool, so typed-array views of a copy stay possible.
  slabOffset = (slabOffset + size + 7) & ~7;
  return target;
}

/**
 * A copy of the value at `key`: the caller keeps it past this read (a socket write), so lmdb-js's
 * reusable read buffer cannot be handed out. Cheaper than lmdb-js's `getBinary`, whose copy
 * zero-fills a new ArrayBuffer first: small values are cut from a shared slab (like any socket
 * read), larger ones from the store's `ReadBufferPool`. `TieredStore` copies a chunk out before
 * the memory tier keeps it.
 */
function readCopy(
  db: Database<Buffer, Buffer>,
  key: Buffer,
  pool: ReadBufferPool,
  poolSize: number,
): Buffer | undefined {
  const bytes = db.getBinaryFast(key);
  if (bytes === undefined) return undefined;
  // lmdb-js sets `length` to the value's size on its read buffer; the view below is explicit.
  const size = bytes.length;
  const copy =
    size <= SMALL_VALUE_BYTES
      ? smallCopyTarget(size)
      : size <= poolSize
        ? pool.take(size)
        : Buffer.allocUnsafe(size);
  copy.set(new Uint8Array(bytes.buffer, bytes.byteOffset, size));
  return copy;
}

/** True when the process that registered a pending body can no longer finish it. */
function isOrphan(record: PendingRecord, now: number, maxAgeMs: number): boolean {
  if (now - record.startedAt > maxAgeMs) return true;
  if (record.pid === process.pid) return !liveInstances.has(record.instance);
  try {
    process.kill(record.pid, 0);
    return false;
  } catch (error) {
    // EPERM: the process exists (owned by someone else), so it may still be writing.
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * lmdb-js rejects a failed commit with a generic error whose `commitError` is a second, rejected
 * promise holding the real cause (EIO, ENOSPC, …). That promise must be handled or it becomes an
 * unhandled rejection; wait for it briefly to carry the real cause.
 */
async function writeError(message: string, error: unknown): Promise<CairnError> {
  if (error instanceof CairnError) return error;
  let cause = error;
  const commitError = (error as { commitError?: unknown } | null)?.commitError;
  if (isThenable(commitError)) {
    cause = await Promise.race([
      commitError.then(
        () => error,
        (real: unknown) => real,
      ),
      new Promise<unknown>((resolve) => setImmediate(resolve, error)),
    ]);
  }
  return new CairnError('CAIRN_ERR_CACHE_STORE_WRITE', message, { cause });
}

/** Mark lmdb-js's `commitError` companion promise as handled (see `writeError`). */
function handleCommitError(error: unknown): void {
  const commitError = (error as { commitError?: unknown } | null)?.commitError;
  if (isThenable(commitError)) commitError.then(noop, noop);
}

/** The store's internals that its writer and object classes use (a "friend" accessor, set below). */
let internals: {
  readonly dbs: (store: LmdbStore) => Databases;
  readonly readChunk: (store: LmdbStore, id: Buffer, index: number) => Buffer | undefined;
  readonly releaseChunk: (store: LmdbStore, chunk: Buffer) => void;
  readonly register: (store: LmdbStore, id: Buffer) => Promise<unknown>;
  readonly commit: (
    store: LmdbStore,
    meta: ObjectMeta,
    id: Buffer,
    registered: boolean,
    tail: Buffer | undefined,
    tailIndex: number,
  ) => Promise<void>;
  readonly discard: (store: LmdbStore, id: Buffer, after: Promise<unknown> | undefined) => void;
  readonly track: (store: LmdbStore, writer: LmdbWriter, open: boolean) => void;
};

/**
 * LMDB disk tier (tier name `'disk'`): persistent across restarts and shared by every process that
 * opens the same path (node:cluster workers).
 *
 * Eviction is oldest-first (by commit, or by the last `updateMeta`): a hit stays a pure read, with
 * no write transaction on the hit path. True LRU on disk would turn every hit into a write, and
 * LMDB has one writer at a time across all processes. Hot objects live in the memory tier above,
 * which is LRU, so together they behave like a segmented LRU.
 *
 * @example
 * ```ts
 * const disk = await LmdbStore.open({ path: '/var/cache/cairn', maxBytes: 10 * 1024 ** 3 });
 * const [meta] = disk.variants(key); // synchronous: a memory-mapped read
 * const object = meta && disk.open(meta);
 * const first = object?.chunk(0); // Buffer | undefined, synchronously
 * await disk.close();
 * ```
 */
export class LmdbStore implements CacheStore {
  readonly tier = 'disk';
  readonly path: string;
  readonly maxBytes: number;
  readonly maxObjectBytes: number;
  readonly chunkSize: number;
  #now: () => number;
  #root: RootDatabase;
  #dbs: Databases;
  #instance = newObjectId();
  /** Counters records this instance has written (see `#saveCounters`). */
  #stamps = 0;
  #orphansCollected = 0;
  #closed = false;
  /** Writers not yet committed or aborted: aborted on close. */
  #writers = new Set<LmdbWriter>();
  /** Background transactions (cleanup, lazy expiry) that close must wait for. */
  #background = new Set<Promise<unknown>>();
  /** Ids of expired objects whose removal is already queued. */
  #dropping = new Set<string>();
  /** Per cache key: hashes and decoded meta records for the hit path (see `KeyMemo`). */
  #memo = new Map<string, KeyMemo>();
  #readPool: ReadBufferPool;
  /**
   * What `variants()` last listed, until the end of the synchronous run that listed it: reads in
   * one run all see one lmdb-js read snapshot (it is renewed from a timer), so `open()` of a meta
   * from that listing needs no second read of its record.
   */
  #listedNow: readonly ObjectMeta[] | undefined = undefined;
  #forgetListing = (): void => {
    this.#listedNow = undefined;
  };
  /** The key of a chunk being read (lmdb-js copies a key before it reads). */
  #chunkKey = Buffer.alloc(HASH_BYTES + 4);
  /**
   * Counters generation: a number that changes whenever the counters record read differs from
   * the one read before (every transaction that changes meta rewrites it with a new stamp). A
   * key's listing holds while it was made under the current generation.
   */
  #generation = 0;
  #generationStamp: Buffer | undefined = undefined;
  /**
   * The counters record was read in this turn of the event loop and no commit of ours came since.
   * Until lmdb-js renews its read snapshot nothing read can change, and it renews only after its
   * own commits (ours clear this flag) and from a timer, which runs in a later phase of the loop
   * than the check phase that clears this flag: requests served in one poll phase (dozens under
   * load) read the counters once.
   */
  #generationChecked = false;
  #endTurn = (): void => {
    this.#generationChecked = false;
  };

  static {
    internals = {
      dbs: (store) => store.#dbs,
      readChunk: (store, id, index) => store.#readChunk(id, index),
      releaseChunk: (store, chunk) => store.#readPool.release(chunk),
      register: (store, id) => store.#register(id),
      commit: (store, meta, id, registered, tail, tailIndex) =>
        store.#commit(meta, id, registered, tail, tailIndex),
      discard: (store, id, after) => store.#discard(id, after),
      track: (store, writer, open) => {
        if (open) store.#writers.add(writer);
        else store.#writers.delete(writer);
      },
    };
  }

  /**
   * Open (or create) the environment at `options.path`, and collect bodies left by writers that
   * crashed. Throws `CAIRN_ERR_CACHE_STORE_OPEN` (with the LMDB error as `cause`) if the path
   * cannot be opened.
   */
  static async open(options: LmdbStoreOptions): Promise<LmdbStore> {
    const maxBytes = positiveInteger('maxBytes', options.maxBytes, 0);
    const maxObjectBytes = Math.min(
      positiveInteger('maxObjectBytes', options.maxObjectBytes, maxBytes),
      maxBytes,
    );
    const chunkSize = positiveInteger('chunkSize', options.chunkSize, DEFAULT_CHUNK_SIZE);
    const orphanMaxAgeMs = positiveInteger(
      'orphanMaxAgeMs',
      options.orphanMaxAgeMs,
      DEFAULT_ORPHAN_MAX_AGE_MS,
    );
    let root: RootDatabase;
    let dbs: Databases;
    try {
      root = openLmdb({
        path: options.path,
        maxDbs: 8,
        ...(options.mapSize === undefined ? {} : { mapSize: options.mapSize }),
        // With event-turn batching, lmdb-js leaves an internal promise unhandled when a commit
        // fails (disk full), which would crash the process; explicit transactions need no batching.
        eventTurnBatching: false,
      });
      dbs = {
        meta: root.openDB<StoredRecord, Buffer>({ name: 'meta', encoding: 'json', keyEncoding: 'binary' }),
        metaRead: root.openDB<StoredRecord, Buffer>({
          name: 'meta',
          keyEncoding: 'binary',
          // lmdb-js's types omit the custom encoder option; it is documented and supported.
          ...({
            encoder: {
              encode: (value: StoredRecord) => Buffer.from(JSON.stringify(value)),
              // Synchronous reads only: `reading` is the memo of the key being read (see variants/open).
              decode: (bytes: Buffer) => (reading ?? new KeyMemo('')).decode(bytes),
            },
          } as object),
        }),
        chunks: root.openDB<Buffer, Buffer>({ name: 'chunks', encoding: 'binary', keyEncoding: 'binary' }),
        pending: root.openDB<PendingRecord, Buffer>({
          name: 'pending',
          encoding: 'json',
          keyEncoding: 'binary',
        }),
        order: root.openDB<Buffer, Buffer>({ name: 'order', encoding: 'binary', keyEncoding: 'binary' }),
        tags: root.openDB<Buffer, Buffer>({ name: 'tags', encoding: 'binary', keyEncoding: 'binary' }),
        urls: root.openDB<Buffer, Buffer>({ name: 'urls', encoding: 'binary', keyEncoding: 'binary' }),
        state: root.openDB<Counters, string>({ name: 'state', encoding: 'json' }),
        stateRaw: root.openDB<Buffer, string>({ name: 'state', encoding: 'binary' }),
      };
    } catch (error) {
      throw new CairnError('CAIRN_ERR_CACHE_STORE_OPEN', `cannot open the LMDB cache at ${options.path}`, {
        cause: error,
      });
    }
    const store = new LmdbStore(options, root, dbs, maxBytes, maxObjectBytes, chunkSize);
    try {
      // Release reader slots held by dead processes, or their snapshots would pin freed pages.
      root.readerCheck();
      await store.#collectOrphans(orphanMaxAgeMs);
    } catch (error) {
      await store.close().catch(noop);
      throw new CairnError('CAIRN_ERR_CACHE_STORE_OPEN', `cannot open the LMDB cache at ${options.path}`, {
        cause: error,
      });
    }
    return store;
  }

  private constructor(
    options: LmdbStoreOptions,
    root: RootDatabase,
    dbs: Databases,
    maxBytes: number,
    maxObjectBytes: number,
    chunkSize: number,
  ) {
    this.path = options.path;
    this.maxBytes = maxBytes;
    this.maxObjectBytes = maxObjectBytes;
    this.chunkSize = chunkSize;
    this.#readPool = new ReadBufferPool(chunkSize);
    this.#now = options.now ?? Date.now;
    this.#root = root;
    this.#dbs = dbs;
    // A commit of ours ends the read snapshot (lmdb-js renews it at the next read).
    root.on('aftercommit', this.#endTurn);
    liveInstances.add(this.#instance);
  }

  /** Bodies of crashed writers that this instance deleted when it opened. */
  get orphansCollected(): number {
    return this.#orphansCollected;
  }

  variants(key: string, now: number = this.#now()): readonly ObjectMeta[] {
    if (this.#closed) return NO_METAS;
    const memo = this.#memoOf(key);
    // A range scan allocates an iterator, a decoder and closures per call, and under load enough
    // of that outlived a young-generation GC to double the cost of a hit. While no transaction
    // has changed the meta database (the counters record is unchanged), the last listing holds.
    const generation = this.#currentGeneration();
    let listed = generation === -1 ? undefined : memo.variantsFor(generation);
    if (listed === undefined) {
      listed = this.#listVariants(key, memo);
      if (generation !== -1) memo.rememberVariants(generation, listed);
    }
    if (this.#listedNow === undefined) queueMicrotask(this.#forgetListing);
    this.#listedNow = listed;
    let metas: ObjectMeta[] | undefined;
    for (let i = 0; i < listed.length; i++) {
      const meta = listed[i]!;
      if (meta.expiresAt <= now) {
        this.#dropExpired(meta);
        continue;
      }
      (metas ??= []).push(meta);
    }
    return metas === undefined ? NO_METAS : metas.length === listed.length ? listed : metas;
  }

  /** The counters generation of the current read snapshot; -1 while there is no counters record. */
  #currentGeneration(): number {
    if (this.#generationChecked) return this.#generation;
    // lmdb-js's reusable read buffer: compared in place, copied only when it changed.
    const stamp = this.#dbs.stateRaw.getBinaryFast(COUNTERS_KEY);
    if (stamp === undefined) return -1;
    const known = this.#generationStamp;
    if (known === undefined || !sameBytes(known, stamp)) {
      this.#generationStamp = ownCopy(stamp);
      this.#generation++;
    }
    this.#generationChecked = true;
    setImmediate(this.#endTurn);
    return this.#generation;
  }

  /** Every stored variant of `key`, expired or not, from a range scan of its meta records. */
  #listVariants(key: string, memo: KeyMemo): readonly ObjectMeta[] {
    let metas: ObjectMeta[] | undefined;
    reading = memo;
    for (const { value } of this.#dbs.metaRead.getRange({ start: memo.prefix, end: memo.end })) {
      const meta = value.meta;
      if (meta.key === key) (metas ??= []).push(meta);
    }
    return metas ?? NO_METAS;
  }

  open(meta: ObjectMeta, now: number = this.#now()): SyncCachedObject | undefined {
    if (this.#closed) return undefined;
    const memo = this.#memoOf(meta.key);
    let current = meta;
    if (this.#listedNow?.includes(meta) !== true) {
      reading = memo;
      const record = this.#dbs.metaRead.get(memo.metaKey(meta.variant));
      if (record === undefined || record.meta.id !== meta.id || record.meta.key !== meta.key)
        return undefined;
      current = record.meta;
    }
    if (current.expiresAt <= now) {
      this.#dropExpired(current);
      return undefined;
    }
    const id = memo.idBytes(current.id);
    return id === undefined ? undefined : new LmdbObject(this, current, id);
  }

  /** The chunk's bytes, copied out of lmdb-js's read buffer; `undefined` once the body is gone. */
  #readChunk(id: Buffer, index: number): Buffer | undefined {
    if (this.#closed) return undefined;
    return readCopy(this.#dbs.chunks, chunkKey(id, index, this.#chunkKey), this.#readPool, this.chunkSize);
  }

  #memoOf(key: string): KeyMemo {
    let memo = this.#memo.get(key);
    if (memo === undefined) {
      // Bounded: a full memo starts over (the hot keys come back on their next hit).
      if (this.#memo.size >= KEY_MEMO_LIMIT) this.#memo.clear();
      memo = new KeyMemo(key);
      this.#memo.set(key, memo);
    }
    return memo;
  }

  createWriter(meta: NewObjectMeta, options?: WriterOptions): CacheWriter {
    const id = options?.id ?? newObjectId();
    const idBytes = objectIdBytes(id);
    if (idBytes === undefined) {
      throw new CairnError('CAIRN_ERR_INTERNAL', `not a cache body id: ${JSON.stringify(id)}`);
    }
    return new LmdbWriter(this, meta, id, idBytes);
  }

  updateMeta(meta: ObjectMeta): Promise<boolean> {
    return this.#transact('update cached meta', () => {
      const dbs = this.#dbs;
      const metaKey = metaKeyOf(meta.key, meta.variant);
      const record = dbs.meta.get(metaKey);
      if (record === undefined || record.meta.id !== meta.id || record.meta.key !== meta.key) return false;
      const old = record.meta;
      const next: ObjectMeta = { ...meta, bodyLength: old.bodyLength, chunkSize: old.chunkSize, id: old.id };
      const counters = this.#counters();
      this.#unindex(metaKey, record);
      // A revalidated object is in use: it moves to the young end of the eviction order.
      const updated: StoredRecord = {
        meta: next,
        seq: ++counters.seq,
        size: old.bodyLength + metaSize(next),
      };
      counters.bytes += updated.size - record.size;
      this.#index(metaKey, updated);
      this.#evict(counters, 0, metaKey);
      this.#saveCounters(counters);
      return true;
    });
  }

  delete(key: string, variant?: string): Promise<number> {
    return this.#transact('delete cached objects', () => {
      if (variant !== undefined)
        return this.#removeKeys([metaKeyOf(key, variant)], (meta) => meta.key === key);
      const prefix = digest(key);
      const keys = this.#dbs.meta.getKeys({ start: prefix, end: Buffer.concat([prefix, RANGE_TAIL]) });
      return this.#removeKeys(Array.from(keys, copyKey), (meta) => meta.key === key);
    });
  }

  purgeTag(tag: string): Promise<number> {
    return this.#transact('purge cached objects by tag', () => {
      const prefix = digest(tag);
      const keys = this.#dbs.tags.getKeys({ start: prefix, end: Buffer.concat([prefix, RANGE_TAIL]) });
      const metaKeys = Array.from(keys, (k) => Buffer.from(k.subarray(k.length - META_KEY_BYTES)));
      return this.#removeKeys(metaKeys, (meta) => meta.tags.includes(tag));
    });
  }

  purgePrefix(prefix: string): Promise<number> {
    return this.#transact('purge cached objects by prefix', () => {
      const start = urlIndexPrefix(prefix);
      const keys = this.#dbs.urls.getKeys({ start, end: Buffer.concat([start, FF]) });
      const metaKeys = Array.from(keys, (k) => Buffer.from(k.subarray(k.length - META_KEY_BYTES)));
      return this.#removeKeys(metaKeys, (meta) => meta.url.startsWith(prefix));
    });
  }

  /** Totals shared by every process using the path (read from the database, not process memory). */
  stats(): CacheStoreStats {
    const counters = this.#closed ? undefined : this.#dbs.state.get(COUNTERS_KEY);
    return {
      bytes: counters?.bytes ?? 0,
      objects: counters?.objects ?? 0,
      evictions: counters?.evictions ?? 0,
      maxBytes: this.maxBytes,
    };
  }

  /**
   * Check the whole environment: every visible object's chunks exist, the shared counters match
   * the records, and no chunk is unreferenced. O(stored objects); for tests and offline checks.
   */
  verify(): LmdbStoreAudit {
    const dbs = this.#dbs;
    let objects = 0;
    let countedBytes = 0;
    let referencedChunks = 0;
    let missingChunks = 0;
    for (const { value } of dbs.meta.getRange({})) {
      objects++;
      countedBytes += value.size;
      const count = chunkCountOf(value.meta);
      referencedChunks += count;
      const id = objectIdBytes(value.meta.id);
      for (let i = 0; i < count; i++)
        if (id === undefined || !dbs.chunks.doesExist(chunkKey(id, i))) missingChunks++;
    }
    return {
      objects,
      countedBytes,
      bytes: this.stats().bytes,
      chunks: dbs.chunks.getKeysCount({}),
      referencedChunks,
      missingChunks,
      pendingBodies: dbs.pending.getKeysCount({}),
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    for (const writer of [...this.#writers]) writer.abort();
    while (this.#background.size > 0) await Promise.allSettled([...this.#background]);
    this.#closed = true;
    this.#memo.clear();
    liveInstances.delete(this.#instance);
    await this.#root.close();
  }

  #register(id: Buffer): Promise<unknown> {
    const record: PendingRecord = { pid: process.pid, instance: this.#instance, startedAt: Date.now() };
    return this.#dbs.pending.put(id, record);
  }

  async #commit(
    meta: ObjectMeta,
    id: Buffer,
    registered: boolean,
    tail: Buffer | undefined,
    tailIndex: number,
  ): Promise<void> {
    if (this.#closed) throw new CairnError('CAIRN_ERR_CACHE_STORE_WRITE', 'the LMDB cache store is closed');
    const size = meta.bodyLength + metaSize(meta);
    if (size > this.maxBytes) {
      throw new CairnError(
        'CAIRN_ERR_CACHE_OBJECT_TOO_LARGE',
        'object and its meta exceed the disk tier maxBytes',
      );
    }
    await this.#transact('commit a cached object', () => {
      const dbs = this.#dbs;
      if (registered && !dbs.pending.doesExist(id)) {
        // Our chunks were collected as orphans (we were too slow); publishing would expose holes.
        throw new CairnError(
          'CAIRN_ERR_CACHE_STORE_WRITE',
          'the body was collected as abandoned before commit',
        );
      }
      if (tail !== undefined) dbs.chunks.putSync(chunkKey(id, tailIndex), tail);
      const metaKey = metaKeyOf(meta.key, meta.variant);
      const counters = this.#counters();
      const old = dbs.meta.get(metaKey);
      if (old !== undefined) this.#removeRecord(metaKey, old, counters);
      this.#evict(counters, size, undefined);
      const record: StoredRecord = { meta, seq: ++counters.seq, size };
      this.#index(metaKey, record);
      counters.bytes += size;
      counters.objects++;
      if (registered) dbs.pending.removeSync(id);
      this.#saveCounters(counters);
    });
  }

  /** Delete a body's chunks and pending entry once the writes still in flight have settled. */
  #discard(id: Buffer, after: Promise<unknown> | undefined): void {
    const run = (): Promise<unknown> =>
      this.#transact('discard an unfinished cached body', () => {
        const dbs = this.#dbs;
        for (const key of Array.from(
          dbs.chunks.getKeys({ start: chunkKey(id, 0), end: chunkKey(id, 0xffffffff) }),
          copyKey,
        )) {
          dbs.chunks.removeSync(key);
        }
        dbs.pending.removeSync(id);
      });
    // Best effort: if it fails (disk full), the next open() collects the body as an orphan.
    this.#inBackground(after === undefined ? run() : after.then(run, run));
  }

  /** Keep `close()` waiting for `work`, whose failure nobody awaits. */
  #inBackground(work: Promise<unknown>): void {
    const tracked = work.then(noop, noop);
    this.#background.add(tracked);
    void tracked.then(() => this.#background.delete(tracked));
  }

  async #collectOrphans(maxAgeMs: number): Promise<void> {
    const now = Date.now();
    const orphans: Buffer[] = [];
    for (const { key, value } of this.#dbs.pending.getRange({})) {
      if (isOrphan(value, now, maxAgeMs)) orphans.push(Buffer.from(key));
    }
    if (orphans.length === 0) return;
    await this.#transact('collect abandoned cache bodies', () => {
      const dbs = this.#dbs;
      for (const id of orphans) {
        const record = dbs.pending.get(id);
        // Re-check inside the transaction: another process may have collected it meanwhile.
        if (record === undefined || !isOrphan(record, now, maxAgeMs)) continue;
        for (const key of Array.from(
          dbs.chunks.getKeys({ start: chunkKey(id, 0), end: chunkKey(id, 0xffffffff) }),
          copyKey,
        )) {
          dbs.chunks.removeSync(key);
        }
        dbs.pending.removeSync(id);
        this.#orphansCollected++;
      }
    });
  }

  #dropExpired(meta: ObjectMeta): void {
    if (this.#dropping.has(meta.id)) return;
    this.#dropping.add(meta.id);
    const work = this.#transact('drop an expired cached object', () => {
      const metaKey = metaKeyOf(meta.key, meta.variant);
      const record = this.#dbs.meta.get(metaKey);
      if (record === undefined || record.meta.id !== meta.id || record.meta.expiresAt > this.#now()) return;
      const counters = this.#counters();
      this.#removeRecord(metaKey, record, counters);
      this.#saveCounters(counters);
    });
    this.#inBackground(work.finally(() => this.#dropping.delete(meta.id)));
  }

  /**
   * Run `action` as one abortable LMDB transaction (a child transaction, so a throw rolls back
   * every write it made) and turn any failure into `CAIRN_ERR_CACHE_STORE_WRITE`.
   */
  async #transact<T>(what: string, action: () => T): Promise<T> {
    if (this.#closed)
      throw new CairnError('CAIRN_ERR_CACHE_STORE_WRITE', `cannot ${what}: the LMDB cache store is closed`);
    const work = this.#root.childTransaction(action);
    this.#inBackground(work);
    try {
      return await work;
    } catch (error) {
      throw await writeError(`cannot ${what} in the LMDB cache at ${this.path}`, error);
    }
  }

  /** Inside a transaction: store the totals under a stamp no other transaction has used. */
  #saveCounters(counters: Counters): void {
    counters.stamp = `${this.#instance}.${++this.#stamps}`;
    this.#dbs.state.putSync(COUNTERS_KEY, counters);
  }

  #counters(): Counters {
    const stored = this.#dbs.state.get(COUNTERS_KEY);
    return stored === undefined
      ? { bytes: 0, objects: 0, evictions: 0, seq: 0 }
      : { bytes: stored.bytes, objects: stored.objects, evictions: stored.evictions, seq: stored.seq };
  }

  /** Inside a transaction: remove the objects at `metaKeys` whose meta passes `matches`. */
  #removeKeys(metaKeys: readonly Buffer[], matches: (meta: ObjectMeta) => boolean): number {
    const counters = this.#counters();
    let removed = 0;
    for (const metaKey of metaKeys) {
      const record = this.#dbs.meta.get(metaKey);
      if (record === undefined || !matches(record.meta)) continue;
      this.#removeRecord(metaKey, record, counters);
      removed++;
    }
    if (removed > 0) this.#saveCounters(counters);
    return removed;
  }

  /** Inside a transaction: evict oldest-first until `incoming` more bytes fit (never `keep`). */
  #evict(counters: Counters, incoming: number, keep: Buffer | undefined): void {
    const dbs = this.#dbs;
    while (counters.bytes + incoming > this.maxBytes) {
      let victim: { seq: Buffer; metaKey: Buffer } | undefined;
      for (const { key, value } of dbs.order.getRange({ limit: 2 })) {
        if (keep !== undefined && value.equals(keep)) continue;
        victim = { seq: Buffer.from(key), metaKey: Buffer.from(value) };
        break;
      }
      if (victim === undefined) return;
      const record = dbs.meta.get(victim.metaKey);
      if (record !== undefined && seqKey(record.seq).equals(victim.seq)) {
        this.#removeRecord(victim.metaKey, record, counters);
        counters.evictions++;
      } else {
        dbs.order.removeSync(victim.seq); // an order entry nothing points to any more
      }
    }
  }

  /** Inside a transaction: delete one object (meta, indexes, chunks) and uncount it. */
  #removeRecord(metaKey: Buffer, record: StoredRecord, counters: Counters): void {
    const dbs = this.#dbs;
    this.#unindex(metaKey, record);
    dbs.meta.removeSync(metaKey);
    const id = objectIdBytes(record.meta.id);
    if (id !== undefined) {
      const count = chunkCountOf(record.meta);
      for (let i = 0; i < count; i++) dbs.chunks.removeSync(chunkKey(id, i));
    }
    counters.bytes -= record.size;
    counters.objects--;
  }

  #index(metaKey: Buffer, record: StoredRecord): void {
    const dbs = this.#dbs;
    dbs.meta.putSync(metaKey, record);
    dbs.order.putSync(seqKey(record.seq), metaKey);
    for (const tag of record.meta.tags) dbs.tags.putSync(tagKey(tag, metaKey), EMPTY);
    dbs.urls.putSync(urlKey(record.meta.url, metaKey), EMPTY);
  }

  #unindex(metaKey: Buffer, record: StoredRecord): void {
    const dbs = this.#dbs;
    dbs.order.removeSync(seqKey(record.seq));
    for (const tag of record.meta.tags) dbs.tags.removeSync(tagKey(tag, metaKey));
    dbs.urls.removeSync(urlKey(record.meta.url, metaKey));
  }
}

function copyKey(key: Buffer): Buffer {
  return Buffer.from(key);
}

/** A committed object opened for reading; chunks are synchronous memory-mapped reads. */
class LmdbObject implements SyncCachedObject {
  readonly meta: ObjectMeta;
  readonly chunkCount: number;
  #store: LmdbStore;
  #id: Buffer;

  constructor(store: LmdbStore, meta: ObjectMeta, id: Buffer) {
    this.meta = meta;
    this.chunkCount = chunkCountOf(meta);
    this.#store = store;
    this.#id = id;
  }

  chunk(index: number): Buffer | undefined {
    if (index < 0 || index >= this.chunkCount) return undefined;
    // `undefined` once the body is gone (evicted, purged or replaced while being read).
    return internals.readChunk(this.#store, this.#id, index);
  }

  release(chunk: Buffer): void {
    internals.releaseChunk(this.#store, chunk);
  }
}

/**
 * Streams one object's chunks into LMDB as they arrive, under a body id no reader knows yet.
 * `write()` returns a promise (backpressure) while more than a few chunk writes are in flight.
 */
class LmdbWriter implements CacheWriter {
  #store: LmdbStore;
  #meta: NewObjectMeta;
  #id: string;
  #idBytes: Buffer;
  #chunker: StoreChunker;
  #bytes = 0;
  #chunksPut = 0;
  #registered = false;
  #inflight = 0;
  /** Settles (never rejects) once every write issued so far has settled. */
  #settled: Promise<void> | undefined = undefined;
  #error: unknown = undefined;
  #state: 'open' | 'too-large' | 'done' = 'open';

  constructor(store: LmdbStore, meta: NewObjectMeta, id: string, idBytes: Buffer) {
    this.#store = store;
    this.#meta = meta;
    this.#id = id;
    this.#idBytes = idBytes;
    this.#chunker = new StoreChunker(store.chunkSize);
    internals.track(store, this, true);
  }

  write(chunk: Buffer): Promise<void> | undefined {
    if (this.#state === 'done') return undefined;
    this.#bytes += chunk.length;
    if (this.#state === 'too-large') return undefined;
    if (this.#bytes > this.#store.maxObjectBytes) {
      // Refuse early: free the disk space now rather than store bytes that commit() will refuse.
      this.#state = 'too-large';
      this.#chunker.reset();
      this.#cleanUp();
      return undefined;
    }
    if (this.#error !== undefined) return undefined;
    for (const full of this.#chunker.push(chunk)) this.#put(full);
    return this.#inflight >= HIGH_WATER_PUTS ? this.#settled : undefined;
  }

  async commit(): Promise<ObjectMeta> {
    const state = this.#state;
    this.#state = 'done';
    internals.track(this.#store, this, false);
    if (state === 'too-large') {
      throw new CairnError(
        'CAIRN_ERR_CACHE_OBJECT_TOO_LARGE',
        `object of ${this.#bytes}+ bytes exceeds the disk tier's maxObjectBytes (${this.#store.maxObjectBytes})`,
      );
    }
    if (state === 'done') {
      throw new CairnError(
        'CAIRN_ERR_CACHE_STORE_WRITE',
        'this cache writer was already committed or aborted',
      );
    }
    const tail = this.#chunker.finish();
    if (this.#settled !== undefined) await this.#settled;
    if (this.#error !== undefined) {
      this.#cleanUp();
      throw await writeError(
        `cannot write a cached body to the LMDB cache at ${this.#store.path}`,
        this.#error,
      );
    }
    const meta: ObjectMeta = {
      ...this.#meta,
      bodyLength: this.#bytes,
      chunkSize: this.#store.chunkSize,
      id: this.#id,
    };
    try {
      await internals.commit(this.#store, meta, this.#idBytes, this.#registered, tail, this.#chunksPut);
    } catch (error) {
      this.#cleanUp();
      throw error;
    }
    return meta;
  }

  abort(): void {
    if (this.#state !== 'done') {
      this.#state = 'done';
      internals.track(this.#store, this, false);
    }
    this.#chunker.reset();
    this.#cleanUp();
  }

  #put(chunk: Buffer): void {
    const dbs = internals.dbs(this.#store);
    let put: Promise<unknown>;
    try {
      if (!this.#registered) {
        // Registered before the first chunk (writes apply in order): a crash then always leaves
        // a pending entry that lets the next open find and delete the chunks.
        this.#registered = true;
        this.#track(internals.register(this.#store, this.#idBytes));
      }
      put = dbs.chunks.put(chunkKey(this.#idBytes, this.#chunksPut++), chunk);
    } catch (error) {
      put = Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    this.#track(put);
  }

  #track(write: Promise<unknown>): void {
    this.#inflight++;
    const settled = write.then(
      () => {
        this.#inflight--;
      },
      (error: unknown) => {
        this.#inflight--;
        this.#error ??= error;
        handleCommitError(error);
      },
    );
    // Writes settle in order, but chain anyway so #settled means "everything so far".
    this.#settled = this.#settled === undefined ? settled : this.#settled.then(() => settled);
  }

  /** Delete whatever reached LMDB (once in-flight writes settle); only one cleanup per writer. */
  #cleanUp(): void {
    if (!this.#registered) return;
    this.#registered = false;
    internals.discard(this.#store, this.#idBytes, this.#settled);
  }
}
