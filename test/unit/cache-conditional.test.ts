import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateConditional, parseEntityTags } from '../../cache/conditional.ts';

const LM = 'Wed, 01 Jan 2020 00:00:00 GMT';
const EARLIER = 'Tue, 31 Dec 2019 00:00:00 GMT';
const LATER = 'Thu, 02 Jan 2020 00:00:00 GMT';

void describe('entity-tag lists', () => {
  void test('parse', () => {
    assert.deepEqual(parseEntityTags('W/"a", "b",,"c"'), [
      { weak: true, tag: '"a"' },
      { weak: false, tag: '"b"' },
      { weak: false, tag: '"c"' },
    ]);
    assert.equal(parseEntityTags('*'), '*');
    assert.equal(parseEntityTags('abc'), undefined);
    assert.equal(parseEntityTags('"unterminated'), undefined);
  });
});

void describe('preconditions (RFC 9110 §13.2.2)', () => {
  const stored = { etag: '"v1"', 'last-modified': LM };
  const ev = (
    req: Record<string, string>,
    method = 'GET',
    s: Record<string, string> = stored,
    status = 200,
  ): string => evaluateConditional(method, req, status, s);

  void test('If-None-Match: weak comparison, lists, *', () => {
    assert.equal(ev({ 'if-none-match': '"v1"' }), 'not-modified');
    assert.equal(ev({ 'if-none-match': 'W/"v1"' }), 'not-modified');
    assert.equal(ev({ 'if-none-match': '"v1"' }, 'GET', { etag: 'W/"v1"' }), 'not-modified');
    assert.equal(ev({ 'if-none-match': '"x", "v1", "y"' }), 'not-modified');
    assert.equal(ev({ 'if-none-match': '"x"' }), 'none');
    assert.equal(ev({ 'if-none-match': '*' }), 'not-modified');
    assert.equal(ev({ 'if-none-match': '"v1"' }, 'HEAD'), 'not-modified');
    assert.equal(ev({ 'if-none-match': '"v1"' }, 'DELETE'), 'precondition-failed');
  });
  void test('If-None-Match takes precedence over If-Modified-Since', () => {
    assert.equal(ev({ 'if-none-match': '"other"', 'if-modified-since': LATER }), 'none');
    assert.equal(ev({ 'if-none-match': '"v1"', 'if-modified-since': EARLIER }), 'not-modified');
  });
  void test('If-Modified-Since', () => {
    assert.equal(ev({ 'if-modified-since': LM }), 'not-modified');
    assert.equal(ev({ 'if-modified-since': LATER }), 'not-modified');
    assert.equal(ev({ 'if-modified-since': EARLIER }), 'none');
    assert.equal(
      ev({ 'if-modified-since': 'Wednesday, 01-Jan-20 00:00:00 GMT' }),
      'not-modified',
      'rfc850 form',
    );
    assert.equal(ev({ 'if-modified-since': 'garbage' }), 'none');
    assert.equal(ev({ 'if-modified-since': LM }, 'POST'), 'none');
    assert.equal(
      ev({ 'if-modified-since': LATER }, 'GET', { date: LM }),
      'not-modified',
      'falls back to Date',
    );
    assert.equal(ev({ 'if-modified-since': LATER }, 'GET', {}), 'none');
  });
  void test('If-Match / If-Unmodified-Since', () => {
    assert.equal(ev({ 'if-match': '"v1"' }), 'none');
    assert.equal(ev({ 'if-match': 'W/"v1"' }), 'precondition-failed', 'strong comparison');
    assert.equal(ev({ 'if-match': '"v0"' }, 'PUT'), 'precondition-failed');
    assert.equal(ev({ 'if-match': '*' }), 'none');
    assert.equal(ev({ 'if-unmodified-since': EARLIER }), 'precondition-failed');
    assert.equal(ev({ 'if-unmodified-since': LATER }), 'none');
    assert.equal(
      ev({ 'if-match': '"v1"', 'if-unmodified-since': EARLIER }),
      'none',
      'IUS ignored with If-Match',
    );
  });
  void test('only 2xx stored responses are evaluated', () => {
    assert.equal(ev({ 'if-none-match': '"v1"' }, 'GET', stored, 404), 'none');
  });
});
