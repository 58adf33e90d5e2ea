/**
 * Micro-benchmark: nanoseconds per `select()` for every selector, with 10 and 1,000 backends.
 * Prints a markdown table and writes bench/results/selectors.json. Bounded: ~150 ms of timed work
 * per cell after a warm-up, a few seconds in all.
 *
 *   node --import tsx bench/selectors.ts
 */

import { mkdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { cpus } from 'node:os';
import { createBackend, type Backend } from '../src/lb/backend.ts';
import { ALGORITHMS, createSelector, type Algorithm, type BackendStatus } from '../src/lb/selector.ts';

const SIZES = [10, 1000] as const;
const TIMED_MS = 150;
const BATCH = 10_000;
const KEYS = Array.from({ length: 4096 }, (_, i) => `/objects/${i.toString(36)}/image-${i}.jpg`);

/** All usable, with uneven in-flight counts so load-aware selectors do real comparisons. */
function statusFor(n: number): BackendStatus {
  const load = Int32Array.from({ length: n }, (_, i) => (i * 7919) % 13);
  return { isUsable: () => true, inFlight: (i) => load[i]! };
}

function backendsFor(n: number): Backend[] {
  return Array.from({ length: n }, (_, i) =>
    createBackend({ address: `10.${(i >> 8) & 255}.${i & 255}.1:8080`, weight: 1 + (i % 3) }),
  );
}

interface Row {
  readonly algorithm: Algorithm;
  readonly backends: number;
  readonly nsPerSelect: number;
  readonly selections: number;
}

function measure(algorithm: Algorithm, n: number): Row {
  const selector = createSelector(algorithm, backendsFor(n), statusFor(n));
  let sink = 0;
  const run = (iterations: number, offset: number): void => {
    for (let i = 0; i < iterations; i++) {
      const b = selector.select(KEYS[(i + offset) & 4095]);
      if (b !== undefined) sink += b.port;
    }
  };
  run(BATCH * 2, 0); // warm-up: let the JIT settle
  let iterations = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  const budget = BigInt(TIMED_MS) * 1_000_000n;
  while (elapsed < budget) {
    run(BATCH, iterations);
    iterations += BATCH;
    elapsed = process.hrtime.bigint() - start;
  }
  if (sink === 0) throw new Error('no backend was selected');
  return { algorithm, backends: n, nsPerSelect: Number(elapsed) / iterations, selections: iterations };
}

const rows: Row[] = [];
for (const algorithm of ALGORITHMS) for (const n of SIZES) rows.push(measure(algorithm, n));

const table = [
  `| algorithm | ${SIZES.map((n) => `ns/select (${n} backends)`).join(' | ')} |`,
  `|---|${SIZES.map(() => '---:').join('|')}|`,
  ...ALGORITHMS.map(
    (a) =>
      `| ${a} | ${SIZES.map((n) => rows.find((r) => r.algorithm === a && r.backends === n)!.nsPerSelect.toFixed(1)).join(' | ')} |`,
  ),
].join('\n');
console.log(table);

const out = join(dirname(fileURLToPath(import.meta.url)), 'results', 'selectors.json');
await mkdir(dirname(out), { recursive: true });
await writeFile(
  out,
  JSON.stringify(
    {
      benchmark: 'selectors',
      date: new Date().toISOString(),
      node: process.version,
      cpu: cpus()[0]?.model ?? 'unknown',
      note: 'ns per select(); ketama hashes a ~25-byte string key per call; in-flight counts uneven, all backends usable',
      results: rows,
    },
    null,
    2,
  ) + '\n',
);
console.log(`\nwritten to ${out}`);
