/**
 * Server lifecycle: connection limits and timeouts (in process), graceful drain on SIGTERM/SIGINT
 * (Cairn as a child process started through its CLI), and `workers: 2` with `node:cluster`.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ReverseProxy } from '../../hooks/index.ts';
import { freePort, startCli } from '../helpers/cli.ts';
import type { Origin } from '../helpers/servers.ts';
import {
  RawClient,
  httpRequest,
  parseMetrics,
  spawnFixture,
  startCairn,
  startOrigin,
} from '../helpers/servers.ts';

const GET = (path = '/'): string => `GET ${path} HTTP/1.1\r\nHost: example.test\r\n\r\n`;

/** Count complete `HTTP/1.1 200` responses with a 2-byte body in what a raw client read. */
function responses(text: string): number {
  return text.split('HTTP/1.1 200 OK\r\n').length - 1;
}

/** Resolves when connecting to `port` is refused; rejects if a connection is accepted. */
function refused(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      reject(new Error(`port ${port} still accepts connections`));
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') resolve();
      else reject(error);
    });
  });
}

describe('limits', () => {
  const ok = (_req: IncomingMessage, res: ServerResponse): void => {
    res.end('ok');
  };

  test(
    'an idle keep-alive client connection is closed after keepAliveTimeout',
    { timeout: 15_000 },
    async (t) => {
      const origin = await startOrigin(t, ok);
      const cairn = await startCairn(t, new ReverseProxy({ origins: [origin.url] }), {
        limits: { keepAliveTimeout: 300 },
      });
      const client = await RawClient.connect(cairn.port);
      client.write(GET('/one'));
      await client.waitFor((text) => responses(text) === 1 && text.endsWith('ok'));
      client.write(GET('/two')); // still open: keep-alive works
      await client.waitFor((text) => responses(text) === 2 && text.endsWith('ok'));
      assert.doesNotMatch(client.text(), /connection: close/i);
      await client.closed; // then idle: Cairn closes it
      assert.equal(responses(client.text()), 2);
      assert.equal(origin.requests, 2);
    },
  );

  test(
    'a slowloris client trickling its head gets 408 after headersTimeout',
    { timeout: 15_000 },
    async (t) => {
      const origin = await startOrigin(t, ok);
      const cairn = await startCairn(t, new ReverseProxy({ origins: [origin.url] }), {
        limits: { headersTimeout: 400, requestTimeout: 800 },
      });
      const client = await RawClient.connect(cairn.port);
      client.write('GET / HTTP/1.1\r\nHost: example.test\r\n');
      // Keep the connection busy with a header byte at a time: headersTimeout bounds the whole head.
      let n = 0;
      const trickle = setInterval(() => {
        if (!client.socket.destroyed) client.write(n++ === 0 ? 'X-Slow: ' : 'a');
      }, 50);
      t.after(() => clearInterval(trickle));
      await client.closed;
      clearInterval(trickle);
      assert.match(client.text(), /^HTTP\/1\.1 408 /);
      assert.equal(origin.requests, 0);
      assert.equal(
        (await cairn.metrics()).value('cairn_downstream_rejected_total', { reason: 'timeout' }),
        1,
      );
    },
  );

  test(
    'a client that stops sending its body gets 408 after requestTimeout; the origin sees it aborted',
    { timeout: 15_000 },
    async (t) => {
      let arrived!: () => void;
      const arrival = new Promise<void>((resolve) => (arrived = resolve));
      let completed = false;
      let closed!: () => void;
      const originClosed = new Promise<void>((resolve) => (closed = resolve));
      const origin = await startOrigin(t, (req, res) => {
        arrived();
        req.resume();
        req.on('end', () => {
          completed = true;
          res.end('ok');
        });
        req.on('close', () => closed());
      });
      const cairn = await startCairn(t, new ReverseProxy({ origins: [origin.url] }), {
        limits: { headersTimeout: 300, requestTimeout: 600 },
      });
      const client = await RawClient.connect(cairn.port);
      client.write('POST /upload HTTP/1.1\r\nHost: example.test\r\nContent-Length: 10\r\n\r\nab');
      await arrival;
      await client.closed;
      assert.match(client.text(), /^HTTP\/1\.1 408 /);
      await originClosed;
      assert.equal(completed, false);
    },
  );

  test('maxRequestsPerSocket closes the connection after N responses', { timeout: 15_000 }, async (t) => {
    const origin = await startOrigin(t, ok);
    const cairn = await startCairn(t, new ReverseProxy({ origins: [origin.url] }), {
      limits: { maxRequestsPerSocket: 2, keepAliveTimeout: 60_000 },
    });
    const client = await RawClient.connect(cairn.port);
    client.write(GET('/1'));
    const first = await client.waitFor((text) => responses(text) === 1 && text.endsWith('ok'));
    assert.doesNotMatch(first, /connection: close/i);
    client.write(GET('/2'));
    const second = await client.waitFor((text) => responses(text) === 2 && text.endsWith('ok'));
    assert.match(second.slice(first.length), /\r\nconnection: close\r\n/i);
    await client.closed; // long before the 60 s keep-alive timeout
    assert.equal(origin.requests, 2);
  });
});

// ---- graceful drain ------------------------------------------------------------------------------

interface SlowOrigin {
  readonly origin: Origin;
  /** Resolves when the slow request reaches the origin. */
  readonly arrived: Promise<void>;
  /** Let the held response finish. */
  release(): void;
}

/** `/slow` sends its head and half its body, then waits for `release()`; anything else is "ok". */
async function startSlowOrigin(t: TestContext): Promise<SlowOrigin> {
  let arrived!: () => void;
  const arrival = new Promise<void>((resolve) => (arrived = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const origin = await startOrigin(t, (req, res) => {
    if (req.url !== '/slow') {
      res.end('ok');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 10 });
    res.write('hello');
    arrived();
    void released.then(() => res.end('world'));
  });
  return { origin, arrived: arrival, release };
}

interface Streamed {
  /** Resolves with the first body chunk. */
  readonly firstChunk: Promise<string>;
  /** Resolves with the whole body and whether it ended normally. */
  readonly done: Promise<{ body: string; complete: boolean; headers: IncomingMessage['headers'] }>;
}

function streamGet(url: string): Streamed {
  let first!: (chunk: string) => void;
  const firstChunk = new Promise<string>((resolve) => (first = resolve));
  const done = new Promise<{ body: string; complete: boolean; headers: IncomingMessage['headers'] }>(
    (resolve, reject) => {
      const req = request(url, { agent: false });
      req.on('error', reject);
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (body === '') first(chunk);
          body += chunk;
        });
        const finish = (): void => resolve({ body, complete: res.complete, headers: res.headers });
        res.on('end', finish);
        res.on('error', finish);
        res.on('close', finish);
      });
      req.end();
    },
  );
  return { firstChunk, done };
}

async function startCliProxy(t: TestContext, origin: string, extra: readonly string[] = []) {
  const port = await freePort();
  const adminPort = await freePort();
  const cli = startCli(t, [
    '--listen',
    `127.0.0.1:${port}`,
    '--origin',
    origin,
    '--admin',
    `127.0.0.1:${adminPort}`,
    ...extra,
  ]);
  await cli.waitForLog('listening');
  return { cli, port, adminPort };
}

describe('graceful drain (cairn CLI as a child process)', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(
      `${signal}: stops accepting, finishes the in-flight request, exits 0`,
      { timeout: 30_000 },
      async (t) => {
        const slow = await startSlowOrigin(t);
        const { cli, port, adminPort } = await startCliProxy(t, slow.origin.url);
        const ok = await httpRequest(`http://127.0.0.1:${port}/`);
        assert.equal(ok.status, 200);

        const inFlight = streamGet(`http://127.0.0.1:${port}/slow`);
        await slow.arrived;
        assert.equal(await inFlight.firstChunk, 'hello');

        process.kill(cli.pid, signal);
        await cli.waitForLog('draining');
        await refused(port); // the listener is closed
        const health = await httpRequest(`http://127.0.0.1:${adminPort}/healthz`);
        assert.equal(health.status, 503); // the admin listener says so while it drains
        assert.equal(cli.child.exitCode, null, 'still running while a request is in flight');

        slow.release();
        const done = await inFlight.done;
        assert.equal(done.body, 'helloworld');
        assert.equal(done.complete, true);

        const exit = await cli.exited;
        assert.deepEqual(exit, { code: 0, signal: null });
        assert.ok(cli.logs.some((l) => l.msg === 'signal received' && l.signal === signal));
        assert.ok(cli.logs.some((l) => l.msg === 'stopped'));
        assert.ok(!cli.logs.some((l) => l.msg === 'shutdown deadline passed: closing remaining connections'));
      },
    );
  }

  test(
    'an in-flight request past the shutdown deadline is cut, and the process still exits 0',
    { timeout: 30_000 },
    async (t) => {
      const slow = await startSlowOrigin(t);
      const dir = await mkdtemp(join(tmpdir(), 'cairn-drain-'));
      t.after(() => rm(dir, { recursive: true, force: true }));
      const config = join(dir, 'cairn.json');
      await writeFile(config, JSON.stringify({ shutdownTimeout: 300 }));
      const { cli, port } = await startCliProxy(t, slow.origin.url, ['--config', config]);

      const inFlight = streamGet(`http://127.0.0.1:${port}/slow`);
      await slow.arrived;
      await inFlight.firstChunk;
      process.kill(cli.pid, 'SIGTERM');
      // Never released: the deadline must end it.
      const done = await inFlight.done;
      assert.equal(done.complete, false);
      assert.equal(done.body, 'hello');
      const exit = await cli.exited;
      assert.deepEqual(exit, { code: 0, signal: null });
      assert.ok(cli.logs.some((l) => l.msg === 'shutdown deadline passed: closing remaining connections'));
      assert.ok(cli.logs.some((l) => l.msg === 'stopped'));
    },
  );

  test('with nothing in flight, SIGTERM exits at once with code 0', { timeout: 30_000 }, async (t) => {
    const origin = await startOrigin(t, (_req, res) => res.end('ok'));
    const { cli, port } = await startCliProxy(t, origin.url);
    // A keep-alive connection left idle must not hold the drain up.
    const idle = await RawClient.connect(port);
    idle.write(GET());
    await idle.waitFor((text) => text.endsWith('ok'));
    process.kill(cli.pid, 'SIGTERM');
    await idle.closed;
    assert.deepEqual(await cli.exited, { code: 0, signal: null });
  });
});

// ---- cluster -------------------------------------------------------------------------------------

const WORKER_FIXTURE = fileURLToPath(new URL('./fixtures/worker-pid-proxy.ts', import.meta.url));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('workers: 2 (node:cluster)', () => {
  test(
    'two worker processes serve one port, /metrics sums them, SIGTERM stops everything',
    { timeout: 40_000 },
    async (t) => {
      const origin = await startOrigin(t, (_req, res) => res.end('ok'));
      const port = await freePort();
      const adminPort = await freePort();
      const fixture = spawnFixture(t, WORKER_FIXTURE, {
        ORIGIN: origin.url,
        LISTEN: `127.0.0.1:${port}`,
        ADMIN: `127.0.0.1:${adminPort}`,
      });
      const ready = await fixture.message<{ ready: boolean; pid: number; port: number }>((m) => m.ready);
      assert.equal(ready.port, port);
      assert.equal(ready.pid, fixture.child.pid);

      // New connections are handed to the workers in turn; stop once both have answered.
      const pids = new Set<number>();
      let sent = 0;
      while (pids.size < 2 && sent < 40) {
        const res = await httpRequest(`http://127.0.0.1:${port}/n${sent++}`);
        assert.equal(res.status, 200);
        assert.equal(res.body.toString(), 'ok');
        pids.add(Number(res.headers['x-worker-pid']));
      }
      assert.equal(pids.size, 2, `answers came from ${[...pids].join(', ')}`);
      assert.ok(!pids.has(ready.pid), 'the primary serves no requests');
      for (const pid of pids) assert.ok(Number.isInteger(pid) && pid > 0 && alive(pid));

      const scrape = await httpRequest(`http://127.0.0.1:${adminPort}/metrics`);
      assert.equal(scrape.status, 200);
      const text = scrape.body.toString();
      assert.equal(parseMetrics(text).value('cairn_requests_total', { status_class: '2xx' }), sent);
      assert.equal(origin.requests, sent);
      // Each metric family once: a repeated family makes the whole scrape invalid for Prometheus.
      const families = text.split('\n').filter((line) => line.startsWith('# TYPE '));
      assert.equal(new Set(families).size, families.length, 'a metric family is repeated');

      process.kill(ready.pid, 'SIGTERM');
      const [code, signal] = (await once(fixture.child, 'exit')) as [number | null, NodeJS.Signals | null];
      assert.deepEqual({ code, signal }, { code: 0, signal: null });
      for (const pid of pids) assert.equal(alive(pid), false, `worker ${pid} outlived the primary`);
      await refused(port);
    },
  );
});
