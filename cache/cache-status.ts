/**
 * `Cache-Status` (RFC 9211): a builder with precomputed fragments for Cairn's own entry, and a
 * parser for any Cache-Status field (RFC 8941 List), including other caches' entries.
 */

/** RFC 9211 §2.2 `fwd` values. */
export type ForwardReason =
  'bypass' | 'method' | 'uri-miss' | 'vary-miss' | 'miss' | 'request' | 'stale' | 'partial';

const FORWARD_REASONS: readonly ForwardReason[] = [
  'bypass',
  'method',
  'uri-miss',
  'vary-miss',
  'miss',
  'request',
  'stale',
  'partial',
];

/** Extra parameters of a forwarded entry. */
export interface ForwardParams {
  /** The response was stored (`stored`). */
  readonly stored?: boolean;
  /** Status the origin answered the forwarded request with (`fwd-status`), e.g. 304 after revalidation. */
  readonly fwdStatus?: number;
  /** Remaining freshness in seconds (`ttl`), rounded. */
  readonly ttl?: number;
  /** Served from another request's fetch (`collapsed`). */
  readonly collapsed?: boolean;
  /** Why (`detail`): e.g. the uncacheable reason. Tokens are sent bare, anything else quoted. */
  readonly detail?: string;
}

const TOKEN = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*$/;

/** Serialise an RFC 8941 bare item for `detail`: a token when it is one, else an sf-string. */
function sfTokenOrString(value: string): string {
  if (TOKEN.test(value)) return value;
  // sf-string: printable ASCII, with \ and " escaped (RFC 8941 §4.1.6); drop anything else.
  return `"${value.replace(/[^\x20-\x7e]/g, '').replace(/[\\"]/g, '\\$&')}"`;
}

/**
 * Builds Cairn's `Cache-Status` entry. Fragments are computed once per cache name, so the common
 * values are constant strings and the rest one concatenation.
 *
 * @example
 * ```ts
 * const cs = new CacheStatusBuilder('Cairn');
 * cs.hit();                                  // 'Cairn; hit'
 * cs.hit(42);                                // 'Cairn; hit; ttl=42'
 * cs.staleHit(-3);                           // 'Cairn; hit; ttl=-3; detail=stale'
 * cs.forward('miss', { stored: true });      // 'Cairn; fwd=miss; stored'
 * cs.forward('stale', { fwdStatus: 304 });   // 'Cairn; fwd=stale; fwd-status=304'
 * cs.bypass('no-store');                     // 'Cairn; fwd=bypass; detail=no-store'
 * cs.collapsed(10);                          // 'Cairn; hit; ttl=10; collapsed'
 * ```
 */
export class CacheStatusBuilder {
  /** The cache's name as it appears in the field (an sf-token or sf-string). */
  readonly name: string;
  readonly #hit: string;
  readonly #staleHit: string;
  readonly #fwd: Readonly<Record<ForwardReason, string>>;
  readonly #fwdStored: Readonly<Record<ForwardReason, string>>;
  readonly #bypassDetails = new Map<string, string>();
  #lastHitTtl = Number.NaN;
  #lastHit = '';

  constructor(name = 'Cairn') {
    this.name = sfTokenOrString(name);
    this.#hit = `${this.name}; hit`;
    this.#staleHit = `${this.name}; hit; detail=stale`;
    const fwd = {} as Record<ForwardReason, string>;
    const fwdStored = {} as Record<ForwardReason, string>;
    for (const r of FORWARD_REASONS) {
      fwd[r] = `${this.name}; fwd=${r}`;
      fwdStored[r] = `${this.name}; fwd=${r}; stored`;
    }
    this.#fwd = fwd;
    this.#fwdStored = fwdStored;
  }

  /**
   * A fresh hit, optionally with its remaining freshness.
   *
   * @example
   * ```ts
   * builder.hit(Math.round(policy.ttl(now))); // 'Cairn; hit; ttl=120'
   * ```
   */
  hit(ttl?: number): string {
    if (ttl === undefined) return this.#hit;
    // A stored object's ttl changes once a second: remember the last field built.
    const rounded = Math.round(ttl);
    if (rounded !== this.#lastHitTtl) {
      this.#lastHitTtl = rounded;
      this.#lastHit = `${this.#hit}; ttl=${rounded}`;
    }
    return this.#lastHit;
  }

  /**
   * A stale response served (stale-while-revalidate, client max-stale, or stale-if-error).
   *
   * @example
   * ```ts
   * builder.staleHit(); // 'Cairn; hit; detail=stale'
   * ```
   */
  staleHit(ttl?: number): string {
    return ttl === undefined ? this.#staleHit : `${this.#hit}; ttl=${Math.round(ttl)}; detail=stale`;
  }

  /**
   * A waiter served from another request's in-flight fetch (the cache lock).
   *
   * @example
   * ```ts
   * builder.collapsed(); // 'Cairn; hit; collapsed'
   * ```
   */
  collapsed(ttl?: number): string {
    return ttl === undefined ? `${this.#hit}; collapsed` : `${this.#hit}; ttl=${Math.round(ttl)}; collapsed`;
  }

  /**
   * Forwarded to the origin, with why and what happened.
   *
   * @example
   * ```ts
   * builder.forward('uri-miss');                                   // 'Cairn; fwd=uri-miss'
   * builder.forward('request');                                    // client no-cache
   * builder.forward('miss', { stored: true, ttl: 60 });            // 'Cairn; fwd=miss; stored; ttl=60'
   * ```
   */
  forward(reason: ForwardReason, params?: ForwardParams): string {
    if (params === undefined) return this.#fwd[reason];
    const onlyStored =
      params.stored === true &&
      params.fwdStatus === undefined &&
      params.ttl === undefined &&
      params.collapsed !== true &&
      params.detail === undefined;
    if (onlyStored) return this.#fwdStored[reason];
    let s = params.stored === true ? this.#fwdStored[reason] : this.#fwd[reason];
    if (params.fwdStatus !== undefined) s += `; fwd-status=${params.fwdStatus | 0}`;
    if (params.ttl !== undefined) s += `; ttl=${Math.round(params.ttl)}`;
    if (params.collapsed === true) s += '; collapsed';
    if (params.detail !== undefined) s += `; detail=${sfTokenOrString(params.detail)}`;
    return s;
  }

  /**
   * Not looked up or not stored, with the reason as `detail` (memoised per reason).
   *
   * @example
   * ```ts
   * builder.bypass('set-cookie'); // 'Cairn; fwd=bypass; detail=set-cookie'
   * ```
   */
  bypass(detail?: string): string {
    if (detail === undefined) return this.#fwd.bypass;
    let s = this.#bypassDetails.get(detail);
    if (s === undefined) {
      s = `${this.#fwd.bypass}; detail=${sfTokenOrString(detail)}`;
      if (this.#bypassDetails.size < 256) this.#bypassDetails.set(detail, s);
    }
    return s;
  }
}

/** The default builder for the cache named `Cairn`. */
export const CACHE_STATUS: CacheStatusBuilder = new CacheStatusBuilder('Cairn');

/** A parameter value in a Cache-Status entry (RFC 8941 bare item; tokens and strings are strings). */
export type CacheStatusParam = string | number | boolean;

/** One cache's entry in a `Cache-Status` field. */
export interface CacheStatusEntry {
  /** The cache's name (token or string). */
  readonly cache: string;
  readonly hit: boolean;
  readonly fwd: string | undefined;
  readonly fwdStatus: number | undefined;
  readonly ttl: number | undefined;
  readonly stored: boolean;
  readonly collapsed: boolean;
  readonly key: string | undefined;
  readonly detail: string | undefined;
  /** Every parameter, including extensions, in order of appearance. */
  readonly params: Readonly<Record<string, CacheStatusParam>>;
}

class SfParser {
  #s: string;
  #i = 0;
  constructor(s: string) {
    this.#s = s;
  }
  get done(): boolean {
    return this.#i >= this.#s.length;
  }
  peek(): string {
    return this.#s[this.#i] ?? '';
  }
  skip(chars: string): void {
    while (this.#i < this.#s.length && chars.includes(this.#s[this.#i]!)) this.#i++;
  }
  eat(ch: string): boolean {
    if (this.#s[this.#i] === ch) {
      this.#i++;
      return true;
    }
    return false;
  }
  key(): string {
    const m = /^[a-z*][a-z0-9_\-.*]*/.exec(this.#s.slice(this.#i));
    if (m === null) throw new SyntaxError('sf key');
    this.#i += m[0].length;
    return m[0];
  }
  bareItem(): CacheStatusParam {
    const rest = this.#s.slice(this.#i);
    const c = rest[0];
    if (c === '"') {
      let out = '';
      let i = 1;
      for (; i < rest.length; i++) {
        const ch = rest[i]!;
        if (ch === '\\') {
          const n = rest[i + 1];
          if (n !== '"' && n !== '\\') throw new SyntaxError('sf string escape');
          out += n;
          i++;
        } else if (ch === '"') break;
        else if (ch < ' ' || ch > '~') throw new SyntaxError('sf string char');
        else out += ch;
      }
      if (rest[i] !== '"') throw new SyntaxError('sf string unterminated');
      this.#i += i + 1;
      return out;
    }
    if (c === '?') {
      if (rest[1] === '1' || rest[1] === '0') {
        this.#i += 2;
        return rest[1] === '1';
      }
      throw new SyntaxError('sf boolean');
    }
    let m = /^-?\d{1,15}(?:\.\d{1,3})?/.exec(rest);
    if (m !== null) {
      this.#i += m[0].length;
      return Number(m[0]);
    }
    m = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*/.exec(rest);
    if (m !== null) {
      this.#i += m[0].length;
      return m[0];
    }
    m = /^:[A-Za-z0-9+/=]*:/.exec(rest);
    if (m !== null) {
      this.#i += m[0].length;
      return m[0];
    }
    throw new SyntaxError('sf bare item');
  }
}

function toEntry(cache: CacheStatusParam, params: Record<string, CacheStatusParam>): CacheStatusEntry {
  const str = (v: CacheStatusParam | undefined): string | undefined =>
    typeof v === 'string' ? v : undefined;
  const num = (v: CacheStatusParam | undefined): number | undefined =>
    typeof v === 'number' ? v : undefined;
  return {
    cache: String(cache),
    hit: params['hit'] === true,
    fwd: str(params['fwd']),
    fwdStatus: num(params['fwd-status']),
    ttl: num(params['ttl']),
    stored: params['stored'] === true,
    collapsed: params['collapsed'] === true,
    key: str(params['key']),
    detail: params['detail'] === undefined ? undefined : String(params['detail']),
    params,
  };
}

/**
 * Parse a `Cache-Status` field (one value or several lines) into entries, first = closest to the
 * origin (RFC 9211 §2). A field that is not a valid RFC 8941 List yields `[]` (RFC 8941 §4.2: the
 * whole field is ignored).
 *
 * @example
 * ```ts
 * parseCacheStatus('OriginCache; hit; ttl=1100, "CDN Company Here"; fwd=uri-miss; stored');
 * // [{ cache: 'OriginCache', hit: true, ttl: 1100, ... }, { cache: 'CDN Company Here', fwd: 'uri-miss', stored: true, ... }]
 * ```
 */
export function parseCacheStatus(value: string | readonly string[] | undefined): CacheStatusEntry[] {
  if (value === undefined) return [];
  const s = typeof value === 'string' ? value : value.join(', ');
  const p = new SfParser(s.trim());
  const out: CacheStatusEntry[] = [];
  try {
    while (!p.done) {
      const cache = p.bareItem();
      const params: Record<string, CacheStatusParam> = {};
      while (p.eat(';')) {
        p.skip(' ');
        const k = p.key();
        params[k] = p.eat('=') ? p.bareItem() : true;
      }
      out.push(toEntry(cache, params));
      p.skip(' \t');
      if (p.done) break;
      if (!p.eat(',')) throw new SyntaxError('sf list separator');
      p.skip(' \t');
      if (p.done) throw new SyntaxError('sf trailing comma');
    }
  } catch {
    return [];
  }
  return out;
}
