import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { LmdbStore } from '../../cache/lmdb-store.ts';
import { MemoryStore } from '../../cache/memory-store.ts';
import type { NewObjectMeta, ObjectMeta } from '../../cache/store.ts';
import type { SyncCachedObject } from '../../cache/store-util.ts';
import { TieredStore } from '../../cache/tiered-store.ts';
import { patternBody, runCacheStoreContract } from '../unit/cache-store-contract.ts';

const dirs: string[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-tiered-'));
  dirs.push(dir);
  return dir;
}

after(async () => {
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

runCacheStoreContract('TieredStore (memory over LMDB)', async (limits) => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-tiered-contract-'));
  return {
    store: await TieredStore.open({ memory: limits, disk: { path: dir, ...limits } }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
    copies: 2,
  };
});

runCacheStoreContract('TieredStore (disk tier failed to open: memory only)', async (limits) => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-tiered-contract-'));
  await writeFile(join(dir, 'file'), 'x');
  const store = await TieredStore.open({
    memory: limits,
    disk: { path: join(dir, 'file', 'db'), ...limits },
  });
  assert.equal(store.diskError?.code, 'CAIRN_ERR_CACHE_STORE_OPEN');
  return { store, cleanup: () => rm(dir, { recursive: true, force: true }) };
});

function meta(key: string): NewObjectMeta {
  return {
    key,
    variant: '',
    url: `https://example.test${key}`,
    tags: ['t'],
    status: 200,
    headers: {},
    policy: null,
    storedAt: 0,
    expiresAt: Number.MAX_SAFE_INTEGER,
  };
}

async function write(
  store: { createWriter: TieredStore['createWriter'] },
  m: NewObjectMeta,
  body: Buffer,
): Promise<ObjectMeta> {
  const writer = store.createWriter(m);
  for (let offset = 0; offset < body.length; offset += 700)
    await writer.write(body.subarray(offset, offset + 700));
  return writer.commit();
}

function read(object: SyncCachedObject | undefined): Buffer | undefined {
  if (object === undefined) return undefined;
  return Buffer.concat(Array.from({ length: object.chunkCount }, (_, i) => object.chunk(i)!));
}

async function openTiered(memoryMaxObjectBytes = 4096): Promise<TieredStore> {
  const dir = await tempDir();
  return TieredStore.open({
    memory: { maxBytes: 64 * 1024, maxObjectBytes: memoryMaxObjectBytes, chunkSize: 1024 },
    disk: { path: dir, maxBytes: 1024 * 1024, chunkSize: 1024 },
  });
}

void describe('TieredStore', () => {
  void it('writes small objects to both tiers under one id', async () => {
    const store = await openTiered();
    const stored = await write(store, meta('/small'), patternBody(1, 3000));
    assert.equal(store.memory.variants('/small')[0]?.id, stored.id);
    assert.equal(store.disk?.variants('/small')[0]?.id, stored.id);
    assert.deepEqual(read(store.disk?.open(stored)), patternBody(1, 3000));
    assert.deepEqual(
      store.tiers().map(({ tier, objects }) => [tier, objects]),
      [
        ['memory', 1],
        ['disk', 1],
      ],
    );
    await store.close();
  });

  void it('writes objects over the memory tier maxObjectBytes to disk only, and serves them from disk', async () => {
    const store = await openTiered(4096);
    const body = patternBody(2, 10_000);
    const stored = await write(store, meta('/large'), body);
    assert.deepEqual(store.memory.variants('/large'), []);
    assert.equal(store.memory.stats().bytes, 0, 'nothing of it was kept in memory');
    assert.equal(store.disk?.variants('/large').length, 1);
    assert.deepEqual(read(store.open(stored)), body);
    assert.deepEqual(store.memory.variants('/large'), [], 'too large to promote');
    await store.close();
  });

  void it('promotes a disk hit into memory', async () => {
    const store = await openTiered();
    const stored = await write(store, meta('/promote'), patternBody(3, 2500));
    store.memory.delete('/promote'); // as if memory had evicted it
    assert.deepEqual(store.memory.variants('/promote'), []);
    const [found] = store.variants('/promote');
    assert.equal(found?.id, stored.id, 'found on disk');
    assert.deepEqual(read(store.open(found)), patternBody(3, 2500));
    const [promoted] = store.memory.variants('/promote');
    assert.equal(promoted?.id, stored.id, 'now in memory, same id');
    assert.deepEqual(read(store.memory.open(promoted)), patternBody(3, 2500));
    await store.close();
  });

  void it('replacing a small object with a large one leaves no stale copy in memory', async () => {
    const store = await openTiered(4096);
    await write(store, meta('/grow'), patternBody(4, 1000));
    const large = await write(store, meta('/grow'), patternBody(5, 9000));
    assert.deepEqual(store.memory.variants('/grow'), []);
    const found = store.variants('/grow');
    assert.deepEqual(
      found.map((m) => m.id),
      [large.id],
    );
    assert.deepEqual(read(store.open(found[0]!)), patternBody(5, 9000));
    await store.close();
  });

  void it('merges variants held by different tiers', async () => {
    const store = await openTiered(4096);
    await write(store, { ...meta('/v'), variant: 'small' }, patternBody(6, 100));
    await write(store, { ...meta('/v'), variant: 'large' }, patternBody(7, 8000));
    assert.deepEqual(
      store.memory.variants('/v').map((m) => m.variant),
      ['small'],
    );
    assert.deepEqual(
      store
        .variants('/v')
        .map((m) => m.variant)
        .sort(),
      ['large', 'small'],
    );
    await store.close();
  });

  void it('variantsFor reads the disk only when memory holds no selected variant', async () => {
    const store = await openTiered(4096);
    await write(store, { ...meta('/sel'), variant: 'small' }, patternBody(6, 100));
    const large = await write(store, { ...meta('/sel'), variant: 'large' }, patternBody(7, 8000));
    const disk = store.disk!;
    let diskReads = 0;
    const variants = disk.variants.bind(disk);
    disk.variants = (key) => {
      diskReads++;
      return variants(key);
    };
    const small = store.variantsFor('/sel', (m) => m.variant === 'small');
    assert.deepEqual(
      small.map((m) => m.variant),
      ['small'],
    );
    assert.equal(diskReads, 0, 'a memory hit does not read the disk');
    const found = store.variantsFor('/sel', (m) => m.variant === 'large');
    assert.equal(found.find((m) => m.variant === 'large')?.id, large.id);
    assert.equal(diskReads, 1, 'a variant only the disk holds is found there');
    assert.deepEqual(
      store.variantsFor('/sel', (m) => m.variant === 'other'),
      store.variants('/sel'),
      'no selected variant: all of them',
    );
    await store.close();
  });

  void it('purges and meta updates reach both tiers', async () => {
    const store = await openTiered();
    const stored = await write(store, meta('/both'), patternBody(8, 500));
    assert.equal(await store.updateMeta({ ...stored, headers: { etag: '"2"' } }), true);
    assert.equal(store.memory.variants('/both')[0]?.headers.etag, '"2"');
    assert.equal(store.disk?.variants('/both')[0]?.headers.etag, '"2"');
    assert.equal(await store.purgeTag('t'), 1);
    assert.deepEqual(store.memory.variants('/both'), []);
    assert.deepEqual(store.disk?.variants('/both'), []);
    await store.close();
  });

  void it('sums tier stats and exposes each tier', async () => {
    const store = await openTiered();
    await write(store, meta('/s'), patternBody(9, 2000));
    const [memory, disk] = store.tiers();
    assert.equal(memory?.tier, 'memory');
    assert.equal(disk?.tier, 'disk');
    const total = store.stats();
    assert.equal(total.objects, (memory?.objects ?? 0) + (disk?.objects ?? 0));
    assert.equal(total.bytes, (memory?.bytes ?? 0) + (disk?.bytes ?? 0));
    assert.equal(total.maxBytes, 64 * 1024 + 1024 * 1024);
    await store.close();
  });

  void it('runs memory-only when the disk tier cannot be opened', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'file'), 'x');
    const store = await TieredStore.open({
      memory: { maxBytes: 64 * 1024 },
      disk: { path: join(dir, 'file', 'db'), maxBytes: 1024 * 1024 },
    });
    assert.equal(store.disk, undefined);
    assert.equal(store.diskError?.code, 'CAIRN_ERR_CACHE_STORE_OPEN');
    assert.ok(store.diskError?.cause instanceof Error);
    const stored = await write(store, meta('/mem'), patternBody(10, 3000));
    assert.deepEqual(read(store.open(stored)), patternBody(10, 3000));
    assert.deepEqual(
      store.tiers().map((t) => t.tier),
      ['memory'],
    );
    await store.close();
  });

  void it('reopening the disk tier brings objects back after a restart', async () => {
    const dir = await tempDir();
    const options = { memory: { maxBytes: 64 * 1024 }, disk: { path: dir, maxBytes: 1024 * 1024 } };
    let store = await TieredStore.open(options);
    const stored = await write(store, meta('/restart'), patternBody(11, 2000));
    await store.close();
    store = await TieredStore.open(options);
    assert.deepEqual(store.memory.variants('/restart'), []);
    assert.deepEqual(read(store.open(stored)), patternBody(11, 2000));
    assert.equal(store.memory.variants('/restart').length, 1, 'promoted on the first hit');
    await store.close();
  });

  void it('a disk tier can also be given directly', async () => {
    const dir = await tempDir();
    const disk = await LmdbStore.open({ path: dir, maxBytes: 1024 * 1024 });
    const store = new TieredStore(new MemoryStore({ maxBytes: 1024 * 1024 }), disk);
    const stored = await write(store, meta('/direct'), patternBody(12, 10));
    assert.equal(disk.variants('/direct')[0]?.id, stored.id);
    await store.close();
  });
});
