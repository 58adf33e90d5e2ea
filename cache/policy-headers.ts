/**
 * Small header helpers shared by the pure cache-policy modules (no I/O).
 *
 * Header maps use lower-case names, as node:http and undici deliver them; a repeated header is an
 * array of its lines.
 */

/** Request or response headers as the policy reads them (lower-case names). */
export type HeaderMap = Readonly<Record<string, string | readonly string[] | number | undefined>>;

/**
 * The field value of `name`, with repeated lines combined by `", "` (RFC 9110 §5.3).
 *
 * @example
 * ```ts
 * headerValue({ vary: ['accept', 'accept-encoding'] }, 'vary'); // 'accept, accept-encoding'
 * ```
 */
export function headerValue(headers: HeaderMap, name: string): string | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  return v.length === 1 ? v[0] : v.join(', ');
}

/**
 * Number of field lines of `name` (0 when absent). Used where RFC 9111 treats a repeated singleton
 * field (`Age`, `Expires`) as invalid.
 *
 * @example
 * ```ts
 * headerLineCount({ age: ['1', '2'] }, 'age'); // 2
 * ```
 */
export function headerLineCount(headers: HeaderMap, name: string): number {
  const v = headers[name];
  if (v === undefined) return 0;
  return typeof v === 'object' ? v.length : 1;
}

/**
 * Split a comma-separated list field (RFC 9110 §5.6.1) into trimmed, non-empty members. Quoted
 * strings are not special here: use it only for fields made of tokens (Vary, Connection).
 *
 * @example
 * ```ts
 * splitList(' a ,, b'); // ['a', 'b']
 * ```
 */
export function splitList(value: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i <= value.length; i++) {
    if (i === value.length || value.charCodeAt(i) === 44 /* , */) {
      const member = value.slice(start, i).trim();
      if (member !== '') out.push(member);
      start = i + 1;
    }
  }
  return out;
}

/**
 * Hop-by-hop fields a cache must neither store nor forward (RFC 9110 §7.6.1, RFC 9111 §3.1), plus
 * the obsolete `Proxy-Connection` and the proxy authentication fields that only apply to one hop.
 */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authentication-info',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);
