import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { CacheStatusBuilder, CACHE_STATUS, parseCacheStatus } from '../../cache/cache-status.ts';

void describe('Cache-Status builder', () => {
  const cs = CACHE_STATUS;
  void test('vocabulary', () => {
    assert.equal(cs.hit(), 'Cairn; hit');
    assert.equal(cs.hit(41.6), 'Cairn; hit; ttl=42');
    assert.equal(cs.staleHit(), 'Cairn; hit; detail=stale');
    assert.equal(cs.staleHit(-3), 'Cairn; hit; ttl=-3; detail=stale');
    assert.equal(cs.collapsed(), 'Cairn; hit; collapsed');
    assert.equal(cs.forward('miss', { stored: true }), 'Cairn; fwd=miss; stored');
    assert.equal(cs.forward('stale', { fwdStatus: 304 }), 'Cairn; fwd=stale; fwd-status=304');
    assert.equal(cs.forward('uri-miss'), 'Cairn; fwd=uri-miss');
    assert.equal(cs.forward('vary-miss', { stored: true, ttl: 60 }), 'Cairn; fwd=vary-miss; stored; ttl=60');
    assert.equal(cs.forward('request'), 'Cairn; fwd=request');
    assert.equal(cs.forward('miss', { collapsed: true }), 'Cairn; fwd=miss; collapsed');
    assert.equal(cs.bypass('no-store'), 'Cairn; fwd=bypass; detail=no-store');
    assert.equal(cs.bypass(), 'Cairn; fwd=bypass');
    assert.equal(cs.bypass('has space'), 'Cairn; fwd=bypass; detail="has space"');
    assert.equal(cs.bypass('q"\\'), 'Cairn; fwd=bypass; detail="q\\"\\\\"');
  });
  void test('precomputed fragments are reused', () => {
    assert.equal(cs.bypass('private'), cs.bypass('private'));
    assert.equal(cs.forward('miss', { stored: true }), cs.forward('miss', { stored: true }));
  });
  void test('a name that is not a token is quoted', () => {
    assert.equal(new CacheStatusBuilder('My Cache').hit(), '"My Cache"; hit');
  });
});

void describe('Cache-Status parser', () => {
  void test('RFC 9211 examples', () => {
    const e = parseCacheStatus('OriginCache; hit; ttl=1100, "CDN Company Here"; hit; ttl=545');
    assert.equal(e.length, 2);
    assert.equal(e[0]!.cache, 'OriginCache');
    assert.equal(e[0]!.hit, true);
    assert.equal(e[0]!.ttl, 1100);
    assert.equal(e[1]!.cache, 'CDN Company Here');
    const f = parseCacheStatus(
      'ExampleCache; fwd=uri-miss; stored; collapsed; fwd-status=200; key="a b"; detail=xyz',
    );
    assert.deepEqual(
      { ...f[0]!, params: undefined },
      {
        cache: 'ExampleCache',
        hit: false,
        fwd: 'uri-miss',
        fwdStatus: 200,
        ttl: undefined,
        stored: true,
        collapsed: true,
        key: 'a b',
        detail: 'xyz',
        params: undefined,
      },
    );
  });
  void test('round-trips every builder output', () => {
    const cs = CACHE_STATUS;
    for (const s of [
      cs.hit(5),
      cs.staleHit(-2),
      cs.collapsed(1),
      cs.forward('stale', { fwdStatus: 304, stored: true }),
      cs.bypass('set-cookie'),
      cs.bypass('x y'),
    ]) {
      const [e] = parseCacheStatus(s);
      assert.equal(e?.cache, 'Cairn', s);
    }
    assert.equal(parseCacheStatus(cs.bypass('x y'))[0]!.detail, 'x y');
    assert.equal(parseCacheStatus(cs.staleHit(-2))[0]!.ttl, -2);
  });
  void test('several lines, other params kept, booleans', () => {
    const e = parseCacheStatus(['A; hit', 'B; fwd=miss; foo=?0; bar=1.5']);
    assert.equal(e.length, 2);
    assert.deepEqual(e[1]!.params, { fwd: 'miss', foo: false, bar: 1.5 });
  });
  void test('invalid fields are ignored entirely', () => {
    assert.deepEqual(parseCacheStatus('A; hit,'), []);
    assert.deepEqual(parseCacheStatus('A; HIT'), []);
    assert.deepEqual(parseCacheStatus('"unterminated; hit'), []);
    assert.deepEqual(parseCacheStatus('A B'), []);
    assert.deepEqual(parseCacheStatus(undefined), []);
  });
});
