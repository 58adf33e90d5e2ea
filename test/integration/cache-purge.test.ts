/**
 * Purge on the wire, against memory + LMDB: `PURGE` requests (one URL with all its variants, by
 * surrogate key, by prefix) from allowed addresses only, and the admin API's `POST /purge`. After
 * each purge the objects are gone from both tiers and the next request goes to the origin.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpCache } from '../../src/index.ts';
import type { HttpCacheOptions } from '../../src/index.ts';
import { CdnProxy } from '../../hooks/index.ts';
import { httpRequest, startCairn, startOrigin } from '../helpers/servers.ts';
import type { Cleanup, Origin } from '../helpers/servers.ts';
import { signal, startCdn, statusOf, tempDir } from '../helpers/cache.ts';

const LIMIT = { timeout: 20_000 };
const HOST = 'cdn.example';

/** An origin that tags what it serves: /p/<n> carries `Surrogate-Key: product-<n> all`. */
function startTaggingOrigin(t: Cleanup): Promise<Origin> {
  return startOrigin(t, (req, res) => {
    const url = req.url ?? '/';
    const headers: Record<string, string> = { 'cache-control': 'max-age=600' };
    const product = /^\/p\/(\d+)/.exec(url)?.[1];
    if (product !== undefined) headers['surrogate-key'] = `product-${product} all`;
    if (url.startsWith('/tagged-by-cache-tag')) headers['cache-tag'] = 'blue,all';
    if (url.startsWith('/varied')) headers.vary = 'Accept-Language';
    const body = `${url} ${String(req.headers['accept-language'])}`;
    res.writeHead(200, { ...headers, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}

async function startTiered(t: Cleanup, origin: Origin, options: Partial<HttpCacheOptions> = {}) {
  const dir = await tempDir(t);
  const cache = await HttpCache.open({
    memory: { maxBytes: 8 * 1024 * 1024 },
    disk: { path: dir, maxBytes: 64 * 1024 * 1024 },
    ...options,
  });
  t.after(() => cache.close());
  assert.equal(cache.diskError, undefined);
  const proxy = new CdnProxy({ origins: [origin.url], cache });
  const cairn = await startCairn(t, proxy, { adminRoutes: (a) => proxy.adminRoutes(a) });
  const get = (path: string, headers: Record<string, string> = {}) =>
    httpRequest(cairn.url + path, { headers: { host: HOST, ...headers } });
  const purge = (path: string, headers: Record<string, string> = {}) =>
    httpRequest(cairn.url + path, { method: 'PURGE', headers: { host: HOST, ...headers } });
  const admin = (body: unknown) =>
    httpRequest(`${cairn.adminUrl}/purge`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  /** GET until a hit: the object is then committed to both tiers (disk commits first). */
  const store = async (path: string, headers: Record<string, string> = {}): Promise<void> => {
    // A collapsed hit is served while the commit may still be under way: it does not count.
    while (!/^Cairn; hit; ttl=/.test(statusOf(await get(path, headers))));
  };
  /** Objects per tier. */
  const objects = (): Record<string, number> =>
    Object.fromEntries(cache.tierStats().map((s) => [s.tier, s.objects]));
  return { cache, cairn, get, store, purge, admin, objects };
}

async function isHit(res: Promise<Awaited<ReturnType<typeof httpRequest>>>): Promise<boolean> {
  return /^Cairn; hit/.test(statusOf(await res));
}

test('PURGE of one URL drops every variant from both tiers', LIMIT, async (t) => {
  const origin = await startTaggingOrigin(t);
  const c = await startTiered(t, origin);
  await c.store('/varied', { 'accept-language': 'en' });
  await c.store('/varied', { 'accept-language': 'fr' });
  await c.store('/kept');
  assert.deepEqual(c.objects(), { memory: 3, disk: 3 });
  const res = await c.purge('/varied');
  assert.equal(res.status, 200);
  assert.deepEqual(JSON.parse(res.body.toString()), { purged: 2 });
  assert.deepEqual(c.objects(), { memory: 1, disk: 1 });
  assert.equal(await isHit(c.get('/varied', { 'accept-language': 'en' })), false);
  assert.equal(await isHit(c.get('/varied', { 'accept-language': 'fr' })), false);
  assert.equal(await isHit(c.get('/kept')), true);
  const again = await c.purge('/nothing-here');
  assert.equal(again.status, 404);
  assert.deepEqual(JSON.parse(again.body.toString()), { purged: 0 });
});

test('PURGE by surrogate key (Surrogate-Key and Cache-Tag) and by prefix', LIMIT, async (t) => {
  const origin = await startTaggingOrigin(t);
  const c = await startTiered(t, origin);
  for (const path of [
    '/p/1',
    '/p/1?page=2',
    '/p/2',
    '/tagged-by-cache-tag',
    '/static/a.css',
    '/static/img/b.png',
    '/staticky',
  ]) {
    await c.store(path);
  }
  assert.equal(c.objects().disk, 7);

  const byTag = await c.purge('/', { 'surrogate-key': 'product-1' });
  assert.deepEqual(JSON.parse(byTag.body.toString()), { purged: 2 });
  assert.equal(await isHit(c.get('/p/1')), false);
  assert.equal(await isHit(c.get('/p/2')), true);

  const byCacheTag = await c.purge('/', { 'cache-tag': 'blue' });
  assert.deepEqual(JSON.parse(byCacheTag.body.toString()), { purged: 1 });
  assert.equal(await isHit(c.get('/tagged-by-cache-tag')), false);

  const byPrefix = await c.purge('/static/', { 'x-purge-prefix': '1' });
  assert.deepEqual(JSON.parse(byPrefix.body.toString()), { purged: 2 });
  assert.equal(await isHit(c.get('/static/a.css')), false);
  assert.equal(await isHit(c.get('/static/img/b.png')), false);
  assert.equal(
    await isHit(c.get('/staticky')),
    true,
    'a prefix is a path prefix: /static/ does not take /staticky',
  );
});

test('the admin API purges by URL (all variants), by tag and by prefix, in both tiers', LIMIT, async (t) => {
  const origin = await startTaggingOrigin(t);
  const c = await startTiered(t, origin);
  await c.store('/varied', { 'accept-language': 'en' });
  await c.store('/varied', { 'accept-language': 'de' });
  await c.store('/p/7');
  await c.store('/p/8');
  await c.store('/static/x.js');
  await c.store('/kept');
  assert.deepEqual(c.objects(), { memory: 6, disk: 6 });

  const byUrl = await c.admin({ url: `http://${HOST}/varied` });
  assert.equal(byUrl.status, 200);
  assert.deepEqual(JSON.parse(byUrl.body.toString()), { purged: 2 });
  const byTag = await c.admin({ tag: 'product-7' });
  assert.deepEqual(JSON.parse(byTag.body.toString()), { purged: 1 });
  const byPrefix = await c.admin({ prefix: `http://${HOST}/static/` });
  assert.deepEqual(JSON.parse(byPrefix.body.toString()), { purged: 1 });
  assert.deepEqual(c.objects(), { memory: 2, disk: 2 });
  assert.equal(await isHit(c.get('/p/8')), true);
  assert.equal(await isHit(c.get('/kept')), true);
  assert.equal(await isHit(c.get('/p/7')), false);
  await c.store('/p/7');

  const all = await c.admin({ tag: 'all' });
  assert.deepEqual(JSON.parse(all.body.toString()), { purged: 2 }, '/p/7 (stored again) and /p/8');
  assert.equal((await c.admin({ nothing: true })).status, 400);
  assert.equal((await c.admin('not json')).status, 400);
  assert.equal((await c.admin({ url: 'not a url' })).status, 400);
});

test('PURGE from an address not in purgeFrom gets 403 and purges nothing', LIMIT, async (t) => {
  const origin = await startTaggingOrigin(t);
  // Configuration only: no traffic is sent to that address.
  const c = await startTiered(t, origin, { purgeFrom: ['10.1.2.3'] });
  await c.store('/guarded');
  const res = await c.purge('/guarded');
  assert.equal(res.status, 403);
  assert.equal(await isHit(c.get('/guarded')), true);
  assert.equal(origin.requests, 1);
});

test(
  'regression: a PURGE that arrives while the object is still being fetched is not undone when the fetch completes',
  LIMIT,
  async (t) => {
    // The fetch in flight used to be committed after the purge, so content from before the purge
    // was served as a hit afterwards.
    const rest = signal();
    const halfSent = signal();
    let version = 0;
    const origin = await startOrigin(t, (_req, res) => {
      version++;
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': 6 });
      if (version > 1) {
        res.end('new!!!');
        return;
      }
      res.write('old');
      halfSent.resolve();
      void rest.promise.then(() => res.end('old'));
    });
    const { cairn, store } = await startCdn(t, origin);
    const filling = httpRequest(`${cairn.url}/article`);
    await halfSent.promise;
    const purge = await httpRequest(`${cairn.url}/article`, { method: 'PURGE' });
    assert.ok(purge.status === 200 || purge.status === 404, String(purge.status));
    rest.resolve();
    const first = await filling;
    assert.equal(
      first.body.toString(),
      'oldold',
      'the request that started the fetch still gets its whole body',
    );
    const committed = store.committed();
    const after = await httpRequest(`${cairn.url}/article`);
    assert.equal(statusOf(after), 'Cairn; fwd=uri-miss; stored');
    assert.equal(after.body.toString(), 'new!!!');
    await committed;
    assert.equal(store.commits.length, 1, 'only the response fetched after the purge was stored');
    assert.equal((await httpRequest(`${cairn.url}/article`)).body.toString(), 'new!!!');
  },
);
