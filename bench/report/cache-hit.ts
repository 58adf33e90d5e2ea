/**
 * Renders `bench/results/cache-hit.json` as a RESULTS.md section: per object size, the median over
 * rounds of each target's RPS, p99 and CPU µs/req, whether the origin stayed untouched, and the
 * ratios issue 3 holds Cairn to (memory-tier hits >= 80% of the Node ceiling, LMDB-tier >= 60%).
 */
import type { CacheHitResults, CacheHitSample } from '../lib/results.ts';
import { pairedRatio } from '../lib/stats.ts';
import { fmtInt, fmtMs, freshNote, machineLines, passesNote, table } from './format.ts';
import { oneLine, sizeTitle, summarise, type Row } from './passthrough.ts';

/** Share of the Node ceiling's RPS each Cairn tier must reach. */
export const CACHE_HIT_TARGETS: Readonly<Record<string, number>> = { 'cairn-memory': 0.8, 'cairn-lmdb': 0.6 };

const CEILING = 'node-ceiling';
const PEERS = ['nginx-proxy-cache', 'varnish', 'undici-cache-interceptor'] as const;

interface HitRow extends Row {
  /** Origin requests summed over every sample of this target and size: 0 = every answer a hit. */
  readonly originRequests: number;
  /** Cairn: cache hits and other lookups counted by Cairn over the measured runs. */
  readonly hits: number | null;
  readonly notHits: number | null;
}

function summariseHits(target: string, samples: readonly CacheHitSample[]): HitRow {
  const withCache = samples.filter((s) => s.cache !== null);
  return {
    ...summarise(target, samples),
    originRequests: samples.reduce((n, s) => n + s.originRequests, 0),
    hits: withCache.length === 0 ? null : withCache.reduce((n, s) => n + s.cache!.hits, 0),
    notHits: withCache.length === 0 ? null : withCache.reduce((n, s) => n + s.cache!.notHits, 0),
  };
}

const pct = (x: number): string => `${(x * 100).toFixed(0)}%`;

/** Why a verdict cannot be trusted as it stands, if it cannot. */
function caveats(...rows: HitRow[]): string {
  const why: string[] = [];
  if (rows.some((r) => r.errors > 0)) why.push('errors in samples');
  if (rows.some((r) => r.originRequests > 0)) why.push('the origin was asked: not all hits');
  if (rows.some((r) => r.spread > 0.1)) why.push('noisy: spread > 10%');
  return why.length === 0 ? '' : ` (suspect: ${why.join('; ')})`;
}

function comparisons(
  rows: ReadonlyMap<string, HitRow>,
  samples: ReadonlyMap<string, readonly CacheHitSample[]>,
): string[][] {
  const out: string[][] = [];
  const ceiling = rows.get(CEILING);
  for (const [name, share] of Object.entries(CACHE_HIT_TARGETS)) {
    const r = rows.get(name);
    if (r === undefined || ceiling === undefined) {
      out.push([
        `${name} / ${CEILING}, RPS`,
        `n/a (no result for ${r === undefined ? name : CEILING})`,
        `>= ${pct(share)}`,
        'not measured',
      ]);
      continue;
    }
    const ratio = r.rps / ceiling.rps;
    out.push([
      `${name} / ${CEILING}, RPS`,
      pct(ratio),
      `>= ${pct(share)}`,
      `${ratio >= share ? '**pass**' : '**FAIL**'}${caveats(r, ceiling)}`,
    ]);
    const paired = pairedRatio(samples.get(name) ?? [], samples.get(CEILING) ?? []);
    if (paired !== null && paired.rounds > 1) {
      out.push([
        `${name} / ${CEILING}, RPS paired by round (median of ${paired.rounds} rounds' ratios, min–max)`,
        `${pct(paired.median)} (${pct(paired.min)}–${pct(paired.max)})`,
        `>= ${pct(share)}`,
        'info: each round measures both within minutes, so a slow drift of the machine cancels',
      ]);
    }
    if (r.cpuUsPerReq !== null && ceiling.cpuUsPerReq !== null) {
      out.push([
        `${name} vs ${CEILING}, CPU per request (ceiling µs / ${name} µs)`,
        pct(ceiling.cpuUsPerReq / r.cpuUsPerReq),
        `>= ${pct(share)}`,
        'info: the RPS ratio a saturated target core would give',
      ]);
    }
  }
  const memory = rows.get('cairn-memory');
  for (const peer of PEERS) {
    const p = rows.get(peer);
    if (memory !== undefined && p !== undefined)
      out.push([`cairn-memory / ${peer}, RPS`, `${(memory.rps / p.rps).toFixed(2)}x`, '', 'info']);
  }
  return out;
}

function originCell(r: HitRow): string {
  return r.originRequests === 0 ? '0' : `**${fmtInt(r.originRequests)}**`;
}

function hitsCell(r: HitRow): string {
  if (r.hits === null) return '';
  return r.notHits === 0
    ? `${fmtInt(r.hits)} hits`
    : `${fmtInt(r.hits)} hits, **${fmtInt(r.notHits ?? 0)} not**`;
}

/** The whole cache-hit section, Markdown. */
export function renderCacheHit(data: CacheHitResults): string {
  const m = data.method;
  const out: string[] = [
    '## Cache hits: Cairn memory and LMDB tiers vs the Node ceiling, nginx and Varnish',
    '',
  ];
  if (data.smoke)
    out.push(
      '> **SMOKE RUN (`--quick`) — these numbers are not results.** Re-run without `--quick` on an idle machine.',
      '',
    );
  out.push(...machineLines(data.machine), '');
  const p = m.pinning;
  out.push(
    `**Method.** ${m.loadGenerator}, ${m.threads} thread, ${m.connections} keep-alive connections, ${m.warmupSec} s warm-up then ${m.durationSec} s measured per sample; ` +
      `${m.rounds} round(s)${passesNote(m.passes)}, the order of targets rotating from round to round${freshNote(m.freshPerRound)}; numbers are the **median over rounds**. Every target answers ` +
      '`GET /cacheable/<size>`, which the origin serves from a Buffer with `Cache-Control: public, max-age=3600`. Before measuring, each target was warmed ' +
      "and shown to hit (the origin's request count did not move, and the headers said so: see *verified*). During every sample the origin's count is read " +
      'before the warm-up and after the run; *origin asked* must be 0.',
    '',
    p.proxyCore === null
      ? '**Pinning.** None (no taskset or fewer than 2 cores): the numbers mix the target and the load generator.'
      : `**Pinning.** The target ran alone on core ${p.proxyCore}; the load generator on core ${p.loadgenCore}; the origin on core ${p.originCore} (idle during the samples: every answer is a hit). ` +
          `\`${CEILING}\` is the origin program itself on core ${p.proxyCore}: the most one Node process serves there, the ceiling the targets are held to.`,
    '',
    '**Targets.**',
    '',
    table(
      ['target', 'what', 'status', 'verified'],
      data.targets.map((t) => [
        `\`${t.name}\``,
        t.description,
        t.started
          ? t.error === null
            ? 'ran'
            : `dropped: ${oneLine(t.error)}`
          : `**failed to start**: ${oneLine(t.error ?? '')}`,
        t.verified === null ? '' : t.verified.replace(/\|/g, '\\|'),
      ]),
    ),
    '',
  );
  for (const size of m.sizes) {
    const rows = new Map<string, HitRow>();
    const bySize = new Map<string, readonly CacheHitSample[]>();
    for (const t of data.targets) {
      const s = data.samples.filter((x) => x.target === t.name && x.size === size);
      if (s.length > 0) rows.set(t.name, summariseHits(t.name, s));
      bySize.set(t.name, s);
    }
    out.push(`### ${sizeTitle(size)} objects`, '');
    if (rows.size === 0) {
      out.push('No samples.', '');
      continue;
    }
    const cores = [...rows.values()].find((r) => r.coreBusy !== null)?.coreBusy?.length ?? 0;
    const ceiling = rows.get(CEILING);
    out.push(
      table(
        [
          'target',
          'median RPS',
          '% of ceiling',
          'median p99 (ms)',
          'RPS min–max',
          'spread',
          'CPU µs/req',
          ...Array.from({ length: cores }, (_, i) => `core ${i} busy`),
          'origin asked',
          'Cairn lookups',
          'errors',
        ],
        [...rows.values()].map((r) => [
          `\`${r.target}\``,
          fmtInt(r.rps),
          ceiling === undefined ? '' : pct(r.rps / ceiling.rps),
          fmtMs(r.p99),
          `${fmtInt(r.rpsMin)}–${fmtInt(r.rpsMax)}`,
          `${pct(r.spread)}${r.spread > 0.1 ? ' (noisy)' : ''}`,
          r.cpuUsPerReq === null ? '' : r.cpuUsPerReq.toFixed(1),
          ...Array.from({ length: cores }, (_, i) => (r.coreBusy === null ? '' : pct(r.coreBusy[i] ?? 0))),
          originCell(r),
          hitsCell(r),
          r.errors === 0 ? '0' : `**${fmtInt(r.errors)}**`,
        ]),
      ),
      '',
      table(['comparison', 'ratio', 'target', 'verdict'], comparisons(rows, bySize)),
      '',
    );
  }
  out.push(
    '**Reading the numbers.** *CPU µs/req* is the CPU time of the target process (and its children: nginx and Varnish workers) divided by the requests it ' +
      'served; on a shared or busy machine it is steadier than RPS, and the CPU ratio is what the RPS ratio would be if the target core were saturated and ' +
      "the load generator were not the limit. A target core well below 100% busy means something else limited that number (usually the load generator's " +
      'core). *Spread* above 10% means the machine was noisy: re-run before trusting a verdict.',
  );
  return out.join('\n');
}
