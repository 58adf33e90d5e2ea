/**
 * Reads origin-connection reuse from a Cairn admin listener's Prometheus text. Tolerant on
 * purpose: the metric names are not frozen, so any counter whose name says "upstream/origin" and
 * "connection(s) created/opened/new" counts as connections created, and any "upstream/origin
 * request(s)" counter counts as requests (or, failing that, created + "connections reused"). Labelled series are summed. Reuse = 1 - created/requests.
 */
import http from 'node:http';
import type { CacheCounters, ReuseCounters } from './results.ts';

const CREATED = /^cairn_(upstream|origin)_connections?_(created|opened|new)(_total)?$/;
const REQUESTS = /^cairn_(upstream|origin)_requests?(_total)?$/;
/** If the engine counts reuses instead of requests, requests = created + reused. */
const REUSED = /^cairn_(upstream|origin)_connections?_reused(_total)?$/;

/** Sums every sample of matching counters; returns null if no counter matched at all. */
export function parseReuse(text: string): ReuseCounters | null {
  let created = 0;
  let requests = 0;
  let reused = 0;
  let sawRequests = false;
  const matched = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m === null) continue;
    const name = m[1]!;
    const value = Number(m[3]);
    if (!Number.isFinite(value)) continue;
    if (CREATED.test(name)) {
      created += value;
      matched.add(name);
    } else if (REQUESTS.test(name)) {
      requests += value;
      sawRequests = true;
      matched.add(name);
    } else if (REUSED.test(name)) {
      reused += value;
      matched.add(name);
    }
  }
  if (matched.size === 0) return null;
  if (!sawRequests) requests = created + reused;
  return { upstreamConnectionsCreated: created, upstreamRequests: requests, matched: [...matched].sort() };
}

/** GET `url` (an admin `/metrics`); null when there is no admin listener or nothing matched. */
export function scrapeReuse(url: string): Promise<ReuseCounters | null> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve(res.statusCode === 200 ? parseReuse(body) : null));
      res.on('error', () => resolve(null));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

/** 1 - created/requests, or null when there were no requests. */
export function reuseRatio(
  c: Pick<ReuseCounters, 'upstreamConnectionsCreated' | 'upstreamRequests'>,
): number | null {
  if (c.upstreamRequests <= 0) return null;
  return 1 - c.upstreamConnectionsCreated / c.upstreamRequests;
}

/** Cache lookup counters and per-tier object counts from Cairn's Prometheus text; null if absent. */
export function parseCacheCounters(text: string): CacheCounters | null {
  let hits = 0;
  let notHits = 0;
  let seen = false;
  const objects: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(cairn_cache_lookups_total|cairn_cache_objects)\{(?:result|tier)="([^"]*)"\}\s+(\S+)/.exec(
      line,
    );
    if (m === null) continue;
    const value = Number(m[3]);
    if (!Number.isFinite(value)) continue;
    seen = true;
    if (m[1] === 'cairn_cache_objects') objects[m[2]!] = (objects[m[2]!] ?? 0) + value;
    else if (m[2] === 'hit') hits += value;
    else notHits += value;
  }
  return seen ? { hits, notHits, objects } : null;
}

/** GET `url` (an admin `/metrics`) and read the cache counters; null when unavailable. */
export function scrapeCache(url: string): Promise<CacheCounters | null> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve(res.statusCode === 200 ? parseCacheCounters(body) : null));
      res.on('error', () => resolve(null));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}
