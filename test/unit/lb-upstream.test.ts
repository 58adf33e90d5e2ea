/**
 * Upstream: membership changes swap an immutable selector, drain waits for in-flight requests,
 * passive health ejects for a cool-down, the breaker opens on an error or slow ratio and probes when
 * half-open. Time is an injected clock, so nothing sleeps.
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Upstream, type UpstreamOptions } from '../../src/lb/upstream.ts';
import type { Backend } from '../../src/lb/backend.ts';
import { isCairnError } from '../../src/errors.ts';

class Clock {
  t = 1_000;
  readonly now = (): number => this.t;
}

function upstream<R = never>(options: Partial<UpstreamOptions<R>> = {}, clock = new Clock()): Upstream<R> {
  return new Upstream<R>({
    name: 'api',
    algorithm: 'weighted-round-robin',
    backends: [{ address: '10.0.0.1:80' }, { address: '10.0.0.2:80' }, { address: '10.0.0.3:80' }],
    now: clock.now,
    ...options,
  });
}

function pickIds(u: Upstream<never>, n: number, key?: (i: number) => string): string[] {
  return Array.from({ length: n }, (_, i) => u.select(key?.(i))?.id ?? 'none');
}

function isPending(p: Promise<unknown>): Promise<boolean> {
  return Promise.race([p.then(() => false), new Promise<boolean>((r) => setImmediate(() => r(true)))]);
}

void describe('Upstream', () => {
  void test('select spreads over backends and counts selections', () => {
    const u = upstream();
    assert.deepEqual(pickIds(u, 6), [
      '10.0.0.1:80',
      '10.0.0.2:80',
      '10.0.0.3:80',
      '10.0.0.1:80',
      '10.0.0.2:80',
      '10.0.0.3:80',
    ]);
    assert.deepEqual(
      u.snapshot().backends.map((b) => b.selections),
      [2, 2, 2],
    );
  });

  void test('no backend -> undefined, and selectOrThrow gives CAIRN_ERR_UPSTREAM_UNAVAILABLE (503)', () => {
    const u = upstream({ backends: [] });
    assert.equal(u.select(), undefined);
    assert.throws(
      () => u.selectOrThrow(),
      (e) => isCairnError(e) && e.code === 'CAIRN_ERR_UPSTREAM_UNAVAILABLE' && e.status === 503,
    );
  });

  void test('add and remove swap in a new selector; the old one is unchanged', () => {
    const u = upstream();
    const before = u.selector;
    const changes: (readonly Backend[])[] = [];
    u.on('change', (list) => changes.push(list));
    u.add({ address: '10.0.0.4:80' });
    assert.notEqual(u.selector, before);
    assert.equal(before.backends.length, 3);
    assert.equal(u.selector.backends.length, 4);
    assert.ok(u.remove('10.0.0.1:80'));
    assert.equal(u.remove('10.0.0.1:80'), false);
    assert.equal(changes.length, 2);
    assert.ok(!pickIds(u, 30).includes('10.0.0.1:80'));
    assert.ok(pickIds(u, 30).includes('10.0.0.4:80'));
    assert.throws(
      () => u.add({ address: '10.0.0.2:80' }),
      (e) => isCairnError(e) && e.code === 'CAIRN_ERR_CONFIG_INVALID',
    );
  });

  void test('drain: no new selections, resolves once in-flight requests end, then removes', async () => {
    const u = upstream();
    const b1 = u.select()!;
    assert.equal(b1.id, '10.0.0.1:80');
    u.begin(b1);
    u.begin(b1);
    const drained = u.drain(b1.id);
    assert.ok(!pickIds(u, 30).includes(b1.id));
    assert.equal(u.snapshot().backends[0]!.state, 'draining');
    u.end(b1, 'success');
    assert.equal(await isPending(drained), true);
    const event = once(u, 'drained');
    u.end(b1, 'success');
    await drained;
    assert.equal(((await event) as [Backend])[0].id, b1.id);
    assert.deepEqual(
      u.snapshot().backends.map((b) => b.id),
      ['10.0.0.2:80', '10.0.0.3:80'],
    );
  });

  void test('drain of an idle backend resolves at once', async () => {
    const u = upstream();
    await u.drain('10.0.0.2:80');
    assert.equal(u.snapshot().backends.length, 2);
  });

  void test('ketama: draining one backend moves only its keys', async () => {
    const u = upstream({ algorithm: 'ketama' });
    const keys = Array.from({ length: 2000 }, (_, i) => `/obj/${i}`);
    const before = keys.map((k) => u.select(k)!.id);
    await u.drain('10.0.0.2:80');
    const after = keys.map((k) => u.select(k)!.id);
    let moved = 0;
    for (let i = 0; i < keys.length; i++) {
      if (before[i] === '10.0.0.2:80') moved++;
      else assert.equal(after[i], before[i]);
    }
    assert.ok(moved > 0);
    assert.ok(!after.includes('10.0.0.2:80'));
  });

  void test('setWeight changes proportions', () => {
    const u = upstream();
    assert.ok(u.setWeight('10.0.0.1:80', 3));
    const ids = pickIds(u, 50);
    assert.equal(ids.filter((id) => id === '10.0.0.1:80').length, 30);
    assert.throws(
      () => u.setWeight('10.0.0.1:80', 0),
      (e) => isCairnError(e) && e.code === 'CAIRN_ERR_CONFIG_INVALID',
    );
  });

  void test('selectFor uses the hashKey function', () => {
    const u = upstream<{ url: string }>({ algorithm: 'ketama', hashKey: (req) => req.url });
    for (let i = 0; i < 50; i++) assert.equal(u.selectFor({ url: `/a/${i}` }), u.select(`/a/${i}`));
  });

  void test('least-connections follows begin/end', () => {
    const u = upstream({ algorithm: 'least-connections' });
    const [a, b] = u.selector.backends;
    u.begin(a!);
    u.begin(b!);
    assert.equal(u.select()!.id, '10.0.0.3:80');
    u.end(a!, 'success');
    assert.equal(u.select()!.id, '10.0.0.1:80');
    assert.equal(u.snapshot().backends[1]!.inFlight, 1);
  });

  void test('active health verdicts take a backend out and back in, without a rebuild', async () => {
    const u = upstream();
    const selector = u.selector;
    const event = once(u, 'health');
    u.setHealthy('10.0.0.2:80', false);
    assert.deepEqual(
      ((await event) as [Backend, boolean]).map((x) => (typeof x === 'boolean' ? x : x.id)),
      ['10.0.0.2:80', false],
    );
    assert.equal(u.selector, selector);
    assert.ok(!pickIds(u, 30).includes('10.0.0.2:80'));
    assert.equal(u.snapshot().backends[1]!.state, 'down');
    u.setHealthy('10.0.0.2:80', true);
    assert.ok(pickIds(u, 30).includes('10.0.0.2:80'));
  });
});

void describe('passive health', () => {
  void test('consecutive failures eject for the cool-down; one more failure after it ejects again', () => {
    const clock = new Clock();
    const u = upstream({ passive: { maxFails: 2, ejectMs: 5_000 }, breaker: false }, clock);
    const b = u.selector.backends[0]!;
    const ejections: number[] = [];
    u.on('ejected', (_b, until) => ejections.push(until));
    u.begin(b);
    u.end(b, 'failure');
    assert.ok(pickIds(u, 30).includes(b.id), 'one failure does not eject');
    u.begin(b);
    u.end(b, 'failure');
    assert.deepEqual(ejections, [6_000]);
    assert.ok(!pickIds(u, 30).includes(b.id));
    assert.equal(u.snapshot().backends[0]!.state, 'ejected');
    clock.t = 6_000;
    assert.ok(pickIds(u, 30).includes(b.id), 'back after the cool-down');
    u.end(b, 'failure');
    assert.deepEqual(ejections, [6_000, 11_000]);
    assert.equal(u.snapshot().backends[0]!.ejections, 2);
  });

  void test('a success resets the count; cancelled counts for nothing', () => {
    const u = upstream({ passive: { maxFails: 2 }, breaker: false });
    const b = u.selector.backends[0]!;
    u.end(b, 'failure');
    u.end(b, 'cancelled');
    assert.equal(u.snapshot().backends[0]!.consecutiveFailures, 1);
    u.end(b, 'success');
    u.end(b, 'failure');
    assert.equal(u.snapshot().backends[0]!.state, 'healthy');
  });

  void test('all backends ejected -> undefined', () => {
    const u = upstream({ passive: { maxFails: 1 }, breaker: false });
    for (const b of u.selector.backends) u.end(b, 'failure');
    assert.equal(u.select(), undefined);
  });
});

void describe('circuit breaker', () => {
  const breaker = { windowMs: 10_000, buckets: 10, minRequests: 10, errorRatio: 0.5, openMs: 3_000 };

  void test('opens at the error ratio, half-opens after openMs with one probe, closes on success', () => {
    const clock = new Clock();
    const u = upstream({ passive: false, breaker }, clock);
    const b = u.selector.backends[0]!;
    const states: string[] = [];
    u.on('breaker', (_b, s) => states.push(s));
    for (let i = 0; i < 9; i++) u.end(b, i % 2 === 0 ? 'failure' : 'success');
    assert.deepEqual(states, [], 'below minRequests');
    u.end(b, 'success'); // 10 requests, 5 failures: ratio 0.5
    assert.deepEqual(states, ['open']);
    assert.ok(!pickIds(u, 30).includes(b.id));
    clock.t += 3_000;
    // Half-open: exactly one probe is let through until it ends.
    const first = pickIds(u, 3);
    assert.deepEqual(states, ['open', 'half-open']);
    assert.equal(first.filter((id) => id === b.id).length, 1);
    u.begin(b);
    assert.ok(!pickIds(u, 30).includes(b.id), 'probe in flight: no second one');
    u.end(b, 'success');
    assert.deepEqual(states, ['open', 'half-open', 'closed']);
    assert.equal(pickIds(u, 30).filter((id) => id === b.id).length, 10);
  });

  void test('a failed probe opens it again', () => {
    const clock = new Clock();
    const u = upstream({ passive: false, breaker }, clock);
    const b = u.selector.backends[0]!;
    for (let i = 0; i < 10; i++) u.end(b, 'failure');
    clock.t += 3_000;
    pickIds(u, 3);
    u.begin(b);
    u.end(b, 'failure');
    assert.equal(u.snapshot().backends[0]!.breaker, 'open');
    assert.ok(!pickIds(u, 30).includes(b.id));
  });

  void test('failures that slid out of the window do not count', () => {
    const clock = new Clock();
    const u = upstream({ passive: false, breaker }, clock);
    const b = u.selector.backends[0]!;
    for (let i = 0; i < 9; i++) u.end(b, 'failure');
    clock.t += 11_000;
    for (let i = 0; i < 10; i++) u.end(b, i < 4 ? 'failure' : 'success');
    assert.equal(u.snapshot().backends[0]!.breaker, 'closed');
  });

  void test('opens on the slow ratio when slowMs is set', () => {
    const u = upstream({ passive: false, breaker: { ...breaker, slowMs: 100, slowRatio: 0.5 } });
    const b = u.selector.backends[0]!;
    for (let i = 0; i < 10; i++) u.end(b, 'success', i < 5 ? 250 : 5);
    assert.equal(u.snapshot().backends[0]!.state, 'open');
  });

  void test('invalid options are rejected', () => {
    assert.throws(
      () => upstream({ breaker: { errorRatio: 0 } }),
      (e) => isCairnError(e) && e.code === 'CAIRN_ERR_CONFIG_INVALID',
    );
    assert.throws(
      () => upstream({ passive: { maxFails: -1 } }),
      (e) => isCairnError(e) && e.code === 'CAIRN_ERR_CONFIG_INVALID',
    );
    assert.throws(
      () => upstream({ algorithm: 'fastest' as unknown as 'random' }),
      (e) => isCairnError(e) && e.code === 'CAIRN_ERR_CONFIG_INVALID',
    );
  });
});
