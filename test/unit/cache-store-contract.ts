/**
 * The one contract test suite every `CacheStore` tier must pass (memory, LMDB, tiered).
 *
 * A tier's test file calls `runCacheStoreContract(name, makeStore)`; `makeStore` builds a fresh,
 * empty store honouring the limits and clock it is given, and a `cleanup` that removes anything it
 * created (temp dirs). Reads are asserted to be synchronous: every tier promises that.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CacheStore, CachedObject, MaybePromise, NewObjectMeta, ObjectMeta } from '../../cache/store.ts';

/** Limits the contract needs the store built with. */
export interface ContractLimits {
  readonly maxBytes: number;
  readonly maxObjectBytes: number;
  readonly chunkSize: number;
  /** The store's clock (`expiresAt` is judged against it). */
  readonly now: () => number;
}

export interface ContractStore {
  readonly store: CacheStore;
  readonly cleanup: () => Promise<void>;
  /** How many tiers hold each stored object (stats count an object once per tier). Default 1. */
  readonly copies?: number;
}

export type MakeStore = (limits: ContractLimits) => Promise<ContractStore>;

const CHUNK = 1024;
const LIMITS = { maxBytes: 64 * 1024, maxObjectBytes: 16 * 1024, chunkSize: CHUNK } as const;

/** A body whose every byte depends on `seed` and its position, so any mix-up shows. */
export function patternBody(seed: number, length: number): Buffer {
  const body = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) body[i] = (seed * 131 + i * 7 + (i >> 8)) & 0xff;
  return body;
}

function newMeta(key: string, overrides: Partial<NewObjectMeta> = {}): NewObjectMeta {
  return {
    key,
    variant: '',
    url: `https://example.test${key.startsWith('/') ? key : `/${key}`}`,
    tags: [],
    status: 200,
    headers: { 'content-type': 'application/octet-stream', 'cache-control': 'max-age=60', vary: ['a', 'b'] },
    policy: { v: 1, resh: { 'cache-control': 'max-age=60' } },
    storedAt: 1_000,
    expiresAt: Number.MAX_SAFE_INTEGER,
    ...overrides,
  };
}

async function resolve<T>(value: MaybePromise<T>): Promise<T> {
  return value;
}

function assertSync<T>(value: MaybePromise<T>, what: string): T {
  assert.ok(!(value instanceof Promise), `${what} must complete synchronously`);
  return value;
}

/** Write `body` in pieces of `piece` bytes (honouring backpressure) and commit. */
async function store(cache: CacheStore, meta: NewObjectMeta, body: Buffer, piece = 700): Promise<ObjectMeta> {
  const writer = cache.createWriter(meta);
  for (let offset = 0; offset < body.length; offset += piece) {
    await writer.write(body.subarray(offset, offset + piece));
  }
  return writer.commit();
}

function readBody(object: CachedObject): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < object.chunkCount; i++) {
    const chunk = assertSync(object.chunk(i), 'chunk()');
    assert.ok(chunk !== undefined, `chunk ${i} of ${object.chunkCount} is missing`);
    if (i < object.chunkCount - 1)
      assert.equal(chunk.length, object.meta.chunkSize, `chunk ${i} is not full`);
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

function openBody(cache: CacheStore, meta: ObjectMeta): Buffer | undefined {
  const object = assertSync(cache.open(meta), 'open()');
  return object === undefined ? undefined : readBody(object);
}

function variantsOf(cache: CacheStore, key: string): readonly ObjectMeta[] {
  return assertSync(cache.variants(key), 'variants()');
}

function assertCode(code: string): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.equal((error as { code?: unknown }).code, code, `expected ${code}, got ${String(error)}`);
    return true;
  };
}

/**
 * Register the contract's tests for one tier.
 *
 * @example
 * ```ts
 * runCacheStoreContract('MemoryStore', async (limits) => ({ store: new MemoryStore(limits), cleanup: async () => {} }));
 * ```
 */
export function runCacheStoreContract(name: string, makeStore: MakeStore): void {
  void describe(`CacheStore contract: ${name}`, () => {
    let clock = 1_000_000;
    async function withStore(test: (cache: CacheStore, copies: number) => Promise<void>): Promise<void> {
      const made = await makeStore({ ...LIMITS, now: () => clock });
      try {
        await test(made.store, made.copies ?? 1);
      } finally {
        await made.store.close();
        await made.cleanup();
      }
    }

    void it('starts empty', () =>
      withStore(async (cache) => {
        assert.deepEqual(variantsOf(cache, '/nothing'), []);
        const stats = cache.stats();
        assert.equal(stats.bytes, 0);
        assert.equal(stats.objects, 0);
        assert.equal(stats.evictions, 0);
        assert.ok(stats.maxBytes >= LIMITS.maxBytes);
        assert.equal(typeof cache.tier, 'string');
      }));

    void it('stores meta as given and fills in bodyLength, chunkSize and id', () =>
      withStore(async (cache) => {
        const input = newMeta('/meta', { tags: ['t1', 't2'], status: 203 });
        const body = patternBody(1, 100);
        const meta = await store(cache, input, body);
        assert.equal(meta.bodyLength, 100);
        assert.equal(meta.chunkSize, CHUNK);
        assert.equal(typeof meta.id, 'string');
        assert.ok(meta.id.length > 0);
        const [found, ...rest] = variantsOf(cache, '/meta');
        assert.equal(rest.length, 0);
        assert.deepEqual(found, meta);
        assert.deepEqual(
          { ...found, bodyLength: 0, chunkSize: 0, id: '' },
          { ...input, bodyLength: 0, chunkSize: 0, id: '' },
        );
        assert.deepEqual(openBody(cache, meta), body);
      }));

    void it('reads bodies spanning several chunks, written in pieces that do not align with chunks', () =>
      withStore(async (cache) => {
        for (const [seed, length, piece] of [
          [2, CHUNK * 3 + 17, 700],
          [3, CHUNK * 4, CHUNK],
          [4, CHUNK * 2 + 1, 5000],
          [5, CHUNK - 1, 1],
        ] as const) {
          const body = patternBody(seed, length);
          const meta = await store(cache, newMeta(`/multi/${seed}`), body, piece);
          const object = assertSync(cache.open(meta), 'open()');
          assert.ok(object);
          assert.equal(object.chunkCount, Math.ceil(length / CHUNK));
          assert.deepEqual(readBody(object), body);
          assert.equal(
            assertSync(object.chunk(object.chunkCount), 'chunk()'),
            undefined,
            'no chunk past the end',
          );
        }
      }));

    void it('stores an empty body as zero chunks', () =>
      withStore(async (cache) => {
        const meta = await store(cache, newMeta('/empty', { status: 204 }), Buffer.alloc(0));
        assert.equal(meta.bodyLength, 0);
        const object = assertSync(cache.open(meta), 'open()');
        assert.ok(object);
        assert.equal(object.chunkCount, 0);
        assert.equal(object.meta.status, 204);
        assert.deepEqual(readBody(object), Buffer.alloc(0));
      }));

    void it('makes nothing visible before commit() resolves', () =>
      withStore(async (cache, copies) => {
        const writer = cache.createWriter(newMeta('/pending'));
        await writer.write(patternBody(6, CHUNK * 3));
        assert.deepEqual(variantsOf(cache, '/pending'), []);
        assert.equal(cache.stats().objects, 0);
        const meta = await writer.commit();
        assert.equal(variantsOf(cache, '/pending').length, 1);
        assert.equal(cache.stats().objects, copies);
        assert.deepEqual(openBody(cache, meta), patternBody(6, CHUNK * 3));
      }));

    void it('abort() drops the write, is idempotent, and a later commit() rejects', () =>
      withStore(async (cache) => {
        const earlier = await store(cache, newMeta('/abort'), patternBody(7, 500));
        const writer = cache.createWriter(newMeta('/abort'));
        await writer.write(patternBody(8, CHUNK * 2 + 3));
        writer.abort();
        writer.abort();
        await assert.rejects(writer.commit());
        const [meta] = variantsOf(cache, '/abort');
        assert.equal(meta?.id, earlier.id);
        assert.deepEqual(openBody(cache, earlier), patternBody(7, 500));
      }));

    void it('keeps variants of one key apart', () =>
      withStore(async (cache) => {
        const gzip = await store(cache, newMeta('/vary', { variant: 'gzip' }), patternBody(9, 1500));
        const br = await store(cache, newMeta('/vary', { variant: 'br' }), patternBody(10, 2500));
        const plain = await store(cache, newMeta('/vary'), patternBody(11, 10));
        const found = variantsOf(cache, '/vary');
        assert.deepEqual(found.map((m) => m.variant).sort(), ['', 'br', 'gzip']);
        assert.deepEqual(openBody(cache, gzip), patternBody(9, 1500));
        assert.deepEqual(openBody(cache, br), patternBody(10, 2500));
        assert.deepEqual(openBody(cache, plain), patternBody(11, 10));
        assert.deepEqual(variantsOf(cache, '/vary/other'), [], 'a key is not a prefix match');
      }));

    void it('replaces an object with the same key and variant, and forgets the old id', () =>
      withStore(async (cache, copies) => {
        const first = await store(cache, newMeta('/replace'), patternBody(12, CHUNK * 3));
        const second = await store(cache, newMeta('/replace', { storedAt: 2_000 }), patternBody(13, 200));
        assert.notEqual(first.id, second.id);
        const found = variantsOf(cache, '/replace');
        assert.equal(found.length, 1);
        assert.equal(found[0]?.id, second.id);
        assert.equal(assertSync(cache.open(first), 'open()'), undefined, 'the replaced object is gone');
        assert.deepEqual(openBody(cache, second), patternBody(13, 200));
        assert.equal(cache.stats().objects, copies);
      }));

    void it('the last of two concurrent writers of one key wins', () =>
      withStore(async (cache) => {
        const a = cache.createWriter(newMeta('/race'));
        const b = cache.createWriter(newMeta('/race'));
        await a.write(patternBody(14, 3000));
        await b.write(patternBody(15, 2000));
        await b.commit();
        const last = await a.commit();
        const found = variantsOf(cache, '/race');
        assert.equal(found.length, 1);
        assert.equal(found[0]?.id, last.id);
        assert.deepEqual(openBody(cache, last), patternBody(14, 3000));
      }));

    void it('open() is undefined for an unknown id or key', () =>
      withStore(async (cache) => {
        const meta = await store(cache, newMeta('/open'), patternBody(16, 10));
        assert.equal(assertSync(cache.open({ ...meta, id: 'AAAAAAAAAAAAAAAAAAAAAA' }), 'open()'), undefined);
        assert.equal(assertSync(cache.open({ ...meta, key: '/other' }), 'open()'), undefined);
        assert.equal(assertSync(cache.open({ ...meta, variant: 'x' }), 'open()'), undefined);
      }));

    void it('updateMeta() replaces the meta and keeps the body; false when the object is gone', () =>
      withStore(async (cache) => {
        const body = patternBody(17, CHUNK * 2 + 9);
        const meta = await store(cache, newMeta('/update', { tags: ['old'] }), body);
        const updated: ObjectMeta = {
          ...meta,
          headers: { ...meta.headers, etag: '"v2"' },
          tags: ['new'],
          storedAt: 5_000,
          // A caller cannot change the stored body's length through its meta.
          bodyLength: 1,
        };
        assert.equal(await resolve(cache.updateMeta(updated)), true);
        const [found] = variantsOf(cache, '/update');
        assert.equal(found?.headers.etag, '"v2"');
        assert.equal(found?.storedAt, 5_000);
        assert.equal(found?.bodyLength, body.length);
        assert.equal(found?.id, meta.id);
        assert.deepEqual(openBody(cache, found), body);
        assert.deepEqual(openBody(cache, meta), body, 'the old meta (same id) still opens the body');
        assert.equal(await resolve(cache.purgeTag('old')), 0, 'the old tags are forgotten');
        assert.equal(await resolve(cache.updateMeta({ ...updated, id: 'AAAAAAAAAAAAAAAAAAAAAA' })), false);
        assert.equal(await resolve(cache.updateMeta({ ...updated, key: '/gone' })), false);
        assert.equal(await resolve(cache.purgeTag('new')), 1, 'the new tags are indexed');
        assert.equal(await resolve(cache.updateMeta(updated)), false);
      }));

    void it('delete() removes one variant or all of them', () =>
      withStore(async (cache) => {
        const a = await store(cache, newMeta('/del', { variant: 'a' }), patternBody(18, 100));
        await store(cache, newMeta('/del', { variant: 'b' }), patternBody(19, 100));
        await store(cache, newMeta('/del', { variant: 'c' }), patternBody(20, 100));
        const keep = await store(cache, newMeta('/del-other'), patternBody(21, 100));
        assert.equal(await resolve(cache.delete('/del', 'a')), 1);
        assert.equal(assertSync(cache.open(a), 'open()'), undefined);
        assert.deepEqual(
          variantsOf(cache, '/del')
            .map((m) => m.variant)
            .sort(),
          ['b', 'c'],
        );
        assert.equal(await resolve(cache.delete('/del', 'a')), 0);
        assert.equal(await resolve(cache.delete('/del')), 2);
        assert.deepEqual(variantsOf(cache, '/del'), []);
        assert.equal(await resolve(cache.delete('/missing')), 0);
        assert.deepEqual(openBody(cache, keep), patternBody(21, 100));
      }));

    void it('purgeTag() removes exactly the objects carrying the tag', () =>
      withStore(async (cache) => {
        await store(cache, newMeta('/tag/1', { tags: ['red', 'blue'] }), patternBody(22, 10));
        await store(cache, newMeta('/tag/2', { tags: ['red'], variant: 'v' }), patternBody(23, 10));
        const blue = await store(cache, newMeta('/tag/3', { tags: ['blue'] }), patternBody(24, 10));
        assert.equal(await resolve(cache.purgeTag('red')), 2);
        assert.deepEqual(variantsOf(cache, '/tag/1'), []);
        assert.deepEqual(variantsOf(cache, '/tag/2'), []);
        assert.equal(variantsOf(cache, '/tag/3').length, 1);
        assert.equal(await resolve(cache.purgeTag('red')), 0);
        assert.equal(await resolve(cache.purgeTag('blu')), 0, 'tags match exactly');
        assert.deepEqual(openBody(cache, blue), patternBody(24, 10));
      }));

    void it('purgePrefix() removes every object whose URL starts with the prefix', () =>
      withStore(async (cache) => {
        await store(cache, newMeta('/img/a.png'), patternBody(25, 10));
        await store(cache, newMeta('/img/b/c.png', { variant: 'x' }), patternBody(26, 10));
        await store(cache, newMeta('/imgs/d.png'), patternBody(27, 10));
        await store(cache, newMeta('/css/e.css'), patternBody(28, 10));
        assert.equal(await resolve(cache.purgePrefix('https://example.test/img/')), 2);
        assert.deepEqual(variantsOf(cache, '/img/a.png'), []);
        assert.deepEqual(variantsOf(cache, '/img/b/c.png'), []);
        assert.equal(variantsOf(cache, '/imgs/d.png').length, 1);
        assert.equal(variantsOf(cache, '/css/e.css').length, 1);
        assert.equal(await resolve(cache.purgePrefix('https://other.test/')), 0);
        assert.equal(await resolve(cache.purgePrefix('https://example.test/')), 2);
        assert.equal(cache.stats().objects, 0);
      }));

    void it('refuses an object over maxObjectBytes and keeps the earlier one', () =>
      withStore(async (cache) => {
        const earlier = await store(cache, newMeta('/big'), patternBody(29, 100));
        await assert.rejects(
          store(cache, newMeta('/big'), patternBody(30, LIMITS.maxObjectBytes + 1)),
          assertCode('CAIRN_ERR_CACHE_OBJECT_TOO_LARGE'),
        );
        const [found] = variantsOf(cache, '/big');
        assert.equal(found?.id, earlier.id);
        assert.deepEqual(openBody(cache, earlier), patternBody(29, 100));
        // Exactly at the limit is allowed.
        const atLimit = await store(cache, newMeta('/big'), patternBody(31, LIMITS.maxObjectBytes));
        assert.deepEqual(openBody(cache, atLimit), patternBody(31, LIMITS.maxObjectBytes));
      }));

    void it('evicts to stay under maxBytes, oldest unused first, and counts evictions', () =>
      withStore(async (cache, copies) => {
        const size = 10 * 1024;
        const metas: ObjectMeta[] = [];
        for (let i = 0; i < 12; i++)
          metas.push(await store(cache, newMeta(`/evict/${i}`), patternBody(100 + i, size)));
        const stats = cache.stats();
        assert.ok(stats.bytes <= stats.maxBytes, `${stats.bytes} > ${stats.maxBytes}`);
        assert.ok(stats.evictions > 0, 'something was evicted');
        assert.ok(stats.objects >= copies * 3, 'eviction stops once the new object fits');
        assert.deepEqual(variantsOf(cache, '/evict/0'), [], 'the oldest object is evicted');
        assert.equal(assertSync(cache.open(metas[0]!), 'open()'), undefined);
        const newest = metas[11]!;
        assert.deepEqual(openBody(cache, newest), patternBody(111, size), 'the newest object is kept intact');
      }));

    void it('stats() count objects and bytes, and return to zero when emptied', () =>
      withStore(async (cache, copies) => {
        await store(cache, newMeta('/stats/1'), patternBody(32, 3000));
        await store(cache, newMeta('/stats/2'), patternBody(33, 5000));
        let stats = cache.stats();
        assert.equal(stats.objects, 2 * copies);
        assert.ok(stats.bytes >= 8000 * copies, `bytes ${stats.bytes} count the bodies`);
        assert.ok(
          stats.bytes < 8000 * copies + 4096 * copies,
          `bytes ${stats.bytes} only add a meta estimate`,
        );
        await resolve(cache.delete('/stats/1'));
        await resolve(cache.delete('/stats/2'));
        stats = cache.stats();
        assert.equal(stats.objects, 0);
        assert.equal(stats.bytes, 0);
        assert.equal(stats.evictions, 0, 'deletes are not evictions');
      }));

    void it('hides objects past expiresAt', () =>
      withStore(async (cache) => {
        const meta = await store(
          cache,
          newMeta('/expires', { expiresAt: clock + 1_000 }),
          patternBody(34, 2000),
        );
        assert.equal(variantsOf(cache, '/expires').length, 1);
        clock += 1_000;
        assert.deepEqual(variantsOf(cache, '/expires'), []);
        assert.equal(assertSync(cache.open(meta), 'open()'), undefined);
      }));
  });
}
