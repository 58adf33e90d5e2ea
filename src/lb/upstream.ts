/**
 * An upstream (load-balancer group): named backends, an algorithm, live per-backend state, passive
 * health (consecutive failures eject for a cool-down), a circuit breaker per backend, and events and
 * a snapshot for metrics.
 *
 * Membership changes (`add`, `remove`, `drain`, `setWeight`, `setAlgorithm`) build a new immutable
 * selector and swap it in with one assignment: a `select` in progress finishes on the old one, the
 * next one uses the new one, nothing is locked or dropped. Health, ejection and breaker state are
 * live and read by the selector through `BackendStatus`, so they change without a rebuild (like
 * nginx's `down`/failed peers, which keep their ketama points and are walked past).
 *
 * The engine's part: `select` (undefined -> answer 503 `CAIRN_ERR_UPSTREAM_UNAVAILABLE`, or use
 * `selectOrThrow`), then `begin(backend)` when the request is sent and exactly one
 * `end(backend, outcome, latencyMs)` when it is over.
 */

import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { CairnError } from '../errors.ts';
import { createBackend, withWeight, type Backend, type BackendConfig } from './backend.ts';
import {
  ALGORITHMS,
  createSelector,
  type Algorithm,
  type BackendStatus,
  type SelectContext,
  type Selector,
} from './selector.ts';

/** How a request on a backend ended. `cancelled` (e.g. the client went away) counts for neither health nor breaker. */
export type Outcome = 'success' | 'failure' | 'cancelled';

export type BreakerState = 'closed' | 'open' | 'half-open';

/** What a backend is doing, most significant first: draining, down (active check), ejected, breaker open, healthy. */
export type BackendState = 'healthy' | 'down' | 'ejected' | 'open' | 'half-open' | 'draining';

/** Passive health, like nginx's `max_fails`/`fail_timeout`. */
export interface PassiveHealthOptions {
  /** Consecutive failures that eject a backend; 0 disables ejection. Default 3. */
  readonly maxFails: number;
  /** Cool-down after an ejection, ms. Default 10,000. */
  readonly ejectMs: number;
}

/** Per-backend circuit breaker over a sliding time window. */
export interface CircuitBreakerOptions {
  /** Window length, ms. Default 10,000. */
  readonly windowMs: number;
  /** Buckets the window is split into (its granularity). Default 10. */
  readonly buckets: number;
  /** Requests in the window before the breaker may open. Default 20. */
  readonly minRequests: number;
  /** Failure ratio (0-1] that opens the breaker. Default 0.5. */
  readonly errorRatio: number;
  /** A request at least this slow (ms) counts as slow; undefined disables the latency trigger. */
  readonly slowMs: number | undefined;
  /** Slow ratio (0-1] that opens the breaker. Default 0.5. */
  readonly slowRatio: number;
  /** How long the breaker stays open before letting probes through, ms. Default 30,000. */
  readonly openMs: number;
  /** Concurrent probe requests allowed while half-open. Default 1. */
  readonly halfOpenProbes: number;
}

export interface UpstreamOptions<R = never> {
  readonly name: string;
  readonly backends?: readonly BackendConfig[];
  /** Default `'round-robin'`. */
  readonly algorithm?: Algorithm;
  /** Derives the hash key from a request for `selectFor` (ketama). */
  readonly hashKey?: (input: R) => string | Uint8Array | undefined;
  /** `false` disables passive health. */
  readonly passive?: Partial<PassiveHealthOptions> | false;
  /** `false` disables the circuit breaker. */
  readonly breaker?: Partial<CircuitBreakerOptions> | false;
  /** Monotonic clock in ms; default `performance.now`. Injectable for tests. */
  readonly now?: () => number;
  /** Uniform [0, 1) source for random and power-of-two. */
  readonly random?: () => number;
}

/** One backend in a snapshot. */
export interface BackendSnapshot {
  readonly id: string;
  readonly address: string;
  readonly weight: number;
  readonly state: BackendState;
  /** Would `select` consider it right now. */
  readonly up: boolean;
  /** Last active health-check verdict. */
  readonly healthy: boolean;
  readonly breaker: BreakerState;
  readonly inFlight: number;
  readonly selections: number;
  readonly ejections: number;
  readonly consecutiveFailures: number;
  /** Requests that ended as `failure` since the backend joined. */
  readonly failures: number;
}

export interface UpstreamSnapshot {
  readonly name: string;
  readonly algorithm: Algorithm;
  readonly backends: readonly BackendSnapshot[];
}

/** Events, as `(payload)` listeners. */
export interface UpstreamEvents {
  /** Membership, weight or algorithm changed; a new selector is in place. */
  change: [backends: readonly Backend[]];
  /** Passive health ejected a backend until `until` (clock ms). */
  ejected: [backend: Backend, until: number];
  /** The backend's breaker changed state. */
  breaker: [backend: Backend, state: BreakerState];
  /** An active health check changed its verdict. */
  health: [backend: Backend, healthy: boolean];
  /** A draining backend has no request in flight left and was removed. */
  drained: [backend: Backend];
}

const PASSIVE_DEFAULTS: PassiveHealthOptions = { maxFails: 3, ejectMs: 10_000 };
const BREAKER_DEFAULTS: CircuitBreakerOptions = {
  windowMs: 10_000,
  buckets: 10,
  minRequests: 20,
  errorRatio: 0.5,
  slowMs: undefined,
  slowRatio: 0.5,
  openMs: 30_000,
  halfOpenProbes: 1,
};

/**
 * A named group of backends behind one algorithm.
 *
 * @example
 * ```ts
 * const api = new Upstream({
 *   name: 'api',
 *   algorithm: 'ketama',
 *   backends: [{ address: '10.0.0.1:8080', weight: 2 }, { address: '10.0.0.2:8080' }],
 *   hashKey: (req: { url: string }) => req.url,
 * });
 * const backend = api.selectFor(req);       // undefined -> 503 CAIRN_ERR_UPSTREAM_UNAVAILABLE
 * if (backend) {
 *   api.begin(backend);
 *   const started = performance.now();
 *   // ... proxy the request ...
 *   api.end(backend, 'success', performance.now() - started);
 * }
 * api.on('ejected', (b, until) => log.warn({ backend: b.id }, 'ejected'));
 * ```
 */
export class Upstream<R = never> extends EventEmitter<UpstreamEvents> {
  readonly name: string;
  #algorithm: Algorithm;
  #selector: Selector;
  /** Every member, including draining ones, in insertion order. */
  #records = new Map<string, BackendRecord>();
  #hashKey: ((input: R) => string | Uint8Array | undefined) | undefined;
  readonly #passive: PassiveHealthOptions | undefined;
  readonly #breaker: CircuitBreakerOptions | undefined;
  readonly #now: () => number;
  readonly #random: (() => number) | undefined;

  constructor(options: UpstreamOptions<R>) {
    super();
    this.name = options.name;
    this.#algorithm = checkAlgorithm(options.algorithm ?? 'round-robin');
    this.#hashKey = options.hashKey;
    this.#passive =
      options.passive === false ? undefined : checkPassive({ ...PASSIVE_DEFAULTS, ...options.passive });
    this.#breaker =
      options.breaker === false ? undefined : checkBreaker({ ...BREAKER_DEFAULTS, ...options.breaker });
    this.#now = options.now ?? performance.now.bind(performance);
    this.#random = options.random;
    for (const config of options.backends ?? []) this.#insert(createBackend(config));
    this.#selector = this.#build();
  }

  /** The algorithm in use. */
  get algorithm(): Algorithm {
    return this.#algorithm;
  }

  /** The selector in use (immutable; replaced on membership changes). */
  get selector(): Selector {
    return this.#selector;
  }

  /**
   * Pick a backend, or `undefined` when none is usable (the engine answers 503
   * `CAIRN_ERR_UPSTREAM_UNAVAILABLE`). `key` is the hash key for ketama; `ctx.tried` excludes
   * backends a retry already used.
   * @example
   * ```ts
   * const b = upstream.select('/path?query', { tried });
   * ```
   */
  select(key?: string | Uint8Array, ctx?: SelectContext): Backend | undefined {
    const backend = this.#selector.select(key, ctx);
    if (backend !== undefined) {
      const record = this.#records.get(backend.id);
      if (record !== undefined) record.selections++;
    }
    return backend;
  }

  /**
   * `select` with the key derived by the `hashKey` option (no key without one).
   * @example
   * ```ts
   * const b = upstream.selectFor(session);
   * ```
   */
  selectFor(input: R, ctx?: SelectContext): Backend | undefined {
    return this.select(this.#hashKey === undefined ? undefined : this.#hashKey(input), ctx);
  }

  /**
   * `select`, throwing `CAIRN_ERR_UPSTREAM_UNAVAILABLE` (503) when no backend is usable.
   * @example
   * ```ts
   * const b = upstream.selectOrThrow(key);
   * ```
   */
  selectOrThrow(key?: string | Uint8Array, ctx?: SelectContext): Backend {
    const backend = this.select(key, ctx);
    if (backend === undefined) {
      throw new CairnError('CAIRN_ERR_UPSTREAM_UNAVAILABLE', `no usable backend in upstream "${this.name}"`);
    }
    return backend;
  }

  /**
   * A request is being sent to `backend`: counts it in flight (and as a probe when half-open).
   * @example
   * ```ts
   * upstream.begin(backend);
   * ```
   */
  begin(backend: Backend): void {
    const record = this.#records.get(backend.id);
    if (record === undefined) return;
    record.inFlight++;
    if (record.breaker === 'half-open') record.probes++;
  }

  /**
   * The request on `backend` ended. Feeds passive health (`failure` counts toward ejection,
   * `success` resets the count) and the breaker (failures and, with `slowMs`, slow requests).
   * Ending on a removed backend is harmless.
   * @example
   * ```ts
   * upstream.end(backend, 'failure', 12.5);
   * ```
   */
  end(backend: Backend, outcome: Outcome, latencyMs?: number): void {
    const record = this.#records.get(backend.id);
    if (record === undefined) return;
    if (record.inFlight > 0) record.inFlight--;
    if (outcome !== 'cancelled') {
      const now = this.#now();
      const failed = outcome === 'failure';
      this.#passiveRecord(record, failed, now);
      if (this.#breaker !== undefined) this.#breakerRecord(record, this.#breaker, failed, latencyMs, now);
    }
    if (record.draining && record.inFlight === 0) this.#finishDrain(record);
  }

  /**
   * Add a backend (rebuilds the selector). Throws `CAIRN_ERR_CONFIG_INVALID` on a bad config or a
   * duplicate id.
   * @example
   * ```ts
   * upstream.add({ address: '10.0.0.3:8080', weight: 2 });
   * ```
   */
  add(config: BackendConfig): Backend {
    const backend = createBackend(config);
    this.#insert(backend);
    this.#swap();
    return backend;
  }

  /**
   * Remove a backend at once (rebuilds the selector). Its in-flight requests finish on their own;
   * their `end` is ignored. Use `drain` to wait for them. Returns false when the id is unknown.
   * @example
   * ```ts
   * upstream.remove('10.0.0.3:8080');
   * ```
   */
  remove(id: string): boolean {
    const record = this.#records.get(id);
    if (record === undefined) return false;
    this.#records.delete(id);
    if (record.draining) record.resolveDrain();
    this.#swap();
    return true;
  }

  /**
   * Stop selecting a backend (rebuilds the selector without it), let its in-flight requests finish,
   * then remove it. Resolves when it is gone. For ketama, the drained backend's keys go where the
   * ring walk past it would send them, and no other key moves.
   * @example
   * ```ts
   * await upstream.drain('10.0.0.3:8080');
   * ```
   */
  drain(id: string): Promise<void> {
    const record = this.#records.get(id);
    if (record === undefined) return Promise.resolve();
    if (!record.draining) {
      record.draining = true;
      this.#swap();
    }
    const done = record.drainPromise();
    if (record.inFlight === 0) this.#finishDrain(record);
    return done;
  }

  /**
   * Change a backend's weight (rebuilds the selector). Returns false when the id is unknown.
   * @example
   * ```ts
   * upstream.setWeight('10.0.0.1:8080', 5);
   * ```
   */
  setWeight(id: string, weight: number): boolean {
    const record = this.#records.get(id);
    if (record === undefined) return false;
    record.backend = withWeight(record.backend, weight);
    this.#swap();
    return true;
  }

  /**
   * Switch algorithm (rebuilds the selector).
   * @example
   * ```ts
   * upstream.setAlgorithm('least-connections');
   * ```
   */
  setAlgorithm(algorithm: Algorithm): void {
    this.#algorithm = checkAlgorithm(algorithm);
    this.#swap();
  }

  /**
   * Record an active health-check verdict (used by `HealthChecker`). Live: no rebuild.
   * @example
   * ```ts
   * upstream.setHealthy('10.0.0.1:8080', false);
   * ```
   */
  setHealthy(id: string, healthy: boolean): void {
    const record = this.#records.get(id);
    if (record === undefined || record.healthy === healthy) return;
    record.healthy = healthy;
    this.emit('health', record.backend, healthy);
  }

  /**
   * The backends active health checks should probe: every member, draining ones included.
   * @example
   * ```ts
   * for (const b of upstream.healthTargets()) probe(b);
   * ```
   */
  healthTargets(): readonly Backend[] {
    return Array.from(this.#records.values(), (r) => r.backend);
  }

  /**
   * Per-backend state and counters, for metrics and the admin API.
   * @example
   * ```ts
   * for (const b of upstream.snapshot().backends) gauge.set({ backend: b.id }, b.up ? 1 : 0);
   * ```
   */
  snapshot(): UpstreamSnapshot {
    const now = this.#now();
    const backends: BackendSnapshot[] = [];
    const lone = this.#selector.backends.length === 1;
    for (const r of this.#records.values()) {
      const up = !r.draining && (lone ? r.healthy : this.#usable(r, now));
      const state: BackendState = r.draining
        ? 'draining'
        : !r.healthy
          ? 'down'
          : now < r.ejectedUntil
            ? 'ejected'
            : r.breaker === 'closed'
              ? 'healthy'
              : r.breaker;
      backends.push({
        id: r.backend.id,
        address: r.backend.address,
        weight: r.backend.weight,
        state,
        up,
        healthy: r.healthy,
        breaker: r.breaker,
        inFlight: r.inFlight,
        selections: r.selections,
        ejections: r.ejections,
        consecutiveFailures: r.consecutiveFailures,
        failures: r.failures,
      });
    }
    return { name: this.name, algorithm: this.#algorithm, backends };
  }

  /** Is the record selectable now? The common case (healthy, never ejected, breaker closed) reads no clock. */
  #usable(r: BackendRecord, now?: number): boolean {
    if (!r.healthy) return false;
    if (r.ejectedUntil === 0 && r.breaker === 'closed') return true;
    const t = now ?? this.#now();
    if (t < r.ejectedUntil) return false;
    switch (r.breaker) {
      case 'closed':
        return true;
      case 'open':
        if (t < r.openUntil) return false;
        this.#setBreaker(r, 'half-open');
        return true;
      case 'half-open':
        return r.probes < (this.#breaker?.halfOpenProbes ?? 1);
    }
  }

  #insert(backend: Backend): void {
    if (this.#records.has(backend.id)) {
      throw new CairnError(
        'CAIRN_ERR_CONFIG_INVALID',
        `upstream "${this.name}": duplicate backend id "${backend.id}"`,
      );
    }
    this.#records.set(backend.id, new BackendRecord(backend, this.#breaker));
  }

  #build(): Selector {
    const records: BackendRecord[] = [];
    for (const r of this.#records.values()) if (!r.draining) records.push(r);
    // One closure per rebuild (not per request) gives the status access to the clock and breaker.
    const status = new GenerationStatus(records, (r) => this.#usable(r), records.length === 1);
    return createSelector(
      this.#algorithm,
      Object.freeze(records.map((r) => r.backend)),
      status,
      this.#random === undefined ? {} : { random: this.#random },
    );
  }

  #swap(): void {
    this.#selector = this.#build();
    this.emit('change', this.#selector.backends);
  }

  #finishDrain(record: BackendRecord): void {
    if (this.#records.get(record.backend.id) === record) {
      this.#records.delete(record.backend.id);
      this.emit('drained', record.backend);
    }
    record.resolveDrain();
  }

  #passiveRecord(r: BackendRecord, failed: boolean, now: number): void {
    if (!failed) {
      r.consecutiveFailures = 0;
      return;
    }
    r.failures++;
    r.consecutiveFailures++;
    const passive = this.#passive;
    // As in nginx, the count is not reset by the cool-down: after it, one more failure ejects again;
    // only a success clears it.
    if (
      passive !== undefined &&
      passive.maxFails > 0 &&
      r.consecutiveFailures >= passive.maxFails &&
      now >= r.ejectedUntil
    ) {
      r.ejections++;
      r.ejectedUntil = now + passive.ejectMs;
      this.emit('ejected', r.backend, r.ejectedUntil);
    }
  }

  #breakerRecord(
    r: BackendRecord,
    opts: CircuitBreakerOptions,
    failed: boolean,
    latencyMs: number | undefined,
    now: number,
  ): void {
    const slow = opts.slowMs !== undefined && latencyMs !== undefined && latencyMs >= opts.slowMs;
    if (r.breaker === 'half-open') {
      if (r.probes > 0) r.probes--;
      if (failed || slow) {
        r.openUntil = now + opts.openMs;
        this.#setBreaker(r, 'open');
      } else {
        r.window!.reset();
        this.#setBreaker(r, 'closed');
      }
      return;
    }
    if (r.breaker === 'open') return;
    const w = r.window!;
    w.record(now, failed, slow);
    if (w.total < opts.minRequests) return;
    if (
      w.failures >= w.total * opts.errorRatio ||
      (opts.slowMs !== undefined && w.slow >= w.total * opts.slowRatio)
    ) {
      r.openUntil = now + opts.openMs;
      this.#setBreaker(r, 'open');
    }
  }

  #setBreaker(r: BackendRecord, state: BreakerState): void {
    r.breaker = state;
    if (state !== 'half-open') r.probes = 0;
    this.emit('breaker', r.backend, state);
  }
}

/** The live state of one backend. */
class BackendRecord {
  backend: Backend;
  healthy = true;
  draining = false;
  inFlight = 0;
  selections = 0;
  ejections = 0;
  consecutiveFailures = 0;
  failures = 0;
  /** Clock ms until which it is ejected; 0 = never ejected (fast path). */
  ejectedUntil = 0;
  breaker: BreakerState = 'closed';
  openUntil = 0;
  probes = 0;
  readonly window: BreakerWindow | undefined;
  #drain: { promise: Promise<void>; resolve: () => void } | undefined = undefined;

  constructor(backend: Backend, breaker: CircuitBreakerOptions | undefined) {
    this.backend = backend;
    this.window = breaker === undefined ? undefined : new BreakerWindow(breaker.windowMs, breaker.buckets);
  }

  drainPromise(): Promise<void> {
    if (this.#drain === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#drain = { promise, resolve };
    }
    return this.#drain.promise;
  }

  resolveDrain(): void {
    this.#drain?.resolve();
  }
}

/** Counts over a sliding time window in fixed buckets; allocation-free after construction. */
class BreakerWindow {
  total = 0;
  failures = 0;
  slow = 0;
  readonly #bucketMs: number;
  readonly #epochs: Float64Array;
  readonly #totals: Int32Array;
  readonly #failures: Int32Array;
  readonly #slow: Int32Array;

  constructor(windowMs: number, buckets: number) {
    this.#bucketMs = windowMs / buckets;
    this.#epochs = new Float64Array(buckets).fill(-Infinity);
    this.#totals = new Int32Array(buckets);
    this.#failures = new Int32Array(buckets);
    this.#slow = new Int32Array(buckets);
  }

  record(now: number, failed: boolean, slow: boolean): void {
    const n = this.#epochs.length;
    const epoch = Math.floor(now / this.#bucketMs);
    const slot = ((epoch % n) + n) % n;
    if (this.#epochs[slot] !== epoch) {
      this.#epochs[slot] = epoch;
      this.#totals[slot] = 0;
      this.#failures[slot] = 0;
      this.#slow[slot] = 0;
    }
    this.#totals[slot]!++;
    if (failed) this.#failures[slot]!++;
    if (slow) this.#slow[slot]!++;
    let total = 0;
    let failures = 0;
    let slowCount = 0;
    for (let i = 0; i < n; i++) {
      if (this.#epochs[i]! <= epoch - n) continue;
      total += this.#totals[i]!;
      failures += this.#failures[i]!;
      slowCount += this.#slow[i]!;
    }
    this.total = total;
    this.failures = failures;
    this.slow = slowCount;
  }

  reset(): void {
    this.#epochs.fill(-Infinity);
    this.total = this.failures = this.slow = 0;
  }
}

/** BackendStatus for one selector generation: records aligned with its backend list. */
class GenerationStatus implements BackendStatus {
  readonly #records: readonly BackendRecord[];
  readonly #slowUsable: (record: BackendRecord) => boolean;
  /**
   * A group of one: as nginx does for a lone `server` ("max_fails … ignored, and such a server will
   * never be considered unavailable"), passive ejection and the breaker do not apply — turning the
   * only origin's errors into 503s would hide them. Active health checks still do.
   */
  readonly #lone: boolean;

  constructor(
    records: readonly BackendRecord[],
    slowUsable: (record: BackendRecord) => boolean,
    lone: boolean,
  ) {
    this.#records = records;
    this.#slowUsable = slowUsable;
    this.#lone = lone;
  }

  isUsable(index: number): boolean {
    const r = this.#records[index]!;
    if (!r.healthy) return false;
    if ((r.ejectedUntil === 0 && r.breaker === 'closed') || this.#lone) return true;
    return this.#slowUsable(r);
  }

  inFlight(index: number): number {
    return this.#records[index]!.inFlight;
  }
}

function checkAlgorithm(algorithm: Algorithm): Algorithm {
  if (!ALGORITHMS.includes(algorithm)) {
    throw new CairnError(
      'CAIRN_ERR_CONFIG_INVALID',
      `unknown load-balancing algorithm "${String(algorithm)}"; one of ${ALGORITHMS.join(', ')}`,
    );
  }
  return algorithm;
}

function checkPassive(o: PassiveHealthOptions): PassiveHealthOptions {
  if (!Number.isInteger(o.maxFails) || o.maxFails < 0) {
    throw new CairnError('CAIRN_ERR_CONFIG_INVALID', 'passive.maxFails: must be an integer >= 0');
  }
  if (!(o.ejectMs >= 0)) throw new CairnError('CAIRN_ERR_CONFIG_INVALID', 'passive.ejectMs: must be >= 0');
  return o;
}

function checkBreaker(o: CircuitBreakerOptions): CircuitBreakerOptions {
  const bad = (key: string, why: string): never => {
    throw new CairnError('CAIRN_ERR_CONFIG_INVALID', `breaker.${key}: ${why}`);
  };
  if (!(o.windowMs > 0)) bad('windowMs', 'must be > 0');
  if (!Number.isInteger(o.buckets) || o.buckets < 1) bad('buckets', 'must be a positive integer');
  if (!(o.errorRatio > 0 && o.errorRatio <= 1)) bad('errorRatio', 'must be in (0, 1]');
  if (!(o.slowRatio > 0 && o.slowRatio <= 1)) bad('slowRatio', 'must be in (0, 1]');
  if (!(o.openMs >= 0)) bad('openMs', 'must be >= 0');
  if (!Number.isInteger(o.halfOpenProbes) || o.halfOpenProbes < 1)
    bad('halfOpenProbes', 'must be a positive integer');
  return o;
}
