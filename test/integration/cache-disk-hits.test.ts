/**
 * Hits served from the LMDB tier alone (no object fits in memory), many at once: the disk tier
 * reads chunks into buffers it lends and takes back once a response's write has finished. Every
 * body must still be exactly the stored one — whole, by range, and through a body filter that
 * keeps the chunks it sees (those are never taken back).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpCache } from '../../src/index.ts';
import type { Session } from '../../src/index.ts';
import { CdnProxy } from '../../hooks/index.ts';
import { httpRequest, startCairn, startOrigin } from '../helpers/servers.ts';
import type { Cleanup, Origin } from '../helpers/servers.ts';
import { statusOf, tempDir } from '../helpers/cache.ts';

const LIMIT = { timeout: 60_000 };
const OBJECTS = 8;
/** Three full 64 KiB chunks and an 8 KiB tail: both sizes come from the read pool. */
const SIZE = 3 * 64 * 1024 + 8 * 1024;

/**
 * Object n: pseudo-random bytes (xorshift32 seeded by n), so no two chunks of any object are
 * alike and a buffer reused too early shows.
 */
function bodyOf(n: number): Buffer {
  const body = Buffer.allocUnsafe(SIZE);
  let x = 0x9e3779b9 ^ (n + 1);
  for (let i = 0; i < SIZE; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    body[i] = x & 0xff;
  }
  return body;
}

const BODIES = Array.from({ length: OBJECTS }, (_, n) => bodyOf(n));

function startBodyOrigin(t: Cleanup): Promise<Origin> {
  return startOrigin(t, (req, res) => {
    const n = Number(/^\/obj\/(\d+)$/.exec(req.url ?? '')?.[1] ?? NaN);
    const body = BODIES[n];
    if (body === undefined) {
      res.writeHead(404, { 'content-length': 0 });
      res.end();
      return;
    }
    res.writeHead(200, {
      'cache-control': 'max-age=600',
      'content-type': 'application/octet-stream',
      'content-length': SIZE,
    });
    res.end(body);
  });
}

/** A chunk a filter kept, and where in which object it belongs. */
interface Kept {
  readonly n: number;
  readonly offset: number;
  readonly chunk: Buffer;
}

/** Keeps the chunks of whole-body responses it is shown, as a filter that buffers bodies would. */
class KeepingProxy extends CdnProxy {
  readonly kept: Kept[] = [];
  readonly #offsets = new WeakMap<Session, number>();

  override responseBodyFilter(session: Session, chunk: Buffer | null): undefined {
    if (chunk === null || session.headers.range !== undefined) return undefined;
    const n = Number(/^\/obj\/(\d+)$/.exec(session.path)?.[1]);
    const offset = this.#offsets.get(session) ?? 0;
    this.#offsets.set(session, offset + chunk.length);
    this.kept.push({ n, offset, chunk });
    // Bounded: drop from the middle, keeping the oldest (they have seen the most reads since).
    if (this.kept.length > 512) this.kept.splice(256, 1);
    return undefined;
  }
}

async function startDiskOnly(t: Cleanup, origin: Origin, keeping: boolean) {
  const dir = await tempDir(t);
  const cache = await HttpCache.open({
    memory: { maxBytes: 8 * 1024 * 1024, maxObjectBytes: 512 },
    disk: { path: dir, maxBytes: 64 * 1024 * 1024 },
  });
  t.after(() => cache.close());
  assert.equal(cache.diskError, undefined);
  const options = { origins: [origin.url], cache };
  const proxy = keeping ? new KeepingProxy(options) : new CdnProxy(options);
  const cairn = await startCairn(t, proxy);
  const get = (path: string, headers: Record<string, string> = {}) =>
    httpRequest(cairn.url + path, { headers });
  // Store every object (a collapsed hit may precede the commit: wait for a real hit).
  for (let n = 0; n < OBJECTS; n++) {
    while (!/^Cairn; hit; ttl=/.test(statusOf(await get(`/obj/${n}`))));
  }
  return { proxy, get };
}

for (const keeping of [false, true]) {
  const name = `concurrent LMDB-tier hits are byte-exact${keeping ? ' through a body filter that keeps its chunks' : ''}`;
  test(name, LIMIT, async (t) => {
    const origin = await startBodyOrigin(t);
    const { proxy, get } = await startDiskOnly(t, origin, keeping);
    const asked = origin.requests;
    for (let round = 0; round < 3; round++) {
      const requests = Array.from({ length: 64 }, (_, i) => {
        const n = (i * 5 + round) % OBJECTS;
        if (i % 4 === 3) {
          // A range from inside the second chunk across into the third.
          const start = 64 * 1024 + 1000 * (i % 7);
          const end = start + 70_000;
          return get(`/obj/${n}`, { range: `bytes=${start}-${end}` }).then((res) => {
            assert.equal(res.status, 206);
            assert.ok(res.body.equals(BODIES[n]!.subarray(start, end + 1)), `range of /obj/${n}`);
          });
        }
        return get(`/obj/${n}`).then((res) => {
          assert.equal(res.status, 200);
          assert.match(statusOf(res), /^Cairn; hit/);
          assert.equal(res.body.length, SIZE);
          assert.ok(res.body.equals(BODIES[n]!), `body of /obj/${n}`);
        });
      });
      await Promise.all(requests);
    }
    assert.equal(origin.requests, asked, 'every answer was a hit');
    if (proxy instanceof KeepingProxy) {
      // Chunks a filter saw are never lent out again: after every later read they still hold
      // the bytes of their own object at their own offset.
      assert.ok(proxy.kept.length > 100);
      for (const { n, offset, chunk } of proxy.kept) {
        assert.ok(
          chunk.equals(BODIES[n]!.subarray(offset, offset + chunk.length)),
          `kept chunk of /obj/${n} at ${offset}`,
        );
      }
    }
  });
}
