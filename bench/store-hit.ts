/**
 * Micro-benchmark: ns per cache hit in the store, the calls the hit path makes
 * (`variants(key)` → `open(meta)` → every `chunk(i)`), for the memory tier and the LMDB tier of a
 * `TieredStore`, 1 KiB and 64 KiB objects. In-process and deterministic (no HTTP, no load
 * generator): it isolates the store's share of a hit, which a noisy machine hides in the
 * end-to-end numbers of bench/cache-hit.ts. Prints one line per case; writes nothing.
 *
 *   node --import tsx bench/store-hit.ts [--iterations 200000] [--rounds 5]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { TieredStore } from '../cache/tiered-store.ts';
import type { CachedObject, NewObjectMeta } from '../cache/store.ts';
import { median } from './lib/stats.ts';

const { values } = parseArgs({
  options: { iterations: { type: 'string', default: '200000' }, rounds: { type: 'string', default: '5' } },
});
const iterations = Number(values.iterations);
const rounds = Number(values.rounds);

function newMeta(key: string, size: number): NewObjectMeta {
  const now = Date.now();
  return {
    key,
    variant: '',
    url: key,
    tags: [],
    status: 200,
    headers: {
      'content-type': 'application/octet-stream',
      'content-length': String(size),
      'cache-control': 'public, max-age=3600',
      date: new Date(now).toUTCString(),
    },
    policy: {
      v: 1,
      status: 200,
      responseTime: now,
      initialAge: 0,
      lifetime: 3600,
      heuristic: false,
      swr: 0,
      sie: 0,
      noCache: false,
      mustRevalidate: false,
      hasValidator: false,
    },
    storedAt: now,
    expiresAt: now + 3_600_000,
  };
}

async function store(tmp: string, memoryOnly: boolean): Promise<TieredStore> {
  return TieredStore.open({
    // maxObjectBytes below 1 KiB: nothing fits in memory, every hit reads LMDB.
    memory: memoryOnly ? { maxBytes: 64 * 2 ** 20 } : { maxBytes: 64 * 2 ** 20, maxObjectBytes: 512 },
    ...(memoryOnly ? {} : { disk: { path: path.join(tmp, 'lmdb'), maxBytes: 2 ** 30 } }),
  });
}

function hit(s: TieredStore, key: string): number {
  const variants = s.variants(key);
  const meta = variants[0]!;
  const object = s.open(meta) as CachedObject;
  let bytes = 0;
  for (let i = 0; i < object.chunkCount; i++) bytes += (object.chunk(i) as Buffer).length;
  return bytes;
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'cairn-store-hit-'));
try {
  for (const tier of ['memory', 'lmdb'] as const) {
    const s = await store(tmp, tier === 'memory');
    for (const size of [1024, 65536]) {
      const key = `http://bench.test/cacheable/${size}`;
      const w = s.createWriter(newMeta(key, size));
      await w.write(Buffer.alloc(size, 'x'));
      await w.commit();
      if (hit(s, key) !== size) throw new Error('bad hit');
      const ns: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < iterations; i++) hit(s, key);
        ns.push(Number(process.hrtime.bigint() - t0) / iterations);
      }
      console.log(
        `${tier.padEnd(6)} ${String(size).padStart(6)} B  ${median(ns).toFixed(0).padStart(6)} ns/hit (median of ${rounds} x ${iterations}; min ${Math.min(...ns).toFixed(0)})`,
      );
    }
    await s.close();
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
