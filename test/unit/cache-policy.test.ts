import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  evaluateResponse,
  resolvePolicyOptions,
  DEFAULT_POLICY_OPTIONS,
  parseCacheControl,
  parseRequestCacheControl,
  StoredPolicy,
  effectiveCacheControl,
  headersToStore,
  clientHeaders,
  storedHitFieldList,
  HIT_FIELD_SLOTS,
  storedClientHeaders,
  revalidationHeaders,
  mergeNotModified,
  notModifiedMatches,
  revalidatedPolicy,
  invalidationKeys,
  surrogateKeys,
  newObjectMeta,
  type HeaderMap,
  type ResponseVerdict,
  type PolicyOptions,
} from '../../cache/policy.ts';
import { parseHttpDate } from '../../cache/policy-date.ts';

const T0 = Date.UTC(2024, 0, 1, 12, 0, 0);
const DATE0 = new Date(T0).toUTCString();
const GET = { method: 'GET', headers: {} };

function verdict(headers: HeaderMap, status = 200, opts: PolicyOptions = {}, req = GET): ResponseVerdict {
  return evaluateResponse(
    req,
    { status, headers },
    { requestTime: T0, responseTime: T0 },
    resolvePolicyOptions(opts),
  );
}
function policyOf(headers: HeaderMap, status = 200, opts: PolicyOptions = {}): StoredPolicy {
  const v = verdict(headers, status, opts);
  assert.equal(v.storable, true, v.storable ? '' : v.reason);
  return v.policy;
}
function reasonOf(headers: HeaderMap, status = 200, opts: PolicyOptions = {}, req = GET): string | undefined {
  const v = verdict(headers, status, opts, req);
  return v.storable ? undefined : v.reason;
}
function kindAt(
  p: StoredPolicy,
  seconds: number,
  reqHeaders: HeaderMap = {},
  opts = DEFAULT_POLICY_OPTIONS,
): string {
  return p.evaluate(parseRequestCacheControl(reqHeaders), T0 + seconds * 1000, opts).kind;
}

void describe('Cache-Control parsing', () => {
  void test('directive names are case-insensitive', () => {
    assert.equal(parseCacheControl('nO-StOrE').noStore, true);
    assert.equal(parseCacheControl('MaX-AgE=5').maxAge, 5);
  });
  void test('quoted max-age accepted, single quotes invalid', () => {
    assert.equal(parseCacheControl('max-age="3600"').maxAge, 3600);
    assert.equal(parseCacheControl("max-age='3600'").invalidFreshness, true);
  });
  void test('max-age inside a quoted string is not a directive', () => {
    const a = parseCacheControl('foo="max-age=8, x", max-age=0');
    assert.equal(a.maxAge, 0);
    assert.equal(a.invalidFreshness, false);
    assert.equal(parseCacheControl('max-age=0, foo="max-age=3600"').maxAge, 0);
  });
  void test('leading zeros, overflow clamped to 2^31', () => {
    assert.equal(parseCacheControl('max-age=003600').maxAge, 3600);
    assert.equal(parseCacheControl('max-age=99999999999').maxAge, 2147483648);
    assert.equal(parseCacheControl('max-age=2147483649').maxAge, 2147483648);
  });
  for (const bad of [
    'max-age=-1',
    'max-age=3600.0',
    'max-age=a100',
    'max-age=100a',
    'max-age',
    'max-age =5',
    'max-age= 5',
  ]) {
    void test(`invalid freshness: ${bad}`, () => assert.equal(parseCacheControl(bad).invalidFreshness, true));
  }
  void test('conflicting duplicates are invalid; equal duplicates are fine', () => {
    assert.equal(parseCacheControl('max-age=1, max-age=3600').invalidFreshness, true);
    assert.equal(parseCacheControl(['max-age=3600', 'max-age=3600']).invalidFreshness, false);
  });
  void test('qualified no-cache and private collect field names', () => {
    const cc = parseCacheControl('no-cache="Set-Cookie, X-A", private="x-b"');
    assert.deepEqual(cc.noCacheFields, ['set-cookie', 'x-a']);
    assert.deepEqual(cc.privateFields, ['x-b']);
    assert.equal(cc.noCache, false);
    assert.equal(cc.private, false);
  });
  void test('request directives and Pragma fallback', () => {
    const cc = parseRequestCacheControl({ 'cache-control': 'max-stale, min-fresh=10, only-if-cached' });
    assert.equal(cc.maxStale, Infinity);
    assert.equal(cc.minFresh, 10);
    assert.equal(cc.onlyIfCached, true);
    assert.equal(parseRequestCacheControl({ pragma: 'no-cache' }).noCache, true);
    assert.equal(
      parseRequestCacheControl({ pragma: 'no-cache', 'cache-control': 'max-age=5' }).noCache,
      false,
    );
  });
});

void describe('HTTP-date parsing', () => {
  void test('three formats', () => {
    const t = 784111777000;
    assert.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT'), t);
    assert.equal(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT'), t);
    assert.equal(parseHttpDate('Sun Nov  6 08:49:37 1994'), t);
  });
  for (const bad of [
    '0',
    '',
    'Sun, 06 Nov 1994 08:49:37 UTC',
    'sun, 06 nov 1994 08:49:37 GMT',
    'Sun 06 Nov 1994 08:49:37 GMT',
    'Sun, 06-Nov-1994 08:49:37 GMT',
    'Sun, 06 Nov 1994 8:49:37 GMT',
    'Sun, 31 Feb 1994 08:49:37 GMT',
  ]) {
    void test(`invalid: ${JSON.stringify(bad)}`, () => assert.equal(parseHttpDate(bad), undefined));
  }
});

void describe('storability', () => {
  void test('plain max-age is stored', () =>
    assert.equal(reasonOf({ 'cache-control': 'max-age=60' }), undefined));
  void test('no-store (any case), even with max-age and Expires', () => {
    assert.equal(reasonOf({ 'cache-control': 'no-store' }), 'no-store');
    assert.equal(reasonOf({ 'cache-control': 'nO-StOrE' }), 'no-store');
    assert.equal(
      reasonOf({ 'cache-control': 'no-store, max-age=60', expires: 'Sun, 06 Nov 2094 08:49:37 GMT' }),
      'no-store',
    );
  });
  void test('private is not stored by a shared cache; qualified private strips the field', () => {
    assert.equal(reasonOf({ 'cache-control': 'private, max-age=60' }), 'private');
    const v = verdict({ 'cache-control': 'private="x-user", max-age=60', 'x-user': 'bob', 'x-other': '1' });
    assert.ok(v.storable);
    assert.equal(v.headers['x-user'], undefined);
    assert.equal(v.headers['x-other'], '1');
  });
  void test('method', () => {
    assert.equal(
      reasonOf({ 'cache-control': 'max-age=60' }, 200, {}, { method: 'POST', headers: {} }),
      'method',
    );
    assert.equal(
      reasonOf({ 'cache-control': 'max-age=60' }, 200, {}, { method: 'HEAD', headers: {} }),
      undefined,
    );
  });
  void test('request no-store', () => {
    assert.equal(
      reasonOf(
        { 'cache-control': 'max-age=60' },
        200,
        {},
        { method: 'GET', headers: { 'cache-control': 'no-store' } },
      ),
      'request-no-store',
    );
  });
  void test('authorization needs public, s-maxage or must-revalidate', () => {
    const req = { method: 'GET', headers: { authorization: 'Basic x' } };
    assert.equal(reasonOf({ 'cache-control': 'max-age=60' }, 200, {}, req), 'authorization');
    assert.equal(reasonOf({ 'cache-control': 'max-age=60, public' }, 200, {}, req), undefined);
    assert.equal(reasonOf({ 'cache-control': 's-maxage=60' }, 200, {}, req), undefined);
    assert.equal(reasonOf({ 'cache-control': 'max-age=60, must-revalidate' }, 200, {}, req), undefined);
  });
  void test('Vary: * in any form', () => {
    for (const vary of ['*', '*, *', ', *', 'Foo, *', '*, Foo', ['*', '*'], ['', '*']]) {
      assert.equal(reasonOf({ 'cache-control': 'max-age=60', vary }), 'vary-star', JSON.stringify(vary));
    }
  });
  void test('Set-Cookie modes', () => {
    const h = { 'cache-control': 'max-age=60', 'set-cookie': 'a=b' };
    assert.equal(reasonOf(h), 'set-cookie');
    const strip = verdict(h, 200, { setCookie: 'strip' });
    assert.ok(strip.storable);
    assert.equal(strip.headers['set-cookie'], undefined);
    const store = verdict(h, 200, { setCookie: 'store' });
    assert.ok(store.storable);
    assert.equal(store.headers['set-cookie'], 'a=b');
    // no-cache="set-cookie" makes it storable without the cookie even in bypass mode
    const q = verdict({ ...h, 'cache-control': 'max-age=60, no-cache="Set-Cookie"' });
    assert.ok(q.storable);
    assert.equal(q.headers['set-cookie'], undefined);
  });
  void test('statuses: any final status with explicit freshness; heuristic only for cacheable-by-default', () => {
    for (const s of [
      200, 203, 204, 299, 301, 302, 303, 307, 308, 400, 404, 410, 499, 500, 502, 503, 504, 599,
    ]) {
      assert.equal(reasonOf({ 'cache-control': 'max-age=60' }, s), undefined, `status ${s}`);
    }
    const lm = { date: DATE0, 'last-modified': new Date(T0 - 100_000_000).toUTCString() };
    for (const s of [201, 202, 403, 502, 503, 504, 599])
      assert.equal(reasonOf(lm, s), 'status', `status ${s}`);
    for (const s of [200, 203, 204, 404, 405, 410, 414, 501])
      assert.equal(reasonOf(lm, s), undefined, `status ${s}`);
    assert.equal(reasonOf({ ...lm, 'cache-control': 'public' }, 599), undefined);
    assert.equal(reasonOf({ 'cache-control': 'max-age=60' }, 304), 'status');
    assert.equal(reasonOf({ 'cache-control': 'max-age=60' }, 206), 'partial-content');
    assert.equal(reasonOf({ 'cache-control': 'max-age=60' }, 100), 'status');
  });
  void test('must-understand: unknown status not stored; known status ignores no-store', () => {
    assert.equal(
      reasonOf({ 'cache-control': 'max-age=60, must-understand, no-store' }, 599),
      'must-understand',
    );
    assert.equal(reasonOf({ 'cache-control': 'max-age=60, must-understand, no-store' }, 200), undefined);
  });
  void test('stale on arrival without a validator is not worth storing', () => {
    assert.equal(reasonOf({ 'cache-control': 'max-age=0' }), 'no-freshness');
    assert.equal(reasonOf({}), 'no-freshness');
    assert.equal(reasonOf({ 'cache-control': 'no-cache, max-age=60' }), 'no-freshness');
    assert.equal(reasonOf({ 'cache-control': 'max-age=0', etag: '"a"' }), undefined);
    assert.equal(reasonOf({ 'cache-control': 'max-age=0, stale-if-error=60' }), undefined);
  });
});

void describe('freshness', () => {
  void test('max-age fresh, then stale', () => {
    const p = policyOf({ 'cache-control': 'max-age=10', date: DATE0 });
    assert.equal(kindAt(p, 9), 'fresh');
    assert.equal(kindAt(p, 10), 'revalidate');
    assert.equal(p.ttl(T0 + 4000), 6);
  });
  void test('max-age=0 is never fresh, even with a future Expires', () => {
    const p = policyOf({
      'cache-control': 'max-age=0',
      etag: '"a"',
      expires: new Date(T0 + 3600e3).toUTCString(),
    });
    assert.equal(kindAt(p, 0), 'revalidate');
  });
  void test('s-maxage takes precedence over max-age in either direction, and over Expires', () => {
    assert.equal(policyOf({ 'cache-control': 's-maxage=1, max-age=3600' }).lifetime, 1);
    assert.equal(policyOf({ 'cache-control': 'max-age=3600, s-maxage=1' }).lifetime, 1);
    assert.equal(policyOf({ 'cache-control': ['max-age=3600', 's-maxage=1'] }).lifetime, 1);
    assert.equal(policyOf({ 'cache-control': 'max-age=1, s-maxage=3600' }).lifetime, 3600);
    assert.equal(
      policyOf({ 'cache-control': 'max-age=0, s-maxage=3600', expires: 'Sun, 06 Nov 1994 08:49:37 GMT' })
        .lifetime,
      3600,
    );
  });
  void test('max-age beats a past or invalid Expires', () => {
    assert.equal(
      policyOf({ 'cache-control': 'max-age=60', expires: 'Sun, 06 Nov 1994 08:49:37 GMT' }).lifetime,
      60,
    );
    assert.equal(policyOf({ 'cache-control': 'max-age=60', expires: '0' }).lifetime, 60);
  });
  void test('Expires minus Date; invalid, repeated or past Expires means stale', () => {
    const lt = (h: HeaderMap): number => policyOf({ etag: '"e"', date: DATE0, ...h }).lifetime;
    assert.equal(lt({ expires: new Date(T0 + 100e3).toUTCString() }), 100);
    assert.equal(lt({ expires: '0' }), 0);
    assert.equal(lt({ expires: 'Sun, 06 Nov 1994 08:49:37 GMT' }), 0);
    assert.equal(lt({ expires: DATE0 }), 0);
    assert.equal(
      lt({ expires: [new Date(T0 + 100e3).toUTCString(), new Date(T0 + 100e3).toUTCString()] }),
      0,
    );
    // Date slow or fast: lifetime is still Expires - Date
    assert.equal(
      lt({ date: new Date(T0 - 3600e3).toUTCString(), expires: new Date(T0 - 3500e3).toUTCString() }),
      100,
    );
  });
  void test('Expires with an invalid Date uses the response time', () => {
    assert.equal(policyOf({ date: 'garbage', expires: new Date(T0 + 100e3).toUTCString() }).lifetime, 100);
  });
  void test('invalid max-age is stale even with an otherwise long lifetime', () => {
    assert.equal(policyOf({ 'cache-control': 'max-age=3600, max-age=1', etag: '"a"' }).lifetime, 0);
    assert.equal(policyOf({ 'cache-control': 'max-age=-1', etag: '"a"' }).lifetime, 0);
  });
  void test('heuristic: 10% of Date - Last-Modified, capped by maxHeuristicTtl', () => {
    const lm = (s: number): HeaderMap => ({
      date: DATE0,
      'last-modified': new Date(T0 - s * 1000).toUTCString(),
    });
    const p = policyOf(lm(1000));
    assert.equal(p.lifetime, 100);
    assert.equal(p.heuristic, true);
    assert.equal(policyOf(lm(100 * 86400)).lifetime, 86400);
    assert.equal(policyOf(lm(100 * 86400), 200, { maxHeuristicTtl: 60 }).lifetime, 60);
    // Last-Modified in the future relative to Date: no heuristic freshness (but it is a validator)
    assert.equal(policyOf({ date: DATE0, 'last-modified': new Date(T0 + 1000e3).toUTCString() }).lifetime, 0);
  });
  void test('CDN-Cache-Control replaces Cache-Control and Expires (RFC 9213)', () => {
    const h = { 'cache-control': 'private, max-age=5', 'cdn-cache-control': 'max-age=600', expires: '0' };
    const p = policyOf(h);
    assert.equal(p.lifetime, 600);
    assert.equal(reasonOf({ 'cache-control': 'max-age=600', 'cdn-cache-control': 'no-store' }), 'no-store');
    // an empty/garbage targeted field falls back to Cache-Control
    assert.equal(
      effectiveCacheControl({ 'cache-control': 'max-age=5', 'cdn-cache-control': '' }, DEFAULT_POLICY_OPTIONS)
        .targetedBy,
      undefined,
    );
    // Surrogate-Control is off by default, opt-in by configuration
    assert.equal(policyOf({ 'cache-control': 'max-age=5', 'surrogate-control': 'max-age=900' }).lifetime, 5);
    const opts = { targetedFields: ['cdn-cache-control', 'surrogate-control'] };
    assert.equal(
      policyOf({ 'cache-control': 'max-age=5', 'surrogate-control': 'max-age=900' }, 200, opts).lifetime,
      900,
    );
    assert.equal(
      policyOf({ 'cdn-cache-control': 'max-age=60', 'surrogate-control': 'max-age=900' }, 200, opts).lifetime,
      60,
    );
  });
  void test('targeted fields are hidden from clients, hop-by-hop dropped, Age set', () => {
    const out = clientHeaders(
      { 'cdn-cache-control': 'max-age=1', 'content-type': 'a', connection: 'close' },
      '7',
      DEFAULT_POLICY_OPTIONS,
    );
    assert.deepEqual(out, { 'content-type': 'a', age: '7' });
    const keep = clientHeaders(
      { 'cdn-cache-control': 'max-age=1' },
      undefined,
      resolvePolicyOptions({ stripTargetedFields: false }),
    );
    assert.deepEqual(keep, { 'cdn-cache-control': 'max-age=1' });
  });
  void test('a stored map gives each hit its own copy, filtered as clientHeaders filters it', () => {
    const stored = {
      'cdn-cache-control': 'max-age=1',
      'content-type': 'a',
      connection: 'close',
      link: ['<a>', '<b>'],
    };
    const first = storedClientHeaders(stored, '7', DEFAULT_POLICY_OPTIONS);
    assert.deepEqual(first, clientHeaders(stored, '7', DEFAULT_POLICY_OPTIONS));
    // A hook changing one hit's headers (a field, or an array in place) changes nothing stored.
    first['content-type'] = 'changed';
    (first['link'] as string[]).push('<c>');
    delete first['age'];
    const second = storedClientHeaders(stored, '8', DEFAULT_POLICY_OPTIONS);
    assert.deepEqual(second, { 'content-type': 'a', link: ['<a>', '<b>'], age: '8' });
    assert.deepEqual(stored.link, ['<a>', '<b>']);
    // Other options filter again.
    const keep = storedClientHeaders(stored, undefined, resolvePolicyOptions({ stripTargetedFields: false }));
    assert.deepEqual(keep, { 'cdn-cache-control': 'max-age=1', 'content-type': 'a', link: ['<a>', '<b>'] });
  });
});

void describe('stored hit field list (hits no hook sees)', () => {
  const SLOTS = ['age', '', 'via', '', 'cache-status', ''];
  void test('the fields storedClientHeaders keeps, flat, with the stored length, then empty Age, Via and Cache-Status', () => {
    const stored = {
      'cdn-cache-control': 'max-age=1',
      'content-type': 'a',
      connection: 'close',
      link: ['<a>', '<b>'],
    };
    const list = storedHitFieldList(stored, 12, DEFAULT_POLICY_OPTIONS);
    assert.deepEqual(list, ['content-type', 'a', 'link', ['<a>', '<b>'], 'content-length', '12', ...SLOTS]);
    // The same map, made once; another body length (a stored object that changed) makes it again.
    assert.equal(storedHitFieldList(stored, 12, DEFAULT_POLICY_OPTIONS), list);
    assert.deepEqual(storedHitFieldList(stored, 7, DEFAULT_POLICY_OPTIONS)?.slice(-8, -6), [
      'content-length',
      '7',
    ]);
    // The origin's own Content-Length is kept, whatever length is asked for.
    const sized = { 'content-length': '3', 'content-type': 'a' };
    assert.deepEqual(storedHitFieldList(sized, 99, DEFAULT_POLICY_OPTIONS), [
      'content-length',
      '3',
      'content-type',
      'a',
      ...SLOTS,
    ]);
  });
  void test('a stored Age, Via or Cache-Status sends the hit through the field map', () => {
    for (const name of HIT_FIELD_SLOTS) {
      const stored = { 'content-type': 'a', [name]: 'x' };
      assert.equal(storedHitFieldList(stored, 1, DEFAULT_POLICY_OPTIONS), undefined, name);
      assert.equal(storedHitFieldList(stored, 1, DEFAULT_POLICY_OPTIONS), undefined, `${name}, asked again`);
    }
  });
});

void describe('age', () => {
  void test('Age header adds to the age; Age > max-age is stale', () => {
    const p = policyOf({ 'cache-control': 'max-age=3600', age: '7200', etag: '"a"' });
    assert.equal(kindAt(p, 0), 'revalidate');
    const q = policyOf({ 'cache-control': 'max-age=3600', age: '100' });
    assert.equal(q.ageHeader(T0 + 5500), '105');
  });
  for (const age of ['abc', '-7200', '7200.0', '7200,0', '0, 7200', '0, 0', '3600 foo', '0;a=1', '1;2']) {
    void test(`invalid Age ${JSON.stringify(age)} is stale`, () => {
      assert.equal(kindAt(policyOf({ 'cache-control': 'max-age=3600', age, etag: '"a"' }), 0), 'revalidate');
    });
  }
  void test('two Age lines are stale', () => {
    assert.equal(
      kindAt(policyOf({ 'cache-control': 'max-age=3600', age: ['0', '0'], etag: '"a"' }), 0),
      'revalidate',
    );
  });
  void test('response delay counts; Date is ignored unless useApparentAge', () => {
    const v = evaluateResponse(
      GET,
      { status: 200, headers: { 'cache-control': 'max-age=60' } },
      { requestTime: T0 - 2000, responseTime: T0 },
      DEFAULT_POLICY_OPTIONS,
    );
    assert.ok(v.storable);
    assert.equal(v.policy.initialAge, 2);
    const old = { 'cache-control': 'max-age=60', date: new Date(T0 - 30e3).toUTCString() };
    assert.equal(policyOf(old).initialAge, 0);
    assert.equal(policyOf(old, 200, { useApparentAge: true }).initialAge, 30);
  });
  void test('Age header is capped at 2^31', () => {
    assert.equal(
      policyOf({ 'cache-control': 'max-age=1', age: '99999999999', etag: '"a"' }).ageHeader(T0),
      '2147483648',
    );
  });
});

void describe('lookup decision', () => {
  void test('no-cache response always revalidates', () => {
    const p = policyOf({ 'cache-control': 'no-cache, max-age=3600', etag: '"a"' });
    const d = p.evaluate(undefined, T0, DEFAULT_POLICY_OPTIONS);
    assert.equal(d.kind, 'revalidate');
    assert.equal(d.kind === 'revalidate' && d.reason, 'no-cache');
    assert.equal(d.kind === 'revalidate' && d.staleIfErrorUntil, 0);
  });
  void test('request no-cache / max-age / min-fresh', () => {
    const p = policyOf({ 'cache-control': 'max-age=100' });
    const reason = (h: HeaderMap, s = 10): string => {
      const d = p.evaluate(parseRequestCacheControl(h), T0 + s * 1000, DEFAULT_POLICY_OPTIONS);
      return d.kind === 'revalidate' ? d.reason : d.kind;
    };
    assert.equal(reason({ 'cache-control': 'no-cache' }), 'request-no-cache');
    assert.equal(reason({ pragma: 'no-cache' }), 'request-no-cache');
    assert.equal(reason({ 'cache-control': 'max-age=5' }), 'request-max-age');
    assert.equal(reason({ 'cache-control': 'max-age=0' }, 0), 'fresh');
    assert.equal(reason({ 'cache-control': 'max-age=20' }), 'fresh');
    assert.equal(reason({ 'cache-control': 'min-fresh=95' }), 'request-min-fresh');
    assert.equal(reason({ 'cache-control': 'min-fresh=50' }), 'fresh');
    // request directives can be switched off (nginx/Varnish behaviour)
    const d = p.evaluate(
      parseRequestCacheControl({ 'cache-control': 'no-cache' }),
      T0,
      resolvePolicyOptions({ requestDirectives: false }),
    );
    assert.equal(d.kind, 'fresh');
  });
  void test('max-stale allows stale unless must-revalidate', () => {
    const p = policyOf({ 'cache-control': 'max-age=10', etag: '"a"' });
    assert.equal(kindAt(p, 15, { 'cache-control': 'max-stale=10' }), 'stale-allowed');
    assert.equal(kindAt(p, 25, { 'cache-control': 'max-stale=10' }), 'revalidate');
    assert.equal(kindAt(p, 9999, { 'cache-control': 'max-stale' }), 'stale-allowed');
    const m = policyOf({ 'cache-control': 'max-age=10, must-revalidate', etag: '"a"' });
    assert.equal(kindAt(m, 15, { 'cache-control': 'max-stale' }), 'revalidate');
  });
  void test('stale-while-revalidate window', () => {
    const p = policyOf({ 'cache-control': 'max-age=10, stale-while-revalidate=20' });
    assert.equal(kindAt(p, 5), 'fresh');
    assert.equal(kindAt(p, 15), 'stale-while-revalidate');
    assert.equal(kindAt(p, 31), 'revalidate');
    for (const cc of [
      'max-age=10, stale-while-revalidate=20, must-revalidate',
      'max-age=10, stale-while-revalidate=20, proxy-revalidate',
      's-maxage=10, stale-while-revalidate=20',
    ]) {
      assert.equal(kindAt(policyOf({ 'cache-control': cc }), 15), 'revalidate', cc);
    }
  });
  void test('proxy-revalidate does not shorten freshness', () => {
    assert.equal(kindAt(policyOf({ 'cache-control': 'max-age=10, proxy-revalidate' }), 5), 'fresh');
  });
  void test('stale-if-error window, from response or request, blocked by must-revalidate', () => {
    const p = policyOf({ 'cache-control': 'max-age=10, stale-if-error=60' });
    const d = p.evaluate(undefined, T0 + 20e3, DEFAULT_POLICY_OPTIONS);
    assert.equal(d.kind === 'revalidate' && d.staleIfErrorUntil, T0 + 70e3);
    const q = policyOf({ 'cache-control': 'max-age=10', etag: '"a"' });
    assert.equal(q.staleIfErrorUntil(undefined, DEFAULT_POLICY_OPTIONS), 0);
    assert.equal(
      q.staleIfErrorUntil(
        parseRequestCacheControl({ 'cache-control': 'stale-if-error=5' }),
        DEFAULT_POLICY_OPTIONS,
      ),
      T0 + 15e3,
    );
    assert.equal(
      q.staleIfErrorUntil(undefined, resolvePolicyOptions({ defaultStaleIfError: 100 })),
      T0 + 110e3,
    );
    for (const cc of [
      'max-age=10, stale-if-error=60, must-revalidate',
      'max-age=10, stale-if-error=60, proxy-revalidate',
      's-maxage=10, stale-if-error=60',
      'max-age=10, stale-if-error=60, no-cache',
    ]) {
      const r = policyOf({ 'cache-control': cc, etag: '"a"' });
      assert.equal(r.staleIfErrorUntil(undefined, DEFAULT_POLICY_OPTIONS), 0, cc);
    }
  });
  void test('only-if-cached with an unusable response', () => {
    const p = policyOf({ 'cache-control': 'max-age=10', etag: '"a"' });
    assert.equal(kindAt(p, 5, { 'cache-control': 'only-if-cached' }), 'fresh');
    assert.equal(kindAt(p, 50, { 'cache-control': 'only-if-cached' }), 'only-if-cached');
  });
});

void describe('storage', () => {
  void test('expiresAt = stale time + longest stale window + grace for validators', () => {
    const opts = resolvePolicyOptions({ revalidateGrace: 100 });
    assert.equal(
      policyOf({ 'cache-control': 'max-age=10, stale-while-revalidate=30, stale-if-error=50' }).expiresAt(
        opts,
      ),
      T0 + 60e3,
    );
    assert.equal(policyOf({ 'cache-control': 'max-age=10', etag: '"a"' }).expiresAt(opts), T0 + 110e3);
    assert.equal(
      policyOf({ 'cache-control': 'max-age=10, stale-if-error=50, must-revalidate' }).expiresAt(opts),
      T0 + 10e3,
    );
    assert.equal(policyOf({ 'cache-control': 'max-age=10', age: '4' }).expiresAt(opts), T0 + 6e3);
  });
  void test('serialisation round-trips through JSON; garbage is rejected', () => {
    const p = policyOf({ 'cache-control': 'max-age=10, stale-while-revalidate=5', etag: '"a"' });
    const back = StoredPolicy.fromObject(JSON.parse(JSON.stringify(p.toObject())));
    assert.deepEqual(back?.toObject(), p.toObject());
    assert.equal(StoredPolicy.fromObject({ v: 2 }), undefined);
    assert.equal(StoredPolicy.fromObject(null), undefined);
    assert.equal(StoredPolicy.fromObject('x'), undefined);
    const obj = p.toObject();
    assert.equal(StoredPolicy.fromObject(obj), StoredPolicy.fromObject(obj), 'memoised per object');
  });
  void test('headers to store drop hop-by-hop and Connection-listed fields, keep the rest', () => {
    const h = headersToStore(
      {
        connection: 'a, B',
        a: '1',
        b: '2',
        c: '3',
        'keep-alive': 'x',
        'proxy-authenticate': 'x',
        'proxy-authentication-info': 'x',
        'proxy-authorization': 'x',
        'proxy-connection': 'x',
        te: 'x',
        'transfer-encoding': 'chunked',
        upgrade: 'x',
        'set-cookie2': 'x',
        'content-md5': 'x',
        'x-frame-options': 'x',
        'clear-site-data': 'x',
        'content-range': 'x',
        'cache-control': 'max-age=1',
      },
      parseCacheControl('max-age=1'),
      DEFAULT_POLICY_OPTIONS,
    );
    assert.deepEqual(Object.keys(h).sort(), [
      'c',
      'cache-control',
      'clear-site-data',
      'content-md5',
      'content-range',
      'set-cookie2',
      'x-frame-options',
    ]);
  });
  void test('newObjectMeta carries tags, status, policy and expiry', () => {
    const v = verdict({ 'cache-control': 'max-age=10', 'surrogate-key': 'a b', 'cache-tag': 'b,c' });
    assert.ok(v.storable);
    const m = newObjectMeta('http://a.test/', '', 'http://a.test/', v, DEFAULT_POLICY_OPTIONS);
    assert.deepEqual(m.tags, ['a', 'b', 'c']);
    assert.equal(m.status, 200);
    assert.equal(m.storedAt, T0);
    assert.equal(m.expiresAt, T0 + 10e3);
  });
  void test('surrogate keys', () => {
    assert.deepEqual(surrogateKeys({ 'surrogate-key': '  k1   k2 k1 ', 'cache-tag': ' t1 , k2,, t2' }), [
      'k1',
      'k2',
      't1',
      't2',
    ]);
    assert.deepEqual(surrogateKeys({}), []);
  });
});

void describe('revalidation', () => {
  void test('conditional headers from stored validators', () => {
    assert.deepEqual(revalidationHeaders({ etag: '"a"', 'last-modified': DATE0 }), {
      ifNoneMatch: '"a"',
      ifModifiedSince: DATE0,
    });
    assert.deepEqual(revalidationHeaders({ etag: 'W/"a"' }), {
      ifNoneMatch: 'W/"a"',
      ifModifiedSince: undefined,
    });
    assert.deepEqual(revalidationHeaders({ 'last-modified': 'bogus' }), {
      ifNoneMatch: undefined,
      ifModifiedSince: undefined,
    });
  });
  void test('304 merge: new and changed fields win; body-describing fields and ETag do not', () => {
    const stored = {
      'content-length': '10',
      'content-encoding': 'gzip',
      'content-type': 'text/a',
      etag: '"a"',
      'x-test': 'A',
      'cache-control': 'max-age=1',
      vary: 'accept',
    };
    const merged = mergeNotModified(stored, {
      'content-length': '0',
      'content-encoding': 'br',
      'content-type': 'text/b',
      etag: 'W/"a"',
      'x-test': 'B',
      'x-new': 'N',
      'cache-control': 'max-age=60',
      connection: 'x-hop',
      'x-hop': '1',
      'transfer-encoding': 'chunked',
      'content-md5': 'm',
      'content-range': 'r',
      vary: 'cookie',
    });
    assert.deepEqual(merged, {
      'content-length': '10',
      'content-encoding': 'gzip',
      'content-type': 'text/b',
      etag: '"a"',
      'x-test': 'B',
      'x-new': 'N',
      'cache-control': 'max-age=60',
      vary: 'accept',
    });
  });
  void test('304 selection (RFC 9111 §4.3.4)', () => {
    assert.equal(notModifiedMatches({ etag: '"a"' }, { etag: '"a"' }), true);
    assert.equal(notModifiedMatches({ etag: '"a"' }, { etag: '"b"' }), false);
    assert.equal(notModifiedMatches({ etag: 'W/"a"' }, { etag: '"a"' }), false);
    assert.equal(notModifiedMatches({ etag: 'W/"a"' }, { etag: 'W/"a"' }), true);
    assert.equal(notModifiedMatches({ etag: '"a"' }, { etag: 'W/"a"' }), true);
    assert.equal(notModifiedMatches({}, { etag: '"a"' }), false);
    assert.equal(notModifiedMatches({ 'last-modified': DATE0 }, { 'last-modified': DATE0 }), true);
    assert.equal(
      notModifiedMatches({ 'last-modified': DATE0 }, { 'last-modified': 'Sun, 06 Nov 1994 08:49:37 GMT' }),
      false,
    );
    assert.equal(notModifiedMatches({ etag: '"a"' }, {}), true);
  });
  void test('revalidatedPolicy freshens from the 304 time and keeps the stored status', () => {
    const stored = { status: 200, headers: { 'cache-control': 'max-age=1', etag: '"a"', 'x-a': '1' } };
    const v = revalidatedPolicy(
      GET,
      stored,
      { status: 304, headers: { 'cache-control': 'max-age=60', etag: '"a"' } },
      { requestTime: T0 + 5000, responseTime: T0 + 5000 },
      DEFAULT_POLICY_OPTIONS,
    );
    assert.ok(v.storable);
    assert.equal(v.policy.status, 200);
    assert.equal(v.policy.lifetime, 60);
    assert.equal(v.policy.evaluate(undefined, T0 + 10e3, DEFAULT_POLICY_OPTIONS).kind, 'fresh');
    assert.equal(v.headers['x-a'], '1');
    const gone = revalidatedPolicy(
      GET,
      stored,
      { status: 304, headers: { 'cache-control': 'no-store' } },
      { requestTime: T0, responseTime: T0 },
      DEFAULT_POLICY_OPTIONS,
    );
    assert.equal(gone.storable ? '' : gone.reason, 'no-store');
  });
});

void describe('invalidation (RFC 9111 §4.4)', () => {
  void test('unsafe methods with 2xx/3xx invalidate the URI, Location and Content-Location', () => {
    for (const m of ['POST', 'PUT', 'DELETE', 'M-SEARCH', 'PATCH']) {
      assert.deepEqual(
        invalidationKeys(m, 'http://a.test/p?q=1', 200, {
          location: '/l',
          'content-location': 'http://A.test:80/cl',
        }),
        ['http://a.test/p?q=1', 'http://a.test/l', 'http://a.test/cl'],
        m,
      );
    }
  });
  void test('safe methods and errors invalidate nothing', () => {
    assert.deepEqual(invalidationKeys('GET', 'http://a.test/p', 200, {}), []);
    assert.deepEqual(invalidationKeys('OPTIONS', 'http://a.test/p', 200, {}), []);
    assert.deepEqual(invalidationKeys('POST', 'http://a.test/p', 500, {}), []);
    assert.deepEqual(invalidationKeys('POST', 'http://a.test/p', 404, {}), []);
    assert.deepEqual(invalidationKeys('POST', 'http://a.test/p', 303, {}), ['http://a.test/p']);
  });
  void test('cross-origin Location is ignored', () => {
    assert.deepEqual(
      invalidationKeys('POST', 'http://a.test/p', 201, {
        location: 'http://b.test/x',
        'content-location': 'https://a.test/x',
      }),
      ['http://a.test/p'],
    );
  });
});
