/**
 * Prometheus metrics (prom-client). Every label child is made here, at startup, so the hot path
 * only increments; no metric is labelled with an unbounded value.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Metric, MetricValueWithName } from 'prom-client';
import type { HttpCache } from '../cache/http-cache.ts';
import { LOOKUP_RESULTS } from '../cache/http-cache.ts';
import type { UpstreamSnapshot } from './lb/upstream.ts';

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/** How one origin attempt ended. */
export type UpstreamOutcome = 'response' | 'connect_error' | 'timeout' | 'error';
const OUTCOMES: readonly UpstreamOutcome[] = ['response', 'connect_error', 'timeout', 'error'];

/** Why a downstream request was refused before any phase ran. */
export type DownstreamRejection = 'bad_request' | 'headers_too_large' | 'timeout';
const REJECTIONS: readonly DownstreamRejection[] = ['bad_request', 'headers_too_large', 'timeout'];

/** An unlabelled counter whose value `read` gives at scrape time (the hot path bumps plain numbers). */
function scrapedCounter(registers: Registry[], name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers,
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/**
 * The engine's metrics, in their own registry (scraped from the admin listener's `/metrics`).
 *
 * @example
 * ```ts
 * const metrics = new CairnMetrics();
 * metrics.requestDone(200, 0.004);
 * console.log(await metrics.registry.metrics());
 * ```
 */
export class CairnMetrics {
  readonly registry: Registry;
  /** The request path only bumps these plain numbers; prom-client reads them at scrape time. */
  readonly #requests = new Float64Array(STATUS_CLASSES.length);
  readonly #upstream = new Float64Array(OUTCOMES.length);
  readonly #rejected = new Float64Array(REJECTIONS.length);
  readonly #duration: LeanHistogram;
  #inFlight = 0;
  #connectionsCreated = 0;
  #connectionsReused = 0;
  #retries = 0;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registry = new Registry();
    this.registry = registry;
    if (options.defaultMetrics !== false)
      collectDefaultMetrics({ register: registry, prefix: 'cairn_process_' });
    const registers = [registry];
    const labelled = (
      name: string,
      help: string,
      label: string,
      values: readonly string[],
      counts: Float64Array,
    ): void => {
      new Counter({
        name,
        help,
        labelNames: [label],
        registers,
        collect() {
          this.reset();
          for (let i = 0; i < values.length; i++) this.labels(values[i]!).inc(counts[i]);
        },
      });
    };
    labelled(
      'cairn_requests_total',
      'Downstream requests answered, by status class.',
      'status_class',
      STATUS_CLASSES,
      this.#requests,
    );
    this.#duration = new LeanHistogram(
      'cairn_request_duration_seconds',
      'Time from request arrival to the end of the response.',
      [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    );
    registry.registerMetric(this.#duration as unknown as Metric);
    const inFlight = (): number => this.#inFlight;
    new Gauge({
      name: 'cairn_requests_in_flight',
      help: 'Downstream requests being processed now.',
      registers,
      collect() {
        this.set(inFlight());
      },
    });
    labelled(
      'cairn_upstream_requests_total',
      'Origin attempts, by outcome (response, connect_error, timeout, error).',
      'outcome',
      OUTCOMES,
      this.#upstream,
    );
    scrapedCounter(
      registers,
      'cairn_upstream_connections_created_total',
      'Connections opened to origins.',
      () => this.#connectionsCreated,
    );
    scrapedCounter(
      registers,
      'cairn_upstream_connections_reused_total',
      'Origin requests sent over a connection that had served an earlier request.',
      () => this.#connectionsReused,
    );
    labelled(
      'cairn_downstream_rejected_total',
      'Requests refused before proxying (malformed, headers too large, timed out).',
      'reason',
      REJECTIONS,
      this.#rejected,
    );
    scrapedCounter(
      registers,
      'cairn_upstream_retries_total',
      'Origin attempts that were retries of a failed attempt.',
      () => this.#retries,
    );
  }

  /**
   * Export a cache's lookups, per-tier bytes/objects/evictions and lock counters. Read at scrape
   * time from the cache's own counters, so the request path only bumps plain numbers.
   */
  addCache(cache: HttpCache): void {
    this.#caches.push(cache);
    if (this.#caches.length > 1) return;
    const caches = this.#caches;
    const registers = [this.registry];
    new Counter({
      name: 'cairn_cache_lookups_total',
      help: 'Cache lookups by result (hit, miss, stale, revalidated, bypass, collapsed).',
      labelNames: ['result'],
      registers,
      collect() {
        this.reset();
        for (const result of LOOKUP_RESULTS) {
          let sum = 0;
          for (const c of caches) sum += c.lookups[result];
          this.labels(result).inc(sum);
        }
      },
    });
    const perTier = (
      name: string,
      help: string,
      pick: (s: { bytes: number; objects: number; evictions: number }) => number,
    ): void => {
      new Gauge({
        name,
        help,
        labelNames: ['tier'],
        registers,
        collect() {
          this.reset();
          for (const c of caches) for (const t of c.tierStats()) this.labels(t.tier).inc(pick(t));
        },
      });
    };
    perTier('cairn_cache_bytes', 'Bytes stored, per cache tier.', (t) => t.bytes);
    perTier('cairn_cache_objects', 'Objects stored, per cache tier.', (t) => t.objects);
    perTier(
      'cairn_cache_evictions',
      'Objects evicted to stay under the byte limit, per tier, since start.',
      (t) => t.evictions,
    );
    const lockCounter = (name: string, help: string, pick: (c: HttpCache) => number): void =>
      scrapedCounter(registers, name, help, () => {
        let sum = 0;
        for (const c of caches) sum += pick(c);
        return sum;
      });
    lockCounter(
      'cairn_cache_lock_waits_total',
      'Requests that waited for another request fetching the same key.',
      (c) => c.lock?.counters.waits ?? 0,
    );
    lockCounter(
      'cairn_cache_lock_timeouts_total',
      'Lock waits that gave up and fetched on their own.',
      (c) => c.lock?.counters.timeouts ?? 0,
    );
  }

  readonly #caches: HttpCache[] = [];

  requestStarted(): void {
    this.#inFlight++;
  }

  requestDone(status: number, seconds: number): void {
    this.#inFlight--;
    // status 0 (client gone before any response) counts as neither; it is in the access log.
    if (status >= 100 && status < 600) this.#requests[Math.floor(status / 100) - 1]!++;
    this.#duration.observe(seconds);
  }

  upstreamAttempt(outcome: UpstreamOutcome): void {
    this.#upstream[OUTCOMES.indexOf(outcome)]!++;
  }

  upstreamRetry(): void {
    this.#retries++;
  }

  connectionCreated(): void {
    this.#connectionsCreated++;
  }

  connectionReused(): void {
    this.#connectionsReused++;
  }

  rejected(reason: DownstreamRejection): void {
    this.#rejected[REJECTIONS.indexOf(reason)]!++;
  }

  readonly #upstreamSources: (() => Iterable<UpstreamSnapshot>)[] = [];

  /**
   * Export per-backend state for the upstream groups `source` returns, labelled `upstream` (group
   * name) and `backend` (backend id) — both configuration, so bounded. Read at scrape time from
   * `Upstream.snapshot()`: the request path pays nothing, and a removed backend's series disappear
   * with it (every collect starts from an empty family).
   *
   * @example
   * ```ts
   * metrics.addUpstreams(() => [api.snapshot(), web.snapshot()]);
   * ```
   */
  addUpstreams(source: () => Iterable<UpstreamSnapshot>): void {
    this.#upstreamSources.push(source);
    if (this.#upstreamSources.length > 1) return;
    const sources = this.#upstreamSources;
    const registers = [this.registry];
    const labelNames = ['upstream', 'backend'];
    type Row = UpstreamSnapshot['backends'][number];
    const family = (
      kind: 'gauge' | 'counter',
      name: string,
      help: string,
      pick: (b: Row) => number,
      aggregator: 'sum' | 'min' | 'max' = 'sum',
    ): void => {
      const collect = function (this: Gauge | Counter): void {
        this.reset();
        for (const source of sources) {
          for (const group of source())
            for (const b of group.backends) this.labels(group.name, b.id).inc(pick(b));
        }
      };
      if (kind === 'gauge') new Gauge({ name, help, labelNames, registers, aggregator, collect });
      else new Counter({ name, help, labelNames, registers, aggregator, collect });
    };
    // With --workers, each worker keeps its own view; `up`/`healthy` aggregate as the minimum (up
    // only if every worker would select it), the rest as sums.
    family(
      'gauge',
      'cairn_upstream_backend_up',
      'Whether the backend would be selected now (healthy, not ejected, breaker closed, not draining).',
      (b) => (b.up ? 1 : 0),
      'min',
    );
    family(
      'gauge',
      'cairn_upstream_backend_healthy',
      'Last active health-check verdict (1 healthy).',
      (b) => (b.healthy ? 1 : 0),
      'min',
    );
    family(
      'gauge',
      'cairn_upstream_backend_draining',
      'Whether the backend is draining (no new requests, leaving when idle).',
      (b) => (b.state === 'draining' ? 1 : 0),
      'max',
    );
    family(
      'gauge',
      'cairn_upstream_backend_breaker_state',
      'Circuit breaker: 0 closed, 1 half-open, 2 open.',
      (b) => (b.breaker === 'closed' ? 0 : b.breaker === 'half-open' ? 1 : 2),
      'max',
    );
    family('gauge', 'cairn_upstream_backend_weight', 'Configured weight.', (b) => b.weight, 'max');
    family(
      'gauge',
      'cairn_upstream_backend_in_flight',
      'Requests in flight on the backend.',
      (b) => b.inFlight,
    );
    family(
      'counter',
      'cairn_upstream_backend_selections_total',
      'Times the load balancer picked the backend.',
      (b) => b.selections,
    );
    family(
      'counter',
      'cairn_upstream_backend_ejections_total',
      'Times passive health ejected the backend.',
      (b) => b.ejections,
    );
    family(
      'counter',
      'cairn_upstream_backend_failures_total',
      'Requests on the backend that ended as failures (connect errors, resets, failure statuses).',
      (b) => b.failures,
    );
  }

  /**
   * Export origin connections created and reused per peer (`peer` = the origin's `host:port`), read
   * at scrape time from the pools' own counters, so requests pay nothing. Peers are whatever
   * `upstreamPeer` returns, so the label set is bounded: the first `maxPeers` peer addresses (by
   * first use) get their own series, the rest are summed under `peer="other"`.
   *
   * @example
   * ```ts
   * metrics.addPeerPools(() => engine.pools.stats(), 100);
   * ```
   */
  addPeerPools(
    source: () => Iterable<{
      readonly address: string;
      readonly connectionsCreated: number;
      readonly requestsReused: number;
    }>,
    maxPeers = 100,
  ): void {
    const registers = [this.registry];
    const labelNames = ['peer'];
    const family = (
      name: string,
      help: string,
      pick: (p: { connectionsCreated: number; requestsReused: number }) => number,
    ): void => {
      new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          const sums = new Map<string, number>();
          for (const pool of source()) {
            const label = sums.has(pool.address) || sums.size < maxPeers ? pool.address : 'other';
            sums.set(label, (sums.get(label) ?? 0) + pick(pool));
          }
          for (const [peer, value] of sums) this.labels(peer).inc(value);
        },
      });
    };
    family(
      'cairn_upstream_peer_connections_created_total',
      'Connections (HTTP/2: sessions) opened to each origin peer.',
      (p) => p.connectionsCreated,
    );
    family(
      'cairn_upstream_peer_connections_reused_total',
      'Requests sent to each origin peer over a connection that had carried an earlier request.',
      (p) => p.requestsReused,
    );
  }
}

/**
 * A histogram without labels whose `observe` is a scan of the bucket bounds and three additions.
 * prom-client's own Histogram converts, validates and hashes labels and makes a closure on every
 * observation; this one is registered in the same registry through prom-client's metric interface
 * (`name`, `help`, `get()`, `reset()`), so `/metrics` and the cluster aggregation (`aggregator`)
 * see an ordinary histogram.
 */
class LeanHistogram {
  readonly name: string;
  readonly help: string;
  readonly #bounds: readonly number[];
  /** Observations per bucket (not cumulative); the last slot is above every bound. */
  #counts: Float64Array;
  #sum = 0;
  #count = 0;

  constructor(name: string, help: string, bounds: readonly number[]) {
    this.name = name;
    this.help = help;
    this.#bounds = bounds;
    this.#counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.#counts[i]!++;
    this.#sum += value;
    this.#count++;
  }

  reset(): void {
    this.#counts = new Float64Array(this.#bounds.length + 1);
    this.#sum = 0;
    this.#count = 0;
  }

  get(): {
    name: string;
    help: string;
    type: 'histogram';
    values: MetricValueWithName<string>[];
    aggregator: 'sum';
  } {
    const bucket = `${this.name}_bucket`;
    const values: MetricValueWithName<string>[] = [];
    let cumulative = 0;
    for (let i = 0; i < this.#bounds.length; i++) {
      cumulative += this.#counts[i]!;
      values.push({ labels: { le: this.#bounds[i]! }, value: cumulative, metricName: bucket });
    }
    values.push(
      { labels: { le: '+Inf' }, value: this.#count, metricName: bucket },
      { labels: {}, value: this.#sum, metricName: `${this.name}_sum` },
      { labels: {}, value: this.#count, metricName: `${this.name}_count` },
    );
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' };
  }
}
