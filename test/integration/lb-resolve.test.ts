/**
 * Hostname backends: the real OS resolver on `localhost`, and a scripted resolver for changes and
 * failures (the scripted one stands in for DNS answers only; the upstream and watcher are real).
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { HostnameWatcher, type LookupAll, type ResolvedAddress } from '../../src/lb/resolve.ts';
import { Upstream } from '../../src/lb/upstream.ts';

function scripted(answers: (readonly ResolvedAddress[] | Error)[]): {
  lookup: LookupAll;
  calls: () => number;
} {
  let calls = 0;
  const lookup: LookupAll = async () => {
    const answer = answers[Math.min(calls++, answers.length - 1)]!;
    if (answer instanceof Error) throw answer;
    return answer;
  };
  return { lookup, calls: () => calls };
}

const v4 = (address: string): ResolvedAddress => ({ address, family: 4 });

void test('localhost resolves through the OS resolver to loopback backends', async () => {
  const upstream = new Upstream({ name: 'local' });
  const watch = new HostnameWatcher(upstream, { hostname: 'localhost', port: 8080 });
  await watch.start();
  watch.stop();
  const ids = upstream.snapshot().backends.map((b) => b.id);
  assert.ok(ids.length >= 1, 'at least one address');
  for (const id of ids) assert.ok(id === '127.0.0.1:8080' || id === '[::1]:8080', id);
  assert.deepEqual(ids.slice().sort(), watch.ids.slice().sort());
  const b = upstream.select()!;
  assert.equal(b.port, 8080);
  assert.ok(b.host === '127.0.0.1' || b.host === '::1');
});

void test('changes add new addresses and drain vanished ones; failures keep the last answer', async () => {
  const upstream = new Upstream({ name: 'api' });
  const { lookup } = scripted([
    [v4('10.0.0.1'), v4('10.0.0.2')],
    [v4('10.0.0.2'), v4('10.0.0.3')],
    new Error('SERVFAIL'),
  ]);
  const watch = new HostnameWatcher(upstream, { hostname: 'api.internal', port: 80, lookup, weight: 2 });
  await watch.start();
  watch.stop();
  assert.deepEqual(
    upstream.snapshot().backends.map((b) => [b.id, b.weight]),
    [
      ['10.0.0.1:80', 2],
      ['10.0.0.2:80', 2],
    ],
  );

  // An in-flight request on the vanishing address finishes before it is removed.
  const leaving = upstream.selector.backends[0]!;
  upstream.begin(leaving);
  const change = once(watch, 'change');
  await watch.refresh();
  assert.deepEqual(await change, [['10.0.0.3:80'], ['10.0.0.1:80']]);
  assert.deepEqual(
    upstream.selector.backends.map((b) => b.id),
    ['10.0.0.2:80', '10.0.0.3:80'],
  );
  assert.equal(upstream.snapshot().backends[0]!.state, 'draining');
  upstream.end(leaving, 'success');
  assert.deepEqual(
    upstream.snapshot().backends.map((b) => b.id),
    ['10.0.0.2:80', '10.0.0.3:80'],
  );

  const failed = once(watch, 'lookupFailed');
  await watch.refresh();
  const [error] = (await failed) as [{ code: string }];
  assert.equal(error.code, 'CAIRN_ERR_UPSTREAM_CONNECT');
  assert.deepEqual(watch.ids, ['10.0.0.2:80', '10.0.0.3:80']);
  assert.equal(upstream.selector.backends.length, 2);
});

void test('re-resolves on the interval', async (t) => {
  const hold = setInterval(() => undefined, 1 << 30); // the watcher's timer is unref'd
  t.after(() => clearInterval(hold));
  const upstream = new Upstream({ name: 'api' });
  const { lookup, calls } = scripted([[v4('10.0.0.1')], [v4('10.0.0.1')], [v4('10.0.0.9')]]);
  const watch = new HostnameWatcher(upstream, { hostname: 'api.internal', port: 80, lookup, intervalMs: 20 });
  t.after(() => watch.stop());
  const change = once(watch, 'change');
  await watch.start();
  await change; // the first answer
  const later = once(watch, 'change');
  assert.deepEqual(await later, [['10.0.0.9:80'], ['10.0.0.1:80']]);
  assert.ok(calls() >= 3);
});

void test('IPv6 answers become bracketed ids', async () => {
  const upstream = new Upstream({ name: 'v6' });
  const { lookup } = scripted([[{ address: '::1', family: 6 }]]);
  const watch = new HostnameWatcher(upstream, { hostname: 'x', port: 443, lookup, protocol: 'https:' });
  await watch.refresh();
  const b = upstream.selector.backends[0]!;
  assert.equal(b.id, '[::1]:443');
  assert.equal(b.host, '::1');
  assert.equal(b.protocol, 'https:');
});
