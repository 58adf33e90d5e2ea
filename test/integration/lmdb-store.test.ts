import assert from 'node:assert/strict';
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { LmdbStore } from '../../cache/lmdb-store.ts';
import type { NewObjectMeta, ObjectMeta } from '../../cache/store.ts';
import { runCacheStoreContract } from '../unit/cache-store-contract.ts';
import {
  CRASH_CHUNK_SIZE,
  CRASH_WRITERS,
  crashBody,
  crashKey,
  crashLength,
  objectMeta,
} from './fixtures/lmdb-pattern.ts';

const CHILD = fileURLToPath(new URL('./fixtures/lmdb-child.ts', import.meta.url));
const dirs: string[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-lmdb-'));
  dirs.push(dir);
  return dir;
}

after(async () => {
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

runCacheStoreContract('LmdbStore', async (limits) => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-lmdb-contract-'));
  return {
    store: await LmdbStore.open({ path: dir, ...limits }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

async function write(store: LmdbStore, meta: NewObjectMeta, body: Buffer): Promise<ObjectMeta> {
  const writer = store.createWriter(meta);
  for (let offset = 0; offset < body.length; offset += 1000)
    await writer.write(body.subarray(offset, offset + 1000));
  return writer.commit();
}

function read(store: LmdbStore, meta: ObjectMeta): Buffer | undefined {
  const object = store.open(meta);
  if (object === undefined) return undefined;
  const parts: Buffer[] = [];
  for (let i = 0; i < object.chunkCount; i++) {
    const chunk = object.chunk(i);
    if (chunk === undefined) return undefined;
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

function message<T>(child: ChildProcess): Promise<T> {
  return once(child, 'message').then(([value]) => value as T);
}

function startChild(mode: string, dir: string): ChildProcess {
  return fork(CHILD, [mode, dir], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

void describe('LmdbStore', () => {
  void it('survives close and reopen with objects, indexes and counters intact', async () => {
    const dir = await tempDir();
    let store = await LmdbStore.open({ path: dir, maxBytes: 1024 * 1024, chunkSize: CRASH_CHUNK_SIZE });
    const a = await write(store, { ...objectMeta('/a'), tags: ['keep'] }, crashBody(1, 1));
    const b = await write(store, { ...objectMeta('/b'), tags: ['purge-me'] }, crashBody(1, 2));
    const before = store.stats();
    await store.close();

    store = await LmdbStore.open({ path: dir, maxBytes: 1024 * 1024, chunkSize: CRASH_CHUNK_SIZE });
    assert.deepEqual(store.stats(), before);
    assert.deepEqual(store.variants('/a'), [a]);
    assert.deepEqual(read(store, a), crashBody(1, 1));
    assert.deepEqual(read(store, b), crashBody(1, 2));
    assert.equal(await store.purgeTag('purge-me'), 1, 'the tag index persisted');
    assert.equal(store.stats().objects, 1);
    assert.equal(store.orphansCollected, 0);
    await store.close();
  });

  void it('evicts oldest-first: reading an object does not keep it', async () => {
    const dir = await tempDir();
    const store = await LmdbStore.open({ path: dir, maxBytes: 4 * 4500, chunkSize: CRASH_CHUNK_SIZE });
    const metas: ObjectMeta[] = [];
    for (let i = 0; i < 4; i++)
      metas.push(await write(store, objectMeta(`/fifo/${i}`), Buffer.alloc(4000, i)));
    assert.ok(read(store, metas[0]!), 'read the oldest');
    await write(store, objectMeta('/fifo/4'), Buffer.alloc(4000, 4));
    assert.deepEqual(store.variants('/fifo/0'), [], 'still the first to go');
    assert.equal(store.variants('/fifo/1').length, 1);
    assert.equal(store.stats().evictions, 1);
    const audit = store.verify();
    assert.equal(audit.bytes, audit.countedBytes);
    assert.equal(audit.chunks, audit.referencedChunks);
    await store.close();
  });

  void it('a lookup sees every change another instance made to the variants it listed before', async () => {
    // Lookups reuse the last listing of a key while the counters record is unchanged; each
    // change below is made by a second instance (as another worker would) after a listing.
    const dir = await tempDir();
    const a = await LmdbStore.open({ path: dir, maxBytes: 3 * 4500, chunkSize: CRASH_CHUNK_SIZE });
    const b = await LmdbStore.open({ path: dir, maxBytes: 3 * 4500, chunkSize: CRASH_CHUNK_SIZE });
    // Another writer's commit is visible from the reader's next event-loop turn (lmdb-js renews
    // its read snapshot on a timer), as between two processes: wait for it before each look.
    const ids = async (store: LmdbStore): Promise<string[]> => {
      await sleep(5);
      return store
        .variants('/v')
        .map((m) => m.id)
        .sort();
    };

    const plain = await write(b, objectMeta('/v'), Buffer.alloc(4000, 1));
    assert.deepEqual(await ids(a), [plain.id]);
    assert.deepEqual(await ids(a), [plain.id], 'listed again, unchanged');

    const gz = await write(
      b,
      { ...objectMeta('/v'), variant: 'accept-encoding=gzip' },
      Buffer.alloc(4000, 2),
    );
    assert.deepEqual(await ids(a), [plain.id, gz.id].sort(), 'a variant added');

    assert.equal(await b.updateMeta({ ...gz, expiresAt: 5 }), true);
    assert.deepEqual(await ids(a), [plain.id], 'a variant whose new meta has it expired');

    assert.equal(await b.delete('/v', ''), 1);
    assert.deepEqual(await ids(a), [], 'both gone: one deleted, one expired');

    const again = await write(b, objectMeta('/v'), Buffer.alloc(4000, 3));
    assert.deepEqual(await ids(a), [again.id], 'stored again under a new id');
    assert.deepEqual(read(a, a.variants('/v')[0]!), Buffer.alloc(4000, 3));

    // Evicted by writes of other keys (the limit holds three objects).
    for (let i = 0; i < 3; i++) await write(b, objectMeta(`/other/${i}`), Buffer.alloc(4000, 4));
    assert.deepEqual(await ids(a), [], 'evicted');
    await a.close();
    await b.close();
  });

  void it('reads the counters once a turn and still sees its own commit as soon as it resolves', async () => {
    const dir = await tempDir();
    const store = await LmdbStore.open({ path: dir, maxBytes: 1024 * 1024, chunkSize: CRASH_CHUNK_SIZE });
    await write(store, objectMeta('/seed'), Buffer.alloc(10, 1)); // the counters record exists
    // Look up another key in every check phase, so every poll phase starts with the counters
    // already read for its turn: only the store's own commit can end that turn early.
    let looking = true;
    const look = (): void => {
      store.variants('/elsewhere');
      if (looking) setImmediate(look);
    };
    setImmediate(look);
    try {
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(store.variants('/mine'), [], 'listed before the write');
      const stored = await write(store, objectMeta('/mine'), Buffer.alloc(4000, 5));
      // Looked up as soon as the commit resolved, with the turn's counters read before it (lmdb-js
      // resolves a commit in a poll phase; the store also ends the turn on its own 'aftercommit').
      assert.deepEqual(
        store.variants('/mine').map((m) => m.id),
        [stored.id],
        'its own commit, looked up in the same turn',
      );
    } finally {
      looking = false;
      await new Promise((resolve) => setImmediate(resolve));
      await store.close();
    }
  });

  void it('opens a meta it listed in the same run without a re-read, and re-reads it in a later one', async () => {
    const dir = await tempDir();
    const a = await LmdbStore.open({ path: dir, maxBytes: 1024 * 1024, chunkSize: CRASH_CHUNK_SIZE });
    const b = await LmdbStore.open({ path: dir, maxBytes: 1024 * 1024, chunkSize: CRASH_CHUNK_SIZE });
    const stored = await write(b, objectMeta('/o'), Buffer.alloc(4000, 7));
    await sleep(5);
    const [listed] = a.variants('/o');
    assert.equal(listed?.id, stored.id);
    assert.deepEqual(read(a, listed), Buffer.alloc(4000, 7), 'opened in the run that listed it');
    // Replaced by another instance: a later run must not open the old meta from the old listing.
    const replaced = await write(b, objectMeta('/o'), Buffer.alloc(4000, 8));
    await sleep(5);
    assert.equal(a.open(listed), undefined, 'the listed body was replaced');
    const [now] = a.variants('/o');
    assert.equal(now?.id, replaced.id);
    assert.deepEqual(read(a, now), Buffer.alloc(4000, 8));
    // Deleted by another instance after a listing: gone in the next run.
    assert.equal(await b.delete('/o'), 1);
    await sleep(5);
    assert.equal(a.open(now), undefined, 'deleted');
    await a.close();
    await b.close();
  });

  void it('drops an expired object on access and frees its bytes', async () => {
    const dir = await tempDir();
    let now = 1_000;
    const store = await LmdbStore.open({ path: dir, maxBytes: 1024 * 1024, now: () => now });
    await write(store, { ...objectMeta('/ttl'), expiresAt: 2_000 }, Buffer.alloc(3000));
    now = 2_000;
    assert.deepEqual(store.variants('/ttl'), []);
    // Transactions run in order: once a later one resolves, the queued drop has run.
    await store.delete('/unrelated');
    assert.equal(store.stats().objects, 0);
    assert.equal(store.stats().bytes, 0);
    assert.equal(store.verify().chunks, 0);
    await store.close();
  });

  void it('throws CAIRN_ERR_CACHE_STORE_OPEN with the cause when the path cannot be opened', async () => {
    const dir = await tempDir();
    const file = join(dir, 'not-a-directory');
    await writeFile(file, 'x');
    await assert.rejects(LmdbStore.open({ path: join(file, 'cache'), maxBytes: 1024 }), (error: Error) => {
      assert.equal((error as { code?: unknown }).code, 'CAIRN_ERR_CACHE_STORE_OPEN');
      assert.ok(error.cause instanceof Error, 'the LMDB/fs error is the cause');
      return true;
    });
  });

  void it('is shared by two processes: each reads what the other wrote, counters agree', async () => {
    const dir = await tempDir();
    const store = await LmdbStore.open({ path: dir, maxBytes: 8 * 1024 * 1024, chunkSize: CRASH_CHUNK_SIZE });
    const child = startChild('share', dir);
    const exited = once(child, 'exit');
    const written = await message<{ meta: ObjectMeta }>(child);
    const [theirs] = store.variants('/from-child');
    assert.equal(theirs?.id, written.meta.id);
    assert.deepEqual(read(store, theirs), crashBody(9, 1));
    const mine = await write(store, objectMeta('/from-parent'), crashBody(9, 2));
    const reply = message<{ equal: boolean; id: string; stats: { objects: number; bytes: number } }>(child);
    child.send({ meta: mine });
    const result = await reply;
    assert.equal(result.equal, true, 'the child read the parent object byte for byte');
    assert.equal(result.id, mine.id);
    assert.equal(result.stats.objects, 2);
    assert.deepEqual(result.stats.bytes, store.stats().bytes, 'both processes see one byte count');
    const [code] = await exited;
    assert.equal(code, 0);
    await store.close();
  });

  void it('SIGKILL mid-write never leaves a visible partial object, and orphans are collected on open', async () => {
    const dir = await tempDir();
    const child = startChild('crash', dir);
    const exited = once(child, 'exit');
    const ready = await message<{ committed: number }>(child);
    child.kill('SIGKILL');
    const [, signal] = await exited;
    assert.equal(signal, 'SIGKILL');

    const store = await LmdbStore.open({
      path: dir,
      maxBytes: 256 * 1024 * 1024,
      chunkSize: CRASH_CHUNK_SIZE,
    });
    assert.ok(store.orphansCollected >= 1, 'at least the stalled body was collected');
    let visible = 0;
    for (let writer = 0; writer < CRASH_WRITERS; writer++) {
      let index = 0;
      for (; ; index++) {
        const metas = store.variants(crashKey(writer, index));
        if (metas.length === 0) break;
        const meta = metas[0]!;
        assert.equal(meta.bodyLength, crashLength(writer, index), `${meta.key} length`);
        assert.ok(
          read(store, meta)?.equals(crashBody(writer, index)),
          `${meta.key} is complete and byte-correct`,
        );
        visible++;
      }
      // Each loop commits in order, so what survived is a prefix: nothing after the first gap.
      for (let later = index + 1; later < index + 5; later++) {
        assert.deepEqual(
          store.variants(crashKey(writer, later)),
          [],
          `${crashKey(writer, later)} after a gap`,
        );
      }
    }
    assert.ok(visible >= ready.committed, `${visible} visible, ${ready.committed} committed before the kill`);
    assert.deepEqual(store.variants('/stalled'), []);
    const audit = store.verify();
    assert.equal(audit.objects, visible);
    assert.equal(audit.missingChunks, 0);
    assert.equal(audit.pendingBodies, 0, 'no pending body left');
    assert.equal(audit.chunks, audit.referencedChunks, 'no orphan chunk left');
    assert.equal(audit.bytes, audit.countedBytes, 'the shared byte counter matches the objects');
    await store.close();
  });

  void it('a failing write (file size limit, like a full disk) rejects commit with CAIRN_ERR_CACHE_STORE_WRITE', async () => {
    const dir = await tempDir();
    // lmdb-js grows its map on demand, so a small mapSize never fills up; a file-size limit makes
    // LMDB's writes fail the way a full disk does. `ulimit -f 2048` is 1 or 2 MiB depending on the shell.
    const child = spawn(
      '/bin/sh',
      [
        '-c',
        'ulimit -f 2048 && exec "$0" "$@"',
        process.execPath,
        '--import',
        'tsx',
        CHILD,
        'write-fail',
        dir,
      ],
      { stdio: ['ignore', 'inherit', 'pipe', 'ipc'] },
    );
    let stderr = '';
    child.stderr?.on('data', (data: Buffer) => {
      stderr += data.toString();
    });
    const exited = once(child, 'exit');
    const result = await message<{ code: string; hasCause: boolean; keptId: boolean; keptBody: boolean }>(
      child,
    );
    const [code] = await exited;
    assert.equal(code, 0, stderr);
    assert.equal(result.code, 'CAIRN_ERR_CACHE_STORE_WRITE');
    assert.equal(result.hasCause, true);
    assert.equal(result.keptId, true, 'the earlier object stays');
    assert.equal(result.keptBody, true);

    const store = await LmdbStore.open({ path: dir, maxBytes: 1024 * 1024 * 1024 });
    const [found] = store.variants('/obj');
    assert.deepEqual(read(store, found!), crashBody(1, 1));
    const audit = store.verify();
    assert.equal(audit.objects, 1);
    assert.equal(audit.pendingBodies, 0);
    assert.equal(audit.chunks, audit.referencedChunks, 'the failed body left no chunks behind');
    await store.close();
  });

  void it('rejects body ids it did not make', async () => {
    const dir = await tempDir();
    const store = await LmdbStore.open({ path: dir, maxBytes: 1024 });
    assert.throws(() => store.createWriter(objectMeta('/x'), { id: 'short' }), {
      code: 'CAIRN_ERR_INTERNAL',
    });
    await store.close();
  });

  void it('lends large chunk reads from a pool: a released chunk is reused, never lent twice, a view is ignored', async () => {
    const dir = await tempDir();
    const store = await LmdbStore.open({ path: dir, maxBytes: 4 * 1024 * 1024, chunkSize: 16 * 1024 });
    const bodies = ['/a', '/b', '/c'].map((key, i) => Buffer.alloc(16 * 1024, 0x61 + i));
    const metas = await Promise.all(
      ['/a', '/b', '/c'].map((key, i) => write(store, objectMeta(key), bodies[i]!)),
    );
    const chunkOf = (i: number): Buffer => store.open(metas[i]!)!.chunk(0)!;
    const release = (i: number, chunk: Buffer): void => store.open(metas[i]!)!.release!(chunk);

    const a = chunkOf(0);
    assert.deepEqual(a, bodies[0]);
    release(0, a);
    release(0, a); // a second release of the same Buffer must not put it in the pool twice
    const b = chunkOf(1);
    assert.equal(b.buffer, a.buffer, 'the released buffer is lent again');
    assert.deepEqual(b, bodies[1]);
    const c = chunkOf(2);
    assert.notEqual(c.buffer, b.buffer, 'one release, one reuse: b is still lent');
    assert.deepEqual(b, bodies[1], "reading c did not touch b's bytes");
    assert.deepEqual(c, bodies[2]);

    release(2, c.subarray(0, 100)); // a range's view is not the lent Buffer
    assert.notEqual(chunkOf(0).buffer, c.buffer);
    assert.deepEqual(c, bodies[2]);
    await store.close();
  });
});
