/**
 * Cairn's RFC 9111 cache policy for a shared cache: storability (with a reason), freshness, age,
 * stale-while-revalidate / stale-if-error windows, request directives, revalidation, 304 merging,
 * invalidation after unsafe methods, storage expiry, serialisation and surrogate keys.
 * Pure functions and value classes: no I/O, no clocks (every time is passed in as epoch ms).
 *
 * Relation to `http-cache-semantics`: see docs/cache-policy.md ("Why not CachePolicy at run time").
 * In short, its parser and age handling fail required conformance cases (case-sensitive directive
 * names, quoted strings, invalid `Age`, any status with explicit freshness, 304s that add fields),
 * it reads the wall clock, and its `toObject()` persists every request header (Authorization,
 * Cookie) of a `Vary` response. Cairn keeps the library's model and vocabulary and stores a
 * compact {@link SerializedPolicy} instead.
 */

import {
  parseCacheControl,
  parseDeltaSeconds,
  MAX_DELTA_SECONDS,
  CacheControl,
} from './policy-cache-control.ts';
import { parseHttpDate } from './policy-date.ts';
import {
  headerLineCount,
  headerValue,
  splitList,
  HOP_BY_HOP_HEADERS,
  type HeaderMap,
} from './policy-headers.ts';
import { cacheKey, parseVary } from './key.ts';
import type { NewObjectMeta, StoredHeaders } from './store.ts';

export { CacheControl, parseCacheControl, parseRequestCacheControl } from './policy-cache-control.ts';
export type { HeaderMap } from './policy-headers.ts';

/** How a response carrying `Set-Cookie` is treated (see docs/cache-policy.md). */
export type SetCookieMode = 'bypass' | 'strip' | 'store';

/** Options of the policy; resolve once with {@link resolvePolicyOptions} at startup. */
export interface PolicyOptions {
  /** Upper bound on heuristic freshness, seconds (RFC 9111 §4.2.2 lets caches choose). Default 86400. */
  readonly maxHeuristicTtl?: number;
  /** Fraction of (Date - Last-Modified) used as heuristic freshness. Default 0.1 (RFC 9111 §4.2.2). */
  readonly heuristicFraction?: number;
  /**
   * RFC 9213 targeted fields, in precedence order, that replace Cache-Control and Expires when one
   * is present and valid. Default `['cdn-cache-control']`. Add `'surrogate-control'` to honour it.
   */
  readonly targetedFields?: readonly string[];
  /** Remove the targeted fields from responses sent to clients. Default true. */
  readonly stripTargetedFields?: boolean;
  /** `Set-Cookie` responses: 'bypass' (default, not stored), 'strip' (stored without it), 'store'. */
  readonly setCookie?: SetCookieMode;
  /** Honour request Cache-Control / Pragma (no-cache, max-age, min-fresh, max-stale). Default true. */
  readonly requestDirectives?: boolean;
  /** Seconds a stale response may serve on origin errors when it has no stale-if-error. Default 0. */
  readonly defaultStaleIfError?: number;
  /** Seconds an object with a validator is kept after its stale windows, for a cheap 304. Default 3600. */
  readonly revalidateGrace?: number;
  /** Include apparent age (response_time - Date) in the age (RFC 9111 §4.2.3). Default false. */
  readonly useApparentAge?: boolean;
}

/** {@link PolicyOptions} with every default applied. */
export interface ResolvedPolicyOptions {
  readonly maxHeuristicTtl: number;
  readonly heuristicFraction: number;
  readonly targetedFields: readonly string[];
  readonly stripTargetedFields: boolean;
  readonly setCookie: SetCookieMode;
  readonly requestDirectives: boolean;
  readonly defaultStaleIfError: number;
  readonly revalidateGrace: number;
  readonly useApparentAge: boolean;
  /** Field names never sent to clients (the targeted fields when stripped). */
  readonly hiddenResponseHeaders: ReadonlySet<string>;
}

/**
 * Apply defaults to policy options (call once, at startup).
 *
 * @example
 * ```ts
 * const opts = resolvePolicyOptions({ maxHeuristicTtl: 3600, setCookie: 'strip' });
 * ```
 */
export function resolvePolicyOptions(options: PolicyOptions = {}): ResolvedPolicyOptions {
  const targetedFields = Object.freeze(
    (options.targetedFields ?? ['cdn-cache-control']).map((n) => n.toLowerCase()),
  );
  const strip = options.stripTargetedFields ?? true;
  return Object.freeze({
    maxHeuristicTtl: options.maxHeuristicTtl ?? 86400,
    heuristicFraction: options.heuristicFraction ?? 0.1,
    targetedFields,
    stripTargetedFields: strip,
    setCookie: options.setCookie ?? 'bypass',
    requestDirectives: options.requestDirectives ?? true,
    defaultStaleIfError: options.defaultStaleIfError ?? 0,
    revalidateGrace: options.revalidateGrace ?? 3600,
    useApparentAge: options.useApparentAge ?? false,
    hiddenResponseHeaders: new Set(strip ? targetedFields : []),
  });
}

/** The defaults, resolved. */
export const DEFAULT_POLICY_OPTIONS: ResolvedPolicyOptions = resolvePolicyOptions();

/** Status codes cacheable by default, i.e. eligible for heuristic freshness (RFC 9110 §15.1). */
export const HEURISTICALLY_CACHEABLE_STATUSES: ReadonlySet<number> = new Set([
  200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501,
]);

/** Status codes whose semantics Cairn understands, for `must-understand` (RFC 9111 §5.2.2.3). */
export const UNDERSTOOD_STATUSES: ReadonlySet<number> = new Set([
  200, 203, 204, 300, 301, 302, 303, 307, 308, 400, 403, 404, 405, 410, 414, 500, 501, 502, 503, 504,
]);

/** Why a response was not stored; used as the `detail` of `Cache-Status`. */
export type UncacheableReason =
  | 'method'
  | 'status'
  | 'partial-content'
  | 'request-no-store'
  | 'no-store'
  | 'must-understand'
  | 'private'
  | 'authorization'
  | 'vary-star'
  | 'set-cookie'
  | 'no-freshness';

/** The request as the policy sees it. */
export interface PolicyRequest {
  readonly method: string;
  readonly headers: HeaderMap;
}

/** A response as the policy sees it (lower-case header names). */
export interface PolicyResponse {
  readonly status: number;
  readonly headers: HeaderMap;
}

/** When the request was sent upstream and when its response headers arrived (epoch ms). */
export interface ResponseTiming {
  readonly requestTime: number;
  readonly responseTime: number;
}

/** The Cache-Control in effect for a response, after RFC 9213 targeting. */
export interface EffectiveCacheControl {
  readonly cc: CacheControl;
  /** The targeted field that replaced Cache-Control, or `undefined` when Cache-Control applies. */
  readonly targetedBy: string | undefined;
}

/**
 * Select the caching directives for a response: the first configured targeted field that is
 * present and parses to at least one directive (RFC 9213 §2.1), else Cache-Control. When a
 * targeted field applies, Cache-Control *and Expires* are ignored (RFC 9213 §2.1).
 *
 * @example
 * ```ts
 * effectiveCacheControl({ 'cache-control': 'private', 'cdn-cache-control': 'max-age=60' }, DEFAULT_POLICY_OPTIONS);
 * // { cc: { maxAge: 60, private: false, ... }, targetedBy: 'cdn-cache-control' }
 * ```
 */
export function effectiveCacheControl(
  headers: HeaderMap,
  options: ResolvedPolicyOptions,
): EffectiveCacheControl {
  const fields = options.targetedFields;
  for (let i = 0; i < fields.length; i++) {
    const name = fields[i]!;
    const raw = headers[name];
    if (raw === undefined) continue;
    const cc = parseCacheControl(typeof raw === 'number' ? String(raw) : raw);
    if (cc.any) return { cc, targetedBy: name };
  }
  const raw = headers['cache-control'];
  const cc = parseCacheControl(typeof raw === 'number' ? String(raw) : raw);
  // Pragma: no-cache on a response without Cache-Control: RFC 9111 §5.4 gives it no meaning, but
  // origins that send it mean "do not reuse"; honouring it is the safe reading (as http-cache-semantics does).
  if (raw === undefined && /(?:^|[\s,])no-cache(?:$|[\s,])/i.test(headerValue(headers, 'pragma') ?? ''))
    cc.noCache = true;
  return { cc, targetedBy: undefined };
}

/** The parts of the freshness model that depend only on the response (RFC 9111 §4.2.1 - §4.2.3). */
interface Freshness {
  lifetime: number;
  heuristic: boolean;
  initialAge: number;
}

function ageValue(headers: HeaderMap): number {
  const lines = headerLineCount(headers, 'age');
  if (lines === 0) return 0;
  // RFC 9111 §5.1 says to use the first member of a list-valued Age; Cairn instead treats any Age
  // that is not exactly one valid delta-seconds as "very old" (stale): a response whose age cannot
  // be known must not be served as fresh (http-cache-tests age-parse-*).
  if (lines > 1) return MAX_DELTA_SECONDS;
  return parseDeltaSeconds(headerValue(headers, 'age')!.trim()) ?? MAX_DELTA_SECONDS;
}

function computeFreshness(
  status: number,
  headers: HeaderMap,
  eff: EffectiveCacheControl,
  timing: ResponseTiming,
  options: ResolvedPolicyOptions,
): Freshness {
  const cc = eff.cc;
  const dateValue =
    headerLineCount(headers, 'date') === 1 ? parseHttpDate(headerValue(headers, 'date')) : undefined;
  const date = dateValue ?? timing.responseTime;

  // Age (RFC 9111 §4.2.3). apparent_age only when configured: origin clocks are often skewed,
  // and a skewed Date would make every short max-age response stale on arrival.
  const responseDelay = Math.max(0, (timing.responseTime - timing.requestTime) / 1000);
  const correctedAgeValue = ageValue(headers) + responseDelay;
  const apparentAge =
    options.useApparentAge && dateValue !== undefined
      ? Math.max(0, (timing.responseTime - dateValue) / 1000)
      : 0;
  const initialAge = Math.max(apparentAge, correctedAgeValue);

  // Freshness lifetime (RFC 9111 §4.2.1), shared cache: s-maxage, then max-age, then Expires - Date.
  if (cc.invalidFreshness) return { lifetime: 0, heuristic: false, initialAge };
  if (cc.sMaxAge !== undefined) return { lifetime: cc.sMaxAge, heuristic: false, initialAge };
  if (cc.maxAge !== undefined) return { lifetime: cc.maxAge, heuristic: false, initialAge };
  if (eff.targetedBy === undefined && headers['expires'] !== undefined) {
    // Invalid dates (including "0") and repeated Expires mean "already expired" (RFC 9111 §5.3).
    const expires =
      headerLineCount(headers, 'expires') === 1 ? parseHttpDate(headerValue(headers, 'expires')) : undefined;
    const lifetime = expires === undefined ? 0 : Math.max(0, (expires - date) / 1000);
    return { lifetime, heuristic: false, initialAge };
  }
  // Heuristic freshness (RFC 9111 §4.2.2): only for heuristically cacheable statuses or `public`,
  // a fraction of the time since Last-Modified, capped by maxHeuristicTtl.
  if (HEURISTICALLY_CACHEABLE_STATUSES.has(status) || cc.public) {
    const lm =
      headerLineCount(headers, 'last-modified') === 1
        ? parseHttpDate(headerValue(headers, 'last-modified'))
        : undefined;
    if (lm !== undefined && date > lm) {
      const lifetime = Math.min(options.maxHeuristicTtl, ((date - lm) / 1000) * options.heuristicFraction);
      return { lifetime, heuristic: true, initialAge };
    }
  }
  return { lifetime: 0, heuristic: false, initialAge };
}

/** The serialised form of a {@link StoredPolicy} (`ObjectMeta.policy`); plain JSON. */
export interface SerializedPolicy {
  readonly v: 1;
  readonly status: number;
  /** Epoch ms the response (or the 304 that freshened it) arrived. */
  readonly responseTime: number;
  /** corrected_initial_age, seconds (RFC 9111 §4.2.3). */
  readonly initialAge: number;
  /** Freshness lifetime, seconds. */
  readonly lifetime: number;
  readonly heuristic: boolean;
  /** stale-while-revalidate window, seconds (0 when none). */
  readonly swr: number;
  /** stale-if-error window, seconds (0 when none). */
  readonly sie: number;
  /** Unqualified no-cache: revalidate before every reuse. */
  readonly noCache: boolean;
  /** must-revalidate, proxy-revalidate or s-maxage: never serve stale (RFC 9111 §4.2.4). */
  readonly mustRevalidate: boolean;
  /** The stored response has an ETag or Last-Modified, so it can be revalidated with a 304. */
  readonly hasValidator: boolean;
}

/** Why a stored response cannot be served without contacting the origin. */
export type RevalidateReason =
  'stale' | 'no-cache' | 'request-no-cache' | 'request-max-age' | 'request-min-fresh';

/**
 * What to do with a stored response for a request (RFC 9111 §4, §4.2.4, §5.2.1; RFC 5861).
 * `age` and `ttl` are seconds (`ttl` < 0 when stale, as in RFC 9211's `ttl` parameter).
 *
 * - `fresh`: serve it.
 * - `stale-while-revalidate`: serve it now and revalidate in the background.
 * - `stale-allowed`: the client's `max-stale` accepts it stale; serve it, no revalidation needed.
 * - `revalidate`: contact the origin first (conditional request). If that fails and
 *   `now < staleIfErrorUntil`, the stale response may be served (stale-if-error).
 * - `only-if-cached`: the client sent `only-if-cached` and the response cannot be used: answer 504.
 */
export type LookupDecision =
  | { readonly kind: 'fresh'; readonly age: number; readonly ttl: number }
  | { readonly kind: 'stale-while-revalidate'; readonly age: number; readonly ttl: number }
  | { readonly kind: 'stale-allowed'; readonly age: number; readonly ttl: number }
  | {
      readonly kind: 'revalidate';
      readonly reason: RevalidateReason;
      readonly age: number;
      readonly ttl: number;
      readonly staleIfErrorUntil: number;
    }
  | { readonly kind: 'only-if-cached'; readonly age: number; readonly ttl: number };

const NO_DIRECTIVES = new CacheControl();
const policyMemo = new WeakMap<object, StoredPolicy>();

/**
 * The freshness facts of one stored response, computed once when it is stored (or freshened by a
 * 304) and serialised into `ObjectMeta.policy`. All methods take the current time explicitly.
 *
 * @example
 * ```ts
 * const verdict = evaluateResponse(req, res, { requestTime: t0, responseTime: t1 }, DEFAULT_POLICY_OPTIONS);
 * if (verdict.storable) {
 *   const decision = verdict.policy.evaluate(parseRequestCacheControl(nextReq.headers), Date.now(), DEFAULT_POLICY_OPTIONS);
 *   if (decision.kind === 'fresh') serve(verdict.policy.ageHeader(Date.now()));
 * }
 * ```
 */
export class StoredPolicy implements SerializedPolicy {
  readonly v = 1 as const;
  readonly status: number;
  readonly responseTime: number;
  readonly initialAge: number;
  readonly lifetime: number;
  readonly heuristic: boolean;
  readonly swr: number;
  readonly sie: number;
  readonly noCache: boolean;
  readonly mustRevalidate: boolean;
  readonly hasValidator: boolean;

  constructor(s: Omit<SerializedPolicy, 'v'>) {
    this.status = s.status;
    this.responseTime = s.responseTime;
    this.initialAge = s.initialAge;
    this.lifetime = s.lifetime;
    this.heuristic = s.heuristic;
    this.swr = s.swr;
    this.sie = s.sie;
    this.noCache = s.noCache;
    this.mustRevalidate = s.mustRevalidate;
    this.hasValidator = s.hasValidator;
  }

  /**
   * Rebuild from `ObjectMeta.policy`; `undefined` when the value is not a policy this version
   * understands (treat the object as a miss). Memoised per object, so a memory-tier hit does not
   * rebuild it.
   *
   * @example
   * ```ts
   * const policy = StoredPolicy.fromObject(meta.policy);
   * if (policy === undefined) return miss();
   * ```
   */
  static fromObject(value: unknown): StoredPolicy | undefined {
    if (typeof value !== 'object' || value === null) return undefined;
    if (value instanceof StoredPolicy) return value;
    const memo = policyMemo.get(value);
    if (memo !== undefined) return memo;
    const o = value as Partial<Record<keyof SerializedPolicy, unknown>>;
    if (
      o.v !== 1 ||
      typeof o.status !== 'number' ||
      typeof o.responseTime !== 'number' ||
      typeof o.initialAge !== 'number' ||
      typeof o.lifetime !== 'number' ||
      typeof o.swr !== 'number' ||
      typeof o.sie !== 'number'
    ) {
      return undefined;
    }
    const p = new StoredPolicy({
      status: o.status,
      responseTime: o.responseTime,
      initialAge: o.initialAge,
      lifetime: o.lifetime,
      heuristic: o.heuristic === true,
      swr: o.swr,
      sie: o.sie,
      noCache: o.noCache === true,
      mustRevalidate: o.mustRevalidate === true,
      hasValidator: o.hasValidator === true,
    });
    policyMemo.set(value, p);
    return p;
  }

  /**
   * The JSON-serialisable form for `ObjectMeta.policy`.
   *
   * @example
   * ```ts
   * JSON.parse(JSON.stringify(policy.toObject())); // round-trips through StoredPolicy.fromObject
   * ```
   */
  toObject(): SerializedPolicy {
    return {
      v: 1,
      status: this.status,
      responseTime: this.responseTime,
      initialAge: this.initialAge,
      lifetime: this.lifetime,
      heuristic: this.heuristic,
      swr: this.swr,
      sie: this.sie,
      noCache: this.noCache,
      mustRevalidate: this.mustRevalidate,
      hasValidator: this.hasValidator,
    };
  }

  /**
   * current_age in seconds (RFC 9111 §4.2.3): corrected initial age + resident time.
   *
   * @example
   * ```ts
   * policy.age(policy.responseTime + 5000); // initialAge + 5
   * ```
   */
  age(now: number): number {
    return this.initialAge + Math.max(0, now - this.responseTime) / 1000;
  }

  /**
   * The `Age` header value to send with a stored response (RFC 9111 §5.1): whole seconds, capped.
   *
   * @example
   * ```ts
   * res.setHeader('age', policy.ageHeader(Date.now()));
   * ```
   */
  ageHeader(now: number): string {
    const a = Math.floor(this.age(now));
    return String(a > MAX_DELTA_SECONDS ? MAX_DELTA_SECONDS : a);
  }

  /**
   * Remaining freshness in seconds (negative once stale).
   *
   * @example
   * ```ts
   * Math.round(policy.ttl(Date.now())); // the Cache-Status ttl
   * ```
   */
  ttl(now: number): number {
    return this.lifetime - this.age(now);
  }

  /**
   * Fresh when freshness_lifetime > current_age (RFC 9111 §4.2) and no-cache is absent.
   *
   * @example
   * ```ts
   * if (policy.isFresh(Date.now())) serveFromCache();
   * ```
   */
  isFresh(now: number): boolean {
    return !this.noCache && this.lifetime > this.age(now);
  }

  /** Epoch ms at which the response became (or becomes) stale. */
  staleAt(): number {
    return this.responseTime + (this.lifetime - this.initialAge) * 1000;
  }

  /**
   * Until when (epoch ms) a stale copy may be served because the origin failed (RFC 5861 §4),
   * using the larger of the response's and the request's `stale-if-error`. 0 when forbidden by
   * no-cache, must-revalidate, proxy-revalidate or s-maxage (RFC 9111 §4.2.4).
   *
   * @example
   * ```ts
   * if (originFailed && Date.now() < policy.staleIfErrorUntil(reqCC, opts)) serveStale();
   * ```
   */
  staleIfErrorUntil(request: CacheControl | undefined, options: ResolvedPolicyOptions): number {
    if (this.noCache || this.mustRevalidate) return 0;
    const reqSie = options.requestDirectives && request !== undefined ? (request.staleIfError ?? 0) : 0;
    const window = Math.max(this.sie, reqSie, options.defaultStaleIfError);
    return window > 0 ? this.staleAt() + window * 1000 : 0;
  }

  /**
   * `ObjectMeta.expiresAt`: when the object is of no use even stale. Fresh lifetime plus the longest
   * stale window, plus `revalidateGrace` when it has a validator (a 304 is cheaper than a refetch).
   *
   * @example
   * ```ts
   * writer = store.createWriter({ ...meta, expiresAt: policy.expiresAt(opts) });
   * ```
   */
  expiresAt(options: ResolvedPolicyOptions): number {
    const stale =
      this.noCache || this.mustRevalidate ? 0 : Math.max(this.swr, this.sie, options.defaultStaleIfError);
    const grace = this.hasValidator ? options.revalidateGrace : 0;
    return Math.round(this.staleAt() + (stale + grace) * 1000);
  }

  /**
   * Decide how a stored response can serve a request. `request` is the request's parsed
   * directives ({@link parseRequestCacheControl}); they are ignored when the options say so.
   *
   * @example
   * ```ts
   * const d = policy.evaluate(parseRequestCacheControl(req.headers), Date.now(), opts);
   * switch (d.kind) { case 'fresh': ...; case 'revalidate': ...; }
   * ```
   */
  evaluate(request: CacheControl | undefined, now: number, options: ResolvedPolicyOptions): LookupDecision {
    const req = options.requestDirectives && request !== undefined ? request : NO_DIRECTIVES;
    const age = this.age(now);
    const ttl = this.lifetime - age;
    let reason: RevalidateReason | undefined;
    if (this.noCache) reason = 'no-cache';
    // RFC 9111 §5.2.1.4: request no-cache: a stored response must be validated first.
    else if (req.noCache) reason = 'request-no-cache';
    // RFC 9111 §5.2.1.1: the client does not accept a response older than max-age.
    else if (req.maxAge !== undefined && age > req.maxAge) reason = 'request-max-age';
    else if (ttl > 0) {
      // RFC 9111 §5.2.1.3: min-fresh asks for at least that much freshness left.
      if (req.minFresh !== undefined && ttl < req.minFresh) reason = 'request-min-fresh';
      else return { kind: 'fresh', age, ttl };
    } else if (!this.mustRevalidate) {
      // Stale. RFC 9111 §4.2.4: no stale serving when must-revalidate/proxy-revalidate/s-maxage apply.
      const staleness = -ttl;
      if (req.maxStale !== undefined && staleness <= req.maxStale) return { kind: 'stale-allowed', age, ttl };
      if (this.swr > 0 && staleness < this.swr) return { kind: 'stale-while-revalidate', age, ttl };
      reason = 'stale';
    } else reason = 'stale';
    // RFC 9111 §5.2.1.7: only-if-cached and nothing usable: the cache answers 504.
    if (req.onlyIfCached) return { kind: 'only-if-cached', age, ttl };
    return { kind: 'revalidate', reason, age, ttl, staleIfErrorUntil: this.staleIfErrorUntil(req, options) };
  }
}

/** The result of {@link evaluateResponse}. */
export type ResponseVerdict =
  | {
      readonly storable: true;
      readonly policy: StoredPolicy;
      /** The headers to store: hop-by-hop and excluded fields removed (RFC 9111 §3.1). */
      readonly headers: StoredHeaders;
      readonly targetedBy: string | undefined;
    }
  | { readonly storable: false; readonly reason: UncacheableReason; readonly targetedBy: string | undefined };

function uncacheable(reason: UncacheableReason, targetedBy: string | undefined): ResponseVerdict {
  return { storable: false, reason, targetedBy };
}

/**
 * Decide whether a response may be stored by a shared cache (RFC 9111 §3, plus Cairn's
 * Set-Cookie rule) and, if so, compute its {@link StoredPolicy} and the headers to store.
 *
 * @example
 * ```ts
 * const v = evaluateResponse({ method: 'GET', headers: req.headers }, { status: 200, headers: res.headers },
 *   { requestTime, responseTime: Date.now() }, opts);
 * if (!v.storable) cacheStatus = writer.bypass(v.reason); // 'Cairn; fwd=bypass; detail=no-store'
 * ```
 */
export function evaluateResponse(
  request: PolicyRequest,
  response: PolicyResponse,
  timing: ResponseTiming,
  options: ResolvedPolicyOptions,
): ResponseVerdict {
  const status = response.status;
  const headers = response.headers;
  const eff = effectiveCacheControl(headers, options);
  const cc = eff.cc;
  const t = eff.targetedBy;
  // RFC 9111 §3: the method must be cacheable and understood. POST responses are not stored (see docs).
  if (request.method !== 'GET' && request.method !== 'HEAD') return uncacheable('method', t);
  // Final status only; 304 is merged, never stored by itself; partial content is not stored.
  if (status < 200 || status > 599 || status === 304) return uncacheable('status', t);
  if (status === 206) return uncacheable('partial-content', t);
  const rawReqCC = request.headers['cache-control'];
  const reqCC =
    rawReqCC === undefined
      ? NO_DIRECTIVES
      : parseCacheControl(typeof rawReqCC === 'number' ? String(rawReqCC) : rawReqCC);
  // RFC 9111 §5.2.1.5: request no-store.
  if (reqCC.noStore) return uncacheable('request-no-store', t);
  // RFC 9111 §5.2.2.3: must-understand: store only known statuses, and then no-store may be ignored.
  if (cc.mustUnderstand) {
    if (!UNDERSTOOD_STATUSES.has(status)) return uncacheable('must-understand', t);
  } else if (cc.noStore) return uncacheable('no-store', t);
  // RFC 9111 §5.2.2.7: unqualified private forbids a shared cache from storing.
  if (cc.private) return uncacheable('private', t);
  // RFC 9111 §3.5: Authorization only with public, s-maxage or must-revalidate.
  if (
    request.headers['authorization'] !== undefined &&
    !cc.public &&
    cc.sMaxAge === undefined &&
    !cc.mustRevalidate
  ) {
    return uncacheable('authorization', t);
  }
  if (parseVary(headerValue(headers, 'vary')).star) return uncacheable('vary-star', t);
  const cookieQualified = cc.privateFields.includes('set-cookie') || cc.noCacheFields.includes('set-cookie');
  if (options.setCookie === 'bypass' && headers['set-cookie'] !== undefined && !cookieQualified) {
    return uncacheable('set-cookie', t);
  }
  // RFC 9111 §3: explicit freshness, public, or a heuristically cacheable status.
  const explicit =
    cc.maxAge !== undefined ||
    cc.sMaxAge !== undefined ||
    cc.public ||
    (t === undefined && headers['expires'] !== undefined);
  if (!explicit && !HEURISTICALLY_CACHEABLE_STATUSES.has(status)) return uncacheable('status', t);

  const f = computeFreshness(status, headers, eff, timing, options);
  const hasValidator = headers['etag'] !== undefined || headers['last-modified'] !== undefined;
  const swr = cc.staleWhileRevalidate ?? 0;
  const sie = cc.staleIfError ?? 0;
  const noCache = cc.noCache;
  // Not useful: stale on arrival, cannot be revalidated and has no stale window. Storing it would
  // only evict something useful.
  if (
    !hasValidator &&
    (noCache || f.lifetime + Math.max(swr, sie, options.defaultStaleIfError) <= f.initialAge)
  ) {
    return uncacheable('no-freshness', t);
  }
  const policy = new StoredPolicy({
    status,
    responseTime: timing.responseTime,
    initialAge: f.initialAge,
    lifetime: f.lifetime,
    heuristic: f.heuristic,
    swr,
    sie,
    noCache,
    mustRevalidate: cc.mustRevalidate || cc.proxyRevalidate || cc.sMaxAge !== undefined,
    hasValidator,
  });
  return { storable: true, policy, headers: headersToStore(headers, cc, options), targetedBy: t };
}

/**
 * The header fields to store for a response (RFC 9111 §3.1): everything except hop-by-hop fields,
 * fields named in `Connection`, fields named by qualified `private` / `no-cache` (RFC 9111
 * §5.2.2.4, §5.2.2.7: Cairn strips them instead of revalidating), and `Set-Cookie` in 'strip' mode.
 *
 * @example
 * ```ts
 * headersToStore({ connection: 'x', x: '1', 'content-type': 'text/plain' }, new CacheControl(), opts);
 * // { 'content-type': 'text/plain' }
 * ```
 */
export function headersToStore(
  headers: HeaderMap,
  cc: CacheControl,
  options: ResolvedPolicyOptions,
): StoredHeaders {
  const connection = headerValue(headers, 'connection');
  const dropped = connection === undefined ? undefined : new Set(splitList(connection.toLowerCase()));
  const out: StoredHeaders = {};
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined || HOP_BY_HOP_HEADERS.has(name)) continue;
    if (dropped !== undefined && dropped.has(name)) continue;
    if (cc.privateFields.length !== 0 && cc.privateFields.includes(name)) continue;
    if (cc.noCacheFields.length !== 0 && cc.noCacheFields.includes(name)) continue;
    if (name === 'set-cookie' && options.setCookie === 'strip') continue;
    out[name] = typeof v === 'string' ? v : typeof v === 'number' ? String(v) : [...v];
  }
  return out;
}

/**
 * Copy headers for a client response, once: drops hop-by-hop fields and the targeted fields
 * Cairn hides (RFC 9213: `CDN-Cache-Control` is for the CDN), and sets `Age` when given.
 *
 * @example
 * ```ts
 * const out = clientHeaders(meta.headers, policy.ageHeader(now), opts);
 * ```
 */
export function clientHeaders(
  headers: HeaderMap,
  age: string | undefined,
  options: ResolvedPolicyOptions,
): StoredHeaders {
  const hidden = options.hiddenResponseHeaders;
  const out: StoredHeaders = {};
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined || HOP_BY_HOP_HEADERS.has(name) || hidden.has(name)) continue;
    out[name] = typeof v === 'string' ? v : typeof v === 'number' ? String(v) : [...v];
  }
  if (age !== undefined) out['age'] = age;
  return out;
}

/** Per stored header map: the fields `clientHeaders` keeps, for one set of hidden fields. */
interface ClientFields {
  readonly hidden: ReadonlySet<string>;
  readonly names: readonly string[];
  readonly values: readonly (string | readonly string[])[];
  /** `storedHitFieldList`'s answer for `listLength` (null: not made yet). */
  list: FieldList | undefined | null;
  listLength: number;
}

/** A response head as `[name, value, name, value, …]`, the form `ServerResponse#writeHead` also takes. */
export type FieldList = readonly (string | readonly string[])[];

function clientFieldsOf(headers: StoredHeaders, options: ResolvedPolicyOptions): ClientFields {
  let fields = CLIENT_FIELDS.get(headers);
  if (fields === undefined || fields.hidden !== options.hiddenResponseHeaders) {
    const kept = clientHeaders(headers, undefined, options);
    fields = {
      hidden: options.hiddenResponseHeaders,
      names: Object.keys(kept),
      values: Object.values(kept),
      list: null,
      listLength: -1,
    };
    CLIENT_FIELDS.set(headers, fields);
  }
  return fields;
}

const CLIENT_FIELDS = new WeakMap<HeaderMap, ClientFields>();

/**
 * `clientHeaders` for a stored response's own headers, which never change once stored (a 304
 * merge makes a new map): which fields to keep is decided on the first hit, later hits only copy.
 *
 * @example
 * ```ts
 * const out = storedClientHeaders(meta.headers, policy.ageHeader(now), opts);
 * ```
 */
export function storedClientHeaders(
  headers: StoredHeaders,
  age: string | undefined,
  options: ResolvedPolicyOptions,
): StoredHeaders {
  const { names, values } = clientFieldsOf(headers, options);
  const out: StoredHeaders = {};
  for (let i = 0; i < names.length; i++) {
    const v = values[i]!;
    // Arrays are copied, so a hook that changes one cannot change what is stored.
    out[names[i]!] = typeof v === 'string' ? v : [...v];
  }
  if (age !== undefined) out['age'] = age;
  return out;
}

/**
 * The client fields of a stored response (what {@link storedClientHeaders} keeps, with a
 * Content-Length of `bodyLength` when the origin sent none) as a flat list made once per stored
 * header map, ending in three pairs whose values are empty: Age, Via and Cache-Status, which a hit
 * fills in its own copy (one allocation of the final size, and Node writes a list without walking
 * an object's keys). `undefined` when the stored fields hold Age, Via or Cache-Status themselves,
 * which the engine merges as a map.
 *
 * @example
 * ```ts
 * const list = storedHitFieldList(meta.headers, meta.bodyLength, opts);
 * // [...stored fields, 'age', '', 'via', '', 'cache-status', '']
 * ```
 */
export function storedHitFieldList(
  headers: StoredHeaders,
  bodyLength: number,
  options: ResolvedPolicyOptions,
): FieldList | undefined {
  const fields = clientFieldsOf(headers, options);
  if (fields.list === null || fields.listLength !== bodyLength) {
    fields.list = fieldList(fields, bodyLength);
    fields.listLength = bodyLength;
  }
  return fields.list;
}

/** The names of the empty pairs that end a {@link storedHitFieldList}, in order. */
export const HIT_FIELD_SLOTS: readonly string[] = Object.freeze(['age', 'via', 'cache-status']);

function fieldList({ names, values }: ClientFields, bodyLength: number): FieldList | undefined {
  const list: (string | readonly string[])[] = [];
  let length = false;
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    if (HIT_FIELD_SLOTS.includes(name)) return undefined;
    if (name === 'content-length') length = true;
    list.push(name, values[i]!);
  }
  if (!length) list.push('content-length', String(bodyLength));
  for (const name of HIT_FIELD_SLOTS) list.push(name, '');
  return list;
}

/** Conditional request fields a client may send; the engine replaces them with Cairn's own when revalidating. */
export const CONDITIONAL_REQUEST_HEADERS: readonly string[] = Object.freeze([
  'if-match',
  'if-none-match',
  'if-modified-since',
  'if-unmodified-since',
  'if-range',
]);

/** Validators to put on a revalidation request. */
export interface RevalidationHeaders {
  readonly ifNoneMatch: string | undefined;
  readonly ifModifiedSince: string | undefined;
}

/**
 * The conditional headers for revalidating a stored response (RFC 9111 §4.3.1): its ETag as
 * `If-None-Match`, its Last-Modified as `If-Modified-Since`. Cairn sends only its own validators
 * (the client's conditionals are evaluated locally against the result, see conditional.ts), so a
 * 304 always refers to the stored response.
 *
 * @example
 * ```ts
 * const v = revalidationHeaders(meta.headers);
 * if (v.ifNoneMatch !== undefined) upstream.headers['if-none-match'] = v.ifNoneMatch;
 * ```
 */
export function revalidationHeaders(stored: HeaderMap): RevalidationHeaders {
  const etag = headerValue(stored, 'etag');
  const lm = headerValue(stored, 'last-modified');
  return {
    ifNoneMatch: etag,
    ifModifiedSince: lm !== undefined && parseHttpDate(lm) !== undefined ? lm : undefined,
  };
}

function opaqueTag(etag: string): string {
  const t = etag.trim();
  return t.startsWith('W/') ? t.slice(2) : t;
}

/**
 * Whether a 304 may freshen the stored response (RFC 9111 §4.3.4): a strong ETag must equal the
 * stored one; a weak one matches by weak comparison; else Last-Modified must be equal. A 304
 * without any validator is accepted (deliberate difference): Cairn sends only the stored
 * response's validators, so the 304 can only be about it.
 *
 * @example
 * ```ts
 * notModifiedMatches({ etag: '"a"' }, { etag: '"b"' }); // false: refetch without conditions
 * ```
 */
export function notModifiedMatches(stored: HeaderMap, notModified: HeaderMap): boolean {
  const newTag = headerValue(notModified, 'etag');
  if (newTag !== undefined) {
    const oldTag = headerValue(stored, 'etag');
    if (oldTag === undefined) return false;
    const strong = !newTag.trim().startsWith('W/');
    if (strong) return oldTag.trim() === newTag.trim();
    return opaqueTag(oldTag) === opaqueTag(newTag);
  }
  const newLm = headerValue(notModified, 'last-modified');
  if (newLm !== undefined) {
    const oldLm = headerValue(stored, 'last-modified');
    return (
      oldLm !== undefined &&
      parseHttpDate(oldLm) === parseHttpDate(newLm) &&
      parseHttpDate(newLm) !== undefined
    );
  }
  return true;
}

/**
 * Fields a 304 must not change: they describe the stored body (RFC 9111 §3.2: Content-Length;
 * Cairn adds the other representation-framing fields, and keeps the stored ETag and Vary, on which
 * the stored response's selection depends).
 */
const NOT_UPDATED_BY_304: ReadonlySet<string> = new Set([
  'content-length',
  'content-encoding',
  'content-range',
  'content-md5',
  'transfer-encoding',
  'etag',
  'vary',
]);

/**
 * Merge a 304's fields into the stored headers (RFC 9111 §3.2, §4.3.4): every field of the 304
 * replaces or is added to the stored ones, except hop-by-hop fields, those named in its
 * `Connection`, and {@link NOT_UPDATED_BY_304}.
 *
 * @example
 * ```ts
 * mergeNotModified({ 'content-length': '10', 'cache-control': 'max-age=1' },
 *   { 'cache-control': 'max-age=60', 'content-length': '0', 'x-new': '1' });
 * // { 'content-length': '10', 'cache-control': 'max-age=60', 'x-new': '1' }
 * ```
 */
export function mergeNotModified(stored: HeaderMap, notModified: HeaderMap): StoredHeaders {
  const out: StoredHeaders = {};
  for (const name in stored) {
    const v = stored[name];
    if (v === undefined) continue;
    out[name] = typeof v === 'string' ? v : typeof v === 'number' ? String(v) : [...v];
  }
  const connection = headerValue(notModified, 'connection');
  const dropped = connection === undefined ? undefined : new Set(splitList(connection.toLowerCase()));
  for (const name in notModified) {
    const v = notModified[name];
    if (v === undefined || HOP_BY_HOP_HEADERS.has(name) || NOT_UPDATED_BY_304.has(name)) continue;
    if (dropped !== undefined && dropped.has(name)) continue;
    out[name] = typeof v === 'string' ? v : typeof v === 'number' ? String(v) : [...v];
  }
  return out;
}

/**
 * Freshen a stored response with a 304: merge the headers and re-evaluate the policy as if the
 * merged response had just arrived (`timing` is the revalidation request's). The verdict may now
 * be uncacheable (e.g. the 304 carries `no-store`): then delete the stored object.
 * Call {@link notModifiedMatches} first.
 *
 * @example
 * ```ts
 * const v = revalidatedPolicy(req, meta, upstream304, { requestTime, responseTime: Date.now() }, opts);
 * if (v.storable) await store.updateMeta({ ...meta, headers: v.headers, policy: v.policy.toObject() });
 * ```
 */
export function revalidatedPolicy(
  request: PolicyRequest,
  stored: { readonly status: number; readonly headers: HeaderMap },
  notModified: PolicyResponse,
  timing: ResponseTiming,
  options: ResolvedPolicyOptions,
): ResponseVerdict {
  const merged = mergeNotModified(stored.headers, notModified.headers);
  return evaluateResponse(request, { status: stored.status, headers: merged }, timing, options);
}

const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/**
 * Cache keys to invalidate after an unsafe request (RFC 9111 §4.4): for any method that is not
 * safe (RFC 9110 §9.2.1), when the response is 2xx or 3xx, the effective request URI and the
 * `Location` and `Content-Location` URIs, the latter two only when same-origin (to stop an origin
 * from purging other hosts' objects). `requestUrl` must be absolute (`scheme://host/path?query`).
 *
 * @example
 * ```ts
 * invalidationKeys('POST', 'http://a.test/items', 201, { location: '/items/7' });
 * // ['http://a.test/items', 'http://a.test/items/7']
 * ```
 */
export function invalidationKeys(
  method: string,
  requestUrl: string,
  status: number,
  headers: HeaderMap,
): string[] {
  if (SAFE_METHODS.has(method) || status < 200 || status > 399) return [];
  let base: URL;
  try {
    base = new URL(requestUrl);
  } catch {
    return [];
  }
  const out: string[] = [];
  const self = cacheKey(base.protocol.slice(0, -1), base.host, base.pathname + base.search);
  if (self === undefined) return out;
  out.push(self);
  for (const field of ['location', 'content-location']) {
    const value = headerValue(headers, field);
    if (value === undefined) continue;
    let u: URL;
    try {
      u = new URL(value.trim(), base);
    } catch {
      continue;
    }
    if (u.origin !== base.origin) continue;
    const k = cacheKey(u.protocol.slice(0, -1), u.host, u.pathname + u.search);
    if (k !== undefined && !out.includes(k)) out.push(k);
  }
  return out;
}

/**
 * Surrogate keys (purge tags) from `Surrogate-Key` (space separated, Fastly) and `Cache-Tag`
 * (comma separated, Cloudflare/Akamai), de-duplicated in order of appearance.
 *
 * @example
 * ```ts
 * surrogateKeys({ 'surrogate-key': 'post-1 user-7', 'cache-tag': 'post-1,home' }); // ['post-1', 'user-7', 'home']
 * ```
 */
export function surrogateKeys(headers: HeaderMap): string[] {
  const out: string[] = [];
  const sk = headerValue(headers, 'surrogate-key');
  if (sk !== undefined) {
    for (const k of sk.split(/[\s,]+/)) if (k !== '' && !out.includes(k)) out.push(k);
  }
  const ct = headerValue(headers, 'cache-tag');
  if (ct !== undefined) {
    for (const part of ct.split(',')) {
      const k = part.trim();
      if (k !== '' && !out.includes(k)) out.push(k);
    }
  }
  return out;
}

/**
 * Assemble the `NewObjectMeta` for a storable verdict (the tier fills in length, chunk size, id).
 *
 * @example
 * ```ts
 * if (v.storable) store.createWriter(newObjectMeta(key, variant, url, res.status, v, opts));
 * ```
 */
export function newObjectMeta(
  key: string,
  variant: string,
  url: string,
  verdict: Extract<ResponseVerdict, { storable: true }>,
  options: ResolvedPolicyOptions,
): NewObjectMeta {
  const p = verdict.policy;
  return {
    key,
    variant,
    url,
    tags: surrogateKeys(verdict.headers),
    status: p.status,
    headers: verdict.headers,
    policy: p.toObject(),
    storedAt: p.responseTime,
    expiresAt: p.expiresAt(options),
  };
}
