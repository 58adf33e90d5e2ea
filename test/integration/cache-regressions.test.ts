/**
 * Regressions found by running the public HTTP cache test suite (test/conformance), each named after
 * what broke. They hold the store's commit or delete open (a `GatedStore`) to reproduce, without
 * timing luck, the window the suite hit: the client already has the whole response while the store
 * (the LMDB tier, in the suite's run) is still writing or deleting it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpCache, MemoryStore, serve } from '../../src/index.ts';
import type { CacheWriter, NewObjectMeta } from '../../src/index.ts';
import { CdnProxy } from '../../hooks/index.ts';
import { ObservedStore, signal, statusOf, type Signal } from '../helpers/cache.ts';
import { httpRequest, startCairn, startOrigin, type Cleanup, type HttpResult } from '../helpers/servers.ts';

const LIMIT = { timeout: 15_000 };

/** A store whose commits and deletes wait for the test to open a gate (when one is set). */
class GatedStore extends ObservedStore {
  commitGate: Signal | undefined = undefined;
  deleteGate: Signal | undefined = undefined;
  /** Resolved when a commit starts waiting at the gate. */
  commitWaiting: Signal = signal();

  override createWriter(meta: NewObjectMeta): CacheWriter {
    const writer = super.createWriter(meta);
    return {
      write: (chunk) => writer.write(chunk),
      commit: async () => {
        const gate = this.commitGate;
        if (gate !== undefined) {
          this.commitWaiting.resolve();
          await gate.promise;
        }
        return writer.commit();
      },
      abort: () => writer.abort(),
    };
  }

  override delete(key: string, variant?: string): number | Promise<number> {
    const gate = this.deleteGate;
    if (gate === undefined) return super.delete(key, variant);
    return gate.promise.then(() => super.delete(key, variant));
  }
}

async function start(t: Cleanup, handler: (req: IncomingMessage, res: ServerResponse, n: number) => void) {
  let n = 0;
  const seen: IncomingMessage[] = [];
  const origin = await startOrigin(t, (req, res) => {
    seen.push(req);
    req.resume();
    handler(req, res, ++n);
  });
  const store = new GatedStore(new MemoryStore({ maxBytes: 16 * 1024 * 1024 }));
  const cache = new HttpCache({ store });
  const cairn = await startCairn(t, new CdnProxy({ origins: [origin.url], cache }));
  /** Resolves once `count` requests have joined another's fetch in the cache lock. */
  const waiters = (count: number): Promise<void> => until(() => cache.lock!.counters.waits >= count);
  return { origin, cairn, store, cache, seen, waiters };
}

/** Resolve once `predicate` holds, checking once per event-loop turn. */
async function until(predicate: () => boolean): Promise<void> {
  while (!predicate()) await new Promise<void>((resolve) => setImmediate(resolve));
}

function send(res: ServerResponse, headers: Record<string, string>, body: string, status = 200): void {
  res.writeHead(status, { 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<HttpResult> {
  return httpRequest(url, { method, headers });
}

test(
  "a request whose Vary headers differ is not served another request's response while it is being stored",
  LIMIT,
  async (t) => {
    const { cairn, store, seen, waiters } = await start(t, (req, res, n) => {
      send(res, { 'cache-control': 'max-age=60', vary: 'Foo' }, `foo=${String(req.headers.foo)} n=${n}`);
    });
    store.commitGate = signal();
    const first = await get(`${cairn.url}/v`, { foo: '1' });
    assert.equal(first.body.toString(), 'foo=1 n=1');
    // The first response is complete but not yet stored: the next request meets it in the cache lock.
    const second = await get(`${cairn.url}/v`, { foo: '2' });
    await waiters(1);
    assert.equal(second.body.toString(), 'foo=2 n=2');
    assert.doesNotMatch(statusOf(second), /collapsed/);
    assert.equal(seen.length, 2);
    store.commitGate.resolve();
  },
);

test('request directives (min-fresh) are honoured for a response that is being stored', LIMIT, async (t) => {
  const { cairn, store, seen, waiters } = await start(t, (_req, res, n) =>
    send(res, { 'cache-control': 'max-age=100' }, `n=${n}`),
  );
  store.commitGate = signal();
  await get(`${cairn.url}/m`);
  await store.commitWaiting.promise;
  const pending = get(`${cairn.url}/m`, { 'cache-control': 'min-fresh=200' });
  await waiters(1);
  store.commitGate.resolve();
  const second = await pending;
  assert.equal(second.body.toString(), 'n=2', 'no response can be fresh for 200 s more: the origin is asked');
  assert.doesNotMatch(statusOf(second), /collapsed|hit/);
  assert.equal(seen.length, 2);
});

test(
  'a no-cache response requested again while it is being stored is revalidated with its ETag, not refetched',
  LIMIT,
  async (t) => {
    const { cairn, store, seen, waiters } = await start(t, (req, res) => {
      if (req.headers['if-none-match'] === '"v1"') {
        res.writeHead(304, { etag: '"v1"', 'cache-control': 'no-cache' });
        res.end();
      } else send(res, { 'cache-control': 'no-cache', etag: '"v1"' }, 'body v1');
    });
    store.commitGate = signal();
    await get(`${cairn.url}/n`);
    await store.commitWaiting.promise;
    const pending = get(`${cairn.url}/n`);
    // Let the second request reach the cache lock, then let the first commit land.
    await waiters(1);
    store.commitGate.resolve();
    const second = await pending;
    assert.equal(second.status, 200);
    assert.equal(second.body.toString(), 'body v1');
    assert.equal(seen.length, 2);
    assert.equal(
      seen[1]!.headers['if-none-match'],
      '"v1"',
      'the second request to the origin is conditional',
    );
    assert.match(statusOf(second), /fwd=stale; fwd-status=304/);
  },
);

test(
  'a GET right after a POST to the same URL does not find the invalidated response while the delete is still running',
  LIMIT,
  async (t) => {
    const { cairn, store, seen } = await start(t, (req, res, n) =>
      send(res, { 'cache-control': 'max-age=1000' }, `${req.method} n=${n}`),
    );
    assert.equal((await get(`${cairn.url}/i`)).body.toString(), 'GET n=1');
    if (store.commits.length === 0) await store.committed();
    store.deleteGate = signal();
    const post = await get(`${cairn.url}/i`, {}, 'POST');
    assert.equal(post.body.toString(), 'POST n=2');
    const pending = get(`${cairn.url}/i`);
    setTimeout(() => store.deleteGate!.resolve(), 50);
    const after = await pending;
    assert.equal(after.body.toString(), 'GET n=3', 'RFC 9111 §4.4: the POST invalidated the stored GET');
    assert.equal(seen.length, 3);
  },
);

test(
  'a POST that invalidates a response still being stored is not undone when the store commit lands',
  LIMIT,
  async (t) => {
    const { cairn, store, seen } = await start(t, (req, res, n) =>
      send(res, { 'cache-control': 'max-age=1000' }, `${req.method} n=${n}`),
    );
    store.commitGate = signal();
    assert.equal((await get(`${cairn.url}/c`)).body.toString(), 'GET n=1');
    await store.commitWaiting.promise;
    const post = await get(`${cairn.url}/c`, {}, 'POST');
    assert.equal(post.body.toString(), 'POST n=2');
    store.commitGate.resolve();
    await store.committed();
    const after = await get(`${cairn.url}/c`);
    assert.equal(after.body.toString(), 'GET n=3', 'the invalidation ran after the commit, not before it');
    assert.equal(seen.length, 3);
  },
);

test('regression: a hit on a body the origin sent chunked carries Content-Length', async (t) => {
  const origin = createServer((_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' });
    res.write('chunk one, ');
    res.end('chunk two');
  });
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
  t.after(() => origin.close());
  const port = (origin.address() as AddressInfo).port;
  const cache = new HttpCache({ store: new MemoryStore({ maxBytes: 1 << 20 }) });
  const proxy = new CdnProxy({ origins: [`http://127.0.0.1:${port}`], cache });
  const server = await serve(proxy, { listen: '127.0.0.1:0', logLevel: 'silent' });
  t.after(() => server.close());
  const url = `http://127.0.0.1:${server.address.port}/chunked`;
  const miss = await fetch(url);
  assert.equal(miss.headers.get('content-length'), null, 'the origin sent it chunked');
  assert.equal(await miss.text(), 'chunk one, chunk two');
  const hit = await fetch(url);
  assert.match(hit.headers.get('cache-status') ?? '', /hit/);
  assert.equal(hit.headers.get('content-length'), String('chunk one, chunk two'.length));
  assert.equal(await hit.text(), 'chunk one, chunk two');
});
