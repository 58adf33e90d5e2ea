/**
 * The shapes of the files in `bench/results/`. Every benchmark script writes one JSON file with a
 * `kind`; `bench/report.ts` renders each kind it knows into one section of `bench/RESULTS.md`.
 * Producers write raw measurements (per round), never derived numbers: the report derives medians
 * and ratios, so a change to how numbers are summarised needs no new run.
 */

/** What the machine and the software were when a result file was written. */
export interface MachineInfo {
  readonly date: string;
  readonly hostname: string;
  readonly os: string;
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly node: string;
  /** Load average (1, 5, 15 min) when the run started: a busy machine makes noisy numbers. */
  readonly loadAverageAtStart: readonly number[];
  readonly gitCommit: string | null;
  /** Versions of external tools the run used (`nginx`, `wrk`, …), when they could be found. */
  readonly tools: Readonly<Record<string, string>>;
}

/** Fields every result file starts with. */
export interface ResultFileBase {
  readonly kind: string;
  readonly schemaVersion: number;
  readonly machine: MachineInfo;
  /** True for `--quick` runs: the report marks them as not being results. */
  readonly smoke: boolean;
}

/** One load-generator run against one target at one body size. */
export interface LoadSample {
  readonly requests: number;
  readonly durationSec: number;
  readonly rps: number;
  readonly bytesPerSec: number;
  readonly latencyMs: {
    readonly mean: number;
    readonly p50: number;
    readonly p90: number;
    readonly p99: number;
    readonly max: number;
  };
  /** Socket errors, timeouts and non-2xx/3xx responses: a sample with errors is suspect. */
  readonly errors: {
    readonly connect: number;
    readonly read: number;
    readonly write: number;
    readonly timeout: number;
    readonly status: number;
  };
}

/** Share of each core that was busy (0..1) during a sample, read from /proc/stat. */
export type CoreBusy = readonly number[];

/** Counters scraped from a Cairn admin listener at the end of a sample (cumulative). */
export interface ReuseCounters {
  readonly upstreamConnectionsCreated: number;
  readonly upstreamRequests: number;
  /** Which metric names were matched, so a renamed metric shows up in the report. */
  readonly matched: readonly string[];
}

export interface PassthroughSample extends LoadSample {
  readonly round: number;
  readonly target: string;
  readonly size: string;
  /** Position of the target within its round (the order rotates between rounds). */
  readonly order: number;
  readonly coreBusy: CoreBusy | null;
  /** CPU seconds the target process (and its children) used during the measured window. */
  readonly targetCpuSec: number | null;
  readonly reuse: ReuseCounters | null;
}

export interface TargetStatus {
  readonly name: string;
  readonly description: string;
  readonly started: boolean;
  /** Why it did not start, or why it was dropped part-way (stderr tail, exit code). */
  readonly error: string | null;
  readonly core: number | null;
  readonly pid: number | null;
}

/** The pass-through job: Cairn against Node proxies, nginx and the origin itself. */
export interface PassthroughResults extends ResultFileBase {
  readonly kind: 'passthrough';
  readonly method: {
    readonly loadGenerator: string;
    readonly connections: number;
    readonly threads: number;
    readonly durationSec: number;
    readonly warmupSec: number;
    readonly rounds: number;
    /**
     * Measuring passes per round (absent before this option: 1). A sample's `round` is then its
     * pass, counted over the whole run: round * passes + pass.
     */
    readonly passes?: number;
    readonly sizes: readonly string[];
    readonly pinning: {
      readonly proxyCore: number | null;
      readonly loadgenCore: number | null;
      readonly originCore: number | null;
    };
    /** Every target was started afresh for each round (absent in results from before this option). */
    readonly freshPerRound?: boolean;
  };
  readonly targets: readonly TargetStatus[];
  readonly samples: readonly PassthroughSample[];
}

/** Any file in bench/results/ that the report has not been taught to render specially. */
export interface GenericResults extends ResultFileBase {
  readonly title?: string;
  /** Optional ready tables, so a new script can appear in RESULTS.md before it gets a renderer. */
  readonly tables?: readonly {
    readonly caption: string;
    readonly columns: readonly string[];
    readonly rows: readonly (readonly (string | number)[])[];
  }[];
  readonly notes?: readonly string[];
}

/** Cairn's cache counters from its admin `/metrics` (cumulative), for the cache-hit bench. */
export interface CacheCounters {
  /** `cairn_cache_lookups_total{result="hit"}`. */
  readonly hits: number;
  /** Every other lookup result (miss, stale, revalidated, bypass, collapsed), summed. */
  readonly notHits: number;
  /** `cairn_cache_objects` per tier label (`memory`, `disk`). */
  readonly objects: Readonly<Record<string, number>>;
}

/** One sample of the cache-hit bench: a load run against one target at one body size. */
export interface CacheHitSample extends LoadSample {
  readonly round: number;
  readonly target: string;
  readonly size: string;
  readonly order: number;
  readonly coreBusy: CoreBusy | null;
  readonly targetCpuSec: number | null;
  /**
   * Requests the origin served during the warm-up and the measured run: 0 means every answer was
   * a hit. (`node-ceiling` is an origin itself; this counts the real origin, which it never asks.)
   */
  readonly originRequests: number;
  /** Cairn targets: cache counters over the measured run (hits, other lookups) and tier objects after it. */
  readonly cache: CacheCounters | null;
}

/** A cache-hit target: started or not, and how its hits were checked before measuring. */
export interface CacheHitTargetStatus extends TargetStatus {
  /** What the pre-measurement check saw (e.g. `X-Cache-Status: HIT`, `2 objects on disk, 0 in memory`). */
  readonly verified: string | null;
}

/** The cache-hit job: Cairn's memory and LMDB tiers against the Node ceiling, nginx and Varnish. */
export interface CacheHitResults extends ResultFileBase {
  readonly kind: 'cache-hit';
  readonly method: PassthroughResults['method'];
  readonly targets: readonly CacheHitTargetStatus[];
  readonly samples: readonly CacheHitSample[];
}
