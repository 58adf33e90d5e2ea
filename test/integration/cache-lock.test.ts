/**
 * The cache lock on the wire: concurrent misses for one key make one origin request, waiters read
 * the body while it arrives, and every way the writer can end (client gone, origin failing, slow
 * headers) leaves the waiters with a full body, a cut-off one, or their own fetch — never a hang,
 * never a short body presented as complete.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequestRaw, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import { Pool } from 'undici';
import { CdnProxy, type CdnProxyOptions } from '../../hooks/index.ts';
import { httpRequest, startOrigin } from '../helpers/servers.ts';
import { signal, startCdn, statusOf } from '../helpers/cache.ts';
import type { CacheOptions } from '../helpers/cache.ts';

const LIMIT = { timeout: 30_000 };

/** A CdnProxy that lets a test await the n-th cache miss (called just before the lock is taken). */
class CountingCdn extends CdnProxy {
  misses = 0;
  readonly #waiting: { n: number; resolve: () => void }[] = [];

  override cacheMiss(): void {
    this.misses++;
    for (const w of this.#waiting.filter((x) => x.n <= this.misses)) {
      this.#waiting.splice(this.#waiting.indexOf(w), 1);
      w.resolve();
    }
  }

  missed(n: number): Promise<void> {
    if (this.misses >= n) return Promise.resolve();
    return new Promise((resolve) => this.#waiting.push({ n, resolve }));
  }
}

function startCounting(t: Parameters<typeof startCdn>[0], origin: { url: string }, cache: CacheOptions = {}) {
  return startCdn(t, origin, { cache, make: (o: CdnProxyOptions) => new CountingCdn(o) });
}

/** A GET whose body can be watched while it arrives. */
class StreamingGet {
  readonly chunks: Buffer[] = [];
  received = 0;
  headers: IncomingHttpHeaders = {};
  status = 0;
  readonly done: Promise<{ complete: boolean; body: Buffer }>;
  readonly #watchers: { n: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  readonly #destroy: () => void;
  #ended = false;

  constructor(url: string, headers: Record<string, string> = {}) {
    const req = httpRequestRaw(url, { agent: false, headers });
    this.#destroy = () => req.destroy();
    this.done = new Promise((resolve, reject) => {
      req.on('error', (error) => {
        if (this.status === 0) reject(error);
      });
      req.on('response', (res) => {
        this.status = res.statusCode ?? 0;
        this.headers = res.headers;
        res.on('data', (chunk: Buffer) => {
          this.chunks.push(chunk);
          this.received += chunk.length;
          this.#notify();
        });
        let settled = false;
        const finish = (complete: boolean): void => {
          if (settled) return;
          settled = true;
          this.#ended = true;
          this.#notify();
          resolve({ complete, body: Buffer.concat(this.chunks) });
        };
        res.on('end', () => finish(res.complete));
        res.on('error', () => finish(false));
        res.on('close', () => finish(res.complete));
      });
    });
    req.end();
  }

  /** Resolves once `n` body bytes have arrived; rejects if the response ends first. */
  bytes(n: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#watchers.push({ n, resolve, reject });
      this.#notify();
    });
  }

  destroy(): void {
    this.#destroy();
  }

  #notify(): void {
    for (const w of [...this.#watchers]) {
      if (this.received >= w.n) w.resolve();
      else if (this.#ended) w.reject(new Error(`ended after ${this.received} of ${w.n} bytes`));
      else continue;
      this.#watchers.splice(this.#watchers.indexOf(w), 1);
    }
  }
}

function sendHead(res: ServerResponse, length: number, extra: Record<string, string> = {}): void {
  res.writeHead(200, {
    'cache-control': 'max-age=600',
    'content-type': 'application/octet-stream',
    'content-length': length,
    ...extra,
  });
}

test(
  '500 concurrent requests for one cold key make 1 origin request and get 500 correct bodies',
  LIMIT,
  async (t) => {
    const body = randomBytes(64 * 1024 + 17);
    const proxyReady = signal<CountingCdn>();
    const origin = await startOrigin(t, (_req, res) => {
      // Answer once every request has missed, so all of them are collapsed onto this fetch.
      void proxyReady.promise
        .then((p) => p.missed(500))
        .then(() => {
          sendHead(res, body.length);
          // Several writes, so waiters read chunks while later ones arrive.
          for (let i = 0; i < body.length; i += 16 * 1024) res.write(body.subarray(i, i + 16 * 1024));
          res.end();
        });
    });
    // A generous lock wait: the test is about collapsing, not about how fast 500 requests arrive.
    const cdn = await startCounting(t, origin, { lock: { timeoutMs: 60_000 } });
    proxyReady.resolve(cdn.proxy);
    const pool = new Pool(cdn.cairn.url, { connections: 500, pipelining: 1 });
    t.after(() => pool.close());
    const results = await Promise.all(
      Array.from({ length: 500 }, async () => {
        const res = await pool.request({ path: '/big', method: 'GET' });
        const chunks: Buffer[] = [];
        for await (const chunk of res.body) chunks.push(chunk as Buffer);
        return {
          status: res.statusCode,
          cacheStatus: String(res.headers['cache-status']),
          body: Buffer.concat(chunks),
        };
      }),
    );
    assert.equal(origin.requests, 1);
    let collapsed = 0;
    results.forEach((r, i) => {
      assert.equal(r.status, 200, `response ${i}`);
      assert.ok(
        r.body.equals(body),
        `response ${i}: ${r.body.length} bytes, not the origin's ${body.length}`,
      );
      if (r.cacheStatus === 'Cairn; hit; collapsed') collapsed++;
    });
    assert.equal(collapsed, 499);
    assert.equal(results.filter((r) => r.cacheStatus === 'Cairn; fwd=uri-miss; stored').length, 1);
    assert.equal(cdn.cache.lock?.counters.waits, 499);
  },
);

test('waiters receive the body while it is still arriving (read-while-writer)', LIMIT, async (t) => {
  const body = randomBytes(64 * 1024);
  const half = body.length / 2;
  const rest = signal();
  const proxyReady = signal<CountingCdn>();
  const origin = await startOrigin(t, (_req, res) => {
    void proxyReady.promise
      .then((p) => p.missed(4))
      .then(async () => {
        sendHead(res, body.length);
        res.write(body.subarray(0, half));
        await rest.promise;
        res.end(body.subarray(half));
      });
  });
  const cdn = await startCounting(t, origin);
  proxyReady.resolve(cdn.proxy);
  const clients = Array.from({ length: 4 }, () => new StreamingGet(`${cdn.cairn.url}/rww`));
  // Every client, the three waiters included, has the first half before the origin sends the rest.
  await Promise.all(clients.map((c) => c.bytes(half)));
  for (const c of clients) assert.equal(c.received, half);
  rest.resolve();
  const results = await Promise.all(clients.map((c) => c.done));
  for (const r of results) {
    assert.equal(r.complete, true);
    assert.ok(r.body.equals(body));
  }
  assert.equal(clients.filter((c) => c.headers['cache-status'] === 'Cairn; hit; collapsed').length, 3);
  assert.equal(origin.requests, 1);
});

test(
  "the writer's client leaving mid-body: the fill continues, waiters get full bodies, the object is stored",
  LIMIT,
  async (t) => {
    const body = randomBytes(64 * 1024);
    const half = body.length / 2;
    const rest = signal();
    const proxyReady = signal<CountingCdn>();
    const origin = await startOrigin(t, (_req, res) => {
      void proxyReady.promise
        .then((p) => p.missed(3))
        .then(async () => {
          sendHead(res, body.length);
          res.write(body.subarray(0, half));
          await rest.promise;
          res.end(body.subarray(half));
        });
    });
    const cdn = await startCounting(t, origin);
    proxyReady.resolve(cdn.proxy);
    const writer = new StreamingGet(`${cdn.cairn.url}/leave`);
    await cdn.proxy.missed(1);
    const waiters = [new StreamingGet(`${cdn.cairn.url}/leave`), new StreamingGet(`${cdn.cairn.url}/leave`)];
    await writer.bytes(half);
    assert.equal(writer.headers['cache-status'], 'Cairn; fwd=uri-miss; stored');
    writer.destroy();
    await cdn.cairn.logs.waitFor((l) => l.msg === 'request' && l.err === 'CAIRN_ERR_DOWNSTREAM_CLOSED');
    const stored = cdn.store.committed();
    rest.resolve();
    for (const r of await Promise.all(waiters.map((w) => w.done))) {
      assert.equal(r.complete, true);
      assert.ok(r.body.equals(body));
    }
    assert.equal((await stored).bodyLength, body.length);
    const hit = await httpRequest(`${cdn.cairn.url}/leave`);
    assert.match(statusOf(hit), /^Cairn; hit/);
    assert.ok(hit.body.equals(body));
    assert.equal(origin.requests, 1);
  },
);

test(
  "the origin failing mid-body: waiters' responses are cut off, not completed short, and nothing is stored",
  LIMIT,
  async (t) => {
    const body = randomBytes(64 * 1024);
    const half = body.length / 2;
    const fail = signal();
    const proxyReady = signal<CountingCdn>();
    let calls = 0;
    const origin = await startOrigin(t, (_req, res) => {
      if (++calls > 1) {
        sendHead(res, body.length);
        res.end(body);
        return;
      }
      void proxyReady.promise
        .then((p) => p.missed(3))
        .then(async () => {
          sendHead(res, body.length);
          res.write(body.subarray(0, half));
          await fail.promise;
          res.socket?.destroy();
        });
    });
    const cdn = await startCounting(t, origin);
    proxyReady.resolve(cdn.proxy);
    const clients = Array.from({ length: 3 }, () => new StreamingGet(`${cdn.cairn.url}/fail`));
    await Promise.all(clients.map((c) => c.bytes(half)));
    fail.resolve();
    for (const r of await Promise.all(clients.map((c) => c.done))) {
      assert.equal(r.complete, false, 'a cut-off body is never presented as complete');
      assert.ok(r.body.length < body.length);
      assert.ok(r.body.equals(body.subarray(0, r.body.length)));
    }
    assert.equal(cdn.store.commits.length, 0);
    const next = await httpRequest(`${cdn.cairn.url}/fail`);
    assert.equal(statusOf(next), 'Cairn; fwd=uri-miss; stored', 'the next request is a miss');
    assert.ok(next.body.equals(body));
    assert.equal(origin.requests, 2);
  },
);

test(
  "the writer's client leaving before the origin answers wakes the waiters, who fetch on their own",
  LIMIT,
  async (t) => {
    const body = randomBytes(8 * 1024);
    let calls = 0;
    const origin = await startOrigin(t, (_req, res) => {
      // The first request never gets an answer; the others do.
      if (++calls === 1) return;
      sendHead(res, body.length);
      res.end(body);
    });
    const cdn = await startCounting(t, origin);
    const writer = new StreamingGet(`${cdn.cairn.url}/gone`);
    writer.done.catch(() => undefined);
    await cdn.proxy.missed(1);
    const waiters = [new StreamingGet(`${cdn.cairn.url}/gone`), new StreamingGet(`${cdn.cairn.url}/gone`)];
    await cdn.proxy.missed(3);
    writer.destroy();
    for (const r of await Promise.all(waiters.map((w) => w.done))) {
      assert.equal(r.complete, true);
      assert.ok(r.body.equals(body));
    }
    assert.ok(origin.requests >= 2, 'the waiters went to the origin themselves');
    assert.equal(cdn.cache.lock?.counters.writerFailures, 1);
  },
);

test('a lock wait that times out fetches on its own', LIMIT, async (t) => {
  const body = randomBytes(4 * 1024);
  const held: ServerResponse[] = [];
  const origin = await startOrigin(t, (_req, res) => {
    // The writer's request is answered only once both waiters have given up and come themselves.
    if (origin.requests === 1) {
      held.push(res);
      return;
    }
    sendHead(res, body.length);
    res.end(body);
    if (origin.requests === 3) {
      const first = held[0]!;
      sendHead(first, body.length);
      first.end(body);
    }
  });
  const cdn = await startCounting(t, origin, { lock: { timeoutMs: 50 } });
  const writer = new StreamingGet(`${cdn.cairn.url}/slow`);
  await cdn.proxy.missed(1);
  const waiters = [new StreamingGet(`${cdn.cairn.url}/slow`), new StreamingGet(`${cdn.cairn.url}/slow`)];
  for (const r of await Promise.all([writer, ...waiters].map((c) => c.done))) {
    assert.equal(r.complete, true);
    assert.ok(r.body.equals(body));
  }
  assert.equal(origin.requests, 3);
  assert.equal(cdn.cache.lock?.counters.timeouts, 2);
  const metrics = await cdn.cairn.metrics();
  assert.equal(metrics.value('cairn_cache_lock_timeouts_total'), 2);
});

test(
  'range requests on a cold key make 1 origin fetch of the whole object, and each gets its range',
  LIMIT,
  async (t) => {
    const body = randomBytes(100 * 1024);
    const ranges: (string | undefined)[] = [];
    const proxyReady = signal<CountingCdn>();
    const origin = await startOrigin(t, (req, res) => {
      ranges.push(req.headers.range);
      void proxyReady.promise
        .then((p) => p.missed(4))
        .then(() => {
          sendHead(res, body.length, { etag: '"r"' });
          for (let i = 0; i < body.length; i += 8192) res.write(body.subarray(i, i + 8192));
          res.end();
        });
    });
    const cdn = await startCounting(t, origin);
    proxyReady.resolve(cdn.proxy);
    const asked: [number, number][] = [
      [0, 99],
      [50_000, 60_000],
      [100 * 1024 - 10, 100 * 1024 - 1],
      [8191, 8192],
    ];
    const clients = asked.map(
      ([a, b]) => new StreamingGet(`${cdn.cairn.url}/video`, { range: `bytes=${a}-${b}` }),
    );
    const results = await Promise.all(clients.map((c) => c.done));
    results.forEach((r, i) => {
      const [a, b] = asked[i]!;
      assert.equal(clients[i]!.status, 206, `range ${a}-${b}`);
      assert.equal(clients[i]!.headers['content-range'], `bytes ${a}-${b}/${body.length}`);
      assert.equal(r.complete, true);
      assert.ok(r.body.equals(body.subarray(a, b + 1)), `range ${a}-${b}`);
    });
    assert.deepEqual(ranges, [undefined], 'one origin fetch, without Range');
    const stored = await cdn.store.variants(cdn.store.commits[0]?.key ?? '');
    assert.equal(stored[0]?.bodyLength, body.length);
  },
);

test(
  "a waiter whose Vary variant differs from the writer's is not given the writer's response",
  LIMIT,
  async (t) => {
    const proxyReady = signal<CountingCdn>();
    const origin = await startOrigin(t, (req, res) => {
      void proxyReady.promise
        .then((p) => p.missed(2))
        .then(() => {
          const body = /gzip/.test(req.headers['accept-encoding'] ?? '') ? 'gzip body' : 'plain body';
          res.writeHead(200, {
            'cache-control': 'max-age=60',
            vary: 'Accept-Encoding',
            'content-length': body.length,
          });
          res.end(body);
        });
    });
    const cdn = await startCounting(t, origin);
    proxyReady.resolve(cdn.proxy);
    const [gzip, plain] = await Promise.all([
      httpRequest(`${cdn.cairn.url}/v`, { headers: { 'accept-encoding': 'gzip' } }),
      httpRequest(`${cdn.cairn.url}/v`, { headers: { 'accept-encoding': 'identity' } }),
    ]);
    assert.equal(gzip.body.toString(), 'gzip body');
    assert.equal(plain.body.toString(), 'plain body');
    assert.equal(origin.requests, 2);
  },
);
