/**
 * Lazy route resolution through `GatewayProxy`, end to end (real origins and sockets on 127.0.0.1):
 * answers are cached per host + path prefix with a TTL (an injected clock moves time, no sleeps);
 * a cached target that refuses the connection is invalidated and the routing function asked again
 * before the request fails; a target that starts late is waited for with backoff up to a deadline.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { GatewayProxy } from '../../hooks/index.ts';
import type { GatewayCtx, RouteAnswer } from '../../hooks/index.ts';
import type { CairnError, HttpPeer, Session } from '../../src/index.ts';
import { httpRequest, startCairn, startOrigin, type Cleanup } from '../helpers/servers.ts';
import { unusedPort } from '../helpers/cli.ts';

async function named(t: Cleanup, name: string): Promise<string> {
  const origin = await startOrigin(t, (_req, res) =>
    res.writeHead(200, { 'content-type': 'text/plain' }).end(name),
  );
  return origin.url;
}

/** A routing function that records its calls. */
function recorder(answer: (host: string, path: string, call: number) => RouteAnswer | undefined) {
  const calls: string[] = [];
  const listeners: (() => void)[] = [];
  return {
    calls,
    resolve: async (host: string, path: string): Promise<RouteAnswer | undefined> => {
      calls.push(`${host}${path}`);
      for (const l of listeners.splice(0)) l();
      await Promise.resolve(); // an async registry
      return answer(host, path, calls.length);
    },
    /** Resolves once the function has been called `n` times in all. */
    called(n: number): Promise<void> {
      if (calls.length >= n) return Promise.resolve();
      return new Promise((resolve) => {
        const check = (): void => {
          if (calls.length >= n) resolve();
          else listeners.push(check);
        };
        listeners.push(check);
      });
    },
  };
}

void test('answers are cached per host + path prefix for their TTL; unknown routes get 404', async (t) => {
  const api = await named(t, 'api');
  const web = await named(t, 'web');
  let clock = 0;
  const fn = recorder((host, path) => {
    if (host !== 'example.test') return undefined;
    return path.startsWith('/api/')
      ? { targets: [api], prefix: '/api/', ttlMs: 1000 }
      : { targets: [web], ttlMs: 5000 };
  });
  const gateway = new GatewayProxy({ resolve: fn.resolve, now: () => clock });
  const cairn = await startCairn(t, gateway);
  const get = async (host: string, path: string): Promise<string> => {
    const res = await httpRequest(`${cairn.url}${path}`, { headers: { host } });
    return `${res.status} ${res.body.toString()}`;
  };
  assert.equal(await get('example.test', '/api/users/1'), '200 api');
  assert.equal(await get('example.test', '/api/users/2?x=1'), '200 api');
  assert.equal(await get('EXAMPLE.test', '/api/orders'), '200 api');
  assert.equal(fn.calls.length, 1, 'one call for the whole /api/ prefix');
  assert.equal(await get('example.test', '/index.html'), '200 web');
  assert.equal(await get('example.test', '/about'), '200 web');
  assert.equal(fn.calls.length, 2, 'one more for the rest of the host');
  // Past the /api/ TTL only that prefix is asked again.
  clock += 1500;
  assert.equal(await get('example.test', '/api/users/3'), '200 api');
  assert.equal(await get('example.test', '/about'), '200 web');
  assert.equal(fn.calls.length, 3);
  // No route: 404, cached briefly as well.
  assert.match(await get('nowhere.test', '/'), /^404 /);
  assert.match(await get('nowhere.test', '/'), /^404 /);
  assert.equal(fn.calls.length, 4);
});

void test('a cached target that refuses the connection is invalidated and the function asked again', async (t) => {
  const live = await named(t, 'live');
  const dead = `http://127.0.0.1:${await unusedPort()}`;
  // First answer: a target that has gone away; the second: where the service lives now.
  const fn = recorder((_h, _p, call) => ({ targets: [call === 1 ? dead : live] }));
  const gateway = new GatewayProxy({ resolve: fn.resolve, waitForTargetMs: 0 });
  const cairn = await startCairn(t, gateway);
  const res = await httpRequest(`${cairn.url}/x`, { headers: { host: 'svc.test' } });
  assert.equal(res.status, 200);
  assert.equal(res.body.toString(), 'live');
  assert.equal(fn.calls.length, 2);
  // The fresh answer is cached now.
  assert.equal(
    (await httpRequest(`${cairn.url}/y`, { headers: { host: 'svc.test' } })).body.toString(),
    'live',
  );
  assert.equal(fn.calls.length, 2);

  // Still refused after asking again, and no waiting allowed: the connect error, coded.
  const gone = new GatewayProxy({ resolve: () => ({ targets: [dead] }), waitForTargetMs: 0 });
  const cairn2 = await startCairn(t, gone);
  const failed = await httpRequest(`${cairn2.url}/`, { headers: { host: 'svc.test' } });
  assert.equal(failed.status, 502);
  const line = await cairn2.logs.waitFor((l) => l.msg === 'request');
  assert.equal(line.err, 'CAIRN_ERR_UPSTREAM_CONNECT');
  assert.equal(line.attempts, 2, 'one attempt, one after re-resolving');
});

void test('a target that starts late is waited for with backoff, up to a deadline', async (t) => {
  const port = await unusedPort();
  const fn = recorder(() => ({ targets: [`http://127.0.0.1:${port}`] }));
  let waiting!: () => void;
  const waitingStarted = new Promise<void>((resolve) => (waiting = resolve));
  /** Tells the test when a refused request starts waiting for its target. */
  class Observed extends GatewayProxy {
    override failToConnect(session: Session, peer: HttpPeer, ctx: GatewayCtx, error: CairnError): CairnError {
      const decided = super.failToConnect(session, peer, ctx, error);
      if (ctx.backoff > 0) waiting();
      return decided;
    }
  }
  const gateway = new Observed({
    resolve: fn.resolve,
    waitForTargetMs: 30_000,
    backoffMs: 10,
    maxBackoffMs: 100,
  });
  const cairn = await startCairn(t, gateway);
  const pending = httpRequest(`${cairn.url}/hello`, { headers: { host: 'late.test' } });
  // Refused, re-resolved (still the same target), refused again: now it waits with backoff.
  await waitingStarted;
  assert.equal(fn.calls.length, 2);
  const server = createServer((_req, res) => res.writeHead(200).end('started'));
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const res = await pending;
  assert.equal(res.status, 200);
  assert.equal(res.body.toString(), 'started');
  const line = await cairn.logs.waitFor((l) => l.msg === 'request');
  assert.ok(
    (line.attempts as number) >= 3,
    `retried while the target started (${String(line.attempts)} attempts)`,
  );
  assert.equal(fn.calls.length, 2, 'waiting does not hammer the routing function');

  // The deadline: a target that never starts fails with the connect error, not a hang.
  const never = `http://127.0.0.1:${await unusedPort()}`;
  const impatient = new GatewayProxy({
    resolve: () => ({ targets: [never] }),
    waitForTargetMs: 200,
    backoffMs: 10,
    maxBackoffMs: 50,
  });
  const cairn2 = await startCairn(t, impatient);
  const failed = await httpRequest(`${cairn2.url}/`, { headers: { host: 'never.test' } });
  assert.equal(failed.status, 502);
  const line2 = await cairn2.logs.waitFor((l) => l.msg === 'request');
  assert.equal(line2.err, 'CAIRN_ERR_UPSTREAM_CONNECT');
});
