/**
 * Backend selectors: one contract, several algorithms.
 *
 * A selector is built over a fixed list of backends and never changes membership; when the group
 * changes (add, remove, drain, weight) the `Upstream` builds a new selector and swaps it in with one
 * assignment, so a request always sees one consistent list (STYLE.md: selectors are immutable).
 * Cursor state (round-robin position, smooth-WRR current weights) lives inside the selector and
 * starts fresh with each rebuild, as in nginx after a reload.
 *
 * Live state that changes between requests — may a backend be used now, how many requests are in
 * flight on it — is read through `BackendStatus`, by index into the selector's list.
 *
 * `select` allocates nothing: no closures, no arrays, no iterators.
 */

import type { Backend } from './backend.ts';
import { Ketama } from './ketama.ts';

/** Live per-backend state, by index into the selector's `backends`. */
export interface BackendStatus {
  /** May this backend take a new request now (healthy, not ejected, not draining, breaker closed)? */
  isUsable(index: number): boolean;
  /** Requests in flight on this backend (for least-connections and power-of-two-choices). */
  inFlight(index: number): number;
}

/** Per-call context. */
export interface SelectContext {
  /** Backends already tried for this request (a retry must go elsewhere), like nginx's `tried` bitmap. */
  readonly tried?: ReadonlySet<Backend> | undefined;
}

/**
 * The one selector contract.
 * @example
 * ```ts
 * const selector: Selector = createSelector('round-robin', backends);
 * const backend = selector.select(); // undefined when no backend is usable -> 503
 * ```
 */
export interface Selector {
  readonly algorithm: Algorithm;
  readonly backends: readonly Backend[];
  /**
   * Pick a usable backend not in `ctx.tried`, or `undefined` if there is none. `key` is used only
   * by hashing selectors (ketama); others ignore it.
   */
  select(key?: string | Uint8Array, ctx?: SelectContext): Backend | undefined;
}

/** The algorithms `createSelector` knows. */
export type Algorithm =
  'round-robin' | 'weighted-round-robin' | 'least-connections' | 'power-of-two' | 'random' | 'ketama';

/** Every algorithm name, for validation and for tests that run against each one. */
export const ALGORITHMS: readonly Algorithm[] = Object.freeze([
  'round-robin',
  'weighted-round-robin',
  'least-connections',
  'power-of-two',
  'random',
  'ketama',
]);

export interface SelectorOptions {
  /** Uniform [0, 1) source for `random` and `power-of-two`; inject a seeded one for reproducible tests. */
  readonly random?: () => number;
}

/** A status where every backend is usable and idle (for stand-alone use and benchmarks). */
export const ALL_USABLE: BackendStatus = Object.freeze({
  isUsable: (_index: number): boolean => true,
  inFlight: (_index: number): number => 0,
});

/**
 * Build a selector for an algorithm.
 * @example
 * ```ts
 * const s = createSelector('least-connections', backends, upstreamStatus);
 * ```
 */
export function createSelector(
  algorithm: Algorithm,
  backends: readonly Backend[],
  status: BackendStatus = ALL_USABLE,
  options: SelectorOptions = {},
): Selector {
  switch (algorithm) {
    case 'round-robin':
      return new RoundRobinSelector(backends, status);
    case 'weighted-round-robin':
      return new SmoothWeightedSelector(backends, status);
    case 'least-connections':
      return new LeastConnectionsSelector(backends, status);
    case 'power-of-two':
      return new PowerOfTwoSelector(backends, status, options.random);
    case 'random':
      return new RandomSelector(backends, status, options.random);
    case 'ketama':
      return new KetamaSelector(backends, status);
  }
}

function weightsOf(backends: readonly Backend[]): Int32Array {
  const w = new Int32Array(backends.length);
  for (let i = 0; i < backends.length; i++) w[i] = backends[i]!.weight;
  return w;
}

function frozenList(backends: readonly Backend[]): readonly Backend[] {
  return Object.isFrozen(backends) ? backends : Object.freeze(backends.slice());
}

/** Common part: the list, the status, and the "usable and not yet tried" test. */
abstract class BaseSelector {
  readonly backends: readonly Backend[];
  protected readonly status: BackendStatus;
  protected readonly weights: Int32Array;

  constructor(backends: readonly Backend[], status: BackendStatus) {
    this.backends = frozenList(backends);
    this.status = status;
    this.weights = weightsOf(this.backends);
  }

  protected ok(i: number, ctx: SelectContext | undefined): boolean {
    if (!this.status.isUsable(i)) return false;
    const tried = ctx?.tried;
    return tried === undefined || tried.size === 0 || !tried.has(this.backends[i]!);
  }
}

/**
 * Weighted round robin, the classic (bursty) kind: the cursor stays on a backend for `weight`
 * consecutive picks, then moves on; unusable backends are passed over. O(1) per pick when all are
 * usable. Use `weighted-round-robin` for nginx's smooth interleaving.
 * @example
 * ```ts
 * const rr = new RoundRobinSelector(backends, ALL_USABLE);
 * rr.select(); rr.select(); // a, b, c, a, ... (weights 1)
 * ```
 */
export class RoundRobinSelector extends BaseSelector implements Selector {
  readonly algorithm = 'round-robin' as const;
  #index = -1;
  #remaining = 0;

  select(_key?: string | Uint8Array, ctx?: SelectContext): Backend | undefined {
    const n = this.backends.length;
    for (let t = 0; t < n; t++) {
      if (this.#remaining <= 0) {
        this.#index = this.#index + 1 >= n ? 0 : this.#index + 1;
        this.#remaining = this.weights[this.#index]!;
      }
      const i = this.#index;
      if (this.ok(i, ctx)) {
        this.#remaining--;
        return this.backends[i];
      }
      this.#remaining = 0;
    }
    return undefined;
  }
}

/**
 * nginx's smooth weighted round robin (`ngx_http_upstream_get_peer`): each pick adds every usable
 * backend's weight to its current weight, takes the largest, and subtracts the total from it. Weights
 * 5,1,1 give a a b a c a a — interleaved, not bursty. nginx also lowers an `effective_weight` after
 * failures; here failures are handled by passive health (ejection) instead.
 * @example
 * ```ts
 * const swrr = new SmoothWeightedSelector(backends, ALL_USABLE);
 * swrr.select();
 * ```
 */
export class SmoothWeightedSelector extends BaseSelector implements Selector {
  readonly algorithm = 'weighted-round-robin' as const;
  #current: Float64Array;

  constructor(backends: readonly Backend[], status: BackendStatus) {
    super(backends, status);
    this.#current = new Float64Array(this.backends.length);
  }

  select(_key?: string | Uint8Array, ctx?: SelectContext): Backend | undefined {
    const current = this.#current;
    const weights = this.weights;
    let best = -1;
    let total = 0;
    for (let i = 0; i < weights.length; i++) {
      if (!this.ok(i, ctx)) continue;
      current[i]! += weights[i]!;
      total += weights[i]!;
      if (best < 0 || current[i]! > current[best]!) best = i;
    }
    if (best < 0) return undefined;
    current[best]! -= total;
    return this.backends[best];
  }
}

/**
 * Least connections, weighted, like nginx's `least_conn`: the usable backend with the fewest
 * in-flight requests per unit of weight (`inFlight_a * weight_b < inFlight_b * weight_a`); ties are
 * broken by smooth weighted round robin among the tied backends, so equal load spreads in
 * proportion to weight.
 * @example
 * ```ts
 * const lc = new LeastConnectionsSelector(backends, upstreamStatus);
 * lc.select();
 * ```
 */
export class LeastConnectionsSelector extends BaseSelector implements Selector {
  readonly algorithm = 'least-connections' as const;
  #current: Float64Array;

  constructor(backends: readonly Backend[], status: BackendStatus) {
    super(backends, status);
    this.#current = new Float64Array(this.backends.length);
  }

  select(_key?: string | Uint8Array, ctx?: SelectContext): Backend | undefined {
    const weights = this.weights;
    const status = this.status;
    const n = weights.length;
    let best = -1;
    let bestLoad = 0;
    let tied = false;
    for (let i = 0; i < n; i++) {
      if (!this.ok(i, ctx)) continue;
      const load = status.inFlight(i);
      if (best < 0) {
        best = i;
        bestLoad = load;
        tied = false;
        continue;
      }
      const cmp = load * weights[best]! - bestLoad * weights[i]!;
      if (cmp < 0) {
        best = i;
        bestLoad = load;
        tied = false;
      } else if (cmp === 0) {
        tied = true;
      }
    }
    if (best < 0) return undefined;
    if (!tied) return this.backends[best];

    const current = this.#current;
    const bestWeight = weights[best]!;
    let pick = -1;
    let total = 0;
    for (let i = best; i < n; i++) {
      if (!this.ok(i, ctx) || status.inFlight(i) * bestWeight !== bestLoad * weights[i]!) continue;
      current[i]! += weights[i]!;
      total += weights[i]!;
      if (pick < 0 || current[i]! > current[pick]!) pick = i;
    }
    current[pick]! -= total;
    return this.backends[pick];
  }
}

/** Weighted random sampling over usable backends: prefix sums + binary search, rejection, then a scan. */
abstract class RandomBase extends BaseSelector {
  protected readonly random: () => number;
  #prefix: Float64Array;
  #total: number;

  constructor(backends: readonly Backend[], status: BackendStatus, random: (() => number) | undefined) {
    super(backends, status);
    this.random = random ?? Math.random;
    this.#prefix = new Float64Array(this.backends.length);
    let sum = 0;
    for (let i = 0; i < this.weights.length; i++) this.#prefix[i] = sum += this.weights[i]!;
    this.#total = sum;
  }

  /** A usable backend index drawn with probability proportional to weight, or -1. */
  protected sample(ctx: SelectContext | undefined): number {
    const n = this.weights.length;
    if (n === 0) return -1;
    // Rejection sampling is exact and O(log n) while most backends are usable.
    for (let attempt = 0; attempt < 4; attempt++) {
      const i = this.#draw(this.random() * this.#total);
      if (this.ok(i, ctx)) return i;
    }
    // Many are down: draw among the usable ones directly (two linear passes).
    let sum = 0;
    for (let i = 0; i < n; i++) if (this.ok(i, ctx)) sum += this.weights[i]!;
    if (sum === 0) return -1;
    let r = this.random() * sum;
    let last = -1;
    for (let i = 0; i < n; i++) {
      if (!this.ok(i, ctx)) continue;
      last = i;
      r -= this.weights[i]!;
      if (r < 0) return i;
    }
    return last;
  }

  #draw(r: number): number {
    const prefix = this.#prefix;
    let lo = 0;
    let hi = prefix.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (r < prefix[mid]!) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

/**
 * Weighted random.
 * @example
 * ```ts
 * new RandomSelector(backends, ALL_USABLE).select();
 * ```
 */
export class RandomSelector extends RandomBase implements Selector {
  readonly algorithm = 'random' as const;

  select(_key?: string | Uint8Array, ctx?: SelectContext): Backend | undefined {
    const i = this.sample(ctx);
    return i < 0 ? undefined : this.backends[i];
  }
}

/**
 * Power of two random choices (Mitzenmacher): draw two backends (weighted), take the one with fewer
 * in-flight requests per unit of weight; on a tie the first draw wins, which keeps the idle-load
 * distribution proportional to weight. Near least-connections quality at O(1) cost.
 * @example
 * ```ts
 * new PowerOfTwoSelector(backends, upstreamStatus).select();
 * ```
 */
export class PowerOfTwoSelector extends RandomBase implements Selector {
  readonly algorithm = 'power-of-two' as const;

  select(_key?: string | Uint8Array, ctx?: SelectContext): Backend | undefined {
    const a = this.sample(ctx);
    if (a < 0) return undefined;
    const b = this.sample(ctx);
    if (b >= 0 && b !== a) {
      const w = this.weights;
      if (this.status.inFlight(b) * w[a]! < this.status.inFlight(a) * w[b]!) return this.backends[b];
    }
    return this.backends[a];
  }
}

/**
 * Ketama consistent hashing over the backends' ids, bit-exact with nginx `hash $key consistent`
 * (see `Ketama`). When the key's backend is unusable or tried, walks the ring on as nginx does. With
 * no key, hashes the empty string (nginx hashes whatever the key expression yields, empty too).
 * @example
 * ```ts
 * new KetamaSelector(backends, upstreamStatus).select('/videos/42.mp4');
 * ```
 */
export class KetamaSelector extends BaseSelector implements Selector {
  readonly algorithm = 'ketama' as const;
  readonly ring: Ketama | undefined;
  /** The per-call context, parked for the synchronous ring walk (saved/restored: re-entrancy safe). */
  #ctx: SelectContext | undefined = undefined;

  constructor(backends: readonly Backend[], status: BackendStatus) {
    super(backends, status);
    this.ring =
      this.backends.length === 0
        ? undefined
        : new Ketama(this.backends.map((b) => ({ server: b.id, weight: b.weight })));
  }

  select(key?: string | Uint8Array, ctx?: SelectContext): Backend | undefined {
    const ring = this.ring;
    if (ring === undefined) return undefined;
    const saved = this.#ctx;
    this.#ctx = ctx;
    try {
      const i = ring.selectIndexWith(key ?? '', KetamaSelector.#usable, this);
      return i < 0 ? undefined : this.backends[i];
    } finally {
      this.#ctx = saved;
    }
  }

  static #usable(this: void, index: number, self: KetamaSelector): boolean {
    return self.ok(index, self.#ctx);
  }
}
