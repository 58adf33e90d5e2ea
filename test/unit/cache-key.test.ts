import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  cacheKey,
  primaryKey,
  normaliseHost,
  parseVary,
  varyVariant,
  acceptEncodingNormaliser,
} from '../../cache/key.ts';

void describe('cache key', () => {
  void test('scheme + lower-cased host + path + query', () => {
    assert.equal(cacheKey('http', 'Example.COM', '/A/b?x=1&y=2'), 'http://example.com/A/b?x=1&y=2');
    assert.equal(cacheKey('HTTPS', 'example.com', '/'), 'https://example.com/');
  });
  void test('default port dropped, other ports kept, trailing dot removed', () => {
    assert.equal(cacheKey('http', 'a.test:80', '/'), 'http://a.test/');
    assert.equal(cacheKey('https', 'a.test:443', '/'), 'https://a.test/');
    assert.equal(cacheKey('http', 'a.test:443', '/'), 'http://a.test:443/');
    assert.equal(cacheKey('https', 'a.test:80', '/'), 'https://a.test:80/');
    assert.equal(cacheKey('http', 'a.test.', '/'), 'http://a.test/');
    assert.equal(normaliseHost('[::1]:80', 'http'), '[::1]');
    assert.equal(normaliseHost('[::1]:8080', 'http'), '[::1]:8080');
    assert.equal(normaliseHost('[::1]', 'http'), '[::1]');
  });
  void test('the same Host value gives the same key every time, per scheme (remembered, not re-parsed)', () => {
    for (let i = 0; i < 3; i++) {
      assert.equal(normaliseHost('A.test:443', 'https'), 'a.test');
      assert.equal(normaliseHost('A.test:443', 'http'), 'a.test:443');
      assert.equal(normaliseHost('a/b', 'http'), '');
    }
    // Past the memo's bound it starts over and still answers right.
    for (let i = 0; i < 3000; i++) assert.equal(normaliseHost(`H${i}.test:80`, 'http'), `h${i}.test`);
    assert.equal(normaliseHost('A.test:443', 'https'), 'a.test');
    assert.equal(
      normaliseHost('Mixed.Test:8443', 'HTTPS'),
      'mixed.test:8443',
      'a scheme in another case is not remembered',
    );
  });
  void test('never without a host', () => {
    assert.equal(cacheKey('http', '', '/'), undefined);
    assert.equal(cacheKey('http', ':80', '/'), undefined);
    assert.equal(cacheKey('http', 'a/b', '/'), undefined);
    assert.equal(cacheKey('http', 'user@a', '/'), undefined);
    assert.equal(cacheKey('http', 'a:x', '/'), undefined);
  });
  void test('different queries, different keys; path without slash gets one', () => {
    assert.notEqual(cacheKey('http', 'a', '/?q=1'), cacheKey('http', 'a', '/?q=2'));
    assert.equal(cacheKey('http', 'a', ''), 'http://a/');
    assert.equal(cacheKey('http', 'a', 'x'), 'http://a/x');
  });
  void test('GET and HEAD share the primary key; other methods have none', () => {
    assert.equal(primaryKey('GET', 'http', 'a', '/x'), 'http://a/x');
    assert.equal(primaryKey('HEAD', 'http', 'a', '/x'), 'http://a/x');
    assert.equal(primaryKey('POST', 'http', 'a', '/x'), undefined);
    assert.equal(primaryKey('get', 'http', 'a', '/x'), undefined, 'methods are case-sensitive');
  });
});

void describe('Vary', () => {
  void test('parse: lines, lists, case, duplicates, empty members, sorted', () => {
    assert.deepEqual(parseVary(['Accept-Encoding', 'accept, ACCEPT-encoding ,']), {
      star: false,
      names: ['accept', 'accept-encoding'],
    });
    assert.deepEqual(parseVary(undefined).names, []);
    assert.deepEqual(parseVary(' , ').names, []);
  });
  for (const v of ['*', '*, *', ', *', 'Foo, *', '*, Foo']) {
    void test(`star: ${v}`, () => {
      assert.equal(parseVary(v).star, true);
      assert.equal(varyVariant(v, {}), undefined);
    });
  }
  void test('star on separate lines', () => assert.equal(varyVariant(['*', '*'], {}), undefined));
  void test('no Vary: empty variant', () => assert.equal(varyVariant(undefined, { accept: 'x' }), ''));
  void test('stable regardless of header order and Vary order', () => {
    const req = { a: '1', b: '2', c: '3' };
    assert.equal(varyVariant('C, A, B', req), varyVariant('a,b,c', req));
    assert.equal(varyVariant('a, b, c', req), 'a=1\nb=2\nc=3');
  });
  void test('absent differs from empty and from other values', () => {
    const v = 'x-foo';
    assert.notEqual(varyVariant(v, {}), varyVariant(v, { 'x-foo': '' }));
    assert.notEqual(varyVariant(v, { 'x-foo': '1' }), varyVariant(v, { 'x-foo': '2' }));
    assert.equal(varyVariant(v, {}), 'x-foo');
  });
  void test('whitespace normalised; repeated lines combined', () => {
    assert.equal(varyVariant('x', { x: '  a ,   b  c ' }), varyVariant('x', { x: 'a,b c' }));
    assert.equal(varyVariant('x', { x: ['a', 'b'] }), varyVariant('x', { x: 'a, b' }));
  });
  void test('Accept-Language that differs only in case selects the same variant (language tags are case-insensitive)', () => {
    assert.equal(
      varyVariant('Accept-Language', { 'accept-language': 'eN, De' }),
      varyVariant('Accept-Language', { 'accept-language': 'en, de' }),
    );
    assert.equal(varyVariant('Accept-Charset', { 'accept-charset': 'UTF-8' }), 'accept-charset=utf-8');
    assert.notEqual(
      varyVariant('Foo', { foo: 'A' }),
      varyVariant('Foo', { foo: 'a' }),
      'other fields keep their case',
    );
  });
  void test('headers not named in Vary do not matter', () => {
    assert.equal(varyVariant('a', { a: '1', b: '2' }), varyVariant('a', { a: '1', b: '3' }));
  });
  void test('normaliser callback', () => {
    const gz = varyVariant(
      'accept-encoding',
      { 'accept-encoding': 'gzip, deflate' },
      acceptEncodingNormaliser,
    );
    assert.equal(gz, 'accept-encoding=gzip');
    assert.equal(varyVariant('accept-encoding', {}, acceptEncodingNormaliser), 'accept-encoding=identity');
    const drop = varyVariant('a, b', { a: '1', b: '2' }, (name, value) => (name === 'b' ? undefined : value));
    assert.equal(drop, 'a=1\nb');
  });
  void test('Accept-Encoding normaliser', () => {
    assert.equal(acceptEncodingNormaliser('accept-encoding', 'gzip, deflate, br'), 'br');
    assert.equal(acceptEncodingNormaliser('accept-encoding', 'br;q=0, gzip'), 'gzip');
    assert.equal(acceptEncodingNormaliser('accept-encoding', 'gzip;q=0'), 'identity');
    assert.equal(acceptEncodingNormaliser('accept-encoding', '*'), 'br');
    assert.equal(acceptEncodingNormaliser('accept-encoding', 'identity'), 'identity');
    assert.equal(acceptEncodingNormaliser('accept', 'text/html'), 'text/html');
  });
});
