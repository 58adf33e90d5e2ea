/**
 * A Cache-Control parser that follows the RFC 9110 §5.6 list grammar (quoted strings may hold
 * commas and `=`), lower-cases directive names (RFC 9111 §5.2: names are case-insensitive) and
 * validates delta-seconds strictly (RFC 9111 §1.2.2). Also used for RFC 9213 targeted fields
 * (`CDN-Cache-Control`), whose Structured-Field dictionary syntax is a subset of this grammar for
 * every directive Cairn reads.
 */

import type { HeaderMap } from './policy-headers.ts';

/** The largest delta-seconds a cache must represent; larger values are clamped (RFC 9111 §1.2.2). */
export const MAX_DELTA_SECONDS = 2147483648;

/**
 * Parsed Cache-Control directives. Every field is always present (stable shape); `undefined` means
 * the directive is absent or its value is invalid.
 */
export class CacheControl {
  /** `max-age` (seconds). */
  maxAge: number | undefined = undefined;
  /** `s-maxage` (seconds). */
  sMaxAge: number | undefined = undefined;
  /** Request `max-stale`: seconds, or `Infinity` without a value. */
  maxStale: number | undefined = undefined;
  /** Request `min-fresh` (seconds). */
  minFresh: number | undefined = undefined;
  /** `stale-while-revalidate` (RFC 5861), seconds. */
  staleWhileRevalidate: number | undefined = undefined;
  /** `stale-if-error` (RFC 5861), seconds. */
  staleIfError: number | undefined = undefined;
  noStore = false;
  /** Unqualified `no-cache` (the whole response must be revalidated before each reuse). */
  noCache = false;
  /** Field names of a qualified `no-cache="a, b"` (RFC 9111 §5.2.2.4); empty when none. */
  noCacheFields: readonly string[] = EMPTY;
  /** Unqualified `private`. */
  private = false;
  /** Field names of a qualified `private="a"` (RFC 9111 §5.2.2.7); empty when none. */
  privateFields: readonly string[] = EMPTY;
  public = false;
  mustRevalidate = false;
  proxyRevalidate = false;
  mustUnderstand = false;
  immutable = false;
  noTransform = false;
  onlyIfCached = false;
  /**
   * A freshness directive (`max-age`, `s-maxage`) was present with an invalid value, or more than
   * once with different values. RFC 9111 §4.2.1 lets a cache treat such a response as stale; Cairn
   * does (the safe choice).
   */
  invalidFreshness = false;
  /** At least one directive was seen (distinguishes an empty/garbage field from an absent one). */
  any = false;
}

const EMPTY: readonly string[] = Object.freeze([]);

/** Parse delta-seconds: 1*DIGIT; `undefined` when invalid; clamped to 2^31 (RFC 9111 §1.2.2). */
export function parseDeltaSeconds(value: string): number | undefined {
  const len = value.length;
  if (len === 0) return undefined;
  for (let i = 0; i < len; i++) {
    const c = value.charCodeAt(i);
    if (c < 48 || c > 57) return undefined;
  }
  const n = len > 10 ? MAX_DELTA_SECONDS : Number(value);
  return n > MAX_DELTA_SECONDS ? MAX_DELTA_SECONDS : n;
}

function isTchar(c: number): boolean {
  // RFC 9110 §5.6.2 tchar
  return (
    (c >= 97 && c <= 122) ||
    (c >= 65 && c <= 90) ||
    (c >= 48 && c <= 57) ||
    c === 33 ||
    c === 35 ||
    c === 36 ||
    c === 37 ||
    c === 38 ||
    c === 39 ||
    c === 42 ||
    c === 43 ||
    c === 45 ||
    c === 46 ||
    c === 94 ||
    c === 95 ||
    c === 96 ||
    c === 124 ||
    c === 126
  );
}

function fieldNames(value: string): readonly string[] {
  const out: string[] = [];
  for (const part of value.split(',')) {
    const name = part.trim().toLowerCase();
    if (name !== '') out.push(name);
  }
  return out.length === 0 ? EMPTY : out;
}

function setFreshness(cc: CacheControl, which: 'maxAge' | 'sMaxAge', raw: string): void {
  const n = parseDeltaSeconds(raw);
  const prev = cc[which];
  if (n === undefined) {
    cc.invalidFreshness = true;
    cc[which] = prev ?? 0;
    return;
  }
  // Repeated with a different value: invalid (RFC 9111 §4.2.1); keep the smaller as the stored value.
  if (prev !== undefined && prev !== n) {
    cc.invalidFreshness = true;
    cc[which] = Math.min(prev, n);
    return;
  }
  cc[which] = n;
}

function apply(cc: CacheControl, name: string, value: string | undefined): void {
  cc.any = true;
  switch (name) {
    case 'max-age':
      if (value === undefined) cc.invalidFreshness = true;
      else setFreshness(cc, 'maxAge', value);
      return;
    case 's-maxage':
      if (value === undefined) cc.invalidFreshness = true;
      else setFreshness(cc, 'sMaxAge', value);
      return;
    case 'max-stale':
      cc.maxStale = value === undefined ? Infinity : (parseDeltaSeconds(value) ?? cc.maxStale);
      return;
    case 'min-fresh':
      if (value !== undefined) cc.minFresh = parseDeltaSeconds(value) ?? cc.minFresh;
      return;
    case 'stale-while-revalidate':
      if (value !== undefined) cc.staleWhileRevalidate = parseDeltaSeconds(value) ?? cc.staleWhileRevalidate;
      return;
    case 'stale-if-error':
      if (value !== undefined) cc.staleIfError = parseDeltaSeconds(value) ?? cc.staleIfError;
      return;
    case 'no-store':
      cc.noStore = true;
      return;
    case 'no-cache':
      if (value === undefined) cc.noCache = true;
      else {
        const names = fieldNames(value);
        // `no-cache=""` names no field: treat it as unqualified, the conservative reading.
        if (names.length === 0) cc.noCache = true;
        else cc.noCacheFields = cc.noCacheFields.length === 0 ? names : [...cc.noCacheFields, ...names];
      }
      return;
    case 'private':
      if (value === undefined) cc.private = true;
      else {
        const names = fieldNames(value);
        if (names.length === 0) cc.private = true;
        else cc.privateFields = cc.privateFields.length === 0 ? names : [...cc.privateFields, ...names];
      }
      return;
    case 'public':
      cc.public = true;
      return;
    case 'must-revalidate':
      cc.mustRevalidate = true;
      return;
    case 'proxy-revalidate':
      cc.proxyRevalidate = true;
      return;
    case 'must-understand':
      cc.mustUnderstand = true;
      return;
    case 'immutable':
      cc.immutable = true;
      return;
    case 'no-transform':
      cc.noTransform = true;
      return;
    case 'only-if-cached':
      cc.onlyIfCached = true;
      return;
    default:
      // Unknown extensions are ignored (RFC 9111 §5.2.3).
      return;
  }
}

/** Parse one field line into `cc`. Malformed members are skipped, never the whole field. */
function parseLine(cc: CacheControl, s: string): void {
  const len = s.length;
  let i = 0;
  while (i < len) {
    // skip OWS and empty list members
    let c = s.charCodeAt(i);
    while (i < len && (c === 32 || c === 9 || c === 44)) c = s.charCodeAt(++i);
    if (i >= len) return;
    const nameStart = i;
    while (i < len && isTchar(s.charCodeAt(i))) i++;
    const name = s.slice(nameStart, i).toLowerCase();
    let value: string | undefined;
    let valid = name !== '';
    if (i < len && s.charCodeAt(i) === 61 /* = */) {
      i++;
      if (i < len && s.charCodeAt(i) === 34 /* " */) {
        // quoted-string with quoted-pair (RFC 9110 §5.6.4); commas inside do not split the list.
        i++;
        let v = '';
        let closed = false;
        while (i < len) {
          const q = s.charCodeAt(i);
          if (q === 92 /* \ */ && i + 1 < len) {
            v += s[i + 1];
            i += 2;
            continue;
          }
          if (q === 34) {
            closed = true;
            i++;
            break;
          }
          v += s[i];
          i++;
        }
        value = v;
        if (!closed) valid = false;
      } else {
        const vStart = i;
        while (i < len && isTchar(s.charCodeAt(i))) i++;
        value = s.slice(vStart, i);
        if (value === '') valid = false;
      }
    }
    // Anything else before the next comma (spaces around `=`, stray characters) makes this member invalid.
    let j = i;
    while (j < len && (s.charCodeAt(j) === 32 || s.charCodeAt(j) === 9)) j++;
    if (j < len && s.charCodeAt(j) !== 44) {
      valid = false;
      // skip to the next comma outside a quoted string
      let inQuote = false;
      while (j < len) {
        const q = s.charCodeAt(j);
        if (q === 92 && inQuote) j++;
        else if (q === 34) inQuote = !inQuote;
        else if (q === 44 && !inQuote) break;
        j++;
      }
    }
    i = j;
    if (valid) apply(cc, name, value);
    else if (name === 'max-age' || name === 's-maxage') {
      // A malformed freshness directive still signals intent to limit freshness: treat as invalid.
      cc.any = true;
      cc.invalidFreshness = true;
      if (name === 'max-age') cc.maxAge ??= 0;
      else cc.sMaxAge ??= 0;
    }
  }
}

/**
 * Parse Cache-Control (or a targeted field such as `CDN-Cache-Control`) from a field value or its
 * repeated lines.
 *
 * @example
 * ```ts
 * const cc = parseCacheControl('Public, MAX-AGE=60, no-cache="Set-Cookie"');
 * cc.public;        // true
 * cc.maxAge;        // 60
 * cc.noCacheFields; // ['set-cookie']
 * parseCacheControl('max-age="3600"').maxAge; // 3600 (quoted form accepted, RFC 9111 §5.2)
 * parseCacheControl("max-age='3600'").invalidFreshness; // true
 * ```
 */
export function parseCacheControl(value: string | readonly string[] | undefined): CacheControl {
  const cc = new CacheControl();
  if (value === undefined) return cc;
  if (typeof value === 'string') parseLine(cc, value);
  else for (const line of value) parseLine(cc, line);
  return cc;
}

/**
 * Parse the request's caching directives: `Cache-Control`, or `Pragma: no-cache` when the request
 * has no Cache-Control (RFC 9111 §5.4).
 *
 * @example
 * ```ts
 * parseRequestCacheControl({ pragma: 'no-cache' }).noCache; // true
 * ```
 */
export function parseRequestCacheControl(headers: HeaderMap): CacheControl {
  const raw = headers['cache-control'];
  const cc = parseCacheControl(typeof raw === 'number' ? String(raw) : raw);
  if (raw === undefined) {
    const pragma = headers['pragma'];
    if (pragma !== undefined && /(?:^|[\s,])no-cache(?:$|[\s,])/i.test(String(pragma))) cc.noCache = true;
  }
  return cc;
}
