/**
 * Byte ranges from a stored response of known length (RFC 9110 §14): parse `Range`, decide
 * 206 / 416 / full 200, evaluate `If-Range`, and lay out `multipart/byteranges`. Pure functions.
 *
 * Multiple ranges are served as multipart/byteranges, as nginx does; like nginx, a request whose
 * ranges add up to more than the representation (overlap abuse, RFC 9110 §17.15) or that has more
 * than `maxRanges` ranges is answered with the full 200.
 */

import { parseEntityTag } from './conditional.ts';
import { parseHttpDate } from './policy-date.ts';
import { headerValue, type HeaderMap } from './policy-headers.ts';

/** An inclusive byte range, `start <= end < length`. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

/**
 * What to answer for a `Range` request:
 * - `full`: ignore the Range and send 200 (no/invalid Range, other unit, failed If-Range, too many ranges);
 * - `single`: 206 with `Content-Range: bytes start-end/length`;
 * - `multi`: 206 multipart/byteranges, ranges in request order;
 * - `unsatisfiable`: 416 with `Content-Range: bytes *\/length`.
 */
export type RangePlan =
  | { readonly kind: 'full' }
  | { readonly kind: 'single'; readonly range: ByteRange }
  | { readonly kind: 'multi'; readonly ranges: readonly ByteRange[] }
  | { readonly kind: 'unsatisfiable' };

const FULL: RangePlan = Object.freeze({ kind: 'full' });
const UNSATISFIABLE: RangePlan = Object.freeze({ kind: 'unsatisfiable' });

/** Options for {@link planRange}. */
export interface RangeOptions {
  /** More ranges than this: serve the full response (nginx `max_ranges`). Default 64. */
  readonly maxRanges?: number;
}

function digits(s: string): number | undefined {
  if (s === '' || !/^\d+$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : Number.MAX_SAFE_INTEGER;
}

/**
 * Plan the answer to a `Range` header against a representation of `length` bytes.
 *
 * @example
 * ```ts
 * planRange('bytes=0-99', 1000);        // { kind: 'single', range: { start: 0, end: 99 } }
 * planRange('bytes=-100', 1000);        // { kind: 'single', range: { start: 900, end: 999 } }
 * planRange('bytes=900-', 1000);        // { kind: 'single', range: { start: 900, end: 999 } }
 * planRange('bytes=0-0,-1', 1000);      // { kind: 'multi', ranges: [...] }
 * planRange('bytes=2000-', 1000);       // { kind: 'unsatisfiable' }
 * planRange('bytes=5-1', 1000);         // { kind: 'full' } (invalid syntax is ignored, RFC 9110 §14.2)
 * ```
 */
export function planRange(range: string | undefined, length: number, options: RangeOptions = {}): RangePlan {
  if (range === undefined) return FULL;
  const eq = range.indexOf('=');
  if (eq < 0) return FULL;
  // The unit is case-insensitive (RFC 9110 §14.1); only bytes is supported, others are ignored.
  if (range.slice(0, eq).trim().toLowerCase() !== 'bytes') return FULL;
  const specs = range.slice(eq + 1).split(',');
  const maxRanges = options.maxRanges ?? 64;
  const out: ByteRange[] = [];
  let count = 0;
  let total = 0;
  for (const raw of specs) {
    const spec = raw.trim();
    if (spec === '') continue; // empty list elements are allowed (RFC 9110 §5.6.1)
    if (++count > maxRanges) return FULL;
    const dash = spec.indexOf('-');
    if (dash < 0) return FULL;
    const first = spec.slice(0, dash).trim();
    const last = spec.slice(dash + 1).trim();
    let start: number;
    let end: number;
    if (first === '') {
      // suffix-range: the last N bytes; N = 0 is unsatisfiable (RFC 9110 §14.1.2).
      const n = digits(last);
      if (n === undefined) return FULL;
      if (n === 0 || length === 0) continue;
      start = Math.max(0, length - n);
      end = length - 1;
    } else {
      const a = digits(first);
      if (a === undefined) return FULL;
      let b: number | undefined;
      if (last !== '') {
        b = digits(last);
        if (b === undefined || b < a) return FULL; // invalid int-range: ignore the header
      }
      if (a >= length) continue; // unsatisfiable member
      start = a;
      end = b === undefined || b >= length ? length - 1 : b;
    }
    out.push({ start, end });
    total += end - start + 1;
  }
  if (count === 0) return FULL;
  if (out.length === 0) return UNSATISFIABLE;
  if (out.length === 1) return { kind: 'single', range: out[0]! };
  // nginx: ranges adding up to more than the whole representation get the whole representation.
  if (total > length) return FULL;
  return { kind: 'multi', ranges: out };
}

/**
 * `Content-Range` for a satisfied range.
 *
 * @example
 * ```ts
 * contentRange({ start: 0, end: 99 }, 1000); // 'bytes 0-99/1000'
 * ```
 */
export function contentRange(range: ByteRange, length: number): string {
  return `bytes ${range.start}-${range.end}/${length}`;
}

/**
 * `Content-Range` for a 416 (RFC 9110 §14.4).
 *
 * @example
 * ```ts
 * unsatisfiedContentRange(1000); // 'bytes *\/1000'
 * ```
 */
export function unsatisfiedContentRange(length: number): string {
  return `bytes */${length}`;
}

/**
 * Whether to honour `Range` given `If-Range` (RFC 9110 §13.1.5): true when there is no If-Range,
 * when its entity-tag strongly matches the stored ETag, or when its date exactly equals the stored
 * Last-Modified. A weak ETag never matches; a date is only accepted when the stored Last-Modified
 * is at least one second before the stored Date (a strong validator, RFC 9110 §8.8.2.2), or when
 * there is no Date.
 *
 * @example
 * ```ts
 * ifRangeMatches('"v1"', { etag: '"v1"' });    // true
 * ifRangeMatches('W/"v1"', { etag: 'W/"v1"' }); // false
 * ```
 */
export function ifRangeMatches(ifRange: string | undefined, stored: HeaderMap): boolean {
  if (ifRange === undefined) return true;
  const v = ifRange.trim();
  if (v.startsWith('"') || v.startsWith('W/')) {
    const tag = parseEntityTag(v);
    const etag = parseEntityTag(headerValue(stored, 'etag'));
    return tag !== undefined && etag !== undefined && !tag.weak && !etag.weak && tag.tag === etag.tag;
  }
  const date = parseHttpDate(v);
  const lm = parseHttpDate(headerValue(stored, 'last-modified'));
  if (date === undefined || lm === undefined || date !== lm) return false;
  const served = parseHttpDate(headerValue(stored, 'date'));
  return served === undefined || served - lm >= 1000;
}

/** One part of a multipart/byteranges body: a header block, then bytes `start..end` of the body. */
export interface MultipartPart {
  /** CRLF `--boundary` CRLF part headers CRLF CRLF, as a string (ASCII). */
  readonly head: string;
  readonly range: ByteRange;
}

/** The layout of a multipart/byteranges response (RFC 9110 §14.6). */
export interface MultipartPlan {
  /** The response's `Content-Type`. */
  readonly contentType: string;
  readonly parts: readonly MultipartPart[];
  /** The closing delimiter. */
  readonly tail: string;
  /** Exact body length, for `Content-Length`. */
  readonly contentLength: number;
}

/**
 * Lay out a multipart/byteranges body. `boundary` is chosen by the caller (e.g. a counter, as
 * nginx does); it must not occur in the body, so use at least 10 digits/letters.
 *
 * @example
 * ```ts
 * const mp = multipartPlan(plan.ranges, 1000, 'text/plain', '00000000042');
 * for (const p of mp.parts) { write(p.head); writeBytes(p.range.start, p.range.end); }
 * write(mp.tail);
 * ```
 */
export function multipartPlan(
  ranges: readonly ByteRange[],
  length: number,
  contentType: string | undefined,
  boundary: string,
): MultipartPlan {
  const typeLine = contentType === undefined ? '' : `Content-Type: ${contentType}\r\n`;
  const parts: MultipartPart[] = [];
  let total = 0;
  for (const range of ranges) {
    const head = `\r\n--${boundary}\r\n${typeLine}Content-Range: ${contentRange(range, length)}\r\n\r\n`;
    parts.push({ head, range });
    total += Buffer.byteLength(head, 'latin1') + (range.end - range.start + 1);
  }
  const tail = `\r\n--${boundary}--\r\n`;
  total += tail.length;
  return { contentType: `multipart/byteranges; boundary=${boundary}`, parts, tail, contentLength: total };
}
