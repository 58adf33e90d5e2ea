/**
 * The cache lock: collapses concurrent misses for one key into one origin fetch, with
 * read-while-writer: waiters stream the body from the writer's in-memory chunk list while it is
 * still arriving. No I/O; timers only for the lock-wait timeout (unref'd).
 *
 * Life of an entry:
 * 1. The first `acquire(key)` gets `{ writer: true, inflight }`; later ones `{ writer: false, wait }`.
 * 2. The writer fetches, decides cacheability, then either `inflight.publishHeaders(status, headers)`
 *    (waiters get `ready` and a reader over the body) or `inflight.uncacheable(reason)` (waiters get
 *    `fetch` and go to the origin themselves: an uncacheable response is never shared).
 * 3. The writer `append`s each body chunk, then `complete()` (after its store commit resolved, so
 *    late arrivals find the object in the store), or `fail(error)` / `cancel()`: every waiter and
 *    reader is woken with `CAIRN_ERR_CACHE_WRITER_FAILED`, never with a truncated body presented
 *    as complete. Any terminal call releases the key.
 *
 * A waiter that gets no headers within `timeoutMs` receives `timeout` (`CAIRN_ERR_CACHE_LOCK_TIMEOUT`)
 * and fetches on its own; like nginx `proxy_cache_lock_age`, the stuck entry is then detached so the
 * next arrival becomes a new writer. Chunks live only as long as the inflight object (the writer
 * and any reader still reading). Above `maxInflightBytes`, new arrivals get `fetch`
 * (`inflight-too-large`) instead of joining, and chunks every current reader has passed are dropped.
 */

import { CairnError } from '../src/errors.ts';
import type { StoredHeaders } from './store.ts';

/** Options of a {@link CacheLock}. */
export interface CacheLockOptions {
  /** How long a waiter waits for the writer's response headers, ms. Default 5000. */
  readonly timeoutMs?: number;
  /** In-memory body bytes per inflight object above which new waiters stop joining. Default 64 MiB. */
  readonly maxInflightBytes?: number;
}

/** Counters for metrics (monotonic; read them, do not write). */
export class LockCounters {
  /** Acquisitions that made the caller the writer. */
  writers = 0;
  /** Acquisitions that joined an existing writer. */
  waits = 0;
  /** Waiters that gave up waiting for headers. */
  timeouts = 0;
  /** Writers that failed or were cancelled (each wakes its waiters with an error). */
  writerFailures = 0;
  /** Writers that found the response uncacheable (their waiters fetched on their own). */
  uncacheable = 0;
  /** Arrivals refused because the inflight object was over `maxInflightBytes`. */
  tooLarge = 0;
  /** Waiters or readers that cancelled (client gone). */
  waiterCancels = 0;
}

/** What a waiter learns. */
export type WaitOutcome =
  | {
      readonly kind: 'ready';
      readonly status: number;
      /** The writer's stored headers (shared; do not mutate). */
      readonly headers: StoredHeaders;
      /** The body from its first byte, while it arrives. */
      readonly body: InflightReader;
    }
  | { readonly kind: 'fetch'; readonly reason: string }
  | { readonly kind: 'timeout'; readonly error: CairnError }
  | { readonly kind: 'failed'; readonly error: CairnError }
  | { readonly kind: 'cancelled' };

/** The result of {@link CacheLock.acquire}. */
export type Acquired =
  | { readonly writer: true; readonly inflight: InflightObject }
  | { readonly writer: false; readonly wait: LockWait };

type InflightState = 'pending' | 'headers' | 'complete' | 'failed' | 'uncacheable';

const CANCELLED: WaitOutcome = Object.freeze({ kind: 'cancelled' });

/**
 * The writer's side of one in-flight fetch: response head, then body chunks, then a terminal call.
 *
 * @example
 * ```ts
 * const a = lock.acquire(key);
 * if (a.writer) {
 *   a.inflight.publishHeaders(200, headers);
 *   for await (const chunk of upstreamBody) a.inflight.append(chunk);
 *   await storeWriter.commit();
 *   a.inflight.complete();
 * }
 * ```
 */
export class InflightObject {
  readonly key: string;
  #entries: Map<string, InflightObject>;
  #counters: LockCounters;
  #maxBytes: number;
  #state: InflightState = 'pending';
  #status = 0;
  #headers: StoredHeaders = {};
  #chunks: Buffer[] = [];
  /** Absolute index of `#chunks[0]` (chunks before it were dropped after an overflow). */
  #base = 0;
  #bytes = 0;
  #overflow = false;
  #error: CairnError | undefined = undefined;
  #purged = false;
  #headerWaiters = new Set<LockWait>();
  #readers = new Set<InflightReader>();
  #blocked: InflightReader[] = [];

  constructor(key: string, entries: Map<string, InflightObject>, counters: LockCounters, maxBytes: number) {
    this.key = key;
    this.#entries = entries;
    this.#counters = counters;
    this.#maxBytes = maxBytes;
  }

  /** Body bytes appended so far. */
  get bytes(): number {
    return this.#bytes;
  }

  /** `pending` until headers, then `headers`; finally `complete`, `failed` or `uncacheable`. */
  get state(): InflightState {
    return this.#state;
  }

  /** Number of readers currently attached. */
  get readerCount(): number {
    return this.#readers.size;
  }

  /**
   * Publish the response head of a cacheable response; every waiter becomes a reader.
   *
   * @example
   * ```ts
   * inflight.publishHeaders(200, verdict.headers);
   * ```
   */
  publishHeaders(status: number, headers: StoredHeaders): void {
    if (this.#state !== 'pending') return;
    this.#state = 'headers';
    this.#status = status;
    this.#headers = headers;
    const waiters = this.#headerWaiters;
    this.#headerWaiters = new Set();
    for (const w of waiters) w._settle(this._readyOutcome());
  }

  /**
   * Append one body chunk (kept by reference, never copied). Ignored after a terminal call.
   *
   * @example
   * ```ts
   * upstream.on('data', (chunk: Buffer) => inflight.append(chunk));
   * ```
   */
  append(chunk: Buffer): void {
    if (this.#state === 'pending')
      throw new CairnError('CAIRN_ERR_INTERNAL', 'cache lock: body chunk appended before headers');
    if (this.#state !== 'headers') return;
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    const blocked = this.#blocked;
    if (blocked.length !== 0) {
      this.#blocked = [];
      for (const r of blocked) r._wake(this);
    }
    if (this.#bytes > this.#maxBytes) {
      this.#overflow = true;
      this.#trim();
    }
  }

  /**
   * The body is complete: readers finish from the chunks they have not read yet; the key is
   * released (late arrivals go to the store). Calling it before headers counts as a failure.
   *
   * @example
   * ```ts
   * await storeWriter.commit();
   * inflight.complete();
   * ```
   */
  complete(): void {
    if (this.#state === 'pending') {
      this.fail(new CairnError('CAIRN_ERR_INTERNAL', 'cache lock: completed without headers'));
      return;
    }
    if (this.#state !== 'headers') return;
    this.#state = 'complete';
    this.#release();
    const blocked = this.#blocked;
    this.#blocked = [];
    for (const r of blocked) r._wake(this);
  }

  /**
   * The fetch failed: every waiter and reader gets `CAIRN_ERR_CACHE_WRITER_FAILED` (with `error` as
   * its cause); the key is released.
   *
   * @example
   * ```ts
   * upstream.on('error', (err) => inflight.fail(err));
   * ```
   */
  fail(error: unknown): void {
    if (this.#state === 'complete' || this.#state === 'failed' || this.#state === 'uncacheable') return;
    this.#state = 'failed';
    this.#counters.writerFailures++;
    this.#error = new CairnError('CAIRN_ERR_CACHE_WRITER_FAILED', `the shared fetch of ${this.key} failed`, {
      cause: error,
    });
    this.#release();
    const waiters = this.#headerWaiters;
    this.#headerWaiters = new Set();
    const failed: WaitOutcome = { kind: 'failed', error: this.#error };
    for (const w of waiters) w._settle(failed);
    const blocked = this.#blocked;
    this.#blocked = [];
    for (const r of blocked) r._wake(this);
    this.#chunks = [];
  }

  /**
   * The writer gave up (its client went away and it will not finish the fetch): same as `fail`.
   *
   * @example
   * ```ts
   * if (clientGone && !finishInBackground) inflight.cancel();
   * ```
   */
  cancel(): void {
    this.fail(new CairnError('CAIRN_ERR_DOWNSTREAM_CLOSED', 'the writer was cancelled'));
  }

  /**
   * The response is not cacheable. Before headers: waiters get `{ kind: 'fetch', reason }` and fetch
   * on their own (an uncacheable response may be private, so it is never shared). After headers
   * (e.g. the object turned out too large for the tier): only releases the key; current readers
   * keep reading.
   *
   * @example
   * ```ts
   * if (!verdict.storable) inflight.uncacheable(verdict.reason);
   * ```
   */
  uncacheable(reason: string): void {
    if (this.#state === 'headers') {
      this.#release();
      return;
    }
    if (this.#state !== 'pending') return;
    this.#state = 'uncacheable';
    this.#counters.uncacheable++;
    this.#release();
    const waiters = this.#headerWaiters;
    this.#headerWaiters = new Set();
    const outcome: WaitOutcome = { kind: 'fetch', reason };
    for (const w of waiters) w._settle(outcome);
  }

  /** True once `purge()` was called: the writer must not store what it fetched. */
  get purged(): boolean {
    return this.#purged;
  }

  /**
   * A purge of this key arrived during the fetch. What is arriving was asked for before the purge,
   * so the writer must not store it (it checks `purged` before committing); readers already
   * attached finish reading it. Releases the key, so later requests fetch anew. Before headers,
   * waiters also fetch on their own (as for `uncacheable('purged')`).
   *
   * @example
   * ```ts
   * lock.inflight(key)?.purge();
   * ```
   */
  purge(): void {
    this.#purged = true;
    if (this.#state === 'pending') this.uncacheable('purged');
    else this.#release();
  }

  /** @internal Join as a waiter; returns the outcome when it is already known. */
  _join(wait: LockWait): WaitOutcome | undefined {
    switch (this.#state) {
      case 'pending':
        this.#headerWaiters.add(wait);
        return undefined;
      case 'headers':
        if (this.#overflow) {
          this.#counters.tooLarge++;
          return { kind: 'fetch', reason: 'inflight-too-large' };
        }
        return this._readyOutcome();
      case 'complete':
        // Released entries are not in the map, but a caller may hold an old reference.
        return this._readyOutcome();
      case 'failed':
        return { kind: 'failed', error: this.#error! };
      case 'uncacheable':
        return { kind: 'fetch', reason: 'uncacheable' };
    }
  }

  /** @internal */
  _leave(wait: LockWait): void {
    this.#headerWaiters.delete(wait);
  }

  /** @internal Detach a stuck entry from the lock (lock-wait timeout): the next arrival becomes a writer. */
  _detach(): void {
    if (this.#state === 'pending') this.#release();
  }

  /** @internal */
  _readyOutcome(): WaitOutcome {
    const body = new InflightReader(this, this.#base);
    this.#readers.add(body);
    return { kind: 'ready', status: this.#status, headers: this.#headers, body };
  }

  /**
   * @internal Next step for a reader at absolute chunk `index`: a chunk, `null` at the end, the
   * error after a failure, or `undefined` when it must wait.
   */
  _chunk(index: number): Buffer | null | CairnError | undefined {
    if (this.#state === 'failed') return this.#error!;
    const chunk = this.#chunks[index - this.#base];
    if (chunk !== undefined) return chunk;
    return this.#state === 'complete' ? null : undefined;
  }

  /** @internal */
  _block(reader: InflightReader): void {
    this.#blocked.push(reader);
  }

  /** @internal */
  _detachReader(reader: InflightReader): void {
    this.#readers.delete(reader);
    const i = this.#blocked.indexOf(reader);
    if (i >= 0) this.#blocked.splice(i, 1);
    if (this.#overflow) this.#trim();
  }

  /** Once over the byte bound no reader can join, so chunks every reader has passed can go. */
  #trim(): void {
    let min = this.#base + this.#chunks.length;
    for (const r of this.#readers) if (r.position < min) min = r.position;
    const drop = min - this.#base;
    if (drop > 0) {
      this.#chunks.splice(0, drop);
      this.#base = min;
    }
  }

  #release(): void {
    if (this.#entries.get(this.key) === this) this.#entries.delete(this.key);
  }
}

function onWaitTimeout(wait: LockWait): void {
  wait._timeout();
}

/**
 * A waiter's handle: await its outcome, or cancel it when the client goes away.
 *
 * @example
 * ```ts
 * const a = lock.acquire(key);
 * if (!a.writer) {
 *   let o = a.wait.result();
 *   if (o instanceof Promise) o = await o;
 *   if (o.kind === 'ready') for await (const chunk of o.body) res.write(chunk);
 * }
 * ```
 */
export class LockWait {
  #obj: InflightObject;
  #counters: LockCounters;
  #outcome: WaitOutcome | undefined = undefined;
  #promise: Promise<WaitOutcome> | undefined = undefined;
  #resolve: ((o: WaitOutcome) => void) | undefined = undefined;
  #timer: NodeJS.Timeout | undefined = undefined;
  #timeoutMs: number;

  constructor(obj: InflightObject, counters: LockCounters, timeoutMs: number) {
    this.#obj = obj;
    this.#counters = counters;
    this.#timeoutMs = timeoutMs;
    const now = obj._join(this);
    if (now !== undefined) this.#outcome = now;
    else {
      this.#timer = setTimeout(onWaitTimeout, timeoutMs, this);
      this.#timer.unref();
    }
  }

  /**
   * The outcome: synchronously when already known (the writer has headers), else a promise.
   *
   * @example
   * ```ts
   * const r = wait.result();
   * const outcome = r instanceof Promise ? await r : r;
   * ```
   */
  result(): WaitOutcome | Promise<WaitOutcome> {
    if (this.#outcome !== undefined) return this.#outcome;
    this.#promise ??= new Promise<WaitOutcome>((resolve) => {
      this.#resolve = resolve;
    });
    return this.#promise;
  }

  /**
   * Stop waiting (the client went away); also cancels the body reader if it was already handed
   * out. Never disturbs the writer or other waiters.
   *
   * @example
   * ```ts
   * req.on('close', () => wait.cancel());
   * ```
   */
  cancel(): void {
    if (this.#outcome === undefined) {
      this.#counters.waiterCancels++;
      this.#obj._leave(this);
      this._settle(CANCELLED);
    } else if (this.#outcome.kind === 'ready') this.#outcome.body.cancel();
  }

  /** @internal */
  _timeout(): void {
    if (this.#outcome !== undefined) return;
    this.#timer = undefined;
    this.#counters.timeouts++;
    this.#obj._leave(this);
    this.#obj._detach();
    this._settle({
      kind: 'timeout',
      error: new CairnError(
        'CAIRN_ERR_CACHE_LOCK_TIMEOUT',
        `waited ${this.#timeoutMs} ms for the fetch of ${this.#obj.key}`,
      ),
    });
  }

  /** @internal */
  _settle(outcome: WaitOutcome): void {
    if (this.#outcome !== undefined) {
      // Settled already (e.g. cancelled): a late ready reader must not pin chunks.
      if (outcome.kind === 'ready') outcome.body.cancel();
      return;
    }
    this.#outcome = outcome;
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#resolve !== undefined) {
      this.#resolve(outcome);
      this.#resolve = undefined;
    }
  }
}

/**
 * Reads an inflight body from its first byte, while it arrives. Pull-based: `read()` returns a
 * chunk synchronously when one is buffered, a promise when it must wait, `null` at the end, and
 * throws `CAIRN_ERR_CACHE_WRITER_FAILED` if the writer failed. Chunks are the writer's Buffers (not
 * copies): do not mutate them. Also an async iterable.
 *
 * @example
 * ```ts
 * for await (const chunk of reader) if (!res.write(chunk)) await once(res, 'drain');
 * ```
 */
export class InflightReader implements AsyncIterable<Buffer> {
  #obj: InflightObject;
  #next: number;
  #done = false;
  #resolve: ((c: Buffer | null) => void) | undefined = undefined;
  #reject: ((e: unknown) => void) | undefined = undefined;

  constructor(obj: InflightObject, start: number) {
    this.#obj = obj;
    this.#next = start;
  }

  /** Absolute index of the next chunk this reader will read. */
  get position(): number {
    return this.#next;
  }

  /**
   * The next chunk, `null` at the end of the body (or after `cancel()`).
   *
   * @example
   * ```ts
   * let c = reader.read();
   * if (c instanceof Promise) c = await c;
   * ```
   */
  read(): Buffer | null | Promise<Buffer | null> {
    if (this.#done) return null;
    const c = this.#obj._chunk(this.#next);
    if (c === undefined) {
      return new Promise<Buffer | null>((resolve, reject) => {
        this.#resolve = resolve;
        this.#reject = reject;
        this.#obj._block(this);
      });
    }
    if (c instanceof CairnError) {
      this.#finish();
      throw c;
    }
    if (c === null) {
      this.#finish();
      return null;
    }
    this.#next++;
    return c;
  }

  /**
   * Stop reading (client gone): frees this reader's hold on the chunks; a pending read resolves null.
   *
   * @example
   * ```ts
   * res.on('close', () => reader.cancel());
   * ```
   */
  cancel(): void {
    if (this.#done) return;
    this.#finish();
    const resolve = this.#resolve;
    this.#resolve = undefined;
    this.#reject = undefined;
    resolve?.(null);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    try {
      for (;;) {
        let c = this.read();
        if (c instanceof Promise) c = await c;
        if (c === null) return;
        yield c;
      }
    } finally {
      this.cancel();
    }
  }

  /** @internal Called by the writer when a blocked read can progress. */
  _wake(obj: InflightObject): void {
    const resolve = this.#resolve;
    const reject = this.#reject;
    if (resolve === undefined || reject === undefined) return;
    this.#resolve = undefined;
    this.#reject = undefined;
    const c = obj._chunk(this.#next);
    if (c === undefined) {
      // Nothing new for this reader yet; wait again.
      this.#resolve = resolve;
      this.#reject = reject;
      obj._block(this);
    } else if (c instanceof CairnError) {
      this.#finish();
      reject(c);
    } else if (c === null) {
      this.#finish();
      resolve(null);
    } else {
      this.#next++;
      resolve(c);
    }
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#obj._detachReader(this);
  }
}

/**
 * Collapses concurrent fetches of one key. One lock per process (or per cache); keyed by the
 * primary (variant-less) key, since the variant is unknown until the response arrives.
 *
 * @example
 * ```ts
 * const lock = new CacheLock({ timeoutMs: 5000 });
 * const a = lock.acquire('https://example.com/a');
 * a.writer; // true for the first caller, false (with a.wait) for the others until it finishes
 * ```
 */
export class CacheLock {
  readonly #entries = new Map<string, InflightObject>();
  readonly #timeoutMs: number;
  readonly #maxBytes: number;
  /** Counters for metrics. */
  readonly counters: Readonly<LockCounters> = new LockCounters();

  constructor(options: CacheLockOptions = {}) {
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#maxBytes = options.maxInflightBytes ?? 64 * 1024 * 1024;
  }

  /** Keys with a fetch in flight. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Become the writer for `key`, or join the fetch in flight.
   *
   * @example
   * ```ts
   * const a = lock.acquire(key);
   * if (a.writer) fetchAndPublish(a.inflight); else serveFrom(a.wait);
   * ```
   */
  acquire(key: string): Acquired {
    const counters = this.counters as LockCounters;
    const existing = this.#entries.get(key);
    if (existing === undefined) {
      const inflight = new InflightObject(key, this.#entries, counters, this.#maxBytes);
      this.#entries.set(key, inflight);
      counters.writers++;
      return { writer: true, inflight };
    }
    counters.waits++;
    return { writer: false, wait: new LockWait(existing, counters, this.#timeoutMs) };
  }

  /**
   * The inflight object for `key`, if any (for metrics and purge: a purge calls `purge()` on it).
   *
   * @example
   * ```ts
   * lock.inflight(key)?.purge();
   * ```
   */
  inflight(key: string): InflightObject | undefined {
    return this.#entries.get(key);
  }
}
