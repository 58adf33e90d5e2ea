/**
 * Backends given by hostname: resolve the name (all addresses) on an interval and keep an
 * upstream's membership equal to the answer — new addresses are added, vanished ones drained (their
 * in-flight requests finish), unchanged ones untouched, so a DNS-based rollout never drops a request.
 *
 * Uses `dns.promises.lookup` (the OS resolver, like undici and `net.connect`, so `/etc/hosts` and
 * `localhost` work) rather than querying DNS servers directly. A failed lookup keeps the last known
 * addresses: a resolver hiccup must not empty the group.
 */

import { EventEmitter } from 'node:events';
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { CairnError } from '../errors.ts';
import type { Backend, BackendConfig } from './backend.ts';

/** One resolved address, as `dns.promises.lookup(…, { all: true })` returns it. */
export interface ResolvedAddress {
  readonly address: string;
  readonly family: number;
}

/** Resolves a hostname to all its addresses. */
export type LookupAll = (
  hostname: string,
  options: { all: true; family: 0 | 4 | 6 },
) => Promise<readonly ResolvedAddress[]>;

/** What the watcher adds to and drains from (`Upstream` implements it). */
export interface ResolvedBackendTarget {
  add(config: BackendConfig): Backend;
  drain(id: string): Promise<void>;
}

export interface HostnameWatchOptions {
  readonly hostname: string;
  readonly port: number;
  /** Weight of each resolved address. Default 1. */
  readonly weight?: number;
  /** Scheme of the backends. Default `'http:'`. */
  readonly protocol?: 'http:' | 'https:';
  /** Re-resolution interval, ms. Default 30,000. */
  readonly intervalMs?: number;
  /** 4 or 6 to restrict the family; default 0 (both). */
  readonly family?: 0 | 4 | 6;
  /** Resolver; default `dns.promises.lookup`. */
  readonly lookup?: LookupAll;
}

export interface HostnameWatchEvents {
  /** The address set changed: backend ids added and drained. */
  change: [added: readonly string[], removed: readonly string[]];
  /** A lookup failed; the previous addresses stay. (Not `error`, so an unheard failure cannot crash the process.) */
  lookupFailed: [error: CairnError];
}

/**
 * Keep an upstream's backends equal to what a hostname resolves to.
 *
 * @example
 * ```ts
 * const upstream = new Upstream({ name: 'api', algorithm: 'least-connections' });
 * const watch = new HostnameWatcher(upstream, { hostname: 'api.internal', port: 8080, intervalMs: 10_000 });
 * await watch.start();           // first answer applied: the upstream has backends
 * watch.on('lookupFailed', (e) => log.warn({ err: e }, 'dns'));
 * // on shutdown:
 * watch.stop();
 * ```
 */
export class HostnameWatcher extends EventEmitter<HostnameWatchEvents> {
  readonly #target: ResolvedBackendTarget;
  readonly #hostname: string;
  readonly #port: number;
  readonly #weight: number;
  readonly #protocol: 'http:' | 'https:';
  readonly #intervalMs: number;
  readonly #family: 0 | 4 | 6;
  readonly #lookup: LookupAll;
  /** Backend ids currently added by this watcher. */
  #ids = new Set<string>();
  #timer: NodeJS.Timeout | undefined = undefined;
  #running = false;
  #inFlight: Promise<void> | undefined = undefined;

  constructor(target: ResolvedBackendTarget, options: HostnameWatchOptions) {
    super();
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
      throw new CairnError(
        'CAIRN_ERR_CONFIG_INVALID',
        `hostname watch ${options.hostname}: port must be 1-65535`,
      );
    }
    const interval = options.intervalMs ?? 30_000;
    if (!(interval > 0))
      throw new CairnError('CAIRN_ERR_CONFIG_INVALID', 'hostname watch intervalMs: must be > 0');
    this.#target = target;
    this.#hostname = options.hostname;
    this.#port = options.port;
    this.#weight = options.weight ?? 1;
    this.#protocol = options.protocol ?? 'http:';
    this.#intervalMs = interval;
    this.#family = options.family ?? 0;
    this.#lookup = options.lookup ?? dnsLookup;
  }

  /** Backend ids currently added from the hostname. */
  get ids(): readonly string[] {
    return [...this.#ids];
  }

  /**
   * Resolve once (applying the answer), then keep re-resolving every `intervalMs`. Resolves after the
   * first lookup, successful or not (a failure is reported as `lookupFailed`).
   * @example
   * ```ts
   * await watch.start();
   * ```
   */
  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    await this.refresh();
    this.#schedule();
  }

  /**
   * Stop re-resolving. Backends stay as they are.
   * @example
   * ```ts
   * watch.stop();
   * ```
   */
  stop(): void {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Resolve now and apply the answer (concurrent calls share one lookup).
   * @example
   * ```ts
   * await watch.refresh();
   * ```
   */
  refresh(): Promise<void> {
    this.#inFlight ??= this.#resolve().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  #schedule(): void {
    if (!this.#running) return;
    this.#timer = setTimeout(() => {
      void this.refresh().then(() => this.#schedule());
    }, this.#intervalMs);
    this.#timer.unref();
  }

  async #resolve(): Promise<void> {
    let answer: readonly ResolvedAddress[];
    try {
      answer = await this.#lookup(this.#hostname, { all: true, family: this.#family });
      if (answer.length === 0) throw new Error('no addresses');
    } catch (cause) {
      this.emit(
        'lookupFailed',
        new CairnError(
          'CAIRN_ERR_UPSTREAM_CONNECT',
          `resolving ${this.#hostname} failed; keeping ${this.#ids.size} known address(es)`,
          { cause },
        ),
      );
      return;
    }
    const next = new Set<string>();
    for (const { address } of answer)
      next.add(isIP(address) === 6 ? `[${address}]:${this.#port}` : `${address}:${this.#port}`);
    const added: string[] = [];
    const removed: string[] = [];
    for (const id of next) {
      if (this.#ids.has(id)) continue;
      const address = this.#protocol === 'https:' ? new URL(`https://${id}`) : id;
      this.#target.add({ address, weight: this.#weight, id });
      added.push(id);
    }
    for (const id of this.#ids) {
      if (next.has(id)) continue;
      void this.#target.drain(id);
      removed.push(id);
    }
    this.#ids = next;
    if (added.length > 0 || removed.length > 0) this.emit('change', added, removed);
  }
}
