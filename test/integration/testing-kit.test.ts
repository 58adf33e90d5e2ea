// cairn/testing: the kit against a scripted origin, a real origin URL (through the recording tap),
// a proxy factory, an LMDB disk tier and a running cache by URL; every expect helper passing and
// failing with a message that shows the request, the response headers and why.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { HttpCache } from '../../src/index.ts';
import type { ResponseHead, Session } from '../../src/index.ts';
import { CdnProxy } from '../../hooks/index.ts';
import {
  CacheExpectationError,
  expectHit,
  expectMiss,
  expectNotStored,
  expectOriginHits,
  expectOutcome,
  expectStored,
  observeCache,
  startCacheTest,
  startScriptedOrigin,
} from '../../hooks/testing/index.ts';
import type { CacheTest, ScriptedRoutes } from '../../hooks/testing/index.ts';
import { startOrigin } from '../helpers/servers.ts';

const SITE: ScriptedRoutes = {
  '/static/*': { headers: { 'cache-control': 'public, max-age=3600', etag: '"v1"' }, body: 'asset' },
  '/api/*': { headers: { 'cache-control': 'no-store', 'content-type': 'application/json' }, body: '{}' },
  '/private': { headers: { 'cache-control': 'private, max-age=60' }, body: 'mine' },
  '/cookie': { headers: { 'cache-control': 'max-age=60', 'set-cookie': 'sid=1' }, body: 'c' },
  'POST /form': { status: 201, headers: { 'cache-control': 'max-age=60' }, body: 'made' },
};

async function site(
  t: { after(fn: () => unknown): void },
  routes: ScriptedRoutes = SITE,
): Promise<CacheTest> {
  const kit = await startCacheTest({ origin: routes });
  t.after(() => kit.close());
  return kit;
}

/** Assert `fn` throws a CacheExpectationError whose message matches every pattern. */
function assertFails(fn: () => void, ...patterns: RegExp[]): string {
  let message = '';
  assert.throws(fn, (error: unknown) => {
    assert.ok(
      error instanceof CacheExpectationError,
      `expected a CacheExpectationError, got ${String(error)}`,
    );
    assert.ok(
      error instanceof assert.AssertionError,
      'a CacheExpectationError is an AssertionError (every runner reports it as one)',
    );
    message = error.message;
    return true;
  });
  for (const p of patterns) assert.match(message, p);
  return message;
}

test('scripted origin: a static asset misses once, is stored, then hits; the origin sees one request', async (t) => {
  const kit = await site(t);
  const first = await kit.get('/static/app.js');
  assert.equal(first.status, 200);
  assert.equal(first.text(), 'asset');
  expectMiss(first);
  expectStored(first);
  assert.equal(first.cache.entry?.fwd, 'uri-miss');
  assert.equal(first.origin?.route, '/static/*');
  const second = await kit.get('/static/app.js');
  expectHit(second);
  assert.equal(second.cache.ttl, 3600);
  assert.equal(second.origin, undefined, 'a hit never reaches the origin');
  expectOriginHits(kit, '/static/*', 1);
  expectOriginHits(kit.origin!, undefined, 1);
  assert.equal(kit.hitRatio('/static/*'), 0.5);
  const e = second.explain();
  assert.equal(e.storable, true);
  assert.equal(e.lifetime, 3600);
  assert.deepEqual(e.validators, ['ETag']);
});

test('scripted origin: the API is never stored, every request reaches the origin', async (t) => {
  const kit = await site(t);
  for (let i = 0; i < 3; i++) {
    const res = await kit.get('/api/user');
    expectNotStored(res);
    expectMiss(res);
    assert.equal(res.cache.entry?.detail, 'no-store');
  }
  expectOriginHits(kit, 'GET /api/*', 3);
  expectOriginHits(kit, 'POST /api/*', 0);
  assert.equal(kit.hitRatio('/api/*'), 0);
});

test('expectHit fails on a miss, showing the request, the response headers and why it was not stored', async (t) => {
  const kit = await site(t);
  await kit.get('/api/user');
  const res = await kit.get('/api/user');
  assertFails(
    () => expectHit(res),
    /^expectHit: expected a cache hit, got miss/,
    /request: {2}GET http:\/\/127\.0\.0\.1:\d+\/api\/user/,
    /response: 200/,
    /cache-status: Cairn; fwd=uri-miss; fwd-status=200; detail=no-store/,
    /origin answered 200 with:\n(?: {4}.*\n)* {4}cache-control: no-store/,
    /why: +Not stored: the response has no-store in Cache-Control/,
    /What would change that:/,
  );
  // allowStale does not turn a miss into a pass.
  assertFails(() => expectHit(res, { allowStale: true }), /got miss/);
});

test('expectMiss fails on a hit and says the response was stored and for how long', async (t) => {
  const kit = await site(t);
  await kit.get('/static/a.css');
  const hit = await kit.get('/static/a.css');
  assertFails(
    () => expectMiss(hit),
    /^expectMiss: expected a cache miss, got hit/,
    /cache-status: Cairn; hit; ttl=3600/,
    /why: +Stored: served from cache for 1 h \(max-age=3600 in Cache-Control\)/,
  );
});

test('expectStored and expectNotStored fail with the reason the policy gives', async (t) => {
  const kit = await site(t);
  const priv = await kit.get('/private');
  expectNotStored(priv);
  assertFails(
    () => expectStored(priv),
    /^expectStored: expected the response to be stored, but it was not stored/,
    /detail=private/,
    /Not stored: the response is private \(Cache-Control\): only the user's own browser may store it/,
    /If the body is the same for every user, send public or s-maxage=N/,
  );
  const cookie = await kit.get('/cookie');
  assertFails(
    () => expectStored(cookie),
    /detail=set-cookie/,
    /sets a cookie \(Set-Cookie\)/,
    /private="set-cookie"/,
  );
  const post = await kit.request('/form', { method: 'POST', body: 'x=1' });
  assert.equal(post.status, 201);
  expectNotStored(post);
  assertFails(() => expectStored(post), /request method is POST/);
  await kit.get('/static/b.js');
  const hit = await kit.get('/static/b.js');
  assertFails(
    () => expectNotStored(hit),
    /^expectNotStored: expected the response not to be stored, but it was served from the cache/,
  );
  assertFails(() => expectStored(hit), /but the response does not say \(hit\)/);
  const stored = await kit.get('/static/c.js');
  assertFails(() => expectNotStored(stored), /but it was stored/, /Stored: served from cache for 1 h/);
});

test('expectOriginHits fails with what reached the origin and why each was not stored', async (t) => {
  const kit = await site(t);
  await kit.get('/api/a');
  await kit.get('/api/b');
  assertFails(
    () => expectOriginHits(kit, '/api/*', 1),
    /^expectOriginHits: expected the origin to receive 1 requests matching \/api\/\*, it received 2/,
    /GET \/api\/a -> 200 \(cache-control: no-store\)/,
    /GET \/api\/b -> 200 \(cache-control: no-store\)\n {6}Not stored: the response has no-store/,
  );
  expectOutcome(await kit.get('/api/c'), ['miss', 'bypass']);
  assertFails(() => expectOutcome(kit.responses.at(-1)!, 'hit'), /^expectOutcome: expected hit, got miss/);
});

test('scripted routes: a function of the request, a replaced route ("a deploy"), status and delay', async (t) => {
  const origin = await startScriptedOrigin({
    '/page': (req) => ({
      headers: { 'cache-control': 'max-age=60', etag: `"${req.hit}"` },
      body: `version ${req.hit}`,
    }),
    '/slow': { delayMs: 150, headers: { 'cache-control': 'max-age=60' }, body: 'slow' },
    '/gone': { status: 410, body: 'gone' },
  });
  t.after(() => origin.close());
  const kit = await startCacheTest({ origin });
  t.after(() => kit.close());
  assert.equal((await kit.get('/page?x=1')).text(), 'version 1');
  assert.equal((await kit.get('/page?x=2')).text(), 'version 2');
  expectHit(await kit.get('/page?x=1'));
  // Two requests while the slow origin answers: the cache lock collapses them onto one fetch.
  const [a, b] = await Promise.all([kit.get('/slow'), kit.get('/slow')]);
  assert.deepEqual([a.text(), b.text()], ['slow', 'slow']);
  expectOriginHits(origin, '/slow', 1);
  const gone = await kit.get('/gone');
  assert.equal(gone.status, 410);
  // A deploy turns /page into no-store: new URLs are no longer stored.
  origin.route('/page', { headers: { 'cache-control': 'no-store' }, body: 'v2' });
  expectNotStored(await kit.get('/page?x=3'));
  const unmatched = await kit.get('/nowhere');
  assert.equal(unmatched.status, 404);
  expectNotStored(unmatched);
  origin.reset();
  assert.equal(origin.hits(), 0);
});

test('a real origin URL: the tap counts what reaches the origin and explains from its own headers', async (t) => {
  const seenIds: (string | string[] | undefined)[] = [];
  const origin = await startOrigin(t, (req, res) => {
    seenIds.push(req.headers['x-cairn-test-id']);
    if (req.url?.startsWith('/cdn')) {
      // Cacheable by Cairn only: browsers see private.
      res.writeHead(200, {
        'cache-control': 'private',
        'cdn-cache-control': 'max-age=120',
        vary: 'accept-encoding',
      });
    } else res.writeHead(200, { 'cache-control': 'no-cache, no-store' });
    res.end(`body of ${req.url ?? ''}`);
  });
  const kit = await startCacheTest({ origin: origin.url });
  t.after(() => kit.close());
  const first = await kit.get('/cdn/x');
  expectStored(first);
  assert.equal(first.headers['cdn-cache-control'], undefined, 'Cairn hides CDN-Cache-Control from clients');
  assert.equal(first.origin?.headers['cdn-cache-control'], 'max-age=120', 'the tap saw what the origin sent');
  const why = first.explain();
  assert.equal(why.directivesFrom, 'cdn-cache-control');
  assert.equal(why.lifetime, 120);
  assert.deepEqual(why.vary, ['accept-encoding']);
  expectHit(await kit.get('/cdn/x'));
  const dyn = await kit.get('/dynamic');
  expectNotStored(dyn);
  assert.equal(dyn.text(), 'body of /dynamic');
  expectOriginHits(kit, undefined, 2);
  assert.equal(origin.requests, 2, 'the real origin agrees with the tap');
  assert.deepEqual(seenIds, [undefined, undefined], "the kit's request id stays between the kit and the tap");
});

test('a real origin URL that refuses connections: a 502, not a hang', async (t) => {
  const origin = await startOrigin(t, (_req, res) => res.end());
  const url = origin.url;
  await origin.close();
  const kit = await startCacheTest({ origin: url });
  t.after(() => kit.close());
  const res = await kit.get('/x');
  assert.equal(res.status, 502);
});

test('any ProxyHttp subclass: a factory gets the origin URL and the kit cache', async (t) => {
  class TaggingCdn extends CdnProxy {
    override responseFilter(_session: Session, response: ResponseHead): void {
      response.headers['x-served-by'] = 'tagging-cdn';
    }
  }
  let given: HttpCache | undefined;
  const kit = await startCacheTest({
    origin: SITE,
    cache: { policy: { setCookie: 'strip' } },
    proxy: ({ origin, cache }) => {
      given = cache;
      return new TaggingCdn({ origins: [origin], cache });
    },
  });
  t.after(() => kit.close());
  assert.equal(given, kit.cache);
  const res = await kit.get('/cookie');
  assert.equal(res.headers['x-served-by'], 'tagging-cdn');
  // The kit's policy options reach the cache and the explanation alike.
  expectStored(res);
  assert.match(res.explain().details.join('\n'), /Set-Cookie is removed from the stored copy/);
  expectHit(await kit.get('/cookie'));
});

test('a proxy instance built by the caller, pointed at a scripted origin the caller started', async (t) => {
  const origin = await startScriptedOrigin(SITE);
  t.after(() => origin.close());
  const cache = await HttpCache.open({ memory: { maxBytes: 1 << 20 } });
  t.after(() => cache.close());
  const kit = await startCacheTest({ origin, proxy: new CdnProxy({ origins: [origin.url], cache }) });
  t.after(() => kit.close());
  assert.equal(kit.cache, undefined, 'the caller owns this cache');
  expectMiss(await kit.get('/static/x'));
  expectHit(await kit.get('/static/x'));
  expectOriginHits(kit, '/static/*', 1);
});

test('an LMDB disk tier in a temporary directory, removed by close()', async (t) => {
  const kit = await startCacheTest({ origin: SITE, cache: { disk: 'temp' } });
  t.after(() => kit.close());
  const dir = kit.cacheDir;
  assert.ok(dir !== undefined && dir.startsWith(join(tmpdir(), 'cairn-test-cache-')), String(dir));
  assert.ok(existsSync(dir));
  assert.deepEqual(
    kit.cache!.tierStats().map((s) => s.tier),
    ['memory', 'disk'],
  );
  expectStored(await kit.get('/static/disk.js'));
  expectHit(await kit.get('/static/disk.js'));
  await kit.close();
  assert.equal(existsSync(dir), false, 'close() removed the temporary directory');
  const memoryOnly = await startCacheTest({ origin: SITE });
  t.after(() => memoryOnly.close());
  assert.equal(memoryOnly.cacheDir, undefined, 'memory only by default');
});

test('target mode: a running Cairn is judged from its Cache-Status; origin hits cannot be counted', async (t) => {
  const cairn = await site(t);
  const outside = await startCacheTest({ target: cairn.url });
  t.after(() => outside.close());
  const first = await outside.get('/static/t.js');
  expectMiss(first);
  expectStored(first);
  expectHit(await outside.get('/static/t.js'));
  expectNotStored(await outside.get('/api/t'));
  assert.equal(first.origin, undefined);
  assertFails(() => expectOriginHits(outside, '/static/*', 1), /does not observe the origin/);
  assert.throws(() => outside.originHits(), /does not observe the origin/);
  await assert.rejects(startCacheTest({ target: cairn.url, origin: SITE }), /either `target`/);
});

test('observeCache reads other caches: X-Cache, CF-Cache-Status, Age, and a chosen Cache-Status entry', () => {
  assert.equal(observeCache({ 'x-cache': 'HIT from edge-1' }).outcome, 'hit');
  assert.equal(observeCache({ 'x-cache': 'TCP_MISS from squid' }).outcome, 'miss');
  assert.equal(observeCache({ 'x-cache': 'Miss from cloudfront' }).outcome, 'miss');
  assert.equal(observeCache({ 'cf-cache-status': 'DYNAMIC' }).outcome, 'bypass');
  assert.equal(observeCache({ 'cf-cache-status': 'REVALIDATED' }).outcome, 'revalidated');
  assert.equal(observeCache({ 'cf-cache-status': 'EXPIRED' }).outcome, 'expired');
  assert.equal(observeCache({ age: '30' }).outcome, 'hit');
  assert.equal(observeCache({ age: '0' }).outcome, 'unknown');
  assert.equal(observeCache({}).signal, 'none');
  const chain = { 'cache-status': 'Origin; hit; ttl=30, Edge; fwd=uri-miss; stored' };
  assert.equal(observeCache(chain).outcome, 'miss');
  assert.equal(observeCache(chain).stored, true);
  assert.equal(observeCache(chain, 'Origin').outcome, 'hit');
  assert.equal(observeCache({ 'cache-status': 'Cairn; hit; detail=stale' }).outcome, 'stale');
  assert.equal(observeCache({ 'cache-status': 'Cairn; fwd=stale; fwd-status=304' }).outcome, 'revalidated');
  assert.equal(observeCache({ 'cache-status': 'Cairn; fwd=bypass' }).outcome, 'bypass');
});
