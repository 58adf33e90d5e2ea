/**
 * Cache keys and `Vary` variants (RFC 9111 §2, §4.1). Pure functions, no I/O.
 *
 * The primary key is scheme + host + path + query and is never built without a host: keys without
 * the host let one virtual host poison another's cache. GET and HEAD share one key (RFC 9111 §4:
 * a stored GET response can answer a HEAD request).
 */

import { headerValue, type HeaderMap } from './policy-headers.ts';

/** Methods whose responses Cairn looks up and stores. */
const LOOKUP_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD']);

/**
 * Lower-case a Host (or :authority) value and drop the scheme's default port and a trailing dot
 * (`Example.COM:443.` and `example.com` are the same origin for https). Returns `''` for an empty
 * or malformed host.
 *
 * @example
 * ```ts
 * normaliseHost('Example.COM:443', 'https'); // 'example.com'
 * normaliseHost('[::1]:8080', 'http');       // '[::1]:8080'
 * ```
 */
export function normaliseHost(host: string, scheme: string): string {
  // A site sees few distinct Host values, each on most of its requests: remember the last ones
  // (bounded) rather than re-parse the same string per request.
  const memo = scheme === 'https' ? httpsHosts : scheme === 'http' ? httpHosts : undefined;
  if (memo === undefined) return parseHost(host, scheme);
  let h = memo.get(host);
  if (h === undefined) {
    h = parseHost(host, scheme);
    if (memo.size >= HOST_MEMO_MAX) memo.clear();
    memo.set(host, h);
  }
  return h;
}

const httpHosts = new Map<string, string>();
const httpsHosts = new Map<string, string>();
const HOST_MEMO_MAX = 1024;

function parseHost(host: string, scheme: string): string {
  let h = host.trim().toLowerCase();
  if (h === '' || h.includes('/') || h.includes('@') || h.includes(' ')) return '';
  let port = '';
  const close = h.lastIndexOf(']');
  const colon = h.lastIndexOf(':');
  if (colon > close) {
    port = h.slice(colon + 1);
    h = h.slice(0, colon);
    if (!/^\d{0,5}$/.test(port)) return '';
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (h === '') return '';
  if (port === '' || (port === '80' && scheme === 'http') || (port === '443' && scheme === 'https')) return h;
  return `${h}:${port}`;
}

/**
 * The default cache key: `scheme://host/path?query`. Returns `undefined` when the host is missing
 * or malformed (such a request is not cached). `pathAndQuery` is the request target in origin form.
 *
 * @example
 * ```ts
 * cacheKey('https', 'Example.com:443', '/a?b=1'); // 'https://example.com/a?b=1'
 * cacheKey('http', '', '/');                      // undefined
 * ```
 */
export function cacheKey(scheme: string, host: string, pathAndQuery: string): string | undefined {
  const s = scheme === 'http' || scheme === 'https' ? scheme : scheme.toLowerCase();
  const h = normaliseHost(host, s);
  if (h === '') return undefined;
  const p = pathAndQuery === '' ? '/' : pathAndQuery.charCodeAt(0) === 47 ? pathAndQuery : `/${pathAndQuery}`;
  return `${s}://${h}${p}`;
}

/**
 * The primary cache key for a lookup: the {@link cacheKey} for GET and HEAD (which share one stored
 * entry), `undefined` for any other method or a request without a host.
 *
 * @example
 * ```ts
 * primaryKey('HEAD', 'http', 'a.test', '/x'); // 'http://a.test/x' (same as GET)
 * primaryKey('POST', 'http', 'a.test', '/x'); // undefined
 * ```
 */
export function primaryKey(
  method: string,
  scheme: string,
  host: string,
  pathAndQuery: string,
): string | undefined {
  return LOOKUP_METHODS.has(method) ? cacheKey(scheme, host, pathAndQuery) : undefined;
}

/** The parsed `Vary` of a stored response. */
export interface VaryFields {
  /** `Vary: *` (alone or in a list): never matches any request (RFC 9111 §4.1). */
  readonly star: boolean;
  /** Selecting header names, lower-cased, de-duplicated and sorted (so order does not matter). */
  readonly names: readonly string[];
}

const NO_VARY: VaryFields = Object.freeze({ star: false, names: Object.freeze([]) });
const STAR_VARY: VaryFields = Object.freeze({ star: true, names: Object.freeze([]) });
// Vary values have a low cardinality in practice; a small memo keeps lookups allocation-free.
const varyMemo = new Map<string, VaryFields>();
const VARY_MEMO_MAX = 512;

/**
 * Parse one or more `Vary` field lines.
 *
 * @example
 * ```ts
 * parseVary(['Accept-Encoding', 'accept, Accept-Encoding']); // { star: false, names: ['accept', 'accept-encoding'] }
 * parseVary(', *').star; // true
 * ```
 */
export function parseVary(vary: string | readonly string[] | undefined): VaryFields {
  if (vary === undefined) return NO_VARY;
  const joined = typeof vary === 'string' ? vary : vary.join(',');
  const memo = varyMemo.get(joined);
  if (memo !== undefined) return memo;
  const set = new Set<string>();
  let star = false;
  for (const part of joined.split(',')) {
    const name = part.trim().toLowerCase();
    if (name === '') continue;
    if (name === '*') star = true;
    else set.add(name);
  }
  const fields: VaryFields = star
    ? STAR_VARY
    : set.size === 0
      ? NO_VARY
      : Object.freeze({ star: false, names: Object.freeze([...set].sort()) });
  if (varyMemo.size >= VARY_MEMO_MAX) varyMemo.clear();
  varyMemo.set(joined, fields);
  return fields;
}

/**
 * Normalises one selecting header's value before it enters the variant (the `cacheVaryFilter`
 * hook). Receives the lower-cased name and the whitespace-normalised value (`undefined` when the
 * request lacks the header); returns the value to use (`undefined` = treat as absent).
 */
export type VaryNormaliser = (name: string, value: string | undefined) => string | undefined;

/** Collapse whitespace runs, trim, and remove whitespace around commas (RFC 9110 §5.6.1 OWS). */
function normaliseWhitespace(value: string): string {
  return value.replace(/\s+/g, ' ').replace(/ ?, ?/g, ',').trim();
}

/**
 * Selecting headers whose values are case-insensitive by definition, so `en-US` and `en-us`
 * select the same variant: language ranges (RFC 9110 §12.5.4, RFC 4647 §2.1), content codings
 * (RFC 9110 §8.4.1) and charsets (RFC 9110 §8.3.2).
 */
const CASE_INSENSITIVE_VALUES: ReadonlySet<string> = new Set([
  'accept-language',
  'accept-encoding',
  'accept-charset',
]);

/**
 * The variant string for `request` under the stored response's `Vary`: `''` when the response does
 * not vary, `undefined` for `Vary: *` (never matches). Each selecting header contributes
 * `name=value` (or just `name` when absent, so absent and empty differ; whitespace around list
 * commas is dropped, and values of case-insensitive fields are lower-cased); lines are joined with
 * `\n`, in sorted name order, so the string is stable whatever the header order.
 *
 * @example
 * ```ts
 * varyVariant('Accept-Encoding, Accept', { accept: 'text/html', 'accept-encoding': 'gzip,  br' });
 * // 'accept=text/html\naccept-encoding=gzip,br'
 * varyVariant('Accept-Encoding', { 'accept-encoding': 'gzip, br' }, acceptEncodingNormaliser);
 * // 'accept-encoding=br'
 * ```
 */
export function varyVariant(
  vary: string | readonly string[] | VaryFields | undefined,
  request: HeaderMap,
  normaliser?: VaryNormaliser,
): string | undefined {
  const fields = vary !== undefined && typeof vary === 'object' && 'star' in vary ? vary : parseVary(vary);
  if (fields.star) return undefined;
  const names = fields.names;
  if (names.length === 0) return '';
  let out = '';
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const raw = headerValue(request, name);
    let value = raw === undefined ? undefined : normaliseWhitespace(raw);
    if (value !== undefined && CASE_INSENSITIVE_VALUES.has(name)) value = value.toLowerCase();
    if (normaliser !== undefined) value = normaliser(name, value);
    if (i > 0) out += '\n';
    out += value === undefined ? name : `${name}=${value}`;
  }
  return out;
}

/**
 * A ready-made {@link VaryNormaliser} that collapses `Accept-Encoding` to the one coding Cairn
 * would store (`br`, `gzip` or `identity`), so that the hundreds of distinct browser values share
 * three variants. Other headers pass through.
 *
 * @example
 * ```ts
 * acceptEncodingNormaliser('accept-encoding', 'gzip, deflate, br;q=0.9'); // 'br'
 * acceptEncodingNormaliser('accept-encoding', 'gzip;q=0, deflate');       // 'identity'
 * ```
 */
export function acceptEncodingNormaliser(name: string, value: string | undefined): string | undefined {
  if (name !== 'accept-encoding') return value;
  if (value === undefined) return 'identity';
  let br = false;
  let gzip = false;
  for (const part of value.toLowerCase().split(',')) {
    const [coding, ...params] = part.split(';');
    const c = coding!.trim();
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([\d.]+)\s*$/.exec(p);
      if (m !== null) q = Number(m[1]);
    }
    if (!(q > 0)) continue;
    if (c === 'br') br = true;
    else if (c === 'gzip' || c === 'x-gzip') gzip = true;
    else if (c === '*') {
      br = true;
      gzip = true;
    }
  }
  return br ? 'br' : gzip ? 'gzip' : 'identity';
}
