/**
 * The cache path of one request (DESIGN steps 4–6 and 11–13): lookup, serving what is stored
 * (fresh, stale, collapsed onto another request's fetch, ranges, conditionals, HEAD), storing
 * what the origin sends, revalidation (304 merge, background stale-while-revalidate), serving
 * stale on error, invalidation after unsafe methods, and purge.
 *
 * Policy decisions are the pure functions of `cache/`; this file only wires them to the phases.
 */
import { randomBytes } from 'node:crypto';
import type { Dispatcher } from 'undici';
import type { HttpCache, LookupResult } from '../cache/http-cache.ts';
import type { ForwardReason } from '../cache/cache-status.ts';
import { evaluateConditional, hasPreconditions, NOT_MODIFIED_HEADERS } from '../cache/conditional.ts';
import { varyVariant } from '../cache/key.ts';
import type { InflightObject, InflightReader, WaitOutcome } from '../cache/lock.ts';
import type { CacheControl, ResponseVerdict } from '../cache/policy.ts';
import {
  CONDITIONAL_REQUEST_HEADERS,
  StoredPolicy,
  clientHeaders,
  storedHitFieldList,
  storedClientHeaders,
  evaluateResponse,
  invalidationKeys,
  mergeNotModified,
  newObjectMeta,
  parseRequestCacheControl,
  revalidatedPolicy,
  revalidationHeaders,
} from '../cache/policy.ts';
import type { ByteRange } from '../cache/range.ts';
import {
  contentRange,
  ifRangeMatches,
  multipartPlan,
  planRange,
  unsatisfiedContentRange,
} from '../cache/range.ts';
import type { CacheWriter, CachedObject, ObjectMeta, StoredHeaders } from '../cache/store.ts';
import { CairnError } from './errors.ts';
import type { HeaderMap } from './headers.ts';
import { headerValue, upstreamRequestHeaders, withoutHopByHop } from './headers.ts';
import type { HttpTask } from './http-task.ts';
import { isThenable } from './request-phases.ts';
import type { HttpPeer } from './peer.ts';
import type { ResponseHead, UpstreamRequest } from './proxy-http.ts';

type MaybePromise<T> = T | Promise<T>;

/**
 * Body chunks for a response Cairn answers itself. `read()` gives the next chunk, `null` at the
 * end, or `undefined` when the body is gone part-way (evicted, writer failed): the response must
 * then be cut off, never completed short.
 */
export interface ChunkSource {
  read(): Buffer | null | undefined | Promise<Buffer | null | undefined>;
  cancel(): void;
  /** Optional: a chunk `read()` gave is no longer held by anyone (see `CachedObject.release`). */
  release?(chunk: Buffer): void;
  /** Optional: true once `read()` would answer `null` (the chunk it gave last was the last one). */
  atEnd?(): boolean;
}

const EMPTY_SOURCE: ChunkSource = { read: () => null, cancel: () => undefined };

/** What a collapsed waiter must know about the response it would share (see `#mayShare`). */
interface Published {
  /** The writer's variant under the response's `Vary`. */
  readonly variant: string;
  readonly policy: StoredPolicy;
}

/**
 * Keyed by the headers object a writer publishes to the cache lock; waiters receive that same
 * object. The lock key has no variant, so a waiter cannot otherwise tell whose request selected
 * the response.
 */
const PUBLISHED = new WeakMap<StoredHeaders, Published>();

/**
 * Per cache, keys whose store operations are still settling. An invalidation (RFC 9111 §4.4)
 * waits for a pending commit of the same key, which would otherwise land after the delete and
 * bring the response back; a lookup waits for a pending invalidation, which would otherwise still
 * find the invalidated response (the disk tier deletes asynchronously).
 */
class KeyFences {
  readonly commits = new Map<string, Promise<void>>();
  readonly invalidations = new Map<string, Promise<void>>();
}

const FENCES = new WeakMap<HttpCache, KeyFences>();

function fencesOf(cache: HttpCache): KeyFences {
  let fences = FENCES.get(cache);
  if (fences === undefined) {
    fences = new KeyFences();
    FENCES.set(cache, fences);
  }
  return fences;
}

/** Hold `key` behind `done` (which never rejects) until it settles. */
function fence(map: Map<string, Promise<void>>, key: string, done: Promise<void>): void {
  map.set(key, done);
  void done.then(() => {
    if (map.get(key) === done) map.delete(key);
  });
}

/** A stored body, optionally cut to one byte range; reads go straight to the chunk index needed. */
class StoredSource implements ChunkSource {
  /**
   * Set only when the tier takes chunks back (LMDB), so a memory hit's writes carry no callback.
   * A range's view of a chunk is not the tier's Buffer: the tier ignores it.
   */
  readonly release?: (chunk: Buffer) => void;
  readonly #object: CachedObject;
  readonly #chunkSize: number;
  readonly #end: number;
  #index: number;
  #position: number;

  constructor(object: CachedObject, range: ByteRange | undefined) {
    this.#object = object;
    const size = object.meta.chunkSize > 0 ? object.meta.chunkSize : 1;
    this.#chunkSize = size;
    const start = range === undefined ? 0 : range.start;
    this.#end = range === undefined ? object.meta.bodyLength - 1 : range.end;
    this.#index = Math.floor(start / size);
    this.#position = start;
    if (object.release !== undefined) this.release = object.release.bind(object);
  }

  read(): Buffer | null | undefined | Promise<Buffer | null | undefined> {
    if (this.#position > this.#end) return null;
    const chunk = this.#object.chunk(this.#index);
    return isThenable(chunk) ? chunk.then((c) => this.#cut(c)) : this.#cut(chunk);
  }

  #cut(chunk: Buffer | undefined): Buffer | undefined {
    if (chunk === undefined) return undefined;
    const chunkStart = this.#index * this.#chunkSize;
    const from = this.#position - chunkStart;
    const to = Math.min(chunk.length, this.#end - chunkStart + 1);
    this.#index++;
    if (from >= to) return undefined;
    this.#position = chunkStart + to;
    return from === 0 && to === chunk.length ? chunk : chunk.subarray(from, to);
  }

  atEnd(): boolean {
    return this.#position > this.#end;
  }

  cancel(): void {}
}

/** A multipart/byteranges body from a stored object (RFC 9110 §14.6). */
class MultipartSource implements ChunkSource {
  readonly #object: CachedObject;
  readonly #parts: readonly { readonly head: Buffer; readonly range: ByteRange }[];
  readonly #tail: Buffer;
  #part: number;
  #current: StoredSource | null;

  constructor(object: CachedObject, parts: readonly { head: string; range: ByteRange }[], tail: string) {
    this.#object = object;
    this.#parts = parts.map((p) => ({ head: Buffer.from(p.head, 'latin1'), range: p.range }));
    this.#tail = Buffer.from(tail, 'latin1');
    this.#part = 0;
    this.#current = null;
  }

  read(): Buffer | null | undefined | Promise<Buffer | null | undefined> {
    if (this.#current !== null) {
      const chunk = this.#current.read();
      if (isThenable(chunk)) return chunk.then((c) => this.#after(c));
      return this.#after(chunk);
    }
    const part = this.#parts[this.#part];
    if (part === undefined) {
      if (this.#part === this.#parts.length) {
        this.#part++;
        return this.#tail;
      }
      return null;
    }
    this.#current = new StoredSource(this.#object, part.range);
    return part.head;
  }

  #after(chunk: Buffer | null | undefined): Buffer | null | undefined | Promise<Buffer | null | undefined> {
    if (chunk === null) {
      this.#current = null;
      this.#part++;
      return this.read();
    }
    return chunk;
  }

  cancel(): void {}
}

/** The body of another request's fetch while it arrives (read-while-writer), optionally windowed. */
class InflightSource implements ChunkSource {
  readonly #reader: InflightReader;
  readonly #start: number;
  readonly #end: number;
  #position: number;

  constructor(reader: InflightReader, range: ByteRange | undefined) {
    this.#reader = reader;
    this.#start = range === undefined ? 0 : range.start;
    this.#end = range === undefined ? Number.MAX_SAFE_INTEGER : range.end;
    this.#position = 0;
  }

  read(): Buffer | null | undefined | Promise<Buffer | null | undefined> {
    let chunk: Buffer | null | Promise<Buffer | null>;
    try {
      chunk = this.#reader.read();
    } catch {
      return undefined;
    }
    if (isThenable(chunk))
      return chunk.then(
        (c) => this.#window(c),
        () => undefined,
      );
    return this.#window(chunk);
  }

  #window(chunk: Buffer | null): Buffer | null | undefined | Promise<Buffer | null | undefined> {
    if (chunk === null)
      return this.#position > this.#end || this.#end === Number.MAX_SAFE_INTEGER ? null : undefined;
    const from = this.#position;
    const to = from + chunk.length;
    this.#position = to;
    if (to <= this.#start) return this.read();
    if (from > this.#end) {
      this.#reader.cancel();
      return null;
    }
    const a = Math.max(0, this.#start - from);
    const b = Math.min(chunk.length, this.#end - from + 1);
    return a === 0 && b === chunk.length ? chunk : chunk.subarray(a, b);
  }

  cancel(): void {
    this.#reader.cancel();
  }
}

/** Cut a streamed full body down to one range (a range request that missed: the cache gets the whole). */
export class RangeWindow {
  readonly start: number;
  readonly end: number;
  #position = 0;

  constructor(range: ByteRange) {
    this.start = range.start;
    this.end = range.end;
  }

  cut(chunk: Buffer | null): Buffer | null {
    if (chunk === null) return null;
    const from = this.#position;
    this.#position += chunk.length;
    const a = Math.max(0, this.start - from);
    const b = Math.min(chunk.length, this.end - from + 1);
    if (a >= b) return null;
    return a === 0 && b === chunk.length ? chunk : chunk.subarray(a, b);
  }
}

/** The per-request state of the cache path. Made only when `requestCacheFilter` returned a cache. */
export class CacheRequest<Ctx> {
  readonly cache: HttpCache;
  readonly task: HttpTask<Ctx>;
  key: string | undefined;
  /** The stored response being revalidated, or kept for stale-if-error. */
  stored: ObjectMeta | undefined;
  /** The upstream request is a conditional revalidation of `stored`. */
  revalidating: boolean;
  staleIfErrorUntil: number;
  /** This request holds the cache lock for `key` and publishes what it fetches. */
  inflight: InflightObject | undefined;
  writer: CacheWriter | undefined;
  /** A range request that missed: fetch the whole object, send the client this window. */
  window: RangeWindow | undefined;
  wantsRange: boolean;
  invalidate: boolean;
  requestTime: number;
  fwd: ForwardReason;
  #requestCc: CacheControl | undefined;
  /** Looked up again after a writer's commit (see `#afterWait`). */
  #relooked: boolean;

  constructor(task: HttpTask<Ctx>, cache: HttpCache) {
    this.cache = cache;
    this.task = task;
    this.key = undefined;
    this.stored = undefined;
    this.revalidating = false;
    this.staleIfErrorUntil = 0;
    this.inflight = undefined;
    this.writer = undefined;
    this.window = undefined;
    this.wantsRange = false;
    this.invalidate = false;
    this.requestTime = 0;
    this.fwd = 'miss';
    this.#requestCc = undefined;
    this.#relooked = false;
  }

  /** True while a response is being written into the cache. */
  get storing(): boolean {
    return this.writer !== undefined;
  }

  // ---- lookup ------------------------------------------------------------------------------

  /** Look the request up; resolves true when the cache answered it (hit, purge, 504, collapsed). */
  lookup(): MaybePromise<boolean> {
    const { session, ctx, engine } = this.task;
    const { proxy, plan } = engine;
    const status = this.cache.status;
    const isPurge = plan.isPurge ? proxy.isPurge(session, ctx) : session.method === 'PURGE';
    if (isPurge) return this.#purge();
    const method = session.method;
    if (method !== 'GET' && method !== 'HEAD') {
      // RFC 9111 §4.4: an unsafe method may invalidate what is stored, once the origin says it worked.
      this.invalidate = true;
      this.fwd = 'method';
      session.cacheStatus = status.forward('method');
      this.#count('bypass');
      return false;
    }
    const key = proxy.cacheKey(session, ctx);
    if (key === undefined) {
      session.cacheStatus = status.bypass('no-key');
      this.#count('bypass');
      return false;
    }
    // A key made by concatenation is a rope: reading a character flattens it once, in place, so
    // the stores' Map lookups hash and compare flat bytes instead of walking the rope each time.
    key.charCodeAt(0);
    this.key = key;
    const invalidations = FENCES.get(this.cache)?.invalidations;
    // Nearly always empty: skip hashing the key then.
    const invalidating =
      invalidations === undefined || invalidations.size === 0 ? undefined : invalidations.get(key);
    if (invalidating !== undefined) return invalidating.then(() => this.#lookupKey(key));
    return this.#lookupKey(key);
  }

  #lookupKey(key: string): MaybePromise<boolean> {
    const store = this.cache.store;
    // One clock reading for the whole synchronous lookup: the stores' expiry checks and freshness.
    const now = Date.now();
    const variants =
      store.variantsFor === undefined
        ? store.variants(key, now)
        : store.variantsFor(key, (meta) => this.#selects(meta), now);
    if (isThenable(variants)) return variants.then((v) => this.#choose(v, Date.now()));
    return this.#choose(variants, now);
  }

  #requestCacheControl(): CacheControl {
    this.#requestCc ??= parseRequestCacheControl(this.task.session.headers);
    return this.#requestCc;
  }

  /** The variant this request selects for a response's `Vary`, through `cacheVaryFilter`. */
  variantOf(vary: string | string[] | undefined): string | undefined {
    return this.#variantOf(vary);
  }

  #variantOf(vary: string | string[] | undefined): string | undefined {
    // No Vary selects the one variant '' whatever the hooks say (varyVariant asks them nothing).
    if (vary === undefined) return '';
    const { session, ctx, engine } = this.task;
    if (!engine.plan.cacheVaryFilter) return varyVariant(vary, session.headers);
    const proxy = engine.proxy;
    return varyVariant(vary, session.headers, (name, value) =>
      proxy.cacheVaryFilter(session, name, value, ctx),
    );
  }

  /** Whether this request selects `meta`'s variant (RFC 9111 §4.1). */
  #selects(meta: ObjectMeta): boolean {
    return this.#variantOf(meta.headers.vary) === meta.variant;
  }

  #choose(variants: readonly ObjectMeta[], now: number): MaybePromise<boolean> {
    const { session, ctx, engine } = this.task;
    const { proxy, plan } = engine;
    let meta: ObjectMeta | undefined;
    for (const candidate of variants) {
      if (this.#selects(candidate)) {
        meta = candidate;
        break;
      }
    }
    if (meta === undefined) {
      this.fwd = variants.length === 0 ? 'uri-miss' : 'vary-miss';
      return this.#miss();
    }
    const policy = StoredPolicy.fromObject(meta.policy);
    if (policy === undefined) {
      this.fwd = 'miss';
      return this.#miss();
    }
    const options = this.cache.policy;
    let decision = policy.evaluate(this.#requestCacheControl(), now, options);
    if (plan.cacheHitFilter && decision.kind !== 'revalidate' && decision.kind !== 'only-if-cached') {
      if (proxy.cacheHitFilter(session, meta, ctx)) {
        decision = {
          kind: 'revalidate',
          reason: 'stale',
          age: decision.age,
          ttl: decision.ttl,
          staleIfErrorUntil: 0,
        };
      }
    }
    const status = this.cache.status;
    switch (decision.kind) {
      case 'fresh':
        return this.#serveStored(meta, policy, status.hit(decision.ttl), 'hit', undefined, now);
      case 'stale-allowed':
        return this.#serveStored(meta, policy, status.staleHit(decision.ttl), 'stale', undefined, now);
      case 'stale-while-revalidate': {
        const allowed = plan.shouldServeStale ? proxy.shouldServeStale(session, ctx, undefined, true) : true;
        if (allowed) {
          this.#revalidateInBackground(meta);
          return this.#serveStored(meta, policy, status.staleHit(decision.ttl), 'stale', undefined, now);
        }
        this.#prepareRevalidation(meta, policy.staleIfErrorUntil(this.#requestCacheControl(), options));
        return false;
      }
      case 'revalidate':
        this.#prepareRevalidation(meta, decision.staleIfErrorUntil);
        return false;
      case 'only-if-cached':
        return this.#gatewayTimeout();
    }
  }

  #prepareRevalidation(meta: ObjectMeta, staleIfErrorUntil: number): void {
    this.stored = meta;
    this.staleIfErrorUntil = staleIfErrorUntil;
    this.fwd = 'stale';
    const validators = revalidationHeaders(meta.headers);
    this.revalidating = validators.ifNoneMatch !== undefined || validators.ifModifiedSince !== undefined;
  }

  /** RFC 9111 §5.2.1.7: only-if-cached and nothing usable is stored. */
  #gatewayTimeout(): boolean {
    const session = this.task.session;
    session.cacheStatus = this.cache.status.forward('miss', { detail: 'only-if-cached' });
    this.#count('miss');
    session.respond(
      504,
      { 'content-type': 'text/plain', 'cache-control': 'no-store' },
      '504 Gateway Timeout\n',
    );
    return true;
  }

  #miss(): MaybePromise<boolean> {
    const { session, ctx, engine } = this.task;
    if (this.#requestCacheControl().onlyIfCached) return this.#gatewayTimeout();
    if (engine.plan.cacheMiss) engine.proxy.cacheMiss(session, ctx);
    this.#count('miss');
    session.cacheStatus = this.cache.status.forward(this.fwd);
    const lock = this.cache.lock;
    // HEAD is answered by the origin and not stored (its response has no body to store).
    if (lock === null || session.method !== 'GET' || this.key === undefined) return false;
    const acquired = lock.acquire(this.key);
    if (acquired.writer) {
      this.inflight = acquired.inflight;
      this.wantsRange = session.headers.range !== undefined;
      return false;
    }
    const outcome = acquired.wait.result();
    if (isThenable(outcome)) return outcome.then((o) => this.#afterWait(o));
    return this.#afterWait(outcome);
  }

  #afterWait(outcome: WaitOutcome): MaybePromise<boolean> {
    const session = this.task.session;
    if (session.aborted) {
      if (outcome.kind === 'ready') outcome.body.cancel();
      return true;
    }
    if (outcome.kind !== 'ready') {
      // The writer's response was not stored, or it failed or took too long: fetch on our own.
      return false;
    }
    if (!this.#mayShare(outcome.headers)) {
      outcome.body.cancel();
      // The writer has the whole body and is storing it: once stored, look up again, so that a
      // response that must be revalidated is revalidated (a conditional request) rather than
      // fetched whole, exactly as if the store had been instant. Once per request.
      const key = this.key;
      const committing =
        key === undefined || this.fwd === 'vary-miss' ? undefined : FENCES.get(this.cache)?.commits.get(key);
      if (committing !== undefined && !this.#relooked) {
        this.#relooked = true;
        return committing.then(() => this.#lookupKey(key!));
      }
      return false;
    }
    this.#count('collapsed');
    session.cacheStatus = this.cache.status.collapsed();
    const headers = clientHeaders(outcome.headers, '0', this.cache.policy);
    const length = Number(headerValue(headers, 'content-length') ?? NaN);
    return this.#answer(
      outcome.status,
      headers,
      Number.isSafeInteger(length) ? length : undefined,
      undefined,
      outcome.body,
    );
  }

  /**
   * A writer's response is about to be stored: a waiter may share it only where it could reuse it
   * once stored (RFC 9111 §4): its own request must select the same variant (§4.1, the writer's
   * `Vary` headers may differ from ours), and its directives and the response's must allow reuse
   * without contacting the origin (§5.2.1 `no-cache`, `max-age`, `min-fresh`; §5.2.2.4 `no-cache`).
   */
  #mayShare(headers: StoredHeaders): boolean {
    const published = PUBLISHED.get(headers);
    if (published === undefined) return false;
    const session = this.task.session;
    if (this.#variantOf(headers.vary) !== published.variant) {
      this.fwd = 'vary-miss';
      session.cacheStatus = this.cache.status.forward(this.fwd);
      return false;
    }
    const decision = published.policy.evaluate(this.#requestCacheControl(), Date.now(), this.cache.policy);
    if (decision.kind === 'fresh' || decision.kind === 'stale-allowed') return true;
    if (decision.kind === 'revalidate' && decision.reason.startsWith('request-')) {
      this.fwd = 'request';
      session.cacheStatus = this.cache.status.forward(this.fwd);
    }
    return false;
  }

  // ---- answering from the cache --------------------------------------------------------------

  #serveStored(
    meta: ObjectMeta,
    policy: StoredPolicy,
    cacheStatus: string,
    result: LookupResult,
    headers: StoredHeaders | undefined,
    now: number,
  ): MaybePromise<boolean> {
    const opened = this.cache.store.open(meta, now);
    if (isThenable(opened)) {
      return opened.then((o) => this.#serveOpened(o, meta, policy, cacheStatus, result, headers, Date.now()));
    }
    return this.#serveOpened(opened, meta, policy, cacheStatus, result, headers, now);
  }

  #serveOpened(
    object: CachedObject | undefined,
    meta: ObjectMeta,
    policy: StoredPolicy,
    cacheStatus: string,
    result: LookupResult,
    headers: StoredHeaders | undefined,
    now: number,
  ): MaybePromise<boolean> {
    if (object === undefined) {
      // Evicted between lookup and open: a miss after all.
      this.fwd = 'miss';
      this.stored = undefined;
      this.revalidating = false;
      return this.#miss();
    }
    const session = this.task.session;
    session.cacheStatus = cacheStatus;
    this.#count(result);
    const age = policy.ageHeader(now);
    const options = this.cache.policy;
    if (headers === undefined && this.#plainHit(meta.status)) {
      const list = storedHitFieldList(meta.headers, meta.bodyLength, options);
      if (list !== undefined) {
        this.task.serveLocalHit(meta.status, list, age, meta.bodyLength, new StoredSource(object, undefined));
        return true;
      }
    }
    const out =
      headers === undefined
        ? storedClientHeaders(meta.headers, age, options)
        : clientHeaders(headers, age, options);
    // The stored length is known even when the origin sent the body chunked: say it, so clients
    // (and the next cache) need not read to the end to know the size.
    if (out['content-length'] === undefined && meta.status !== 204 && meta.status !== 304) {
      out['content-length'] = String(meta.bodyLength);
    }
    return this.#answer(meta.status, out, meta.bodyLength, object, undefined);
  }

  /**
   * A whole stored body to a GET over HTTP/1.1 that no hook sees and nothing makes conditional or
   * partial (no validators, no Range): `#answer` would decide 200 with the stored fields as they
   * are, so they go to Node as a list and no field map is made.
   */
  #plainHit(status: number): boolean {
    const { session, engine } = this.task;
    const plan = engine.plan;
    if (plan.responseFilter || plan.cacheNotModifiedFilter || engine.draining) return false;
    if (session.method !== 'GET' || status === 204 || status === 304) return false;
    if (session.request.httpVersionMajor !== 1) return false;
    return session.headers.range === undefined && !hasPreconditions(session.headers);
  }

  /**
   * Answer from the cache: 304/412 for conditionals, 206/416 for ranges, no body for HEAD, else the
   * whole body, read from `stored` (a stored object) or `shared` (another request's fetch, which
   * cannot make a multipart body). No per-hit closure: `bodyOf` makes the body.
   */
  #answer(
    status: number,
    headers: StoredHeaders,
    length: number | undefined,
    stored: CachedObject | undefined,
    shared: InflightReader | undefined,
  ): boolean {
    const { session, ctx, engine } = this.task;
    const { proxy, plan } = engine;
    const head: ResponseHead = { status, headers };
    // Pure: evaluated once for both questions (a hook may still decide "not modified" itself).
    const conditional = evaluateConditional(session.method, session.headers, status, headers);
    const notModified = plan.cacheNotModifiedFilter
      ? proxy.cacheNotModifiedFilter(session, head, ctx)
      : conditional === 'not-modified';
    if (notModified) {
      this.task.serveLocal({ status: 304, headers: notModifiedHeaders(headers) }, EMPTY_SOURCE);
      return true;
    }
    if (conditional === 'precondition-failed') {
      this.task.serveLocal({ status: 412, headers: { 'content-length': '0' } }, EMPTY_SOURCE);
      return true;
    }
    if (session.method === 'HEAD') {
      this.task.serveLocal(head, EMPTY_SOURCE);
      return true;
    }
    const rangeHeader = session.headers.range;
    if (rangeHeader !== undefined && status === 200 && length !== undefined) {
      const plan = ifRangeMatches(headerValue(session.headers, 'if-range'), headers)
        ? planRange(rangeHeader, length)
        : ({ kind: 'full' } as const);
      switch (plan.kind) {
        case 'single': {
          const body = bodyOf(stored, shared, plan.range);
          if (body === undefined) break;
          headers['content-range'] = contentRange(plan.range, length);
          headers['content-length'] = String(plan.range.end - plan.range.start + 1);
          this.task.serveLocal({ status: 206, headers }, body);
          return true;
        }
        case 'multi': {
          const contentType = headerValue(headers, 'content-type');
          const multi = multipartPlan(plan.ranges, length, contentType, randomBytes(8).toString('hex'));
          const body =
            stored === undefined ? undefined : new MultipartSource(stored, multi.parts, multi.tail);
          if (body === undefined) break;
          headers['content-type'] = multi.contentType;
          headers['content-length'] = String(multi.contentLength);
          delete headers['content-range'];
          this.task.serveLocal({ status: 206, headers }, body);
          return true;
        }
        case 'unsatisfiable':
          this.task.serveLocal(
            {
              status: 416,
              headers: { 'content-range': unsatisfiedContentRange(length), 'content-length': '0' },
            },
            EMPTY_SOURCE,
          );
          return true;
        case 'full':
          break;
      }
    }
    const body = bodyOf(stored, shared, undefined);
    this.task.serveLocal(head, body ?? EMPTY_SOURCE);
    return true;
  }

  // ---- the origin's answer -------------------------------------------------------------------

  /** Adjust the request to the origin: validators for a revalidation, no Range on a locked miss. */
  prepareUpstream(request: UpstreamRequest): void {
    this.requestTime = Date.now();
    const headers = request.headers;
    if (this.revalidating && this.stored !== undefined) {
      // The client's own validators would make the origin's 304 about the client's copy, not ours:
      // replace them with the stored response's; the client's are evaluated against the result.
      for (const name of CONDITIONAL_REQUEST_HEADERS) delete headers[name];
      const v = revalidationHeaders(this.stored.headers);
      if (v.ifNoneMatch !== undefined) headers['if-none-match'] = v.ifNoneMatch;
      if (v.ifModifiedSince !== undefined) headers['if-modified-since'] = v.ifModifiedSince;
    } else if (this.inflight !== undefined) {
      // A miss that others may be waiting on: fetch the whole object once, whatever this client
      // asked for (ranges and conditionals are then answered from it).
      for (const name of CONDITIONAL_REQUEST_HEADERS) delete headers[name];
      delete headers.range;
    }
  }

  /**
   * The origin's response head has arrived (after `upstreamResponseFilter`). Returns true when the
   * cache answered the client instead (304 merged into the stored response, or stale-if-error), in
   * which case the origin's body is ignored.
   */
  onUpstreamResponse(head: ResponseHead): boolean {
    const { session, ctx, engine } = this.task;
    const { proxy, plan } = engine;
    const status = this.cache.status;
    const options = this.cache.policy;
    const headers = head.headers;
    if (this.invalidate) {
      this.#invalidate(head);
      return false;
    }
    if (this.key === undefined) return false;
    const stored = this.stored;
    if (this.revalidating && stored !== undefined && head.status === 304) {
      return this.#merge304(stored, head);
    }
    if (stored !== undefined && head.status >= 500 && Date.now() < this.staleIfErrorUntil) {
      const error = new CairnError('CAIRN_ERR_UPSTREAM_UNAVAILABLE', `origin answered ${head.status}`, {
        status: head.status,
      });
      if (this.#serveStale(stored, error, head.status)) return true;
    }
    let verdict: ResponseVerdict =
      session.method === 'GET'
        ? evaluateResponse(
            { method: session.method, headers: session.headers },
            { status: head.status, headers: headers },
            { requestTime: this.requestTime, responseTime: Date.now() },
            options,
          )
        : { storable: false, reason: 'method', targetedBy: undefined };
    if (plan.responseCacheFilter) verdict = proxy.responseCacheFilter(session, head, verdict, ctx);
    // A 5xx never replaces a good stored object.
    if (verdict.storable && head.status >= 500 && stored !== undefined) {
      verdict = { storable: false, reason: 'status', targetedBy: verdict.targetedBy };
    }
    for (const name of options.hiddenResponseHeaders) delete headers[name];
    if (!verdict.storable) {
      this.inflight?.uncacheable(verdict.reason);
      this.inflight = undefined;
      session.cacheStatus = status.forward(this.fwd, { fwdStatus: head.status, detail: verdict.reason });
      return false;
    }
    const variant = this.#variantOf(
      headerValue(verdict.headers, 'vary') === undefined ? undefined : verdict.headers.vary,
    );
    if (variant === undefined) {
      this.inflight?.uncacheable('vary-star');
      this.inflight = undefined;
      return false;
    }
    const url = `${session.scheme}://${session.host}${session.path}`;
    this.writer = this.cache.store.createWriter(newObjectMeta(this.key, variant, url, verdict, options));
    if (this.inflight !== undefined) {
      PUBLISHED.set(verdict.headers, { variant, policy: verdict.policy });
      this.inflight.publishHeaders(head.status, verdict.headers);
    }
    session.cacheStatus = status.forward(this.fwd, {
      stored: true,
      fwdStatus: this.fwd === 'stale' ? head.status : undefined,
    });
    if (this.wantsRange && head.status === 200) this.#cutToRange(head);
    return false;
  }

  /** A range request that missed: the whole body goes to the cache, the client gets its range. */
  #cutToRange(head: ResponseHead): void {
    const session = this.task.session;
    const length = Number(headerValue(head.headers, 'content-length') ?? NaN);
    if (!Number.isSafeInteger(length)) return;
    const plan = planRange(headerValue(session.headers, 'range'), length);
    if (plan.kind === 'single') {
      this.window = new RangeWindow(plan.range);
      head.status = 206;
      head.headers['content-range'] = contentRange(plan.range, length);
      head.headers['content-length'] = String(plan.range.end - plan.range.start + 1);
    }
    // Several ranges or an unsatisfiable one on a miss: the full 200 is a correct answer (RFC 9110 §14.2).
  }

  #merge304(stored: ObjectMeta, head: ResponseHead): boolean {
    const { session } = this.task;
    const options = this.cache.policy;
    const verdict = revalidatedPolicy(
      { method: 'GET', headers: session.headers },
      { status: stored.status, headers: stored.headers },
      { status: 304, headers: head.headers },
      { requestTime: this.requestTime, responseTime: Date.now() },
      options,
    );
    let headers: StoredHeaders;
    let policy: StoredPolicy | undefined;
    if (verdict.storable) {
      headers = verdict.headers;
      policy = verdict.policy;
      const updated: ObjectMeta = {
        ...stored,
        headers,
        policy: policy.toObject(),
        storedAt: policy.responseTime,
        expiresAt: policy.expiresAt(options),
      };
      const done = this.cache.store.updateMeta(updated);
      if (isThenable(done)) done.catch((error: unknown) => this.#storeFailed(error));
    } else {
      // Now uncacheable (e.g. the 304 says no-store): serve this once, and drop the stored copy.
      headers = mergeNotModified(stored.headers, head.headers);
      policy = StoredPolicy.fromObject(stored.policy);
      const dropped = this.cache.store.delete(stored.key, stored.variant);
      if (isThenable(dropped)) dropped.catch((error: unknown) => this.#storeFailed(error));
    }
    if (policy === undefined) return false;
    const status = this.cache.status.forward('stale', { fwdStatus: 304 });
    const served = this.#serveStored(stored, policy, status, 'revalidated', headers, Date.now());
    if (isThenable(served)) served.catch((error: unknown) => void this.task.fail(asCairn(error)));
    return true;
  }

  /** Serve the stored response although it is stale, because the origin failed (RFC 5861 §4). */
  #serveStale(stored: ObjectMeta, error: CairnError, fwdStatus: number | undefined): boolean {
    const { session, ctx, engine } = this.task;
    const { proxy, plan } = engine;
    const allowed = Date.now() < this.staleIfErrorUntil;
    const serve = plan.shouldServeStale ? proxy.shouldServeStale(session, ctx, error, allowed) : allowed;
    if (!serve) return false;
    const policy = StoredPolicy.fromObject(stored.policy);
    if (policy === undefined) return false;
    session.error = error;
    const status = this.cache.status.forward('stale', {
      ...(fwdStatus === undefined ? {} : { fwdStatus }),
      detail: 'stale-if-error',
    });
    const served = this.#serveStored(stored, policy, status, 'stale', undefined, Date.now());
    if (isThenable(served)) served.catch((failure: unknown) => void this.task.fail(asCairn(failure)));
    return true;
  }

  /** The origin could not be reached or failed before a response: serve stale if allowed. */
  serveStaleOnError(error: CairnError): boolean {
    this.abandon(error);
    const stored = this.stored;
    if (stored === undefined) return false;
    return this.#serveStale(stored, error, undefined);
  }

  #invalidate(head: ResponseHead): void {
    const session = this.task.session;
    const url = `${session.scheme}://${session.host}${session.path}`;
    const keys = invalidationKeys(session.method, url, head.status, head.headers);
    if (keys.length === 0) return;
    const fences = fencesOf(this.cache);
    for (const key of keys) {
      const commit = fences.commits.get(key);
      const earlier = fences.invalidations.get(key);
      const done =
        commit === undefined && earlier === undefined
          ? this.#purgeKey(key)
          : Promise.all([commit, earlier]).then(() => this.#purgeKey(key));
      fence(fences.invalidations, key, done);
    }
  }

  #purgeKey(key: string): Promise<void> {
    return this.cache.purgeKey(key).then(
      () => undefined,
      (error: unknown) => this.#storeFailed(error),
    );
  }

  // ---- the body on its way into the cache --------------------------------------------------

  /** Store one chunk (and hand it to collapsed waiters). A promise asks the caller to wait. */
  tee(chunk: Buffer): MaybePromise<void> {
    this.inflight?.append(chunk);
    const writer = this.writer;
    if (writer === undefined) return undefined;
    try {
      return writer.write(chunk);
    } catch (error) {
      this.abandon(error);
      return undefined;
    }
  }

  /** The origin body is complete: commit it, then release the waiters. */
  finish(): void {
    const writer = this.writer;
    const inflight = this.inflight;
    this.writer = undefined;
    this.inflight = undefined;
    if (writer === undefined) {
      inflight?.complete();
      return;
    }
    if (inflight?.purged === true) {
      // Purged while it arrived: it was fetched before the purge, so it is never stored.
      writer.abort();
      inflight.complete();
      return;
    }
    const committed = writer.commit().then(
      () => inflight?.complete(),
      (error: unknown) => {
        // Not stored, but the waiters already have every byte: let them finish.
        inflight?.complete();
        this.#storeFailed(error);
      },
    );
    if (this.key !== undefined) fence(fencesOf(this.cache).commits, this.key, committed);
  }

  /** The fetch failed or was cancelled: store nothing, wake the waiters with the failure. */
  abandon(error: unknown): void {
    this.writer?.abort();
    this.writer = undefined;
    this.inflight?.fail(error);
    this.inflight = undefined;
  }

  #storeFailed(error: unknown): void {
    const logger = this.task.session.log;
    if (logger.isLevelEnabled('warn'))
      logger.warn({ err: asCairn(error), key: this.key }, 'cache write failed');
  }

  #count(result: LookupResult): void {
    this.cache.lookups[result]++;
  }

  // ---- background revalidation (stale-while-revalidate) --------------------------------------

  #revalidateInBackground(meta: ObjectMeta): void {
    const key = this.key;
    if (key === undefined || !this.cache.claimRevalidation(key)) return;
    const fetch = new BackgroundRevalidation(this, meta, key);
    fetch.start().catch((error: unknown) => fetch.done(error));
  }

  // ---- purge ---------------------------------------------------------------------------------

  async #purge(): Promise<boolean> {
    const { session, ctx, engine } = this.task;
    const { proxy, plan } = engine;
    if (!this.cache.mayPurge(session.clientAddress)) {
      session.respond(
        403,
        { 'content-type': 'text/plain' },
        '403 Forbidden: purge not allowed from this address\n',
      );
      return true;
    }
    const tag = headerValue(session.headers, 'surrogate-key') ?? headerValue(session.headers, 'cache-tag');
    const prefix = headerValue(session.headers, 'x-purge-prefix') !== undefined;
    const url = `${session.scheme}://${session.host}${session.path}`;
    let purged = 0;
    if (tag !== undefined) {
      for (const t of tag.split(/[\s,]+/)) if (t !== '') purged += await this.cache.purgeTag(t);
    } else if (prefix) {
      purged = await this.cache.purgePrefix(url);
    } else {
      const key = proxy.cacheKey(session, ctx);
      if (key !== undefined) purged = await this.cache.purgeKey(key);
    }
    const body = `${JSON.stringify({ purged })}\n`;
    const head: ResponseHead = {
      status: purged > 0 ? 200 : 404,
      headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
    };
    if (plan.purgeResponseFilter) proxy.purgeResponseFilter(session, head, ctx);
    session.cacheStatus = undefined;
    session.respond(head.status, head.headers, body);
    return true;
  }
}

/** The body of a cache answer (or one range of it): from the stored object, else from the shared fetch. */
function bodyOf(
  stored: CachedObject | undefined,
  shared: InflightReader | undefined,
  range: ByteRange | undefined,
): ChunkSource | undefined {
  if (stored !== undefined) return new StoredSource(stored, range);
  return shared === undefined ? undefined : new InflightSource(shared, range);
}

function notModifiedHeaders(headers: StoredHeaders): HeaderMap {
  const out: HeaderMap = {};
  for (const name of NOT_MODIFIED_HEADERS) {
    const value = headers[name];
    if (value !== undefined) out[name] = value;
  }
  const age = headers.age;
  if (age !== undefined) out.age = age;
  return out;
}

function asCairn(error: unknown): CairnError {
  if (error instanceof CairnError) return error;
  return new CairnError('CAIRN_ERR_CACHE_STORE_WRITE', (error as Error)?.message ?? String(error), {
    cause: error,
  });
}

/**
 * A conditional request to the origin with no client attached: refreshes a stale object that was
 * just served (stale-while-revalidate). Runs `upstreamPeer` and `upstreamRequestFilter`; there is no
 * client, so the response phases do not run.
 */
class BackgroundRevalidation<Ctx> implements Dispatcher.DispatchHandler {
  readonly #owner: CacheRequest<Ctx>;
  readonly #stored: ObjectMeta;
  readonly #key: string;
  #writer: CacheWriter | undefined;
  #requestTime: number;
  #finished: boolean;

  constructor(owner: CacheRequest<Ctx>, stored: ObjectMeta, key: string) {
    this.#owner = owner;
    this.#stored = stored;
    this.#key = key;
    this.#writer = undefined;
    this.#requestTime = 0;
    this.#finished = false;
  }

  async start(): Promise<void> {
    const { session, ctx, engine } = this.#owner.task;
    const { proxy, plan } = engine;
    let peer: HttpPeer | Promise<HttpPeer> = proxy.upstreamPeer(session, ctx);
    if (isThenable(peer)) peer = await peer;
    const headers = upstreamRequestHeaders(
      session.headers,
      session.clientAddress,
      session.scheme,
      proxy.forwarding,
    );
    for (const name of CONDITIONAL_REQUEST_HEADERS) delete headers[name];
    delete headers.range;
    delete headers['content-length'];
    const v = revalidationHeaders(this.#stored.headers);
    if (v.ifNoneMatch !== undefined) headers['if-none-match'] = v.ifNoneMatch;
    if (v.ifModifiedSince !== undefined) headers['if-modified-since'] = v.ifModifiedSince;
    const request: UpstreamRequest = { method: 'GET', path: session.path, headers };
    if (plan.upstreamRequestFilter) {
      const r = proxy.upstreamRequestFilter(session, request, ctx);
      if (isThenable(r)) await r;
    }
    this.#requestTime = Date.now();
    engine.pools.get(peer).pool.dispatch(
      {
        path: request.path,
        method: 'GET',
        headers: request.headers as Record<string, string | string[]>,
        body: null,
      },
      this,
    );
  }

  onRequestStart(): void {}

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    originHeaders: Record<string, string | string[] | undefined>,
  ): void {
    const owner = this.#owner;
    const cache = owner.cache;
    const { session } = owner.task;
    const headers = withoutHopByHop(originHeaders);
    const timing = { requestTime: this.#requestTime, responseTime: Date.now() };
    const request = { method: 'GET', headers: session.headers as never };
    if (statusCode === 304) {
      const verdict = revalidatedPolicy(
        request,
        this.#stored,
        { status: 304, headers: headers },
        timing,
        cache.policy,
      );
      if (verdict.storable) {
        const p = verdict.policy;
        const updated: ObjectMeta = {
          ...this.#stored,
          headers: verdict.headers,
          policy: p.toObject(),
          storedAt: p.responseTime,
          expiresAt: p.expiresAt(cache.policy),
        };
        const r = cache.store.updateMeta(updated);
        if (isThenable(r)) r.catch(() => undefined);
      }
      return;
    }
    if (statusCode >= 500) return; // keep serving the stale copy
    let verdict = evaluateResponse(request, { status: statusCode, headers: headers }, timing, cache.policy);
    // The same hooks as a foreground fetch: a refresh must land where lookups look for it.
    const { proxy, plan } = owner.task.engine;
    if (plan.responseCacheFilter) {
      verdict = proxy.responseCacheFilter(session, { status: statusCode, headers }, verdict, owner.task.ctx);
    }
    if (!verdict.storable) return;
    const variant = owner.variantOf(verdict.headers.vary);
    if (variant === undefined) return;
    const url = `${session.scheme}://${session.host}${session.path}`;
    this.#writer = cache.store.createWriter(newObjectMeta(this.#key, variant, url, verdict, cache.policy));
    void controller;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const writer = this.#writer;
    if (writer === undefined) return;
    const r = writer.write(chunk);
    if (isThenable(r)) {
      controller.pause();
      r.then(
        () => controller.resume(),
        (error: unknown) => controller.abort(asCairn(error)),
      );
    }
  }

  onResponseEnd(): void {
    const writer = this.#writer;
    this.#writer = undefined;
    if (writer === undefined) {
      this.done(undefined);
      return;
    }
    writer.commit().then(
      () => this.done(undefined),
      (error: unknown) => this.done(error),
    );
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.#writer?.abort();
    this.#writer = undefined;
    this.done(error);
  }

  done(error: unknown): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#owner.cache.releaseRevalidation(this.#key);
    const logger = this.#owner.task.session.log;
    if (error !== undefined && logger.isLevelEnabled('debug')) {
      logger.debug({ err: asCairn(error), key: this.#key }, 'background revalidation failed');
    }
  }
}
