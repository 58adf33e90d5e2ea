/**
 * Active health checks: probe every backend of a source (an `Upstream`) on an interval, over HTTP
 * (method, path, expected status range) or a bare TCP connect, and report a verdict only after
 * `fall` consecutive failures or `rise` consecutive successes (HAProxy's and nginx plus's
 * hysteresis, so one lost packet does not flap a backend).
 *
 * Each round probes the current membership (added backends are picked up, removed ones forgotten),
 * at most `concurrency` probes at a time, each with a fresh connection (a pooled one could hide a
 * dead listener). The next round starts `intervalMs ± jitter` after the previous one ended, so many
 * proxies started together drift apart instead of probing in lock-step. Timers are `unref`'d (checks
 * never keep a process alive) and `stop()` aborts probes in flight and resolves when they settled.
 */

import { EventEmitter } from 'node:events';
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { CairnError } from '../errors.ts';

/** What a check needs to know about a backend (an `Upstream`'s `Backend` fits). */
export interface HealthTarget {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly protocol?: 'http:' | 'https:';
}

/** Where targets come from and where verdicts go (`Upstream` implements it). */
export interface HealthTargetSource {
  healthTargets(): readonly HealthTarget[];
  setHealthy(id: string, healthy: boolean): void;
}

export interface HttpCheck {
  readonly type: 'http';
  /** Default `'GET'`. */
  readonly method?: string;
  /** Default `'/'`. */
  readonly path?: string;
  /** Host header; default the target's `host:port`. */
  readonly host?: string;
  /** Inclusive status range counted healthy; default `[200, 399]`. */
  readonly expectStatus?: readonly [number, number];
  /** For https targets: verify the certificate (default true). */
  readonly rejectUnauthorized?: boolean;
}

export interface TcpCheck {
  readonly type: 'tcp';
}

export interface HealthCheckOptions {
  readonly check: HttpCheck | TcpCheck;
  /** Pause between rounds, ms. Default 5,000. */
  readonly intervalMs?: number;
  /** Per-probe timeout, ms. Default 2,000. */
  readonly timeoutMs?: number;
  /** Consecutive successes that mark a down backend up. Default 2. */
  readonly rise?: number;
  /** Consecutive failures that mark an up backend down. Default 3. */
  readonly fall?: number;
  /** Fraction of the interval to randomise by (0-1). Default 0.1. */
  readonly jitter?: number;
  /** Probes in flight at once. Default 32. */
  readonly concurrency?: number;
  /** Verdict assumed before the first checks: default `true` (traffic flows at once, as in HAProxy). */
  readonly initiallyHealthy?: boolean;
  /** Uniform [0, 1) source for jitter. */
  readonly random?: () => number;
}

/** One probe's result. */
export interface CheckResult {
  readonly target: HealthTarget;
  readonly ok: boolean;
  /** HTTP status, for HTTP checks that got one. */
  readonly status: number | undefined;
  readonly error: Error | undefined;
  readonly durationMs: number;
}

export interface HealthCheckEvents {
  /** Every probe result. */
  check: [result: CheckResult];
  /** A target was marked up after `rise` successes. */
  up: [target: HealthTarget];
  /** A target was marked down after `fall` failures. */
  down: [target: HealthTarget];
  /** One round over all targets finished. */
  round: [];
}

interface TargetState {
  healthy: boolean;
  successes: number;
  failures: number;
}

/**
 * Active health checker over a target source.
 *
 * @example
 * ```ts
 * const checker = new HealthChecker(upstream, {
 *   check: { type: 'http', path: '/healthz', expectStatus: [200, 299] },
 *   intervalMs: 2_000, timeoutMs: 1_000, rise: 2, fall: 3,
 * });
 * checker.on('down', (t) => log.warn({ backend: t.id }, 'health check failed'));
 * checker.start();
 * // on shutdown:
 * await checker.stop();
 * ```
 */
export class HealthChecker extends EventEmitter<HealthCheckEvents> {
  readonly #source: HealthTargetSource;
  readonly #check: HttpCheck | TcpCheck;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #rise: number;
  readonly #fall: number;
  readonly #jitter: number;
  readonly #concurrency: number;
  readonly #initiallyHealthy: boolean;
  readonly #random: () => number;
  #states = new Map<string, TargetState>();
  #running = false;
  #timer: NodeJS.Timeout | undefined = undefined;
  #round: Promise<void> | undefined = undefined;
  #abort: AbortController | undefined = undefined;

  constructor(source: HealthTargetSource, options: HealthCheckOptions) {
    super();
    this.#source = source;
    this.#check = options.check;
    this.#intervalMs = positive('intervalMs', options.intervalMs ?? 5_000);
    this.#timeoutMs = positive('timeoutMs', options.timeoutMs ?? 2_000);
    this.#rise = positiveInt('rise', options.rise ?? 2);
    this.#fall = positiveInt('fall', options.fall ?? 3);
    this.#concurrency = positiveInt('concurrency', options.concurrency ?? 32);
    this.#jitter = options.jitter ?? 0.1;
    if (!(this.#jitter >= 0 && this.#jitter <= 1)) {
      throw new CairnError('CAIRN_ERR_CONFIG_INVALID', 'health check jitter: must be in [0, 1]');
    }
    this.#initiallyHealthy = options.initiallyHealthy ?? true;
    this.#random = options.random ?? Math.random;
    if (options.check.type === 'http' && options.check.expectStatus !== undefined) {
      const [lo, hi] = options.check.expectStatus;
      if (!(Number.isInteger(lo) && Number.isInteger(hi) && lo >= 100 && lo <= hi && hi <= 599)) {
        throw new CairnError(
          'CAIRN_ERR_CONFIG_INVALID',
          `health check expectStatus: [${lo}, ${hi}] is not a status range`,
        );
      }
    }
  }

  /** Whether `start` was called and `stop` not yet. */
  get running(): boolean {
    return this.#running;
  }

  /**
   * Start checking; the first round runs at once. Idempotent.
   * @example
   * ```ts
   * checker.start();
   * ```
   */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#abort = new AbortController();
    this.#schedule(0);
  }

  /**
   * Stop: no new rounds, probes in flight are aborted; resolves when they have settled. Idempotent.
   * @example
   * ```ts
   * await checker.stop();
   * ```
   */
  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#abort?.abort();
    await this.#round;
  }

  /**
   * The current verdict for a target id (undefined before it was ever seen).
   * @example
   * ```ts
   * checker.isHealthy('10.0.0.1:8080');
   * ```
   */
  isHealthy(id: string): boolean | undefined {
    return this.#states.get(id)?.healthy;
  }

  /**
   * Probe one target once, without touching verdicts (for an admin "check now" or diagnostics).
   * @example
   * ```ts
   * const result = await checker.probe({ id: 'x', host: '127.0.0.1', port: 8080 });
   * ```
   */
  probe(target: HealthTarget, signal?: AbortSignal): Promise<CheckResult> {
    return this.#check.type === 'http'
      ? probeHttp(target, this.#check, this.#timeoutMs, signal)
      : probeTcp(target, this.#timeoutMs, signal);
  }

  #schedule(delay: number): void {
    this.#timer = setTimeout(() => this.#startRound(), delay);
    this.#timer.unref();
  }

  #startRound(): void {
    this.#timer = undefined;
    if (!this.#running) return;
    this.#round = this.#runRound().then(() => {
      this.#round = undefined;
      if (!this.#running) return;
      this.emit('round');
      const spread = this.#jitter * (2 * this.#random() - 1);
      this.#schedule(Math.max(0, this.#intervalMs * (1 + spread)));
    });
  }

  async #runRound(): Promise<void> {
    const targets = this.#source.healthTargets();
    const seen = new Set<string>();
    for (const t of targets) seen.add(t.id);
    for (const id of this.#states.keys()) if (!seen.has(id)) this.#states.delete(id);
    const signal = this.#abort!.signal;
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < targets.length && this.#running; i = next++) {
        const result = await this.probe(targets[i]!, signal);
        if (this.#running) this.#record(result);
      }
    };
    const workers: Promise<void>[] = [];
    for (let i = 0; i < Math.min(this.#concurrency, targets.length); i++) workers.push(worker());
    await Promise.all(workers);
  }

  #record(result: CheckResult): void {
    const id = result.target.id;
    let state = this.#states.get(id);
    if (state === undefined) {
      state = { healthy: this.#initiallyHealthy, successes: 0, failures: 0 };
      this.#states.set(id, state);
      this.#source.setHealthy(id, state.healthy);
    }
    this.emit('check', result);
    if (result.ok) {
      state.successes++;
      state.failures = 0;
      if (!state.healthy && state.successes >= this.#rise) {
        state.healthy = true;
        this.#source.setHealthy(id, true);
        this.emit('up', result.target);
      }
    } else {
      state.failures++;
      state.successes = 0;
      if (state.healthy && state.failures >= this.#fall) {
        state.healthy = false;
        this.#source.setHealthy(id, false);
        this.emit('down', result.target);
      }
    }
  }
}

function probeHttp(
  target: HealthTarget,
  check: HttpCheck,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<CheckResult> {
  const started = performance.now();
  const [lo, hi] = check.expectStatus ?? [200, 399];
  const https = target.protocol === 'https:';
  return new Promise<CheckResult>((resolve) => {
    let settled = false;
    const options = {
      host: target.host,
      port: target.port,
      method: check.method ?? 'GET',
      path: check.path ?? '/',
      // A fresh connection per probe: a pooled keep-alive socket could outlive a dead listener.
      agent: false as const,
      headers: {
        host:
          check.host ??
          (target.host.includes(':') ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`),
        'user-agent': 'cairn-health-check',
        connection: 'close',
      },
      ...(https ? { servername: target.host, rejectUnauthorized: check.rejectUnauthorized ?? true } : {}),
    };
    // The callbacks below run asynchronously, after `finish` is defined.
    const req: ClientRequest = (https ? httpsRequest : httpRequest)(options, (res: IncomingMessage) => {
      // The status is the verdict; the body is not needed.
      res.resume();
      finish(res.statusCode, undefined);
    });
    const finish = (status: number | undefined, error: Error | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      req.destroy();
      const ok = error === undefined && status !== undefined && status >= lo && status <= hi;
      resolve({
        target,
        ok,
        status,
        error:
          error ?? (ok ? undefined : new Error(`health check: status ${String(status)} outside ${lo}-${hi}`)),
        durationMs: performance.now() - started,
      });
    };
    const onAbort = (): void => finish(undefined, new Error('health check aborted'));
    const timer = setTimeout(
      () => finish(undefined, new Error(`health check timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    timer.unref();
    req.on('error', (error) => finish(undefined, error));
    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    req.end();
  });
}

function probeTcp(
  target: HealthTarget,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<CheckResult> {
  const started = performance.now();
  return new Promise<CheckResult>((resolve) => {
    let settled = false;
    const socket = connect({ host: target.host, port: target.port });
    const finish = (error: Error | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve({
        target,
        ok: error === undefined,
        status: undefined,
        error,
        durationMs: performance.now() - started,
      });
    };
    const onAbort = (): void => finish(new Error('health check aborted'));
    const timer = setTimeout(
      () => finish(new Error(`health check timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    timer.unref();
    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => finish(undefined));
    socket.once('error', (error) => finish(error));
  });
}

function positive(name: string, value: number): number {
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new CairnError(
      'CAIRN_ERR_CONFIG_INVALID',
      `health check ${name}: must be a positive number, got ${value}`,
    );
  }
  return value;
}

function positiveInt(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new CairnError(
      'CAIRN_ERR_CONFIG_INVALID',
      `health check ${name}: must be a positive integer, got ${value}`,
    );
  }
  return value;
}
