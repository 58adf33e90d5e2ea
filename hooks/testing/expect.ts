/**
 * Expectations for cache tests. Each throws a {@link CacheExpectationError} (an `AssertionError`,
 * so node:test, vitest and jest all report it as a failed assertion) whose message shows the
 * request, the response headers and why the response was or was not stored.
 */
import { AssertionError } from 'node:assert';
import type { CacheTest, CacheTestResponse } from './harness.ts';
import { explainStorability, formatExplanation } from './explain.ts';
import type { CacheOutcome, CacheObservation } from './observe.ts';
import type { OriginExchange, OriginRecorder } from './origin.ts';
import { compilePattern } from './pattern.ts';

/** A failed cache expectation; `message` is the whole story. */
export class CacheExpectationError extends AssertionError {
  constructor(message: string, actual: unknown, expected: unknown, operator: string) {
    super({ message, actual, expected, operator });
    this.name = 'CacheExpectationError';
  }
}

const FWD_WORDS: Readonly<Record<string, string>> = {
  'uri-miss': 'nothing was stored for this URL yet',
  'vary-miss':
    'stored responses exist for this URL, but none matches the request headers named by their Vary',
  miss: 'no usable stored response',
  request: "the request's own directives (Cache-Control: no-cache, max-age=0, Pragma) sent it to the origin",
  stale: 'the stored response was stale',
  partial: 'the stored response was incomplete',
  method: 'the request method is not one the cache serves from storage',
  bypass: 'the cache did not take part',
};

/**
 * The cache's part in words, from the parsed `Cache-Status` (or the fallback signal).
 *
 * @example
 * ```ts
 * describeObservation(res.cache); // 'miss (fwd=uri-miss: nothing was stored for this URL yet), stored'
 * ```
 */
export function describeObservation(o: CacheObservation): string {
  const e = o.entry;
  if (e === undefined) {
    return o.signal === 'none'
      ? 'unknown (no Cache-Status, X-Cache, CF-Cache-Status or Age header)'
      : `${o.outcome} (from ${o.evidence ?? o.signal})`;
  }
  const parts: string[] = [o.outcome];
  if (e.fwd !== undefined) {
    const words = FWD_WORDS[e.fwd];
    parts[0] = `${o.outcome} (fwd=${e.fwd}${words === undefined ? '' : `: ${words}`})`;
  }
  if (e.stored) parts.push('stored');
  else if (!e.hit) parts.push(`not stored${e.detail === undefined ? '' : ` (detail=${e.detail})`}`);
  if (e.ttl !== undefined) parts.push(`ttl=${e.ttl}`);
  if (e.collapsed) parts.push('collapsed onto another request');
  return parts.join(', ');
}

function headerLines(
  headers: Readonly<Record<string, string | number | readonly string[] | undefined>>,
  indent: string,
): string[] {
  const out: string[] = [];
  for (const name of Object.keys(headers).sort()) {
    const v = headers[name];
    if (v === undefined) continue;
    for (const line of typeof v === 'object' ? v : [String(v)]) out.push(`${indent}${name}: ${line}`);
  }
  return out;
}

/**
 * Everything about one response a failure message needs: the request, the response status and
 * headers, the cache outcome, what the origin answered, and the policy's verdict in words.
 *
 * @example
 * ```ts
 * console.log(describeResponse(await test.get('/api/user')));
 * ```
 */
export function describeResponse(res: CacheTestResponse): string {
  const lines = [`  request:  ${res.request.method} ${res.request.url}`];
  lines.push(`  response: ${res.status}`, ...headerLines(res.headers, '    '));
  lines.push(`  cache:    ${describeObservation(res.cache)}`);
  if (res.origin !== undefined) {
    lines.push(`  origin answered ${res.origin.status} with:`, ...headerLines(res.origin.headers, '    '));
  }
  lines.push(`  why:      ${formatExplanation(res.explain(), '            ').trimStart()}`);
  return lines.join('\n');
}

function fail(
  helper: string,
  problem: string,
  res: CacheTestResponse,
  expected: unknown,
  actual: unknown,
): never {
  throw new CacheExpectationError(
    `${helper}: ${problem}\n${describeResponse(res)}`,
    actual,
    expected,
    helper,
  );
}

/**
 * Check the cache outcome is one of `expected` (see `CacheOutcome`).
 *
 * @example
 * ```ts
 * expectOutcome(res, ['miss', 'expired']);
 * ```
 */
export function expectOutcome(
  res: CacheTestResponse,
  expected: CacheOutcome | readonly CacheOutcome[],
): void {
  const list = typeof expected === 'string' ? [expected] : expected;
  if (list.includes(res.outcome)) return;
  fail('expectOutcome', `expected ${list.join(' or ')}, got ${res.outcome}`, res, list, res.outcome);
}

/**
 * Served from the cache, fresh. With `{ allowStale: true }` a stale hit passes too.
 *
 * @example
 * ```ts
 * await test.get('/static/app.js');
 * expectHit(await test.get('/static/app.js'));
 * ```
 */
export function expectHit(res: CacheTestResponse, options: { readonly allowStale?: boolean } = {}): void {
  if (res.outcome === 'hit' || (options.allowStale === true && res.outcome === 'stale')) return;
  fail('expectHit', `expected a cache hit, got ${res.outcome}`, res, 'hit', res.outcome);
}

/**
 * Looked up and not found (or not usable), so fetched from the origin: `fwd=uri-miss`,
 * `vary-miss`, `miss`, `request` or `partial`.
 *
 * @example
 * ```ts
 * expectMiss(await test.get('/static/app.js')); // the first fetch
 * ```
 */
export function expectMiss(res: CacheTestResponse): void {
  if (res.outcome === 'miss') return;
  fail('expectMiss', `expected a cache miss, got ${res.outcome}`, res, 'miss', res.outcome);
}

/**
 * The cache stored this response (`Cache-Status: …; stored`).
 *
 * @example
 * ```ts
 * expectStored(await test.get('/static/app.js'));
 * ```
 */
export function expectStored(res: CacheTestResponse): void {
  if (res.stored === true) return;
  const got = res.stored === undefined ? `the response does not say (${res.outcome})` : 'it was not stored';
  fail('expectStored', `expected the response to be stored, but ${got}`, res, true, res.stored);
}

/**
 * The cache did not store this response, and did not serve it from storage.
 *
 * @example
 * ```ts
 * expectNotStored(await test.get('/api/user'));
 * ```
 */
export function expectNotStored(res: CacheTestResponse): void {
  if (res.stored === false) return;
  const got =
    res.stored === true
      ? 'it was stored'
      : res.outcome === 'hit' || res.outcome === 'stale'
        ? 'it was served from the cache'
        : `the response does not say (${res.outcome})`;
  fail('expectNotStored', `expected the response not to be stored, but ${got}`, res, false, res.stored);
}

function describeExchange(e: OriginExchange): string {
  const why = explainStorability({
    method: e.request.method,
    requestHeaders: e.request.headers,
    status: e.status,
    headers: e.headers,
    timing: { requestTime: e.requestTime, responseTime: e.responseTime },
  });
  const cc = e.headers['cache-control'];
  const ccText =
    cc === undefined ? 'no Cache-Control' : `cache-control: ${typeof cc === 'string' ? cc : cc.join(', ')}`;
  return `    ${e.request.method} ${e.request.path} -> ${e.status} (${ccText})\n      ${why.summary}`;
}

/**
 * The origin received exactly `expected` requests matching `pattern` (`'/static/*'`,
 * `'GET /api/*'`; `undefined` for all).
 *
 * @example
 * ```ts
 * expectOriginHits(test, '/static/*', 1);
 * ```
 */
export function expectOriginHits(
  source: CacheTest | OriginRecorder,
  pattern: string | undefined,
  expected: number,
): void {
  const origin = 'exchanges' in source ? source : source.origin;
  if (origin === undefined) {
    throw new CacheExpectationError(
      'expectOriginHits: this test does not observe the origin (it was started with `target`); origin hits cannot be counted',
      undefined,
      expected,
      'expectOriginHits',
    );
  }
  const actual = origin.hits(pattern);
  if (actual === expected) return;
  const what = pattern === undefined ? 'requests' : `requests matching ${pattern}`;
  const seen =
    pattern === undefined ? origin.exchanges : origin.exchanges.filter((e) => matchesPattern(pattern, e));
  const lines = [
    `expectOriginHits: expected the origin to receive ${expected} ${what}, it received ${actual}`,
  ];
  if (seen.length > 0) {
    lines.push(`  what reached the origin (last ${Math.min(seen.length, 10)}):`);
    for (const e of seen.slice(-10)) lines.push(describeExchange(e));
  }
  throw new CacheExpectationError(lines.join('\n'), actual, expected, 'expectOriginHits');
}

function matchesPattern(pattern: string, e: OriginExchange): boolean {
  // Same semantics as OriginRecorder.hits: counted there, listed here.
  return compilePattern(pattern).matches(e.request.method, e.request.path);
}
