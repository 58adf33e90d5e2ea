/**
 * Parity with a real nginx: `hash $arg_k consistent` must send every key to the server that
 * `Ketama.select` picks. If nginx is missing this test FAILS (install `nginx-light`), it never skips:
 * the parity claim in docs/load-balancing.md rests on it.
 *
 * Phases, each with the same 10,000 keys:
 * 1. five weighted servers: every key matches `Ketama.select`;
 * 2. one server marked `down` (ring unchanged, nginx walks on): matches `Ketama.selectWith`;
 * 3. one server removed from the config (ring rebuilt): matches the new ring, and only the removed
 *    server's keys moved.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { Pool } from 'undici';
import { Ketama } from '../../src/lb/ketama.ts';
import { findNginx, startNginx, type NginxInstance } from '../helpers/nginx.ts';

const KEYS = 10_000;
const CONCURRENCY = 32;
const WEIGHTS = [1, 2, 3, 1, 2];

interface Origin {
  readonly server: string;
  readonly weight: number;
  readonly http: Server;
}

async function startOrigin(weight: number): Promise<Origin> {
  let identity = '';
  const http = createServer((_req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(identity);
  });
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  const address = http.address();
  assert.ok(address !== null && typeof address === 'object');
  identity = `127.0.0.1:${address.port}`;
  return { server: identity, weight, http };
}

/** Keys of assorted shapes and lengths, reproducible (xorshift32 with a fixed seed). */
function makeKeys(n: number): string[] {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~/';
  let x = 0x9e3779b9;
  const next = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
  const keys: string[] = [];
  for (let i = 0; i < n; i++) {
    switch (i % 4) {
      case 0:
        keys.push(`k${i}`);
        break;
      case 1:
        keys.push(`/images/${i}.png`);
        break;
      case 2:
        // nginx hashes $arg_k raw, so percent-escapes are hashed as the escape text itself.
        keys.push(`caf%C3%A9-${i}`);
        break;
      default: {
        let k = '';
        const len = 1 + Math.floor(next() * 40);
        for (let j = 0; j < len; j++) k += alphabet[Math.floor(next() * alphabet.length)];
        keys.push(k);
      }
    }
  }
  return keys;
}

function nginxHttp(origins: readonly Origin[], down: ReadonlySet<string>): (port: number) => string {
  const servers = origins
    .map((o) => `    server ${o.server} weight=${o.weight} max_fails=0${down.has(o.server) ? ' down' : ''};`)
    .join('\n');
  return (port) => `
  upstream origins {
    hash $arg_k consistent;
${servers}
    keepalive 16;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://origins;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # A failed origin must show up as an error, not be hidden by nginx trying another one.
      proxy_next_upstream off;
    }
  }`;
}

/** Route every key through nginx; returns the server each one landed on. */
async function route(nginx: NginxInstance, keys: readonly string[]): Promise<string[]> {
  const pool = new Pool(nginx.url, { connections: CONCURRENCY, pipelining: 1 });
  const out = new Array<string>(keys.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < keys.length; i = next++) {
      const { statusCode, body } = await pool.request({ method: 'GET', path: `/?k=${keys[i]!}` });
      const text = await body.text();
      assert.equal(statusCode, 200, `key ${keys[i]!}: nginx answered ${statusCode}: ${text}`);
      out[i] = text;
    }
  };
  try {
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  } finally {
    await pool.close();
  }
  return out;
}

function mismatches(
  keys: readonly string[],
  got: readonly string[],
  expect: (key: string) => string | undefined,
): string[] {
  const bad: string[] = [];
  for (let i = 0; i < keys.length; i++) {
    const want = expect(keys[i]!);
    if (got[i] !== want) bad.push(`${keys[i]!}: nginx ${got[i]!}, ketama ${String(want)}`);
  }
  return bad;
}

void test('ketama maps keys exactly as nginx `hash $arg_k consistent`', async (t) => {
  // Fails (does not skip) without nginx, with the install hint in the message.
  const bin = findNginx();
  t.diagnostic(`nginx: ${bin}`);

  const origins: Origin[] = [];
  let nginx: NginxInstance | undefined;
  t.after(async () => {
    await nginx?.stop();
    for (const o of origins) {
      o.http.closeAllConnections();
      o.http.close();
    }
  });
  for (const w of WEIGHTS) origins.push(await startOrigin(w));
  const keys = makeKeys(KEYS);

  // Phase 1: all servers up.
  nginx = await startNginx({ http: nginxHttp(origins, new Set()) });
  const ring = new Ketama(origins);
  const first = await route(nginx, keys);
  const bad1 = mismatches(keys, first, (k) => ring.select(k));
  assert.deepEqual(bad1.slice(0, 10), [], `${bad1.length} of ${KEYS} keys differ from nginx`);
  const perServer = new Map<string, number>();
  for (const s of first) perServer.set(s, (perServer.get(s) ?? 0) + 1);
  assert.equal(perServer.size, origins.length, 'every server receives keys');
  t.diagnostic(`distribution: ${JSON.stringify(Object.fromEntries(perServer))}`);

  // Phase 2: one server `down`: the ring is unchanged, nginx walks past its points.
  const downServer = origins[2]!.server;
  await nginx.stop();
  nginx = await startNginx({ http: nginxHttp(origins, new Set([downServer])) });
  const second = await route(nginx, keys);
  const bad2 = mismatches(keys, second, (k) => ring.selectWith(k, (s) => s !== downServer));
  assert.deepEqual(
    bad2.slice(0, 10),
    [],
    `${bad2.length} of ${KEYS} keys differ from nginx with a down server`,
  );
  assert.ok(!second.includes(downServer));

  // Phase 3: one server removed from the config: only its keys move.
  const removed = origins[1]!.server;
  const remaining = origins.filter((o) => o.server !== removed);
  await nginx.stop();
  nginx = await startNginx({ http: nginxHttp(remaining, new Set()) });
  const smaller = new Ketama(remaining);
  const third = await route(nginx, keys);
  const bad3 = mismatches(keys, third, (k) => smaller.select(k));
  assert.deepEqual(bad3.slice(0, 10), [], `${bad3.length} of ${KEYS} keys differ from nginx after removal`);
  let moved = 0;
  for (let i = 0; i < keys.length; i++) {
    if (first[i] === removed) {
      moved++;
      assert.notEqual(third[i], removed);
    } else {
      assert.equal(
        third[i],
        first[i],
        `key ${keys[i]!} moved from ${first[i]!} to ${third[i]!} though its server stayed`,
      );
    }
  }
  assert.ok(moved > 0, 'the removed server owned some keys');
  t.diagnostic(`keys moved after removing ${removed}: ${moved}`);
});
