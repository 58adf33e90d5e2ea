/**
 * Load balancing through the proxy, end to end: real `node:http` origins on 127.0.0.1 port 0, a real
 * `ReverseProxy`/`CdnProxy` served by `serve()`, requests over real sockets. Every assertion counts
 * requests (which origin answered, how many each one saw) or reads the admin `/metrics`; verdicts of
 * active checks are awaited as log lines, never as elapsed time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Pool } from 'undici';
import { HttpCache, Ketama } from '../../src/index.ts';
import { CdnProxy, ReverseProxy } from '../../hooks/index.ts';
import type { ReverseProxyOptions } from '../../hooks/index.ts';
import {
  httpRequest,
  startCairn,
  startOrigin,
  type Cairn,
  type Cleanup,
  type Origin,
} from '../helpers/servers.ts';
import { unusedPort } from '../helpers/cli.ts';

/** An origin that answers its own name (and `/healthz` as `health()` says). */
async function named(
  t: Cleanup,
  name: string,
  answer: (req: IncomingMessage, res: ServerResponse) => boolean = () => false,
): Promise<Origin & { readonly id: string; healthy: boolean; readonly served: number }> {
  const state = { healthy: true, served: 0 };
  const origin = await startOrigin(t, (req, res) => {
    if (req.url === '/healthz') {
      res.writeHead(state.healthy ? 200 : 503).end();
      return;
    }
    state.served++;
    if (answer(req, res)) return;
    res.writeHead(200, { 'content-type': 'text/plain', 'x-origin': name }).end(name);
  });
  return {
    /** Requests other than health probes. */
    get served() {
      return state.served;
    },
    get requests() {
      return origin.requests;
    },
    get sockets() {
      return origin.sockets;
    },
    server: origin.server,
    port: origin.port,
    url: origin.url,
    peer: (options) => origin.peer(options),
    close: () => origin.close(),
    id: `127.0.0.1:${origin.port}`,
    get healthy() {
      return state.healthy;
    },
    set healthy(v: boolean) {
      state.healthy = v;
    },
  };
}

async function start(
  t: Cleanup,
  options: ReverseProxyOptions,
  make = (o: ReverseProxyOptions) => new ReverseProxy(o),
): Promise<{ cairn: Cairn; proxy: ReverseProxy; client: Pool }> {
  const proxy = make(options);
  const cairn = await startCairn(t, proxy, { services: [proxy], adminRoutes: (a) => proxy.adminRoutes(a) });
  const client = new Pool(cairn.url, { connections: 4 });
  t.after(() => client.close());
  return { cairn, proxy, client };
}

async function get(
  client: Pool,
  path: string,
): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  const res = await client.request({ path, method: 'GET' });
  return { status: res.statusCode, body: await res.body.text(), headers: res.headers };
}

/** Who answered each of `n` sequential requests. */
async function answers(client: Pool, n: number, path = (i: number) => `/r/${i}`): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await get(client, path(i));
    assert.equal(r.status, 200, `request ${i}: ${r.body}`);
    out.push(r.body);
  }
  return out;
}

function count(names: readonly string[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const n of names) c[n] = (c[n] ?? 0) + 1;
  return c;
}

void test('round robin spreads evenly; smooth weighted round robin interleaves 5,1,1 as nginx does', async (t) => {
  const a = await named(t, 'a');
  const b = await named(t, 'b');
  const c = await named(t, 'c');
  const rr = await start(t, { origins: [a.url, b.url, c.url] });
  assert.deepEqual(count(await answers(rr.client, 30)), { a: 10, b: 10, c: 10 });

  const wrr = await start(t, {
    upstream: {
      algorithm: 'weighted-round-robin',
      backends: [{ address: a.id, weight: 5 }, b.id, c.id],
    },
  });
  assert.deepEqual(await answers(wrr.client, 7), ['a', 'a', 'b', 'a', 'c', 'a', 'a']);
});

void test('ketama by URI: every URI lands on the backend the nginx-exact ring names', async (t) => {
  const origins = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c')];
  const weights = [1, 2, 3];
  const { client } = await start(t, {
    upstream: {
      algorithm: 'ketama',
      hashKey: 'uri',
      backends: origins.map((o, i) => ({ address: o.id, weight: weights[i]! })),
    },
  });
  const ring = new Ketama(origins.map((o, i) => ({ server: o.id, weight: weights[i]! })));
  const byId = new Map(origins.map((o, i) => [o.id, 'abc'[i]!]));
  const paths = Array.from({ length: 150 }, (_, i) => `/objects/${i}/img.png?v=${i % 7}`);
  const got = await answers(client, paths.length, (i) => paths[i]!);
  const want = paths.map((p) => byId.get(ring.select(p)));
  assert.deepEqual(got, want);
  // And a second pass maps the same way (the ring is deterministic, not sticky by accident).
  assert.deepEqual(await answers(client, 30, (i) => paths[i]!), want.slice(0, 30));
});

void test('a refused connection is retried on the next backend not yet tried; all down answers a coded 503', async (t) => {
  const a = await named(t, 'a');
  const deadPort = await unusedPort();
  const { client, proxy, cairn } = await start(t, {
    upstream: { backends: [`127.0.0.1:${deadPort}`, a.id], passive: false, breaker: false },
  });
  const got = await answers(client, 10);
  assert.deepEqual(count(got), { a: 10 }, 'every request reached the live backend');
  const m = await cairn.metrics();
  assert.equal(
    m.value('cairn_upstream_backend_failures_total', { backend: `127.0.0.1:${deadPort}` }),
    10,
    'round robin comes back to it each time (passive health is off)',
  );
  assert.equal(m.value('cairn_upstream_backend_selections_total', { backend: a.id }), 10);

  // Nothing usable: a clear 503 and a coded log line.
  const upstream = proxy.group('default')!.upstream;
  upstream.setHealthy(a.id, false);
  upstream.setHealthy(`127.0.0.1:${deadPort}`, false);
  const res = await get(client, '/x');
  assert.equal(res.status, 503);
  assert.match(res.body, /no healthy origin server/);
  assert.match(res.body, /CAIRN_ERR_UPSTREAM_UNAVAILABLE/);
  assert.equal(res.headers['cache-control'], 'no-store');
  const line = await cairn.logs.waitFor((l) => l.code === 'CAIRN_ERR_UPSTREAM_UNAVAILABLE');
  assert.equal(line.upstream, 'default');
  const access = await cairn.logs.waitFor((l) => l.msg === 'request' && l.status === 503);
  assert.equal(access.err, 'CAIRN_ERR_UPSTREAM_UNAVAILABLE');
  assert.equal(a.requests, 10, 'the 503 never reached an origin');
});

void test('passive health: consecutive failure statuses eject a backend for its cool-down', async (t) => {
  const bad = await named(t, 'bad', (_req, res) => {
    res.writeHead(502).end('bad');
    return true;
  });
  const good = await named(t, 'good');
  const { client, cairn } = await start(t, {
    upstream: { backends: [bad.id, good.id], passive: { maxFails: 2, ejectMs: 60_000 }, breaker: false },
  });
  const statuses: number[] = [];
  for (let i = 0; i < 20; i++) statuses.push((await get(client, `/p/${i}`)).status);
  // Round robin: bad answers requests 0 and 2 (502, passed through), then it is ejected.
  assert.equal(bad.requests, 2);
  assert.deepEqual(statuses.filter((s) => s === 502).length, 2);
  assert.equal(good.requests, 18);
  const m = await cairn.metrics();
  assert.equal(
    m.value('cairn_upstream_backend_ejections_total', { upstream: 'default', backend: bad.id }),
    1,
  );
  assert.equal(m.value('cairn_upstream_backend_up', { backend: bad.id }), 0);
  assert.equal(m.value('cairn_upstream_backend_up', { backend: good.id }), 1);
  await cairn.logs.waitFor(
    (l) => l.msg === 'backend ejected after consecutive failures' && l.backend === bad.id,
  );
});

void test('circuit breaker: an error ratio over the window opens it; traffic avoids the backend', async (t) => {
  const flaky = await named(t, 'flaky', (_req, res) => {
    res.writeHead(500).end('boom');
    return true;
  });
  const good = await named(t, 'good');
  const { client, cairn } = await start(t, {
    upstream: {
      backends: [flaky.id, good.id],
      failureStatus: [500],
      passive: false,
      breaker: { minRequests: 4, errorRatio: 0.5, windowMs: 60_000, openMs: 60_000 },
    },
  });
  for (let i = 0; i < 24; i++) await get(client, `/b/${i}`);
  assert.equal(flaky.requests, 4, 'the breaker opened after the 4th failure in its window');
  assert.equal(good.requests, 20);
  const m = await cairn.metrics();
  assert.equal(m.value('cairn_upstream_backend_breaker_state', { backend: flaky.id }), 2);
  assert.equal(m.value('cairn_upstream_backend_failures_total', { backend: flaky.id }), 4);
});

void test('active checks mark a failing backend down (HTTP and TCP) and traffic avoids it', async (t) => {
  const a = await named(t, 'a');
  const b = await named(t, 'b');
  const { client, cairn } = await start(t, {
    upstream: {
      backends: [a.id, b.id],
      health: {
        type: 'http',
        path: '/healthz',
        intervalMs: 20,
        timeoutMs: 1000,
        fall: 2,
        rise: 1,
        jitter: 0,
      },
    },
  });
  a.healthy = false;
  await cairn.logs.waitFor(
    (l) => l.msg === 'backend health changed' && l.backend === a.id && l.healthy === false,
  );
  const before = a.served;
  assert.deepEqual(count(await answers(client, 12)), { b: 12 });
  assert.equal(a.served, before, 'only health probes reached the down backend');
  let m = await cairn.metrics();
  assert.equal(m.value('cairn_upstream_backend_healthy', { backend: a.id }), 0);
  assert.equal(m.value('cairn_upstream_backend_up', { backend: a.id }), 0);
  // It comes back after `rise` passing probes.
  a.healthy = true;
  await cairn.logs.waitFor(
    (l) => l.msg === 'backend health changed' && l.backend === a.id && l.healthy === true,
  );
  assert.deepEqual(count(await answers(client, 4)), { a: 2, b: 2 });

  // TCP: a backend whose port refuses connections goes down without a request being sent to it.
  const deadPort = await unusedPort();
  const tcp = await start(t, {
    upstream: {
      backends: [b.id, `127.0.0.1:${deadPort}`],
      health: { type: 'tcp', intervalMs: 20, timeoutMs: 1000, fall: 1, jitter: 0 },
    },
  });
  await tcp.cairn.logs.waitFor(
    (l) => l.msg === 'backend health changed' && l.backend === `127.0.0.1:${deadPort}`,
  );
  m = await tcp.cairn.metrics();
  assert.equal(
    m.value('cairn_upstream_backend_up', { upstream: 'default', backend: `127.0.0.1:${deadPort}` }),
    0,
  );
  assert.deepEqual(count(await answers(tcp.client, 6)), { b: 6 });
  const m2 = await tcp.cairn.metrics();
  assert.equal(
    m2.value('cairn_upstream_backend_failures_total'),
    0,
    'no request was tried on the dead backend',
  );
});

void test('per-backend metrics: selections, in-flight, weight; a removed backend leaves /metrics', async (t) => {
  const a = await named(t, 'a');
  const b = await named(t, 'b');
  const { client, cairn, proxy } = await start(t, {
    upstream: { backends: [{ address: a.id, weight: 3 }, b.id] },
  });
  await answers(client, 8);
  let m = await cairn.metrics();
  assert.equal(m.value('cairn_upstream_backend_selections_total', { upstream: 'default', backend: a.id }), 6);
  assert.equal(m.value('cairn_upstream_backend_selections_total', { upstream: 'default', backend: b.id }), 2);
  assert.equal(m.value('cairn_upstream_backend_weight', { backend: a.id }), 3);
  assert.equal(m.value('cairn_upstream_backend_in_flight'), 0, 'every request ended its attempt');
  await proxy.group('default')!.upstream.drain(b.id);
  m = await cairn.metrics();
  assert.equal(m.samples.filter((s) => s.labels.backend === b.id).length, 0);
  assert.ok(m.samples.some((s) => s.labels.backend === a.id));
});

void test('no healthy backend behind a cache: stale-if-error content is served instead of the 503', async (t) => {
  const origin = await named(t, 'o', (_req, res) => {
    res
      .writeHead(200, { 'cache-control': 'max-age=0, stale-if-error=600', 'content-type': 'text/plain' })
      .end('fresh once');
    return true;
  });
  const cache = await HttpCache.open({ memory: { maxBytes: 1 << 20, maxObjectBytes: 1 << 16 } });
  t.after(() => cache.close());
  const { client, proxy } = await start(
    t,
    { upstream: { backends: [origin.id] } },
    (o) => new CdnProxy({ ...o, cache }),
  );
  const first = await get(client, '/doc');
  assert.equal(first.status, 200);
  proxy.group('default')!.upstream.setHealthy(origin.id, false);
  const stale = await get(client, '/doc');
  assert.equal(stale.status, 200);
  assert.equal(stale.body, 'fresh once');
  assert.match(String(stale.headers['cache-status']), /fwd=stale/);
  // Not cached at all: the 503.
  const none = await get(client, '/other');
  assert.equal(none.status, 503);
  assert.equal(origin.requests, 1);
});

void test('admin API: list, add, re-weight, drain a backend; errors are JSON with a reason', async (t) => {
  const a = await named(t, 'a');
  const b = await named(t, 'b');
  const { client, cairn } = await start(t, { upstream: { backends: [a.id] } });
  const admin = (method: string, path: string, body?: unknown) =>
    httpRequest(`${cairn.adminUrl}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    }).then((r) => ({ status: r.status, json: JSON.parse(r.body.toString()) as Record<string, unknown> }));
  const list = await admin('GET', '/upstreams');
  assert.equal(list.status, 200);
  assert.equal((list.json.upstreams as { name: string }[])[0]!.name, 'default');
  assert.equal(
    (await admin('PUT', `/upstreams/default/backends/b`, { address: b.id, weight: 2 })).status,
    201,
  );
  assert.deepEqual(count(await answers(client, 6)), { a: 2, b: 4 });
  assert.equal((await admin('PATCH', `/upstreams/default/backends/b`, { weight: 1 })).json.weight, 1);
  assert.deepEqual(count(await answers(client, 6)), { a: 3, b: 3 });
  assert.equal((await admin('PUT', `/upstreams/default/backends/b`, { address: '10.9.9.9:1' })).status, 409);
  assert.equal(
    (await admin('PUT', `/upstreams/default/backends/c`, { address: 'not an address!' })).json.code,
    'CAIRN_ERR_CONFIG_INVALID',
  );
  assert.equal((await admin('PATCH', `/upstreams/default`, { algorithm: 'nope' })).status, 400);
  assert.equal(
    (await admin('PATCH', `/upstreams/default`, { algorithm: 'least-connections' })).json.algorithm,
    'least-connections',
  );
  assert.equal((await admin('DELETE', `/upstreams/default/backends/b?wait=1`)).status, 200);
  assert.deepEqual(count(await answers(client, 4)), { a: 4 });
  assert.equal((await admin('DELETE', `/upstreams/default/backends/b`)).status, 404);
  assert.equal((await admin('GET', `/upstreams/nope`)).status, 404);
});
