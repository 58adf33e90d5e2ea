import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  CacheLock,
  type WaitOutcome,
  type InflightReader,
  type LockWait,
  type InflightObject,
} from '../../cache/lock.ts';
import { isCairnError } from '../../src/errors.ts';

function writerOf(lock: CacheLock, key: string): InflightObject {
  const a = lock.acquire(key);
  assert.equal(a.writer, true);
  return (a as { inflight: InflightObject }).inflight;
}
function waiterOf(lock: CacheLock, key: string): LockWait {
  const a = lock.acquire(key);
  assert.equal(a.writer, false);
  return (a as { wait: LockWait }).wait;
}
async function outcome(w: LockWait): Promise<WaitOutcome> {
  return await w.result();
}
async function readAll(r: InflightReader): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c);
  return Buffer.concat(parts);
}
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

void describe('CacheLock', () => {
  void test('500 concurrent acquirers: one writer, every reader reads the whole body while it arrives', async () => {
    const lock = new CacheLock();
    const writer = writerOf(lock, 'k');
    const waits = Array.from({ length: 499 }, () => waiterOf(lock, 'k'));
    assert.equal(lock.counters.writers, 1);
    assert.equal(lock.counters.waits, 499);
    const reads = waits.map(async (w) => {
      const o = await outcome(w);
      assert.equal(o.kind, 'ready');
      if (o.kind !== 'ready') return Buffer.alloc(0);
      assert.equal(o.status, 200);
      return readAll(o.body);
    });
    writer.publishHeaders(200, { 'content-type': 'text/plain' });
    const chunks: Buffer[] = [];
    for (let i = 0; i < 20; i++) {
      const c = Buffer.from(`chunk-${i};`);
      chunks.push(c);
      writer.append(c);
      await tick(); // readers consume while the body is still arriving
    }
    // A late joiner (headers already known) starts from the first byte, synchronously.
    const late = waiterOf(lock, 'k').result();
    assert.ok(!(late instanceof Promise));
    writer.append(Buffer.from('end'));
    writer.complete();
    const expected = Buffer.concat([...chunks, Buffer.from('end')]);
    const bodies = await Promise.all(reads);
    for (const b of bodies) assert.deepEqual(b, expected);
    assert.ok(!(late instanceof Promise) && late.kind === 'ready');
    if (!(late instanceof Promise) && late.kind === 'ready')
      assert.deepEqual(await readAll(late.body), expected);
    assert.equal(lock.size, 0, 'released after complete');
    assert.equal(writerOf(lock, 'k').key, 'k', 'the next arrival is a new writer (the store serves it)');
  });

  void test('chunks are shared, not copied', async () => {
    const lock = new CacheLock();
    const w = writerOf(lock, 'k');
    const wait = waiterOf(lock, 'k');
    w.publishHeaders(200, {});
    const c = Buffer.from('abc');
    w.append(c);
    const o = await outcome(wait);
    assert.ok(o.kind === 'ready');
    assert.equal(o.body.read(), c);
  });

  void test('writer failure mid-body wakes every reader with the coded error, never a clean end', async () => {
    const lock = new CacheLock();
    const w = writerOf(lock, 'k');
    const waits = Array.from({ length: 50 }, () => waiterOf(lock, 'k'));
    w.publishHeaders(200, {});
    w.append(Buffer.from('partial'));
    const results = waits.map(async (wt) => {
      const o = await outcome(wt);
      assert.ok(o.kind === 'ready');
      return readAll(o.body).then(
        () => 'completed',
        (e: unknown) => (isCairnError(e) ? e.code : 'other'),
      );
    });
    await tick();
    w.fail(new Error('origin reset'));
    for (const r of await Promise.all(results)) assert.equal(r, 'CAIRN_ERR_CACHE_WRITER_FAILED');
    assert.equal(lock.counters.writerFailures, 1);
    assert.equal(lock.size, 0);
  });

  void test('writer failure before headers / cancel: waiters get failed with the cause', async () => {
    const lock = new CacheLock();
    const w = writerOf(lock, 'k');
    const wait = waiterOf(lock, 'k');
    const cause = new Error('boom');
    w.fail(cause);
    const o = await outcome(wait);
    assert.equal(o.kind, 'failed');
    assert.ok(
      o.kind === 'failed' && o.error.code === 'CAIRN_ERR_CACHE_WRITER_FAILED' && o.error.cause === cause,
    );
    const w2 = writerOf(lock, 'k');
    const wait2 = waiterOf(lock, 'k');
    w2.cancel();
    const o2 = await outcome(wait2);
    assert.equal(o2.kind, 'failed');
  });

  void test('timeout: waiter gets CAIRN_ERR_CACHE_LOCK_TIMEOUT and the stuck entry is detached', async () => {
    const lock = new CacheLock({ timeoutMs: 20 });
    const w = writerOf(lock, 'k');
    const wait = waiterOf(lock, 'k');
    // The lock's timer is unref'd (a server's sockets keep the loop alive); keep this test's loop alive.
    const keepAlive = setTimeout(() => undefined, 1000);
    const o = await outcome(wait);
    clearTimeout(keepAlive);
    assert.equal(o.kind, 'timeout');
    assert.ok(
      o.kind === 'timeout' && o.error.code === 'CAIRN_ERR_CACHE_LOCK_TIMEOUT' && o.error.retryable === true,
    );
    assert.equal(lock.counters.timeouts, 1);
    const next = lock.acquire('k');
    assert.equal(next.writer, true, 'next arrival becomes a writer (nginx proxy_cache_lock_age)');
    // the old writer finishing must not release the new writer's entry
    w.publishHeaders(200, {});
    w.complete();
    assert.equal(lock.size, 1);
  });

  void test('uncacheable before headers: waiters fetch on their own with the reason', async () => {
    const lock = new CacheLock();
    const w = writerOf(lock, 'k');
    const waits = [waiterOf(lock, 'k'), waiterOf(lock, 'k')];
    w.uncacheable('private');
    for (const wt of waits) assert.deepEqual(await outcome(wt), { kind: 'fetch', reason: 'private' });
    assert.equal(lock.counters.uncacheable, 1);
    assert.equal(lock.size, 0);
  });

  void test('uncacheable after headers only releases the key; readers finish', async () => {
    const lock = new CacheLock();
    const w = writerOf(lock, 'k');
    const wait = waiterOf(lock, 'k');
    w.publishHeaders(200, {});
    w.append(Buffer.from('a'));
    w.uncacheable('too-large-for-tier');
    assert.equal(lock.size, 0);
    w.append(Buffer.from('b'));
    w.complete();
    const o = await outcome(wait);
    assert.ok(o.kind === 'ready');
    assert.equal((await readAll(o.body)).toString(), 'ab');
  });

  void test('a waiter cancelling does not disturb others', async () => {
    const lock = new CacheLock();
    const w = writerOf(lock, 'k');
    const a = waiterOf(lock, 'k');
    const b = waiterOf(lock, 'k');
    const pa = a.result();
    a.cancel();
    assert.deepEqual(await pa, { kind: 'cancelled' });
    w.publishHeaders(200, {});
    w.append(Buffer.from('x'));
    const ob = await outcome(b);
    assert.ok(ob.kind === 'ready');
    // cancel mid-read: pending read resolves null
    const r = ob.body.read();
    assert.deepEqual(r, Buffer.from('x'));
    const pending = ob.body.read();
    assert.ok(pending instanceof Promise);
    const c = waiterOf(lock, 'k');
    b.cancel();
    assert.equal(await pending, null);
    w.append(Buffer.from('y'));
    w.complete();
    const oc = await outcome(c);
    assert.ok(oc.kind === 'ready');
    assert.equal((await readAll(oc.body)).toString(), 'xy');
    assert.equal(lock.counters.waiterCancels, 1);
  });

  void test('over maxInflightBytes: new arrivals fetch themselves; consumed chunks are dropped', async () => {
    const lock = new CacheLock({ maxInflightBytes: 10 });
    const w = writerOf(lock, 'k');
    const wait = waiterOf(lock, 'k');
    w.publishHeaders(200, {});
    const o = await outcome(wait);
    assert.ok(o.kind === 'ready');
    w.append(Buffer.alloc(8, 1));
    assert.equal((o.body.read() as Buffer).length, 8);
    w.append(Buffer.alloc(8, 2)); // 16 > 10
    const refused = waiterOf(lock, 'k').result();
    assert.deepEqual(refused, { kind: 'fetch', reason: 'inflight-too-large' });
    assert.equal(lock.counters.tooLarge, 1);
    w.append(Buffer.alloc(1, 3));
    w.complete();
    const rest = await readAll(o.body);
    assert.deepEqual(rest, Buffer.concat([Buffer.alloc(8, 2), Buffer.alloc(1, 3)]));
  });

  void test('misuse: append before headers throws; complete before headers fails waiters', async () => {
    const lock = new CacheLock();
    const w = writerOf(lock, 'k');
    assert.throws(() => w.append(Buffer.from('x')), { code: 'CAIRN_ERR_INTERNAL' });
    const wait = waiterOf(lock, 'k');
    w.complete();
    assert.equal((await outcome(wait)).kind, 'failed');
  });

  void test('keys are independent', () => {
    const lock = new CacheLock();
    assert.equal(lock.acquire('a').writer, true);
    assert.equal(lock.acquire('b').writer, true);
    assert.equal(lock.acquire('a').writer, false);
    assert.equal(lock.size, 2);
  });
});
