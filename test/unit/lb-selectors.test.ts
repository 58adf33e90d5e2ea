/**
 * One contract suite, run against every selector (like undici's one cache-store suite for each
 * store): empty and all-down give undefined, unusable and tried backends are skipped, picks are
 * proportional to weight (exactly for the deterministic ones, within a fixed statistical bound for
 * the random ones, which use a seeded generator so the outcome is reproducible), and determinism.
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createBackend, type Backend } from '../../src/lb/backend.ts';
import {
  ALGORITHMS,
  createSelector,
  type Algorithm,
  type BackendStatus,
  type Selector,
} from '../../src/lb/selector.ts';

/** xorshift32: a seeded uniform [0, 1) source. */
function seeded(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

class TestStatus implements BackendStatus {
  readonly up: boolean[];
  readonly load: number[];
  constructor(n: number) {
    this.up = new Array<boolean>(n).fill(true);
    this.load = new Array<number>(n).fill(0);
  }
  isUsable(index: number): boolean {
    return this.up[index]!;
  }
  inFlight(index: number): number {
    return this.load[index]!;
  }
}

function backends(weights: readonly number[]): Backend[] {
  return weights.map((weight, i) => createBackend({ address: `10.0.0.${i + 1}:8080`, weight }));
}

/** Exact proportionality is promised by the deterministic algorithms. */
const EXACT: ReadonlySet<Algorithm> = new Set(['round-robin', 'weighted-round-robin', 'least-connections']);

function make(algorithm: Algorithm, list: readonly Backend[], status: BackendStatus, seed = 42): Selector {
  return createSelector(algorithm, list, status, { random: seeded(seed) });
}

/** Picks for `n` calls; ketama gets a distinct key per call (so it spreads), others no key. */
function counts(selector: Selector, n: number, keyPrefix = 'key-'): Map<Backend | undefined, number> {
  const out = new Map<Backend | undefined, number>();
  for (let i = 0; i < n; i++) {
    const b = selector.select(`${keyPrefix}${i}`);
    out.set(b, (out.get(b) ?? 0) + 1);
  }
  return out;
}

for (const algorithm of ALGORITHMS) {
  void describe(`selector contract: ${algorithm}`, () => {
    void test('no backends -> undefined', () => {
      assert.equal(make(algorithm, [], new TestStatus(0)).select('k'), undefined);
    });

    void test('all backends down -> undefined', () => {
      const list = backends([1, 2, 3]);
      const status = new TestStatus(3);
      status.up.fill(false);
      const s = make(algorithm, list, status);
      for (let i = 0; i < 10; i++) assert.equal(s.select(`k${i}`), undefined);
    });

    void test('one backend -> always that one', () => {
      const list = backends([3]);
      const s = make(algorithm, list, new TestStatus(1));
      for (let i = 0; i < 10; i++) assert.equal(s.select(`k${i}`), list[0]);
    });

    void test('picks are proportional to weight', () => {
      const weights = [1, 2, 3, 4];
      const list = backends(weights);
      const total = 10;
      const n = total * 4000;
      const got = counts(make(algorithm, list, new TestStatus(4)), n);
      assert.equal(got.get(undefined), undefined);
      for (let i = 0; i < list.length; i++) {
        const expected = (n * weights[i]!) / total;
        const actual = got.get(list[i]) ?? 0;
        if (EXACT.has(algorithm)) {
          assert.equal(actual, expected, `${list[i]!.id}`);
        } else {
          // Random: 4 sigma is < 3% here; ketama: 160 points per weight unit put shares within ~25%.
          const tolerance = algorithm === 'ketama' ? 0.25 : 0.05;
          assert.ok(
            Math.abs(actual - expected) <= expected * tolerance,
            `${list[i]!.id}: ${actual} vs ${expected}`,
          );
        }
      }
    });

    void test('unusable backends are skipped; the rest keep their proportions', () => {
      const weights = [1, 2, 3, 4];
      const list = backends(weights);
      const status = new TestStatus(4);
      status.up[2] = false;
      const n = 7 * 3000;
      const got = counts(make(algorithm, list, status), n);
      assert.equal(got.get(list[2]), undefined, 'down backend never picked');
      assert.equal(got.get(undefined), undefined, 'a usable backend is always found');
      for (const i of [0, 1, 3]) {
        const expected = (n * weights[i]!) / 7;
        const actual = got.get(list[i]) ?? 0;
        if (EXACT.has(algorithm)) assert.equal(actual, expected);
        else
          assert.ok(
            Math.abs(actual - expected) <= expected * (algorithm === 'ketama' ? 0.35 : 0.05),
            `${actual} vs ${expected}`,
          );
      }
    });

    void test('tried backends are skipped (retries go elsewhere)', () => {
      const list = backends([1, 1, 1]);
      const s = make(algorithm, list, new TestStatus(3));
      const tried = new Set<Backend>([list[0]!, list[1]!]);
      for (let i = 0; i < 20; i++) assert.equal(s.select(`k${i}`, { tried }), list[2]);
      tried.add(list[2]!);
      assert.equal(s.select('k', { tried }), undefined);
    });

    void test('a backend coming back up is picked again', () => {
      const list = backends([1, 1]);
      const status = new TestStatus(2);
      status.up[0] = false;
      const s = make(algorithm, list, status);
      assert.equal(counts(s, 50).get(list[0]), undefined);
      status.up[0] = true;
      assert.ok((counts(s, 200, 'again-').get(list[0]) ?? 0) > 0);
    });

    void test('determinism: same inputs (and seed) give the same sequence', () => {
      const list = backends([1, 2, 3]);
      const a = make(algorithm, list, new TestStatus(3), 7);
      const b = make(algorithm, list, new TestStatus(3), 7);
      const seqA = Array.from({ length: 100 }, (_, i) => a.select(`k${i % 13}`)?.id);
      const seqB = Array.from({ length: 100 }, (_, i) => b.select(`k${i % 13}`)?.id);
      assert.deepEqual(seqA, seqB);
    });
  });
}

void describe('algorithm-specific behaviour', () => {
  void test('round robin cycles in order, staying weight picks on each', () => {
    const list = backends([1, 2, 1]);
    const s = make('round-robin', list, new TestStatus(3));
    const seq = Array.from({ length: 8 }, () => list.indexOf(s.select()!));
    assert.deepEqual(seq, [0, 1, 1, 2, 0, 1, 1, 2]);
  });

  void test('smooth weighted round robin interleaves like nginx (5,1,1 -> a a b a c a a)', () => {
    const list = backends([5, 1, 1]);
    const s = make('weighted-round-robin', list, new TestStatus(3));
    const seq = Array.from({ length: 14 }, () => 'abc'[list.indexOf(s.select()!)]).join('');
    assert.equal(seq, 'aabacaa'.repeat(2));
  });

  void test('least connections picks the lowest in-flight per weight', () => {
    const list = backends([1, 1, 2]);
    const status = new TestStatus(3);
    status.load.splice(0, 3, 3, 1, 3); // per weight: 3, 1, 1.5
    const s = make('least-connections', list, status);
    for (let i = 0; i < 10; i++) assert.equal(s.select(), list[1]);
    status.load[1] = 2; // per weight: 3, 2, 1.5
    assert.equal(s.select(), list[2]);
  });

  void test('least connections breaks ties round robin', () => {
    const list = backends([1, 1, 1]);
    const status = new TestStatus(3);
    status.load.splice(0, 3, 2, 0, 0);
    const s = make('least-connections', list, status);
    const seq = Array.from({ length: 6 }, () => list.indexOf(s.select()!));
    assert.deepEqual(seq, [1, 2, 1, 2, 1, 2]);
  });

  void test('power of two choices avoids the loaded backend', () => {
    const list = backends([1, 1, 1, 1]);
    const status = new TestStatus(4);
    status.load.splice(0, 4, 10, 10, 10, 0);
    const got = counts(make('power-of-two', list, status), 10_000);
    // Uniform would give 25%; the idle one wins every pair it is in: 1 - (3/4)^2 = 43.75%.
    const idle = got.get(list[3]) ?? 0;
    assert.ok(idle > 4000 && idle < 4750, `idle backend got ${idle}`);
  });

  void test('ketama maps the same key to the same backend across rebuilds', () => {
    const list = backends([1, 2, 3]);
    const a = make('ketama', list, new TestStatus(3));
    const b = make('ketama', list.slice(), new TestStatus(3));
    for (let i = 0; i < 500; i++) assert.equal(a.select(`/obj/${i}`), b.select(`/obj/${i}`));
  });
});
