import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  planRange,
  contentRange,
  unsatisfiedContentRange,
  ifRangeMatches,
  multipartPlan,
} from '../../cache/range.ts';

const single = (start: number, end: number): unknown => ({ kind: 'single', range: { start, end } });

void describe('Range', () => {
  void test('single, open-ended, suffix', () => {
    assert.deepEqual(planRange('bytes=0-99', 1000), single(0, 99));
    assert.deepEqual(planRange('bytes=900-', 1000), single(900, 999));
    assert.deepEqual(planRange('bytes=-100', 1000), single(900, 999));
    assert.deepEqual(planRange('bytes=-5000', 1000), single(0, 999));
    assert.deepEqual(planRange('bytes=500-5000', 1000), single(500, 999));
    assert.deepEqual(planRange('Bytes = 0-0', 1000), single(0, 0));
  });
  void test('unsatisfiable → 416', () => {
    assert.deepEqual(planRange('bytes=1000-', 1000), { kind: 'unsatisfiable' });
    assert.deepEqual(planRange('bytes=-0', 1000), { kind: 'unsatisfiable' });
    assert.deepEqual(planRange('bytes=0-1', 0), { kind: 'unsatisfiable' });
    assert.deepEqual(planRange('bytes=2000-3000, 5000-', 1000), { kind: 'unsatisfiable' });
  });
  void test('invalid syntax or other unit → full 200 (RFC 9110 §14.2)', () => {
    for (const r of [
      'bytes=5-1',
      'bytes=a-b',
      'bytes=1',
      'items=0-1',
      'bytes',
      'bytes=',
      'bytes=--1',
      'bytes=1-2-3',
      'bytes=0x1-2',
      undefined,
    ]) {
      assert.deepEqual(planRange(r, 1000), { kind: 'full' }, String(r));
    }
  });
  void test('multiple ranges → multipart, unsatisfiable members dropped', () => {
    assert.deepEqual(planRange('bytes=0-0, -1', 1000), {
      kind: 'multi',
      ranges: [
        { start: 0, end: 0 },
        { start: 999, end: 999 },
      ],
    });
    assert.deepEqual(planRange('bytes=0-9, 5000-6000', 1000), single(0, 9));
  });
  void test('abusive ranges (sum over length, too many) → full', () => {
    assert.deepEqual(planRange('bytes=0-999, 0-999', 1000), { kind: 'full' });
    assert.deepEqual(planRange('bytes=0-0,2-2,4-4', 1000, { maxRanges: 2 }), { kind: 'full' });
  });
  void test('Content-Range', () => {
    assert.equal(contentRange({ start: 0, end: 99 }, 1000), 'bytes 0-99/1000');
    assert.equal(unsatisfiedContentRange(1000), 'bytes */1000');
  });
  void test('multipart layout and length', () => {
    const mp = multipartPlan(
      [
        { start: 0, end: 1 },
        { start: 8, end: 9 },
      ],
      10,
      'text/plain',
      'B0000000001',
    );
    assert.equal(mp.contentType, 'multipart/byteranges; boundary=B0000000001');
    assert.equal(
      mp.parts[0]!.head,
      '\r\n--B0000000001\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n',
    );
    assert.equal(mp.tail, '\r\n--B0000000001--\r\n');
    const body = mp.parts.map((p) => p.head + 'x'.repeat(p.range.end - p.range.start + 1)).join('') + mp.tail;
    assert.equal(mp.contentLength, Buffer.byteLength(body));
  });
});

void describe('If-Range', () => {
  const lm = 'Wed, 01 Jan 2020 00:00:00 GMT';
  void test('absent → honour Range', () => assert.equal(ifRangeMatches(undefined, {}), true));
  void test('strong ETag must match strongly', () => {
    assert.equal(ifRangeMatches('"v1"', { etag: '"v1"' }), true);
    assert.equal(ifRangeMatches('"v1"', { etag: '"v2"' }), false);
    assert.equal(ifRangeMatches('W/"v1"', { etag: 'W/"v1"' }), false);
    assert.equal(ifRangeMatches('"v1"', { etag: 'W/"v1"' }), false);
    assert.equal(ifRangeMatches('"v1"', {}), false);
  });
  void test('date must equal a strong Last-Modified', () => {
    assert.equal(ifRangeMatches(lm, { 'last-modified': lm }), true);
    assert.equal(ifRangeMatches(lm, { 'last-modified': lm, date: 'Thu, 02 Jan 2020 00:00:00 GMT' }), true);
    assert.equal(
      ifRangeMatches(lm, { 'last-modified': lm, date: lm }),
      false,
      'weak: modified in the same second as Date',
    );
    assert.equal(ifRangeMatches('Thu, 02 Jan 2020 00:00:00 GMT', { 'last-modified': lm }), false);
    assert.equal(ifRangeMatches('garbage', { 'last-modified': lm }), false);
  });
});
