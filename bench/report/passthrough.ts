/**
 * Renders `bench/results/passthrough.json` as a RESULTS.md section: per body size, the median
 * over rounds of each target's RPS and p99, and the ratios Cairn is held to.
 */
import { reuseRatio } from '../lib/metrics.ts';
import type { PassthroughResults, PassthroughSample, ReuseCounters } from '../lib/results.ts';
import { max, median, min, pairedRatio, spread } from '../lib/stats.ts';
import { fmtInt, fmtMs, freshNote, machineLines, passesNote, table } from './format.ts';

/** Cairn pass-through must beat the best Node peer by this factor (RPS). */
export const NODE_PEER_TARGET = 1.3;
/** Overriding every hook may cost at most this share of RPS against overriding one. */
export const ALL_HOOKS_MAX_COST = 0.1;

const NODE_PEERS = ['http-proxy', 'reply-from'] as const;

export interface Row {
  readonly target: string;
  readonly rounds: number;
  readonly rps: number;
  readonly p99: number;
  readonly rpsMin: number;
  readonly rpsMax: number;
  readonly spread: number;
  readonly errors: number;
  /** Median CPU microseconds the target process spent per request. */
  readonly cpuUsPerReq: number | null;
  /** Median busy share of each core while this target was measured. */
  readonly coreBusy: number[] | null;
}

/** The fields of a sample that `summarise` reads (pass-through and cache-hit samples both have them). */
export type SummarisedSample = Pick<
  PassthroughSample,
  'rps' | 'latencyMs' | 'targetCpuSec' | 'requests' | 'coreBusy' | 'errors'
>;

/** Median RPS, p99, CPU µs/req and core busy over rounds, range and spread, error total. */
export function summarise(target: string, samples: readonly SummarisedSample[]): Row {
  const rps = samples.map((s) => s.rps);
  const cpu = samples
    .filter((s) => s.targetCpuSec !== null && s.requests > 0)
    .map((s) => (s.targetCpuSec! / s.requests) * 1e6);
  const busy = samples.map((s) => s.coreBusy).filter((b): b is readonly number[] => b !== null);
  const cores = busy[0]?.length ?? 0;
  return {
    target,
    rounds: samples.length,
    rps: median(rps),
    p99: median(samples.map((s) => s.latencyMs.p99)),
    rpsMin: min(rps),
    rpsMax: max(rps),
    spread: spread(rps),
    errors: samples.reduce(
      (n, s) => n + s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout + s.errors.status,
      0,
    ),
    cpuUsPerReq: cpu.length === 0 ? null : median(cpu),
    coreBusy:
      busy.length === 0 ? null : Array.from({ length: cores }, (_, i) => median(busy.map((b) => b[i] ?? 0))),
  };
}

const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}x`;
const pct = (x: number): string => `${(x * 100).toFixed(0)}%`;
const signed = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`;
/** A verdict; samples with errors (non-2xx, socket errors) make it suspect whatever it says. */
const verdict = (ok: boolean, ...rows: Row[]): string =>
  `${ok ? '**pass**' : '**FAIL**'}${rows.some((r) => r.errors > 0) ? ' (suspect: errors in samples)' : ''}`;

/** Per round, the better of the Node peers' RPS in that round. */
function bestPeerByRound(samples: readonly PassthroughSample[]): { round: number; rps: number }[] {
  const best = new Map<number, number>();
  for (const s of samples) {
    if (!(NODE_PEERS as readonly string[]).includes(s.target)) continue;
    best.set(s.round, Math.max(best.get(s.round) ?? 0, s.rps));
  }
  return [...best].map(([round, rps]) => ({ round, rps }));
}

function comparisons(rows: ReadonlyMap<string, Row>, samples: readonly PassthroughSample[]): string[][] {
  const out: string[][] = [];
  const cairn = rows.get('cairn');
  const missing = (names: readonly string[]): string =>
    `n/a (no result for ${names.filter((n) => !rows.has(n)).join(', ')})`;

  const peers = NODE_PEERS.map((n) => rows.get(n)).filter((r): r is Row => r !== undefined);
  const best = peers.sort((a, b) => b.rps - a.rps)[0];
  if (cairn !== undefined && best !== undefined) {
    const r = cairn.rps / best.rps;
    out.push([
      `cairn / best Node peer (${best.target}), RPS`,
      ratio(cairn.rps, best.rps),
      `>= ${NODE_PEER_TARGET.toFixed(2)}x`,
      verdict(r >= NODE_PEER_TARGET, cairn, best),
    ]);
    const paired = pairedRatio(
      samples.filter((x) => x.target === 'cairn'),
      bestPeerByRound(samples),
    );
    if (paired !== null && paired.rounds > 1) {
      out.push([
        `cairn / best Node peer of each round, RPS paired by round (median of ${paired.rounds} rounds' ratios, min–max)`,
        `${ratio(paired.median, 1)} (${ratio(paired.min, 1)}–${ratio(paired.max, 1)})`,
        `>= ${NODE_PEER_TARGET.toFixed(2)}x`,
        'info: each round measures all within minutes, so a slow drift of the machine cancels',
      ]);
    }
    out.push([`cairn / ${best.target}, p99 (lower is better)`, ratio(cairn.p99, best.p99), '', 'info']);
    if (cairn.cpuUsPerReq !== null && best.cpuUsPerReq !== null) {
      out.push([
        `${best.target} / cairn, CPU per request`,
        ratio(best.cpuUsPerReq, cairn.cpuUsPerReq),
        '',
        'info',
      ]);
    }
  } else {
    out.push([
      'cairn / best Node peer, RPS',
      missing(['cairn', ...NODE_PEERS]),
      `>= ${NODE_PEER_TARGET.toFixed(2)}x`,
      'not measured',
    ]);
  }

  const all = rows.get('cairn-all-hooks');
  const bare = rows.get('cairn-bare');
  if (all !== undefined && bare !== undefined) {
    const cost = 1 - all.rps / bare.rps;
    out.push([
      'cairn-all-hooks / cairn-bare, RPS',
      `${ratio(all.rps, bare.rps)} (cost ${pct(cost)})`,
      `cost <= ${pct(ALL_HOOKS_MAX_COST)}`,
      verdict(cost <= ALL_HOOKS_MAX_COST, all, bare),
    ]);
    if (all.cpuUsPerReq !== null && bare.cpuUsPerReq !== null) {
      out.push([
        'cairn-all-hooks / cairn-bare, CPU per request',
        `${ratio(all.cpuUsPerReq, bare.cpuUsPerReq)} (${signed(all.cpuUsPerReq - bare.cpuUsPerReq)} µs)`,
        '',
        'info',
      ]);
    }
  } else {
    out.push([
      'cairn-all-hooks / cairn-bare, RPS',
      missing(['cairn-all-hooks', 'cairn-bare']),
      `cost <= ${pct(ALL_HOOKS_MAX_COST)}`,
      'not measured',
    ]);
  }

  out.push(...floorLines(rows, cairn, best));

  for (const other of ['nginx', 'node-ceiling', 'direct']) {
    const o = rows.get(other);
    if (cairn !== undefined && o !== undefined)
      out.push([`cairn / ${other}, RPS`, ratio(cairn.rps, o.rps), '', 'info']);
    else out.push([`cairn / ${other}, RPS`, missing(['cairn', other]), '', 'info']);
  }
  return out;
}

/**
 * Cairn and the best Node peer against `node-floor-proxy` (node:http + undici doing nothing but
 * forward), and the share of the floor's throughput that the peer target asks of Cairn: how much
 * room the target leaves for everything Cairn does on top of its libraries.
 */
function floorLines(
  rows: ReadonlyMap<string, Row>,
  cairn: Row | undefined,
  best: Row | undefined,
): string[][] {
  const floor = rows.get(FLOOR);
  if (floor === undefined) return [[`cairn / ${FLOOR}, RPS`, `n/a (no result for ${FLOOR})`, '', 'info']];
  const out: string[][] = [];
  if (cairn !== undefined) {
    out.push([`cairn / ${FLOOR}, RPS`, pct(cairn.rps / floor.rps), '', 'info']);
    if (cairn.cpuUsPerReq !== null && floor.cpuUsPerReq !== null) {
      out.push([
        `cairn vs ${FLOOR}, CPU per request`,
        `${signed(cairn.cpuUsPerReq - floor.cpuUsPerReq)} µs (${ratio(cairn.cpuUsPerReq, floor.cpuUsPerReq)})`,
        '',
        'info: what Cairn costs on top of its libraries',
      ]);
    }
  }
  if (best !== undefined) {
    out.push([`${best.target} / ${FLOOR}, RPS`, pct(best.rps / floor.rps), '', 'info']);
    out.push([
      `${NODE_PEER_TARGET.toFixed(2)}x ${best.target}, as a share of ${FLOOR}'s RPS`,
      pct((best.rps * NODE_PEER_TARGET) / floor.rps),
      '',
      'info: the peer target restated against the floor',
    ]);
  }
  return out;
}

const FLOOR = 'node-floor-proxy';

const CAIRN_TARGETS = ['cairn', 'cairn-all-hooks', 'cairn-bare'] as const;

/**
 * A target's counters over the run. They are cumulative per process: with one process for the
 * run the last scrape has them all; with a fresh process per round, each round's last scrape is
 * that process's total, and the rounds add up.
 */
function processTotals(
  scraped: readonly PassthroughSample[],
  freshPerRound: boolean,
): ReuseCounters | undefined {
  if (!freshPerRound) return scraped[scraped.length - 1]?.reuse ?? undefined;
  const lastOfRound = new Map<number, ReuseCounters>();
  for (const s of scraped) if (s.reuse !== null) lastOfRound.set(s.round, s.reuse);
  if (lastOfRound.size === 0) return undefined;
  let created = 0;
  let requests = 0;
  const matched = new Set<string>();
  for (const r of lastOfRound.values()) {
    created += r.upstreamConnectionsCreated;
    requests += r.upstreamRequests;
    for (const m of r.matched) matched.add(m);
  }
  return { upstreamConnectionsCreated: created, upstreamRequests: requests, matched: [...matched] };
}

/** Origin-connection reuse per Cairn target, from the cumulative counters of its processes. */
function reuseSection(data: PassthroughResults): string[] {
  const rows: string[][] = [];
  for (const name of CAIRN_TARGETS) {
    const status = data.targets.find((t) => t.name === name);
    if (status === undefined) continue;
    const scraped = data.samples.filter((s) => s.target === name && s.reuse !== null);
    const last = processTotals(scraped, data.method.freshPerRound === true);
    if (last === undefined) {
      const why = !status.started ? 'did not start' : 'no reuse counters on its admin `/metrics`';
      rows.push([`\`${name}\``, '', '', `not measured (${why})`, '']);
      continue;
    }
    const r = reuseRatio(last);
    rows.push([
      `\`${name}\``,
      fmtInt(last.upstreamRequests),
      fmtInt(last.upstreamConnectionsCreated),
      r === null ? 'n/a' : `${(r * 100).toFixed(2)}%`,
      last.matched.map((m) => `\`${m}\``).join(', '),
    ]);
  }
  if (rows.length === 0) return [];
  return [
    '### Origin connection reuse (Cairn)',
    '',
    "From each Cairn process's admin `/metrics`, added up over the whole run (all sizes, warm-ups included; with a fresh process per round, over every round's process). " +
      'Reuse = 1 − connections created / origin requests; with keep-alive it should be close to 100%.',
    '',
    table(['target', 'origin requests', 'connections created', 'reuse', 'counters read'], rows),
  ];
}

function biasNote(data: PassthroughResults): string {
  const { proxyCore, loadgenCore, originCore } = data.method.pinning;
  if (proxyCore === null)
    return 'Processes were **not pinned** (no taskset or fewer than 2 cores): the target, the load generator and the origin competed for every core.';
  const parts = [
    `The target under test ran alone on core ${proxyCore}; the load generator on core ${loadgenCore}.`,
  ];
  if (originCore === loadgenCore) {
    parts.push(
      `The origin shared core ${originCore} with the load generator. This keeps the proxy core clean (what is measured is the proxy), ` +
        `but caps every target at what that core can generate and serve: ratios between targets are compressed toward 1 when ` +
        `core ${originCore} is the busier one (see "core busy"), which flatters slower proxies against nginx. ` +
        `\`direct\` is the origin on that shared core, so it under-states the origin; \`node-ceiling\` is the same program alone on core ${proxyCore}.`,
    );
  } else if (originCore === proxyCore) {
    parts.push(
      `The origin shared core ${originCore} with the target: each proxy's number includes the origin's CPU cost, which understates every proxy by a similar amount.`,
    );
  } else {
    parts.push(`The origin ran on core ${originCore}.`);
  }
  return parts.join(' ');
}

/** The whole pass-through section, Markdown. */
export function renderPassthrough(data: PassthroughResults): string {
  const m = data.method;
  const out: string[] = ['## Pass-through: Cairn vs Node proxies, nginx and the origin', ''];
  if (data.smoke)
    out.push(
      '> **SMOKE RUN (`--quick`) — these numbers are not results.** Re-run without `--quick` on an idle machine.',
      '',
    );
  out.push(...machineLines(data.machine), '');
  out.push(
    `**Method.** ${m.loadGenerator}, ${m.threads} thread, ${m.connections} keep-alive connections, ${m.warmupSec} s warm-up then ${m.durationSec} s measured per sample; ` +
      `${m.rounds} round(s)${passesNote(m.passes)}; in each round every target is measured once per body size, and the order of targets rotates from round to round so that ` +
      `noise and position spread evenly${freshNote(m.freshPerRound)}. Numbers are the **median over rounds**. All traffic is on 127.0.0.1; the origin answers from a preallocated Buffer ` +
      `with \`Cache-Control: no-store\`, HTTP/1.1 keep-alive.`,
    '',
    `**Pinning.** ${biasNote(data)}`,
    '',
  );

  out.push('**Targets.**', '');
  out.push(
    table(
      ['target', 'what', 'status'],
      data.targets.map((t) => [
        `\`${t.name}\``,
        t.description,
        t.started
          ? t.error === null
            ? 'ran'
            : `dropped: ${oneLine(t.error)}`
          : `**failed to start**: ${oneLine(t.error ?? '')}`,
      ]),
    ),
    '',
  );

  for (const size of m.sizes) {
    const rows = new Map<string, Row>();
    for (const t of data.targets) {
      const s = data.samples.filter((x) => x.target === t.name && x.size === size);
      if (s.length > 0) rows.set(t.name, summarise(t.name, s));
    }
    const ofSize = data.samples.filter((x) => x.size === size);
    out.push(`### ${sizeTitle(size)} bodies`, '');
    if (rows.size === 0) {
      out.push('No samples.', '');
      continue;
    }
    const cores = [...rows.values()].find((r) => r.coreBusy !== null)?.coreBusy?.length ?? 0;
    const coreCols = Array.from({ length: cores }, (_, i) => `core ${i} busy`);
    out.push(
      table(
        [
          'target',
          'median RPS',
          'median p99 (ms)',
          'RPS min–max',
          'spread',
          'CPU µs/req',
          ...coreCols,
          'errors',
        ],
        [...rows.values()].map((r) => [
          `\`${r.target}\``,
          fmtInt(r.rps),
          fmtMs(r.p99),
          `${fmtInt(r.rpsMin)}–${fmtInt(r.rpsMax)}`,
          `${pct(r.spread)}${r.spread > 0.1 ? ' (noisy)' : ''}`,
          r.cpuUsPerReq === null ? '' : r.cpuUsPerReq.toFixed(1),
          ...Array.from({ length: cores }, (_, i) => (r.coreBusy === null ? '' : pct(r.coreBusy[i] ?? 0))),
          r.errors === 0 ? '0' : `**${fmtInt(r.errors)}**`,
        ]),
      ),
      '',
    );
    out.push(table(['comparison', 'ratio', 'target', 'verdict'], comparisons(rows, ofSize)), '');
  }
  out.push(...reuseSection(data), '');
  out.push(
    '**Reading the numbers.** RPS and p99 come from the load generator. *CPU µs/req* is the CPU time of the target process (and its children, ' +
      'e.g. nginx workers) divided by the requests it served: it is the cost per request even when the target was not the bottleneck. ' +
      '*Core busy* is the share of each core in use while the sample ran (all processes on the machine): a target core well below 100% means ' +
      'something else — usually the core with the load generator and the origin — limited that number. *Spread* is (max − min) / median over rounds; ' +
      'above 10% the machine was noisy and the ratios are uncertain by about that much.',
  );
  return out.join('\n');
}

export function sizeTitle(size: string): string {
  const m = /^(\d+)([km]?)$/.exec(size);
  if (m === null) return size;
  return `${m[1]} ${m[2] === 'k' ? 'KiB' : m[2] === 'm' ? 'MiB' : 'B'}`;
}

/** The first line of an error, plus the first line below it that names an error (a child's stderr). */
export function oneLine(s: string): string {
  const lines = s.split('\n').map((l) => l.trim());
  const cause = lines.slice(1).find((l) => /error/i.test(l));
  const text = cause === undefined ? lines[0]! : `${lines[0]!}: ${cause}`;
  return text.replace(/\|/g, '\\|').slice(0, 300);
}
