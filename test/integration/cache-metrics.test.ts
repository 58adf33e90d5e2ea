/**
 * The cache's metrics as an operator scrapes them (admin `/metrics`): lookups by result, bytes and
 * objects per tier, evictions, lock waits and lock timeouts. Each is read before and after the
 * traffic that must move it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request, type ServerResponse } from 'node:http';
import { HttpCache } from '../../src/index.ts';
import type { Session } from '../../src/index.ts';
import { CdnProxy } from '../../hooks/index.ts';
import { httpRequest, startCairn, startOrigin } from '../helpers/servers.ts';
import type { MetricsSnapshot } from '../helpers/servers.ts';
import { signal, statusOf, tempDir } from '../helpers/cache.ts';

const LIMIT = { timeout: 20_000 };

/** Counts cache misses per path (`cacheMiss` runs just before the cache lock is taken). */
class WatchedCdn extends CdnProxy {
  readonly #misses = new Map<string, number>();
  readonly #waiting: { path: string; n: number; resolve: () => void }[] = [];

  override cacheMiss(session: Session): void {
    const n = (this.#misses.get(session.path) ?? 0) + 1;
    this.#misses.set(session.path, n);
    for (const w of this.#waiting.filter((x) => x.path === session.path && x.n <= n)) {
      this.#waiting.splice(this.#waiting.indexOf(w), 1);
      w.resolve();
    }
  }

  /** Resolves once `path` has missed `n` times. */
  missed(path: string, n: number): Promise<void> {
    if ((this.#misses.get(path) ?? 0) >= n) return Promise.resolve();
    return new Promise((resolve) => this.#waiting.push({ path, n, resolve }));
  }
}

/** A GET whose response head can be awaited before its body. */
function startGet(url: string): { head: Promise<void>; body: Promise<string> } {
  const head = signal();
  const body = new Promise<string>((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      head.resolve();
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end();
  });
  return { head: head.promise, body };
}

test('lookups, bytes, objects, evictions, lock waits and lock timeouts all move', LIMIT, async (t) => {
  const body2k = 'x'.repeat(2048);
  const proxyReady = signal<WatchedCdn>();
  let slowHeld: ServerResponse | undefined;
  const origin = await startOrigin(t, (req, res) => {
    const url = req.url ?? '/';
    if (req.method === 'POST') {
      req.resume();
      res.writeHead(204);
      res.end();
    } else if (url === '/swr') {
      res.writeHead(200, {
        'cache-control': 'max-age=10, stale-while-revalidate=600',
        age: '20',
        'content-length': 3,
      });
      res.end('swr');
    } else if (url === '/rv') {
      if (req.headers['if-none-match'] === '"rv"') {
        res.writeHead(304, { etag: '"rv"', 'cache-control': 'max-age=0' });
        res.end();
      } else {
        res.writeHead(200, { etag: '"rv"', 'cache-control': 'max-age=0', 'content-length': 2 });
        res.end('rv');
      }
    } else if (url === '/waited') {
      // Headers and half the body, then the rest once a second request has joined the fetch.
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': 4 });
      res.write('wa');
      void proxyReady.promise.then((p) => p.missed('/waited', 2)).then(() => res.end('it'));
    } else if (url === '/slow') {
      // The first request is answered only once the second gave up waiting and came itself.
      if (slowHeld === undefined) {
        slowHeld = res;
        return;
      }
      for (const r of [res, slowHeld]) {
        r.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': 4 });
        r.end('slow');
      }
    } else {
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': body2k.length });
      res.end(body2k);
    }
  });
  const dir = await tempDir(t);
  const cache = await HttpCache.open({
    // Room for a few 2 KiB objects in memory, so storing more evicts; the disk keeps them all.
    memory: { maxBytes: 8 * 1024 },
    disk: { path: dir, maxBytes: 64 * 1024 * 1024 },
    lock: { timeoutMs: 50 },
  });
  t.after(() => cache.close());
  const proxy = new WatchedCdn({ origins: [origin.url], cache });
  proxyReady.resolve(proxy);
  const cairn = await startCairn(t, proxy, { adminRoutes: (a) => proxy.adminRoutes(a) });
  const get = (path: string) => httpRequest(cairn.url + path);
  /** GET until a plain (non-collapsed) hit: the object is committed to both tiers by then. */
  const stored = async (path: string): Promise<void> => {
    while (!/^Cairn; hit; ttl=/.test(statusOf(await get(path))));
  };
  let before: MetricsSnapshot = await cairn.metrics();
  /** Scrape, and return how much a metric moved since the previous scrape. */
  const since = async (): Promise<(name: string, labels?: Record<string, string>) => number> => {
    const now = await cairn.metrics();
    const prev = before;
    before = now;
    return (name, labels = {}) => now.value(name, labels) - prev.value(name, labels);
  };
  const lookups = async (result: string): Promise<number> =>
    (await since())('cairn_cache_lookups_total', { result });
  const moved = async (name: string): Promise<number> => (await since())(name);

  assert.equal(statusOf(await get('/a')), 'Cairn; fwd=uri-miss; stored');
  assert.equal(await lookups('miss'), 1);
  await stored('/a');
  assert.ok((await lookups('hit')) >= 1);
  const tiers = await cairn.metrics();
  for (const tier of ['memory', 'disk']) {
    assert.equal(tiers.value('cairn_cache_objects', { tier }), 1, tier);
    assert.ok(tiers.value('cairn_cache_bytes', { tier }) > 2048, tier);
  }

  await get('/swr');
  before = await cairn.metrics();
  assert.match(statusOf(await get('/swr')), /detail=stale/);
  assert.equal(await lookups('stale'), 1);

  await get('/rv');
  before = await cairn.metrics();
  assert.equal(statusOf(await get('/rv')), 'Cairn; fwd=stale; fwd-status=304');
  assert.equal(await lookups('revalidated'), 1);

  assert.equal(
    statusOf(await httpRequest(`${cairn.url}/form`, { method: 'POST', body: 'x' })),
    'Cairn; fwd=method',
  );
  assert.equal(await lookups('bypass'), 1);

  // Lock wait: the second request joins once the first has its head (so no wait timer runs).
  const writer = startGet(`${cairn.url}/waited`);
  await writer.head;
  const waiter = await get('/waited');
  assert.equal(statusOf(waiter), 'Cairn; hit; collapsed');
  assert.equal(waiter.body.toString(), 'wait');
  assert.equal(await writer.body, 'wait');
  const lock = await since();
  assert.equal(lock('cairn_cache_lock_waits_total'), 1);
  assert.equal(lock('cairn_cache_lookups_total', { result: 'collapsed' }), 1);

  // Lock timeout: the second request gives up waiting for the held first one.
  const [s1, s2] = await Promise.all([get('/slow'), proxy.missed('/slow', 1).then(() => get('/slow'))]);
  assert.equal(s1.body.toString(), 'slow');
  assert.equal(s2.body.toString(), 'slow');
  assert.equal(await moved('cairn_cache_lock_timeouts_total'), 1);

  // Evictions: more 2 KiB objects than the memory tier holds; the disk tier keeps them all.
  for (const path of ['/e1', '/e2', '/e3', '/e4', '/e5']) await stored(path);
  const after = await cairn.metrics();
  assert.ok(after.value('cairn_cache_evictions', { tier: 'memory' }) > 0, 'the memory tier evicted');
  assert.equal(after.value('cairn_cache_evictions', { tier: 'disk' }), 0);
  assert.ok(
    after.value('cairn_cache_objects', { tier: 'disk' }) >
      after.value('cairn_cache_objects', { tier: 'memory' }),
  );
});
