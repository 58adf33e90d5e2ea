/**
 * Evaluating a client's preconditions against a stored response (RFC 9110 §13.2.2), so that a
 * cache hit can answer 304 or 412 without the origin. Pure functions.
 */

import { parseHttpDate } from './policy-date.ts';
import { headerValue, type HeaderMap } from './policy-headers.ts';

/** The outcome of evaluating preconditions. */
export type ConditionalResult = 'none' | 'not-modified' | 'precondition-failed';

/** An entity-tag (RFC 9110 §8.8.3). */
export interface EntityTag {
  readonly weak: boolean;
  /** The opaque-tag including its quotes. */
  readonly tag: string;
}

/**
 * Parse an entity-tag list (`If-Match`, `If-None-Match`) or `*`. Returns `'*'`, a list, or
 * `undefined` when the field is malformed (a malformed precondition is ignored).
 *
 * @example
 * ```ts
 * parseEntityTags('W/"a", "b"'); // [{ weak: true, tag: '"a"' }, { weak: false, tag: '"b"' }]
 * ```
 */
export function parseEntityTags(value: string): '*' | EntityTag[] | undefined {
  const v = value.trim();
  if (v === '*') return '*';
  const out: EntityTag[] = [];
  let i = 0;
  while (i < v.length) {
    while (i < v.length && (v[i] === ' ' || v[i] === '\t' || v[i] === ',')) i++;
    if (i >= v.length) break;
    let weak = false;
    if (v.startsWith('W/', i)) {
      weak = true;
      i += 2;
    }
    if (v[i] !== '"') return undefined;
    const end = v.indexOf('"', i + 1);
    if (end < 0) return undefined;
    out.push({ weak, tag: v.slice(i, end + 1) });
    i = end + 1;
  }
  return out.length === 0 ? undefined : out;
}

/**
 * Parse one entity-tag (an `ETag` field value).
 *
 * @example
 * ```ts
 * parseEntityTag('W/"x"'); // { weak: true, tag: '"x"' }
 * ```
 */
export function parseEntityTag(value: string | undefined): EntityTag | undefined {
  if (value === undefined) return undefined;
  const list = parseEntityTags(value);
  return list === undefined || list === '*' || list.length !== 1 ? undefined : list[0];
}

/** Strong comparison (RFC 9110 §8.8.3.2): both strong and identical. */
export function strongMatch(a: EntityTag, b: EntityTag): boolean {
  return !a.weak && !b.weak && a.tag === b.tag;
}

/** Weak comparison (RFC 9110 §8.8.3.2): identical opaque tags, weakness ignored. */
export function weakMatch(a: EntityTag, b: EntityTag): boolean {
  return a.tag === b.tag;
}

/**
 * Whether the request carries any of the RFC 9110 §13.1 preconditions (If-Match, If-None-Match,
 * If-Modified-Since, If-Unmodified-Since); without one, `evaluateConditional` answers `'none'`.
 *
 * @example
 * ```ts
 * hasPreconditions({ 'if-none-match': '"v1"' }); // true
 * ```
 */
export function hasPreconditions(request: HeaderMap): boolean {
  return (
    request['if-match'] !== undefined ||
    request['if-none-match'] !== undefined ||
    request['if-modified-since'] !== undefined ||
    request['if-unmodified-since'] !== undefined
  );
}

/**
 * Evaluate `If-Match`, `If-Unmodified-Since`, `If-None-Match` and `If-Modified-Since` against a
 * stored response, in RFC 9110 §13.2.2 order. Only a 2xx stored response is evaluated (RFC 9110
 * §13.1: preconditions do not apply otherwise). `If-Modified-Since` uses Last-Modified, or the
 * stored `Date` when there is none (RFC 9111 §4.3.2).
 *
 * @example
 * ```ts
 * evaluateConditional('GET', { 'if-none-match': 'W/"v1"' }, 200, { etag: '"v1"' }); // 'not-modified'
 * evaluateConditional('PUT', { 'if-match': '"v0"' }, 200, { etag: '"v1"' });        // 'precondition-failed'
 * ```
 */
export function evaluateConditional(
  method: string,
  request: HeaderMap,
  storedStatus: number,
  stored: HeaderMap,
): ConditionalResult {
  if (storedStatus < 200 || storedStatus > 299) return 'none';
  // No conditional field: every step below is skipped (most requests; spares parsing the validators).
  if (!hasPreconditions(request)) return 'none';
  const getOrHead = method === 'GET' || method === 'HEAD';
  const etag = parseEntityTag(headerValue(stored, 'etag'));
  const lastModified = parseHttpDate(headerValue(stored, 'last-modified'));

  // Step 1: If-Match (strong comparison).
  const ifMatch = headerValue(request, 'if-match');
  if (ifMatch !== undefined) {
    const tags = parseEntityTags(ifMatch);
    if (tags !== undefined && tags !== '*') {
      if (etag === undefined || !tags.some((t) => strongMatch(t, etag))) return 'precondition-failed';
    }
  } else {
    // Step 2: If-Unmodified-Since, only without If-Match.
    const ius = parseHttpDate(headerValue(request, 'if-unmodified-since'));
    if (ius !== undefined && lastModified !== undefined && lastModified > ius) return 'precondition-failed';
  }

  // Step 3: If-None-Match (weak comparison).
  const inm = headerValue(request, 'if-none-match');
  if (inm !== undefined) {
    const tags = parseEntityTags(inm);
    if (tags !== undefined) {
      const matched = tags === '*' || (etag !== undefined && tags.some((t) => weakMatch(t, etag)));
      if (matched) return getOrHead ? 'not-modified' : 'precondition-failed';
      return 'none';
    }
  }
  // Step 4: If-Modified-Since, GET/HEAD only and only without If-None-Match.
  if (getOrHead && inm === undefined) {
    const ims = parseHttpDate(headerValue(request, 'if-modified-since'));
    if (ims !== undefined) {
      const validator = lastModified ?? parseHttpDate(headerValue(stored, 'date'));
      if (validator !== undefined && validator <= ims) return 'not-modified';
    }
  }
  return 'none';
}

/**
 * Header fields a 304 carries from the stored response (RFC 9110 §15.4.5): those a 200 would
 * have sent that describe caching and the validators, not the body.
 */
export const NOT_MODIFIED_HEADERS: readonly string[] = Object.freeze([
  'cache-control',
  'content-location',
  'date',
  'etag',
  'expires',
  'last-modified',
  'vary',
  'age',
]);
