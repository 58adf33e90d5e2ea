/** Small order statistics for per-round numbers (the report uses medians: robust to one bad round). */

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function min(xs: readonly number[]): number {
  return xs.length === 0 ? Number.NaN : Math.min(...xs);
}

export function max(xs: readonly number[]): number {
  return xs.length === 0 ? Number.NaN : Math.max(...xs);
}

/** (max - min) / median: how far apart the rounds were. */
export function spread(xs: readonly number[]): number {
  const m = median(xs);
  return m > 0 ? (max(xs) - min(xs)) / m : Number.NaN;
}

/** Per-round ratios of one target's RPS to another's (same round, same size), and their median. */
export interface PairedRatio {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly rounds: number;
}

/**
 * `a`'s RPS over `b`'s, round by round: each pair was measured minutes apart at most, so a slow
 * drift of the machine cancels out of it where it does not from a ratio of medians. `null` when no
 * round has both.
 */
export function pairedRatio(
  a: readonly { readonly round: number; readonly rps: number }[],
  b: readonly { readonly round: number; readonly rps: number }[],
): PairedRatio | null {
  const byRound = new Map(b.map((s) => [s.round, s.rps]));
  const ratios: number[] = [];
  for (const s of a) {
    const other = byRound.get(s.round);
    if (other !== undefined && other > 0) ratios.push(s.rps / other);
  }
  if (ratios.length === 0) return null;
  return { median: median(ratios), min: min(ratios), max: max(ratios), rounds: ratios.length };
}
