/**
 * Active health checks against real `node:http` and `node:net` servers on 127.0.0.1 port 0.
 * Verdicts are awaited as events and checked by counting probes (a backend goes down after exactly
 * `fall` consecutive failures, up after `rise` successes), never by elapsed time.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { once, type EventEmitter } from 'node:events';
import { HealthChecker, type CheckResult, type HealthCheckOptions } from '../../src/lb/health.ts';
import { Upstream } from '../../src/lb/upstream.ts';

async function listen<S extends Server | NetServer>(server: S, port = 0): Promise<number> {
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  return address.port;
}

async function close(server: Server | NetServer): Promise<void> {
  if ('closeAllConnections' in server) server.closeAllConnections();
  server.close();
  await once(server, 'close');
}

/** Resolve with the first emission of `event` whose arguments satisfy `match`. */
function nextEvent<T extends unknown[]>(
  emitter: EventEmitter,
  event: string,
  match: (...args: T) => boolean = () => true,
): Promise<T> {
  return new Promise((resolve) => {
    const listener = (...args: unknown[]): void => {
      if (!match(...(args as T))) return;
      emitter.off(event, listener);
      resolve(args as T);
    };
    emitter.on(event, listener);
  });
}

/** Consecutive passed / failed probes per backend, as the checker reports them. */
function streaks(checker: HealthChecker): Map<string, { ok: number; failed: number }> {
  const out = new Map<string, { ok: number; failed: number }>();
  checker.on('check', (r: CheckResult) => {
    const s = out.get(r.target.id) ?? { ok: 0, failed: 0 };
    if (r.ok) {
      s.ok++;
      s.failed = 0;
    } else {
      s.failed++;
      s.ok = 0;
    }
    out.set(r.target.id, s);
  });
  return out;
}

/**
 * The checker's timers are unref'd on purpose (checks never keep a process alive), so while a test
 * awaits nothing but a verdict, something else must hold the event loop open.
 */
function holdEventLoop(t: { after: (fn: () => void) => void }): void {
  const handle = setInterval(() => undefined, 1 << 30);
  t.after(() => clearInterval(handle));
}

function setup(
  port: number,
  options: Omit<HealthCheckOptions, 'intervalMs'>,
): { upstream: Upstream; checker: HealthChecker; id: string } {
  const id = `127.0.0.1:${port}`;
  const upstream = new Upstream({ name: 'hc', backends: [{ address: id }] });
  const checker = new HealthChecker(upstream, { intervalMs: 20, jitter: 0.5, ...options });
  return { upstream, checker, id };
}

void test('HTTP check: down after `fall` bad statuses, up again after `rise` good ones', async (t) => {
  holdEventLoop(t);
  let status = 200;
  const server = createHttpServer((req, res) => {
    assert.equal(req.url, '/healthz');
    res.statusCode = status;
    res.end('x');
  });
  const port = await listen(server);
  const { upstream, checker, id } = setup(port, {
    check: { type: 'http', path: '/healthz', expectStatus: [200, 299] },
    timeoutMs: 2000,
    rise: 2,
    fall: 3,
  });
  t.after(async () => {
    await checker.stop();
    await close(server);
  });
  const counts = streaks(checker);
  const firstOk = nextEvent<[CheckResult]>(checker, 'check', (r) => r.ok);
  checker.start();
  await firstOk;
  assert.equal(upstream.select()?.id, id);

  const down = nextEvent(checker, 'down');
  status = 503;
  await down;
  assert.equal(counts.get(id)!.failed, 3, 'marked down on exactly the `fall`-th consecutive failure');
  assert.equal(upstream.snapshot().backends[0]!.state, 'down');
  assert.equal(upstream.select(), undefined);

  const up = nextEvent(checker, 'up');
  status = 204;
  await up;
  assert.equal(counts.get(id)!.ok, 2, 'marked up on exactly the `rise`-th consecutive success');
  assert.equal(upstream.select()?.id, id);
});

void test('HTTP check: a status outside the expected range fails with that status', async (t) => {
  holdEventLoop(t);
  const server = createHttpServer((_req, res) => {
    res.statusCode = 302;
    res.end();
  });
  const port = await listen(server);
  const { checker } = setup(port, { check: { type: 'http', expectStatus: [200, 299] }, fall: 1 });
  t.after(async () => {
    await checker.stop();
    await close(server);
  });
  const failed = nextEvent<[CheckResult]>(checker, 'check');
  const down = nextEvent(checker, 'down');
  checker.start();
  const [result] = await failed;
  assert.equal(result.ok, false);
  assert.equal(result.status, 302);
  await down;
});

void test('TCP check: server closed -> down after `fall`; listening again -> up after `rise`', async (t) => {
  holdEventLoop(t);
  const sockets = new Set<Socket>();
  const track = (s: Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };
  let server = createNetServer(track);
  const port = await listen(server);
  const { upstream, checker, id } = setup(port, {
    check: { type: 'tcp' },
    timeoutMs: 2000,
    rise: 2,
    fall: 2,
  });
  t.after(async () => {
    await checker.stop();
    if (server.listening) await close(server);
  });
  const counts = streaks(checker);
  const firstOk = nextEvent<[CheckResult]>(checker, 'check', (r) => r.ok);
  checker.start();
  await firstOk;

  const down = nextEvent(checker, 'down');
  for (const s of sockets) s.destroy();
  await close(server);
  await down;
  assert.equal(counts.get(id)!.failed, 2);
  assert.equal(upstream.select(), undefined);

  const up = nextEvent(checker, 'up');
  server = createNetServer(track);
  await listen(server, port);
  await up;
  assert.equal(counts.get(id)!.ok, 2);
  assert.equal(upstream.select()?.id, id);
});

void test('a hanging backend times out and is marked down', async (t) => {
  holdEventLoop(t);
  const hung = new Set<Socket>();
  const server = createHttpServer(() => {
    // never answers
  });
  server.on('connection', (s: Socket) => hung.add(s));
  const port = await listen(server);
  const { checker } = setup(port, { check: { type: 'http' }, timeoutMs: 50, fall: 1 });
  t.after(async () => {
    await checker.stop();
    await close(server);
  });
  const result = nextEvent<[CheckResult]>(checker, 'check');
  const down = nextEvent(checker, 'down');
  checker.start();
  const [r] = await result;
  assert.match(r.error?.message ?? '', /timed out/);
  await down;
});

void test('stop() aborts a probe in flight and resolves; no checks after it', async (t) => {
  holdEventLoop(t);
  const server = createHttpServer(() => {
    // never answers: the probe can only end by abort
  });
  const connected = once(server, 'connection') as Promise<[Socket]>;
  const port = await listen(server);
  const { checker } = setup(port, { check: { type: 'http' }, timeoutMs: 60_000 });
  t.after(() => close(server));
  let after = 0;
  checker.start();
  const [socket] = await connected;
  const closed = once(socket, 'close');
  await checker.stop();
  checker.on('check', () => after++);
  await closed; // the probe's connection was torn down by the abort
  assert.equal(checker.running, false);
  assert.equal(after, 0);
});

void test('membership follows the source: added backends are checked, removed ones forgotten', async (t) => {
  holdEventLoop(t);
  const a = createHttpServer((_req, res) => res.end());
  const b = createHttpServer((_req, res) => res.end());
  const portA = await listen(a);
  const portB = await listen(b);
  const { upstream, checker, id } = setup(portA, { check: { type: 'http' } });
  t.after(async () => {
    await checker.stop();
    await close(a);
    await close(b);
  });
  checker.start();
  await nextEvent<[CheckResult]>(checker, 'check', (r) => r.target.id === id);
  const idB = `127.0.0.1:${portB}`;
  const checkedB = nextEvent<[CheckResult]>(checker, 'check', (r) => r.target.id === idB && r.ok);
  upstream.add({ address: idB });
  await checkedB;
  assert.equal(checker.isHealthy(idB), true);
  upstream.remove(idB);
  await nextEvent(checker, 'round');
  await nextEvent(checker, 'round');
  assert.equal(checker.isHealthy(idB), undefined);
});
