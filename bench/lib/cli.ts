/**
 * What every benchmark entry point shares: flag parsing helpers, the target order rotation, the
 * method record written with the results, and writing a result file (plus the report).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { writeReport } from '../report.ts';
import type { LoadGeneratorName } from './load.ts';
import type { PassthroughResults } from './results.ts';

/** A bad command line: reported in one line, exit 2. */
export class UsageError extends Error {}

export function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0)
    throw new UsageError(`--${name} must be a positive number, got "${value}"`);
  return n;
}

/** A core number; with `cores`, one that exists on this machine. */
export function core(name: string, value: string | undefined, fallback: number, cores?: number): number {
  const n = value === undefined ? fallback : Number(value);
  if (!Number.isInteger(n) || n < 0 || (cores !== undefined && n >= cores)) {
    const range = cores === undefined ? 'a core number' : `a core of this machine (0-${cores - 1})`;
    throw new UsageError(`--${name} must be ${range}, got "${value}"`);
  }
  return n;
}

/** `xs` rotated left by `by`: each round starts with a different target, so noise spreads evenly. */
export function rotate<T>(xs: readonly T[], by: number): T[] {
  const k = xs.length === 0 ? 0 : by % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

/** The options the method record is made from. */
export interface MethodOptions {
  readonly loadgen: LoadGeneratorName;
  readonly connections: number;
  readonly durationSec: number;
  readonly warmupSec: number;
  readonly rounds: number;
  /** Measuring passes per round (every target, every size), between restarts of the processes. */
  readonly passes: number;
  readonly sizes: readonly string[];
  readonly proxyCore: number | null;
  readonly loadgenCore: number | null;
  readonly originCore: number | null;
  readonly freshPerRound: boolean;
}

/** One sample to take in a round: which target, which size, and the round the sample records. */
export interface SampleSlot<T> {
  readonly target: T;
  readonly size: string;
  /** The pass over the whole run (round * passes + pass): what the sample records as its round. */
  readonly sampleRound: number;
  /** Position of the target in this pass's rotated order. */
  readonly order: number;
  /** `[round 1/3 pass 2/3   1k]`, for the progress line. */
  readonly label: string;
}

/**
 * The samples of round `round`, in the order to take them: each pass rotates the targets, then
 * measures every target at every size.
 */
export function* roundSlots<T>(
  opts: { readonly rounds: number; readonly passes: number; readonly sizes: readonly string[] },
  live: readonly T[],
  round: number,
): Generator<SampleSlot<T>> {
  for (let pass = 0; pass < opts.passes; pass++) {
    const sampleRound = round * opts.passes + pass;
    const order = rotate(live, sampleRound);
    const passPart = opts.passes > 1 ? ` pass ${pass + 1}/${opts.passes}` : '';
    for (const size of opts.sizes) {
      for (let i = 0; i < order.length; i++) {
        const label = `[round ${round + 1}/${opts.rounds}${passPart} ${size.padStart(4)}]`;
        yield { target: order[i]!, size, sampleRound, order: i, label };
      }
    }
  }
}

/** How a run measured, as recorded in its result file. */
export function methodRecord(
  opts: MethodOptions,
  wrkVersion: string | undefined,
): PassthroughResults['method'] {
  return {
    loadGenerator: opts.loadgen === 'wrk' ? (wrkVersion ?? 'wrk') : 'autocannon 8',
    connections: opts.connections,
    threads: 1,
    durationSec: opts.durationSec,
    warmupSec: opts.warmupSec,
    rounds: opts.rounds,
    passes: opts.passes,
    sizes: opts.sizes,
    pinning: { proxyCore: opts.proxyCore, loadgenCore: opts.loadgenCore, originCore: opts.originCore },
    freshPerRound: opts.freshPerRound,
  };
}

/** Write `results` to `resultsDir/fileName`, then regenerate the report if one was asked for. */
export function writeResults(
  resultsDir: string,
  fileName: string,
  results: unknown,
  reportFile: string | null,
): void {
  mkdirSync(resultsDir, { recursive: true });
  const out = path.join(resultsDir, fileName);
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`wrote ${path.relative(process.cwd(), out)}`);
  if (reportFile !== null) {
    writeReport(resultsDir, reportFile);
    console.log(`wrote ${path.relative(process.cwd(), reportFile)}`);
  }
}
