/**
 * Storability in words: why Cairn's policy stores a response or not, for how long, what makes it
 * vary, and what would change that. Built on the same `evaluateResponse` the cache path runs, so
 * the words cannot drift from what the cache does.
 */
import { effectiveCacheControl, evaluateResponse, resolvePolicyOptions } from '../../src/index.ts';
import type {
  CacheControl,
  PolicyOptions,
  ResolvedPolicyOptions,
  ResponseTiming,
  UncacheableReason,
} from '../../src/index.ts';

/** Header maps the explainer reads (lower-case names). */
export type ExplainHeaders = Readonly<Record<string, string | number | readonly string[] | undefined>>;

/** One request/response pair to explain. */
export interface ExplainInput {
  /** Default `GET`. */
  readonly method?: string;
  readonly requestHeaders?: ExplainHeaders;
  readonly status: number;
  /** The response headers as the origin sent them (lower-case names). */
  readonly headers: ExplainHeaders;
  /** When the request was sent and the response arrived; default: both now. */
  readonly timing?: ResponseTiming;
  /** The cache's policy options (as given to `HttpCache`, or already resolved). */
  readonly policy?: PolicyOptions | ResolvedPolicyOptions;
}

/** The verdict and its reasons. */
export interface StorabilityExplanation {
  readonly storable: boolean;
  /** Why not, in the vocabulary of `Cache-Status` `detail`. */
  readonly reason: UncacheableReason | undefined;
  /** The field whose directives applied: `cache-control`, or a targeted field (`cdn-cache-control`). */
  readonly directivesFrom: string;
  /** Freshness lifetime in seconds (storable responses). */
  readonly lifetime: number | undefined;
  /** Fresh seconds left on arrival: lifetime minus the age it arrived with. */
  readonly freshFor: number | undefined;
  /** The lifetime is heuristic (no explicit freshness; RFC 9111 §4.2.2). */
  readonly heuristic: boolean;
  readonly staleWhileRevalidate: number;
  readonly staleIfError: number;
  /** `no-cache`: stored but revalidated before every reuse. */
  readonly revalidatesEveryTime: boolean;
  /** Never served stale (must-revalidate, proxy-revalidate, s-maxage). */
  readonly neverStale: boolean;
  /** `ETag` and/or `Last-Modified`. */
  readonly validators: readonly string[];
  /** Request header names the stored response varies on (lower-case). */
  readonly vary: readonly string[];
  /** One sentence. */
  readonly summary: string;
  /** The facts behind the verdict, one sentence each. */
  readonly details: readonly string[];
  /** What would change the verdict (or the lifetime). */
  readonly advice: readonly string[];
}

function isResolved(p: PolicyOptions | ResolvedPolicyOptions): p is ResolvedPolicyOptions {
  return 'hiddenResponseHeaders' in p;
}

function value(headers: ExplainHeaders, name: string): string | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  return v.join(', ');
}

function lowerCased(
  headers: ExplainHeaders,
): Record<string, string | number | readonly string[] | undefined> {
  const out: Record<string, string | number | readonly string[] | undefined> = {};
  for (const [k, v] of Object.entries(headers)) out[k.toLowerCase()] = v;
  return out;
}

/**
 * A duration in words: `45 s`, `10 min`, `2 h 30 min`, `7 d`.
 *
 * @example
 * ```ts
 * formatSeconds(3600); // '1 h'
 * ```
 */
export function formatSeconds(seconds: number): string {
  const s = Math.round(seconds);
  const a = Math.abs(s);
  if (a < 120) return `${s} s`;
  if (a < 3600) {
    const m = Math.trunc(s / 60);
    const rest = s - m * 60;
    return rest === 0 ? `${m} min` : `${m} min ${Math.abs(rest)} s`;
  }
  if (a < 172_800) {
    const h = Math.trunc(s / 3600);
    const m = Math.round((s - h * 3600) / 60);
    return m === 0 ? `${h} h` : `${h} h ${Math.abs(m)} min`;
  }
  return `${Math.round(s / 86_400)} d`;
}

function fieldName(directivesFrom: string): string {
  const words = directivesFrom
    .split('-')
    .map((w) => (w === 'cdn' ? 'CDN' : w.charAt(0).toUpperCase() + w.slice(1)));
  return words.join('-');
}

const REASONS: Readonly<
  Record<UncacheableReason, (ctx: ReasonContext) => { why: string; advice: string[] }>
> = {
  method: (c) => ({
    why: `the request method is ${c.method}: Cairn stores only GET (and HEAD) responses (RFC 9111 §3).`,
    advice: ['Fetch it with GET if the response is the same for every caller.'],
  }),
  status: (c) =>
    c.status < 200 || c.status === 304 || c.status > 599
      ? {
          why: `status ${c.status} is not a final response that can be stored (a 304 only refreshes a stored response).`,
          advice: ['Nothing in the response can change this: only final 2xx-5xx statuses are stored.'],
        }
      : {
          why: `status ${c.status} is not cacheable by default (RFC 9110 §15.1) and the response gives no explicit freshness (max-age, s-maxage, Expires or public).`,
          advice: [
            `Send ${c.field}: max-age=N (or s-maxage=N) to let Cairn store status ${c.status} for N seconds.`,
          ],
        },
  'partial-content': () => ({
    why: 'a 206 Partial Content response is not stored: on a miss Cairn fetches and stores the whole response and serves ranges from it.',
    advice: [
      'Nothing to change: a request without Range stores the full response, and later ranges are served from it.',
    ],
  }),
  'request-no-store': () => ({
    why: 'the request itself carries Cache-Control: no-store (RFC 9111 §5.2.1.5).',
    advice: [
      'Drop no-store from the request (or set policy.requestDirectives to false to ignore request directives).',
    ],
  }),
  'no-store': (c) => ({
    why: `the response has no-store in ${c.field} (RFC 9111 §5.2.2.5).`,
    advice: [
      `Remove no-store and send ${c.field}: s-maxage=N (or max-age=N) to store it for N seconds.`,
      'To let Cairn store it while browsers must not, keep Cache-Control as it is and add CDN-Cache-Control: max-age=N (RFC 9213).',
    ],
  }),
  'must-understand': (c) => ({
    why: `the response has must-understand and status ${c.status}, whose caching rules Cairn does not implement (RFC 9111 §5.2.2.3).`,
    advice: ['Drop must-understand, or answer with a status Cairn understands.'],
  }),
  private: (c) => ({
    why: `the response is private (${c.field}): only the user's own browser may store it, never a shared cache (RFC 9111 §5.2.2.7).`,
    advice: [
      'If the body is the same for every user, send public or s-maxage=N instead of private.',
      'To let only Cairn store it, add CDN-Cache-Control: max-age=N (browsers keep seeing private). Never do either for per-user content.',
    ],
  }),
  authorization: () => ({
    why: 'the request carries Authorization, and the response allows shared caching of authenticated requests with none of public, s-maxage or must-revalidate (RFC 9111 §3.5).',
    advice: [
      'If the response is the same for every authorised user, add Cache-Control: public (or s-maxage=N).',
    ],
  }),
  'vary-star': () => ({
    why: 'the response has Vary: *, so no later request can be shown to match it (RFC 9110 §12.5.5).',
    advice: [
      'List the request headers the response really depends on (for example Vary: Accept-Encoding) instead of *.',
    ],
  }),
  'set-cookie': () => ({
    why: "the response sets a cookie (Set-Cookie) and Cairn's policy.setCookie is 'bypass': a cookie meant for one user must not be replayed to others.",
    advice: [
      'Do not set cookies on cacheable responses (set them on a separate, uncached request).',
      'Or send Cache-Control: private="set-cookie" (or no-cache="set-cookie"): Cairn then stores the response without the cookie.',
      "Or configure policy.setCookie: 'strip' (store without Set-Cookie) for the whole cache.",
    ],
  }),
  'no-freshness': (c) => ({
    why: `it would be stale on arrival (${c.freshnessWords}) and has no ETag or Last-Modified to revalidate it with, so storing it could only evict something useful.`,
    advice: [
      `Send ${c.field}: max-age=N (or s-maxage=N) with N > 0.`,
      'Or add an ETag or Last-Modified: Cairn then stores it and revalidates it with a cheap 304 before each reuse.',
    ],
  }),
};

interface ReasonContext {
  readonly method: string;
  readonly status: number;
  readonly field: string;
  readonly freshnessWords: string;
}

function freshnessWords(cc: CacheControl, headers: ExplainHeaders, targeted: boolean): string {
  if (cc.noCache) return 'no-cache';
  if (cc.invalidFreshness) return 'an invalid max-age or s-maxage';
  if (cc.sMaxAge !== undefined) return `s-maxage=${cc.sMaxAge}`;
  if (cc.maxAge !== undefined) return `max-age=${cc.maxAge}`;
  const expires = value(headers, 'expires');
  if (!targeted && expires !== undefined) return `Expires: ${expires}`;
  return 'no explicit freshness and no Last-Modified for a heuristic';
}

function parseVaryList(headers: ExplainHeaders): string[] {
  const v = value(headers, 'vary');
  if (v === undefined) return [];
  const out: string[] = [];
  for (const part of v.split(',')) {
    const name = part.trim().toLowerCase();
    if (name !== '' && !out.includes(name)) out.push(name);
  }
  return out;
}

const VARY_WORDS: Readonly<Record<string, string>> = {
  'accept-encoding':
    "one copy per content coding (Cairn's CdnProxy normalises Accept-Encoding to br, gzip or identity, so this costs at most three copies)",
  cookie:
    'one copy per distinct Cookie header: with session cookies nearly every user gets a copy, so expect a low hit ratio',
  'user-agent': 'one copy per User-Agent string: there are thousands, so expect a low hit ratio',
  authorization: 'one copy per credential',
  accept: 'one copy per distinct Accept header (browsers differ, so a few copies)',
  'accept-language':
    'one copy per distinct Accept-Language header (many combinations: consider normalising it in cacheVaryFilter)',
};

/**
 * Explain, in words, why Cairn's cache policy would store a response or not.
 *
 * @example
 * ```ts
 * const e = explainStorability({ status: 200, headers: { 'cache-control': 'private, max-age=60' } });
 * e.storable; // false
 * e.reason;   // 'private'
 * e.summary;  // 'Not stored: the response is private (Cache-Control): …'
 * ```
 */
export function explainStorability(input: ExplainInput): StorabilityExplanation {
  const options =
    input.policy === undefined
      ? resolvePolicyOptions()
      : isResolved(input.policy)
        ? input.policy
        : resolvePolicyOptions(input.policy);
  const method = (input.method ?? 'GET').toUpperCase();
  const headers = lowerCased(input.headers);
  const requestHeaders = lowerCased(input.requestHeaders ?? {});
  const now = Date.now();
  const timing = input.timing ?? { requestTime: now, responseTime: now };
  const verdict = evaluateResponse(
    { method, headers: requestHeaders },
    { status: input.status, headers },
    timing,
    options,
  );
  const eff = effectiveCacheControl(headers, options);
  const cc = eff.cc;
  const directivesFrom = eff.targetedBy ?? 'cache-control';
  const field = fieldName(directivesFrom);
  const vary = parseVaryList(headers);
  const validators = [
    ...(headers['etag'] !== undefined ? ['ETag'] : []),
    ...(headers['last-modified'] !== undefined ? ['Last-Modified'] : []),
  ];
  const details: string[] = [];
  const advice: string[] = [];
  if (eff.targetedBy !== undefined) {
    details.push(
      `${field} is addressed to CDNs like Cairn and replaces Cache-Control and Expires for it (RFC 9213); Cairn removes it from what clients receive.`,
    );
  }

  if (!verdict.storable) {
    const { why, advice: fix } = REASONS[verdict.reason]({
      method,
      status: input.status,
      field,
      freshnessWords: freshnessWords(cc, headers, eff.targetedBy !== undefined),
    });
    advice.push(...fix);
    return {
      storable: false,
      reason: verdict.reason,
      directivesFrom,
      lifetime: undefined,
      freshFor: undefined,
      heuristic: false,
      staleWhileRevalidate: 0,
      staleIfError: 0,
      revalidatesEveryTime: false,
      neverStale: false,
      validators,
      vary,
      summary: `Not stored: ${why}`,
      details,
      advice,
    };
  }

  const p = verdict.policy;
  const freshFor = Math.max(0, p.lifetime - p.initialAge);
  let source: string;
  if (cc.invalidFreshness) source = `an invalid freshness directive in ${field} (treated as already stale)`;
  else if (cc.sMaxAge !== undefined)
    source = `s-maxage=${cc.sMaxAge} in ${field}, which shared caches read before max-age`;
  else if (cc.maxAge !== undefined) source = `max-age=${cc.maxAge} in ${field}`;
  else if (eff.targetedBy === undefined && headers['expires'] !== undefined && !p.heuristic) {
    source = `Expires: ${value(headers, 'expires') ?? ''} (minus Date)`;
  } else if (p.heuristic) {
    source = `a heuristic: no explicit freshness, so ${Math.round(options.heuristicFraction * 100)}% of the time since Last-Modified, at most ${formatSeconds(options.maxHeuristicTtl)} (RFC 9111 §4.2.2)`;
  } else source = 'no freshness at all';
  let summary: string;
  if (p.noCache) {
    summary = `Stored, but revalidated with the origin before every reuse (no-cache in ${field}).`;
    details.push(
      'no-cache: every reuse costs a conditional request to the origin (a cheap 304 when unchanged).',
    );
  } else if (freshFor > 0) {
    summary = `Stored: served from cache for ${formatSeconds(freshFor)} (${source}).`;
  } else {
    summary = `Stored, already stale on arrival (${source}): it is kept only to revalidate with ${validators.join('/') || 'its validators'}.`;
  }
  details.push(`Freshness lifetime ${formatSeconds(p.lifetime)} from ${source}.`);
  if (p.initialAge >= 1) {
    details.push(
      `It arrived ${formatSeconds(p.initialAge)} old (Age), so it stays fresh for ${formatSeconds(freshFor)}.`,
    );
  }
  if (p.mustRevalidate) {
    details.push(
      'Never served stale: must-revalidate, proxy-revalidate or s-maxage is present (RFC 9111 §4.2.4).',
    );
  } else {
    if (p.swr > 0)
      details.push(
        `Once stale it may be served for ${formatSeconds(p.swr)} more while Cairn revalidates in the background (stale-while-revalidate).`,
      );
    const sie = Math.max(p.sie, options.defaultStaleIfError);
    if (sie > 0)
      details.push(
        `If the origin fails, a stale copy may be served for up to ${formatSeconds(sie)} (stale-if-error).`,
      );
  }
  if (validators.length > 0) {
    details.push(
      `It has ${validators.join(' and ')}: once stale, Cairn revalidates with a conditional request and a 304 refreshes it without a new body.`,
    );
  } else {
    details.push('It has no ETag or Last-Modified: once stale, it is fetched again in full.');
  }
  if (vary.length === 0) details.push('It does not vary: one copy serves every request for this URL.');
  else {
    details.push(
      `It varies on ${vary.join(', ')}: ${vary.map((n) => VARY_WORDS[n] ?? `one copy per distinct ${n} value`).join('; ')}.`,
    );
  }
  if (headers['set-cookie'] !== undefined) {
    details.push(
      options.setCookie === 'strip' ||
        cc.privateFields.includes('set-cookie') ||
        cc.noCacheFields.includes('set-cookie')
        ? 'Set-Cookie is removed from the stored copy.'
        : "Set-Cookie is stored with it (policy.setCookie is 'store'): every client receives the same cookie.",
    );
  }
  const unstored = [...cc.privateFields, ...cc.noCacheFields];
  if (unstored.length > 0) details.push(`These fields are not stored with it: ${unstored.join(', ')}.`);
  if (p.heuristic) advice.push(`Send ${field}: max-age=N to choose the lifetime instead of the heuristic.`);
  else if (!p.noCache)
    advice.push(
      `To keep it longer (or shorter), change ${cc.sMaxAge !== undefined ? 's-maxage' : 'max-age (or add s-maxage, which only shared caches read)'}.`,
    );
  advice.push(
    'To keep it out of Cairn only, send CDN-Cache-Control: no-store; to keep it out of every shared cache, Cache-Control: private or no-store.',
  );
  if (validators.length === 0) {
    advice.push(
      'Add an ETag (or Last-Modified) so stale copies revalidate with a cheap 304 instead of a full refetch.',
    );
  }
  return {
    storable: true,
    reason: undefined,
    directivesFrom,
    lifetime: p.lifetime,
    freshFor,
    heuristic: p.heuristic,
    staleWhileRevalidate: p.swr,
    staleIfError: p.sie,
    revalidatesEveryTime: p.noCache,
    neverStale: p.mustRevalidate,
    validators,
    vary,
    summary,
    details,
    advice,
  };
}

/**
 * Render an explanation as indented text (what `cairn explain` prints).
 *
 * @example
 * ```ts
 * formatExplanation(explainStorability({ status: 200, headers: { 'cache-control': 'max-age=60' } }));
 * // 'Stored: served from cache for 60 s (max-age=60 in Cache-Control).\n  - Freshness lifetime …'
 * ```
 */
export function formatExplanation(e: StorabilityExplanation, indent = ''): string {
  const lines = [`${indent}${e.summary}`];
  for (const d of e.details) lines.push(`${indent}  - ${d}`);
  if (e.advice.length > 0) {
    lines.push(`${indent}What would change that:`);
    for (const a of e.advice) lines.push(`${indent}  - ${a}`);
  }
  return lines.join('\n');
}
