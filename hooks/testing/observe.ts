/**
 * What a response says about the cache that served it: RFC 9211 `Cache-Status` first, then the
 * common non-standard signals (`X-Cache`, `CF-Cache-Status`, `Age`) for caches that are not Cairn.
 */
import { parseCacheStatus } from '../../src/index.ts';
import type { CacheStatusEntry } from '../../src/index.ts';

/**
 * How a response was served, in one word:
 * - `hit`: from the cache, fresh (includes a waiter served from another request's fetch);
 * - `stale`: from the cache, stale (stale-while-revalidate, max-stale, stale-if-error);
 * - `miss`: looked up, nothing usable stored, fetched from the origin (`fwd=uri-miss|vary-miss|miss|request|partial`);
 * - `revalidated`: a stored stale response was confirmed with a 304 (`fwd=stale; fwd-status=304`);
 * - `expired`: a stored stale response was replaced by a full origin response (`fwd=stale`);
 * - `bypass`: the cache did not take part (`fwd=bypass|method`);
 * - `unknown`: the response carries no signal this kit understands.
 */
export type CacheOutcome = 'hit' | 'stale' | 'miss' | 'revalidated' | 'expired' | 'bypass' | 'unknown';

/**
 * Every {@link CacheOutcome}, for validation and tables.
 *
 * @example
 * ```ts
 * CACHE_OUTCOMES.includes(value as CacheOutcome);
 * ```
 */
export const CACHE_OUTCOMES: readonly CacheOutcome[] = [
  'hit',
  'stale',
  'miss',
  'revalidated',
  'expired',
  'bypass',
  'unknown',
];

/** Where an observation came from. */
export type CacheSignal = 'cache-status' | 'x-cache' | 'cf-cache-status' | 'age' | 'none';

/** The cache's side of one response. */
export interface CacheObservation {
  readonly outcome: CacheOutcome;
  /** Whether the response was stored; `undefined` when the headers do not say. */
  readonly stored: boolean | undefined;
  /** Remaining freshness from `Cache-Status` `ttl`, seconds. */
  readonly ttl: number | undefined;
  /** The `Age` header, seconds (`undefined` when absent or invalid). */
  readonly age: number | undefined;
  /** The `Cache-Status` entry judged (see `cacheName`), if any. */
  readonly entry: CacheStatusEntry | undefined;
  /** Every `Cache-Status` entry, closest to the origin first (RFC 9211 §2). */
  readonly entries: readonly CacheStatusEntry[];
  readonly signal: CacheSignal;
  /** The header value the outcome was read from, for messages. */
  readonly evidence: string | undefined;
}

/** Response headers as node:http delivers them. */
export type ResponseHeaders = Readonly<Record<string, string | readonly string[] | undefined>>;

function single(headers: ResponseHeaders, name: string): string | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  return typeof v === 'string' ? v : v.join(', ');
}

function fromEntry(e: CacheStatusEntry): CacheOutcome {
  if (e.hit) return e.detail === 'stale' ? 'stale' : 'hit';
  switch (e.fwd) {
    case 'bypass':
    case 'method':
      return 'bypass';
    case 'stale':
      return e.fwdStatus === 304 ? 'revalidated' : 'expired';
    case 'uri-miss':
    case 'vary-miss':
    case 'miss':
    case 'request':
    case 'partial':
      return 'miss';
    case undefined:
    default:
      return 'unknown';
  }
}

// X-Cache (Squid, Varnish setups, Fastly, CloudFront, nginx add_header) and CF-Cache-Status words.
function fromWord(value: string): CacheOutcome {
  const v = value.toUpperCase();
  if (/\b(?:REVALIDATED)\b/.test(v)) return 'revalidated';
  if (/\b(?:STALE|UPDATING)\b/.test(v)) return 'stale';
  if (/\bEXPIRED\b/.test(v)) return 'expired';
  if (/\bHIT\b|_HIT\b/.test(v)) return 'hit';
  if (/\bMISS\b|_MISS\b/.test(v)) return 'miss';
  if (/\b(?:BYPASS|PASS|DYNAMIC|NONE|UNCACHEABLE)\b/.test(v)) return 'bypass';
  return 'unknown';
}

/**
 * Read a response's cache signals. `cacheName` picks the `Cache-Status` entry to judge; by default
 * the last one (the cache closest to the client, the one the request went through first).
 *
 * @example
 * ```ts
 * observeCache({ 'cache-status': 'Cairn; fwd=uri-miss; stored' }).outcome; // 'miss'
 * observeCache({ 'x-cache': 'HIT from edge' }).outcome;                   // 'hit'
 * observeCache({ age: '12' }).outcome;                                    // 'hit'
 * ```
 */
export function observeCache(headers: ResponseHeaders, cacheName?: string): CacheObservation {
  const ageRaw = single(headers, 'age');
  const age = ageRaw !== undefined && /^\d+$/.test(ageRaw.trim()) ? Number(ageRaw.trim()) : undefined;
  const raw = headers['cache-status'];
  const entries = parseCacheStatus(raw === undefined ? undefined : typeof raw === 'string' ? raw : [...raw]);
  const entry = cacheName === undefined ? entries.at(-1) : entries.findLast((e) => e.cache === cacheName);
  if (entry !== undefined) {
    const outcome = fromEntry(entry);
    // RFC 9211 §2.5: `stored` is only meaningful on a forwarded response; a hit was stored before.
    const stored = entry.hit ? undefined : entry.stored;
    return {
      outcome,
      stored,
      ttl: entry.ttl,
      age,
      entry,
      entries,
      signal: 'cache-status',
      evidence: single(headers, 'cache-status'),
    };
  }
  for (const [name, signal] of [
    ['x-cache', 'x-cache'],
    ['cf-cache-status', 'cf-cache-status'],
  ] as const) {
    const value = single(headers, name);
    if (value === undefined) continue;
    const outcome = fromWord(value);
    if (outcome !== 'unknown')
      return {
        outcome,
        stored: undefined,
        ttl: undefined,
        age,
        entry: undefined,
        entries,
        signal,
        evidence: value,
      };
  }
  // A positive Age means the response spent time in some cache (RFC 9111 §5.1).
  if (age !== undefined && age > 0) {
    return {
      outcome: 'hit',
      stored: undefined,
      ttl: undefined,
      age,
      entry: undefined,
      entries,
      signal: 'age',
      evidence: `Age: ${age}`,
    };
  }
  return {
    outcome: 'unknown',
    stored: undefined,
    ttl: undefined,
    age,
    entry: undefined,
    entries,
    signal: 'none',
    evidence: undefined,
  };
}
