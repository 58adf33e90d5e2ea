/**
 * `explainUrl`: fetch a URL once, straight from where it points, and explain what Cairn's cache
 * policy would do with the response (what `cairn explain URL` prints).
 */
import { request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { CairnError } from '../../src/index.ts';
import type { PolicyOptions } from '../../src/index.ts';
import { describeObservation } from './expect.ts';
import { explainStorability, formatExplanation } from './explain.ts';
import type { StorabilityExplanation } from './explain.ts';
import { observeCache } from './observe.ts';
import type { CacheObservation } from './observe.ts';

/** Options of {@link explainUrl}. */
export interface ExplainUrlOptions {
  /** Default `GET`. */
  readonly method?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly policy?: PolicyOptions;
  /** Give up after this many ms (default 15000). */
  readonly timeoutMs?: number;
}

/** A fetched response and its explanation. */
export interface UrlExplanation {
  readonly url: string;
  readonly method: string;
  readonly requestHeaders: Readonly<Record<string, string>>;
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** What caches in front of the URL (if any) said, from their headers. */
  readonly caches: CacheObservation;
  readonly explanation: StorabilityExplanation;
  readonly elapsedMs: number;
}

/**
 * Fetch `url` once (the body is read and dropped; redirects are not followed) and explain it.
 * Throws `CAIRN_ERR_UPSTREAM_CONNECT` when the URL cannot be fetched.
 *
 * @example
 * ```ts
 * const e = await explainUrl('http://127.0.0.1:3000/static/app.js');
 * console.log(formatUrlExplanation(e));
 * ```
 */
export async function explainUrl(url: string, options: ExplainUrlOptions = {}): Promise<UrlExplanation> {
  let target: URL;
  try {
    target = new URL(url);
  } catch (error) {
    throw new CairnError('CAIRN_ERR_CONFIG_INVALID', `explain: "${url}" is not a URL`, { cause: error });
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    throw new CairnError('CAIRN_ERR_CONFIG_INVALID', `explain: "${url}" is not an http:// or https:// URL`);
  }
  const method = (options.method ?? 'GET').toUpperCase();
  const requestHeaders = { ...options.headers };
  const started = Date.now();
  const response = await new Promise<{ status: number; headers: IncomingHttpHeaders; responseTime: number }>(
    (resolve, reject) => {
      const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = send(
        target,
        { method, headers: requestHeaders, agent: false, timeout: options.timeoutMs ?? 15_000 },
        (res: IncomingMessage) => {
          const responseTime = Date.now();
          res.resume();
          res.on('error', reject);
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, responseTime }));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no response within ${options.timeoutMs ?? 15_000} ms`)));
      req.on('error', (error) =>
        reject(
          new CairnError(
            'CAIRN_ERR_UPSTREAM_CONNECT',
            `explain: cannot fetch ${target.href}: ${error.message}`,
            { cause: error },
          ),
        ),
      );
      req.end();
    },
  );
  const explanation = explainStorability({
    method,
    requestHeaders,
    status: response.status,
    headers: response.headers,
    timing: { requestTime: started, responseTime: response.responseTime },
    ...(options.policy === undefined ? {} : { policy: options.policy }),
  });
  return {
    url: target.href,
    method,
    requestHeaders,
    status: response.status,
    headers: response.headers,
    caches: observeCache(response.headers),
    explanation,
    elapsedMs: response.responseTime - started,
  };
}

const SHOWN = [
  'cache-control',
  'cdn-cache-control',
  'surrogate-control',
  'expires',
  'date',
  'last-modified',
  'etag',
  'age',
  'vary',
  'set-cookie',
  'pragma',
  'cache-status',
  'x-cache',
  'cf-cache-status',
];

/**
 * Render a {@link UrlExplanation} as text.
 *
 * @example
 * ```ts
 * process.stdout.write(formatUrlExplanation(await explainUrl(url)));
 * ```
 */
export function formatUrlExplanation(e: UrlExplanation): string {
  const lines = [
    `${e.method} ${e.url}`,
    `${e.status} in ${e.elapsedMs} ms; the headers that decide caching:`,
  ];
  let any = false;
  for (const name of SHOWN) {
    const v = e.headers[name];
    if (v === undefined) continue;
    any = true;
    for (const line of typeof v === 'string' ? [v] : v) lines.push(`  ${name}: ${line}`);
  }
  if (!any) lines.push('  (none)');
  lines.push('', `Cairn: ${formatExplanation(e.explanation)}`);
  if (e.caches.signal !== 'none')
    lines.push('', `A cache in front of this URL reports: ${describeObservation(e.caches)}.`);
  return `${lines.join('\n')}\n`;
}
