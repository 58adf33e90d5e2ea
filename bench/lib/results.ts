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
    readonly sizes: readonly string[];
    readonly pinning: {
      readonly proxyCore: number | null;
      readonly loadgenCore: number | null;
      readonly originCore: number | null;
    };
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
