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
