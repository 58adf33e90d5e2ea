/**
 * Ketama without nginx: the CRC against zlib, the ring against a straightforward re-statement of
 * ngx_http_upstream_init_chash built on zlib's crc32 and Buffers, and the failover walk against a
 * literal transcription of ngx_http_upstream_get_chash_peer. The real-nginx parity test is
 * test/conformance/ketama-nginx.test.ts.
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { crc32 } from '../../src/lb/crc32.ts';
import { Ketama, type KetamaServer } from '../../src/lb/ketama.ts';
import { isCairnError } from '../../src/errors.ts';

/** Reference ring: Buffers and zlib, no shared code with the module under test. */
function referenceRing(servers: readonly KetamaServer[]): { hash: number; server: string }[] {
  const points: { hash: number; server: string; seq: number }[] = [];
  let seq = 0;
  for (const { server, weight = 1 } of servers) {
    let host = server;
    let port = '';
    if (server.toLowerCase().startsWith('unix:')) {
      host = server.slice(5);
    } else {
      const m = /^(.*):(\d*)$/.exec(server);
      if (m) {
        host = m[1]!;
        port = m[2]!;
      }
    }
    let prev = Buffer.alloc(4);
    for (let j = 0; j < weight * 160; j++) {
      const hash = zlibCrc32(Buffer.concat([Buffer.from(host), Buffer.from([0]), Buffer.from(port), prev]));
      points.push({ hash, server, seq: seq++ });
      prev = Buffer.alloc(4);
      prev.writeUInt32LE(hash);
    }
  }
  points.sort((a, b) => a.hash - b.hash || a.seq - b.seq);
  return points
    .filter((p, i) => i === 0 || points[i - 1]!.hash !== p.hash)
    .map(({ hash, server }) => ({ hash, server }));
}

/** Literal transcription of nginx's lookup and walk over the reference ring. */
function referenceSelect(
  ring: readonly { hash: number; server: string }[],
  key: Buffer,
  usable: (s: string) => boolean,
): string | undefined {
  const hash = zlibCrc32(key);
  let i = 0;
  let j = ring.length;
  while (i < j) {
    const k = (i + j) >> 1;
    if (hash > ring[k]!.hash) i = k + 1;
    else if (hash < ring[k]!.hash) j = k;
    else {
      i = k;
      break;
    }
  }
  for (let tries = 0; tries < ring.length; tries++, i++) {
    const server = ring[i % ring.length]!.server;
    if (usable(server)) return server;
  }
  return undefined;
}

void describe('crc32', () => {
  void test('matches zlib for strings (as UTF-8, including astral and lone surrogates) and bytes', () => {
    const samples = [
      '',
      'a',
      '123456789',
      'héllo wörld',
      '日本語',
      '😀 emoji',
      'lone \ud800 surrogate',
      'end \udc00',
      'x'.repeat(1000),
    ];
    for (const s of samples) {
      assert.equal(crc32(s), zlibCrc32(Buffer.from(s, 'utf8')), JSON.stringify(s));
      assert.equal(crc32(Buffer.from(s)), zlibCrc32(Buffer.from(s)));
    }
    assert.equal(crc32('123456789'), 0xcbf43926);
  });
});

void describe('Ketama ring', () => {
  const servers: KetamaServer[] = [
    { server: '127.0.0.1:9001', weight: 1 },
    { server: '127.0.0.1:9002', weight: 3 },
    { server: 'backend.example.com', weight: 2 },
    { server: '[::1]:8080' },
    { server: 'unix:/tmp/sock' },
    { server: 'host:' },
    { server: 'weird:port:x1' },
  ];

  void test('points equal the reference construction (split, chaining, sort, de-duplication)', () => {
    assert.deepEqual(new Ketama(servers).points(), referenceRing(servers));
  });

  void test('160 points per unit of weight', () => {
    assert.equal(new Ketama([{ server: 'a:1', weight: 3 }]).size, 480);
  });

  void test('select equals the reference lookup, for strings and Buffers', () => {
    const ring = new Ketama(servers);
    const ref = referenceRing(servers);
    for (let i = 0; i < 5000; i++) {
      const key = `/k/${i}/${'é'.repeat(i % 3)}`;
      const want = referenceSelect(ref, Buffer.from(key), () => true);
      assert.equal(ring.select(key), want);
      assert.equal(ring.select(Buffer.from(key)), want);
    }
  });

  void test('a key past the last point wraps to the first', () => {
    const ring = new Ketama(servers);
    const points = ring.points();
    // Find a key whose crc32 is above the highest point.
    let key = '';
    for (let i = 0; ; i++) {
      if (crc32(`wrap-${i}`) > points.at(-1)!.hash) {
        key = `wrap-${i}`;
        break;
      }
    }
    assert.equal(ring.pointOf(key), ring.size);
    assert.equal(ring.select(key), points[0]!.server);
  });

  void test('selectWith walks on like nginx when servers are down', () => {
    const ring = new Ketama(servers);
    const ref = referenceRing(servers);
    const downSets = [
      new Set(['127.0.0.1:9002']),
      new Set(['127.0.0.1:9001', 'backend.example.com', '[::1]:8080']),
    ];
    for (const down of downSets) {
      const usable = (s: string): boolean => !down.has(s);
      for (let i = 0; i < 3000; i++) {
        const key = `obj-${i}`;
        const got = ring.selectWith(key, usable);
        assert.equal(got, referenceSelect(ref, Buffer.from(key), usable));
        assert.ok(got !== undefined && !down.has(got));
      }
    }
  });

  void test('selectWith asks each server at most once and returns undefined when none is usable', () => {
    const ring = new Ketama(servers);
    const asked: string[] = [];
    assert.equal(
      ring.selectWith('k', (s) => {
        asked.push(s);
        return false;
      }),
      undefined,
    );
    assert.equal(asked.length, servers.length);
    assert.equal(new Set(asked).size, servers.length);
  });

  void test('selectWith is re-entrant', () => {
    const ring = new Ketama(servers);
    const outer = ring.selectWith('outer', (s) => {
      assert.equal(
        ring.selectWith('inner', (t) => t === '127.0.0.1:9001'),
        '127.0.0.1:9001',
      );
      return s === 'backend.example.com';
    });
    assert.equal(outer, 'backend.example.com');
  });

  void test('invalid configurations are rejected with CAIRN_ERR_CONFIG_INVALID', () => {
    for (const bad of [[], [{ server: 'a:1', weight: 0 }], [{ server: 'a:1', weight: 1.5 }]]) {
      assert.throws(
        () => new Ketama(bad),
        (e) => isCairnError(e) && e.code === 'CAIRN_ERR_CONFIG_INVALID',
      );
    }
  });
});
