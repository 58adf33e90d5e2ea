import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryStore } from '../../cache/memory-store.ts';
import type { NewObjectMeta } from '../../cache/store.ts';
import { patternBody, runCacheStoreContract } from './cache-store-contract.ts';

runCacheStoreContract('MemoryStore', async (limits) => ({
  store: new MemoryStore(limits),
  cleanup: async () => {},
}));

function meta(key: string): NewObjectMeta {
  return {
    key,
    variant: '',
    url: `https://example.test${key}`,
    tags: [],
    status: 200,
    headers: {},
    policy: null,
    storedAt: 0,
    expiresAt: Number.MAX_SAFE_INTEGER,
  };
}

async function put(store: MemoryStore, key: string, size: number): Promise<void> {
  const writer = store.createWriter(meta(key));
  await writer.write(patternBody(size, size));
  await writer.commit();
}

void describe('MemoryStore', () => {
  void it('evicts the least recently opened object, not the oldest', async () => {
    const store = new MemoryStore({ maxBytes: 4 * 1200, maxObjectBytes: 2000, chunkSize: 512 });
    for (const key of ['/a', '/b', '/c', '/d']) await put(store, key, 1000);
    const [a] = store.variants('/a');
    assert.ok(store.open(a!), 'opening /a makes it the most recently used');
    await put(store, '/e', 1000);
    assert.equal(store.variants('/a').length, 1, '/a survived');
    assert.deepEqual(store.variants('/b'), [], '/b, now the least recently used, was evicted');
    assert.equal(store.stats().evictions, 1);
  });

  void it('lets a reader finish an object that is evicted while it reads', async () => {
    const store = new MemoryStore({ maxBytes: 3000, chunkSize: 512 });
    await put(store, '/reading', 2000);
    const object = store.open(store.variants('/reading')[0]!);
    assert.ok(object);
    await put(store, '/other', 2000);
    assert.deepEqual(store.variants('/reading'), []);
    const parts = Array.from({ length: object.chunkCount }, (_, i) => object.chunk(i) as Buffer);
    assert.deepEqual(Buffer.concat(parts), patternBody(2000, 2000));
  });

  void it('drops expired objects on access and frees their bytes', async () => {
    let now = 0;
    const store = new MemoryStore({ maxBytes: 10_000, now: () => now });
    const writer = store.createWriter({ ...meta('/ttl'), expiresAt: 100 });
    await writer.write(Buffer.alloc(500));
    const stored = await writer.commit();
    assert.equal(store.stats().objects, 1);
    now = 100;
    assert.equal(store.open(stored), undefined);
    assert.deepEqual(store.stats(), { bytes: 0, objects: 0, evictions: 0, maxBytes: 10_000 });
  });

  void it('admit() stores a complete object under its own id and chunking', () => {
    const store = new MemoryStore({ maxBytes: 10_000, maxObjectBytes: 1000, chunkSize: 512 });
    const chunks = [Buffer.alloc(300, 1), Buffer.alloc(100, 2)];
    const full = { ...meta('/admit'), bodyLength: 400, chunkSize: 300, id: 'AAAAAAAAAAAAAAAAAAAAAA' };
    const object = store.admit(full, chunks);
    assert.equal(object?.chunkCount, 2);
    assert.equal(store.open(full)?.chunk(1), chunks[1]);
    assert.equal(store.admit({ ...full, key: '/too-big', bodyLength: 1001 }, chunks), undefined);
  });

  void it('rejects invalid limits with a config error naming the option', () => {
    assert.throws(
      () => new MemoryStore({ maxBytes: 0 }),
      (error: Error & { code?: string }) =>
        error.code === 'CAIRN_ERR_CONFIG_INVALID' && /maxBytes/.test(error.message),
    );
    assert.throws(() => new MemoryStore({ maxBytes: 10, chunkSize: 1.5 }), /chunkSize/);
  });
});
