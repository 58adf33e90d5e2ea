// Cairn's RFC 9111 policy against `http-cache-semantics`, the reference model it follows.
//
// Cairn does not use CachePolicy at run time (docs/cache-policy.md, "Why not CachePolicy at run
// time": case-sensitive directives, lenient Age parsing, statuses it never stores, and a
// toObject() that would write request headers such as Authorization to the disk tier). This test
// keeps the two honest: over a matrix of responses they must agree on storability and freshness
// lifetime, except in the named divergences below, each of which must actually occur.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import CachePolicy from 'http-cache-semantics';
import { DEFAULT_POLICY_OPTIONS, evaluateResponse } from '../../cache/policy.ts';

const NOW = Date.parse('2026-11-01T12:00:00Z');
const DATE = new Date(NOW).toUTCString();
const LAST_MODIFIED = new Date(NOW - 10 * 86_400_000).toUTCString();
const EXPIRES = new Date(NOW + 120_000).toUTCString();

const CACHE_CONTROLS = [
  undefined,
  'max-age=60',
  'public, max-age=100',
  's-maxage=30, max-age=60',
  'max-age=0',
  'no-store',
  'private',
  'private, max-age=60',
  'public',
  'no-cache',
  'must-revalidate, max-age=10',
  'proxy-revalidate, max-age=10',
  'max-age=60, stale-while-revalidate=30',
];
const STATUSES = [200, 203, 204, 301, 302, 404, 410, 500, 503];

interface Case {
  status: number;
  cc: string | undefined;
  lastModified: boolean;
  expires: boolean;
  authorization: boolean;
  setCookie: boolean;
}

/** Where Cairn deliberately decides otherwise, and why (see docs/cache-policy.md). */
const DIVERGENCES: readonly { name: string; applies: (c: Case) => boolean }[] = [
  {
    // RFC 9111 §3: any final status may be stored with explicit freshness; the reference stores
    // only its fixed list (no 302 with max-age, no 500/503).
    name: 'explicit freshness on a status the reference never stores',
    applies: (c) => [302, 500, 503].includes(c.status),
  },
  {
    // RFC 9111 §5.2.2.8: proxy-revalidate is must-revalidate for shared caches, not "lifetime 0".
    name: 'proxy-revalidate',
    applies: (c) => c.cc?.includes('proxy-revalidate') === true,
  },
  {
    // no-cache responses: the reference reports lifetime 0; Cairn stores them only when they can
    // be revalidated (a validator), since every use needs the origin anyway.
    name: 'no-cache',
    applies: (c) => c.cc === 'no-cache',
  },
  {
    // Heuristic freshness: Cairn caps it (maxHeuristicTtl, one day); the reference does not.
    name: 'heuristic cap',
    applies: (c) => c.lastModified && !c.expires && (c.cc === undefined || c.cc === 'public'),
  },
  {
    // Set-Cookie: Cairn bypasses by default (setCookie: 'bypass'); the reference stores with
    // lifetime 0 unless public.
    name: 'set-cookie',
    applies: (c) => c.setCookie,
  },
];

function cases(): Case[] {
  const out: Case[] = [];
  for (const status of STATUSES)
    for (const cc of CACHE_CONTROLS)
      for (const lastModified of [false, true])
        for (const expires of [false, true])
          for (const authorization of [false, true])
            for (const setCookie of [false, true])
              out.push({ status, cc, lastModified, expires, authorization, setCookie });
  return out;
}

function responseHeaders(c: Case): Record<string, string> {
  const h: Record<string, string> = { date: DATE };
  if (c.cc !== undefined) h['cache-control'] = c.cc;
  if (c.lastModified) h['last-modified'] = LAST_MODIFIED;
  if (c.expires) h.expires = EXPIRES;
  if (c.setCookie) h['set-cookie'] = 'a=1';
  return h;
}

test('Cairn agrees with http-cache-semantics on storability and lifetime, outside the named divergences', () => {
  let compared = 0;
  const seen = new Map<string, number>();
  const disagreements: string[] = [];
  for (const c of cases()) {
    const reqHeaders: Record<string, string> = { host: 'example.test' };
    if (c.authorization) reqHeaders.authorization = 'Bearer x';
    const resHeaders = responseHeaders(c);
    const reference = new CachePolicy(
      { method: 'GET', url: '/', headers: reqHeaders },
      { status: c.status, headers: resHeaders },
      { shared: true },
    );
    const refLifetime = reference.storable() ? reference.maxAge() : 0;
    const verdict = evaluateResponse(
      { method: 'GET', headers: reqHeaders },
      { status: c.status, headers: resHeaders },
      { requestTime: NOW, responseTime: NOW },
      DEFAULT_POLICY_OPTIONS,
    );
    const ours = verdict.storable ? verdict.policy.lifetime : 0;
    const agree = Math.round(ours) === Math.round(refLifetime);
    const divergence = DIVERGENCES.find((d) => d.applies(c));
    if (divergence !== undefined) {
      if (!agree) seen.set(divergence.name, (seen.get(divergence.name) ?? 0) + 1);
      continue;
    }
    compared++;
    if (!agree) disagreements.push(`${JSON.stringify(c)}: Cairn ${ours}s, reference ${refLifetime}s`);
  }
  assert.deepEqual(disagreements, [], 'unexplained disagreements with http-cache-semantics');
  assert.ok(compared > 400, `compared ${compared} cases`);
  for (const d of DIVERGENCES)
    assert.ok((seen.get(d.name) ?? 0) > 0, `divergence "${d.name}" is real (it occurs)`);
});
