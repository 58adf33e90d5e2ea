/**
 * Generates bench/RESULTS.md from every `bench/results/*.json` (never edit RESULTS.md by hand).
 *
 *   node --import tsx bench/report.ts [--results-dir DIR] [--out FILE]
 *
 * Each results file has a `kind`. A kind with a renderer in `SECTIONS` gets that renderer; any
 * other kind is rendered generically from its optional `title`, `tables` and `notes`, so a new
 * benchmark (cache-hit throughput, selector micro-bench, gRPC) shows up as soon as it writes a
 * file, and gets a dedicated renderer when it needs one: add a module under bench/report/ and one
 * entry here. `*.raw.json` files are scratch output and are skipped.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { CacheHitResults, GenericResults, PassthroughResults, ResultFileBase } from './lib/results.ts';
import { machineLines, table } from './report/format.ts';
import { renderCacheHit } from './report/cache-hit.ts';
import { renderPassthrough } from './report/passthrough.ts';

interface Section {
  /** Lower renders first. */
  readonly order: number;
  render(data: ResultFileBase): string;
}

/** Renderers by `kind`. Other scripts register theirs here. */
export const SECTIONS: Readonly<Record<string, Section>> = {
  passthrough: { order: 10, render: (d) => renderPassthrough(d as PassthroughResults) },
  'cache-hit': { order: 20, render: (d) => renderCacheHit(d as CacheHitResults) },
};

const GENERIC_ORDER = 1000;

type Json = Record<string, unknown>;

const isObject = (x: unknown): x is Json => typeof x === 'object' && x !== null && !Array.isArray(x);
const isCell = (x: unknown): x is string | number | boolean | null =>
  x === null || ['string', 'number', 'boolean'].includes(typeof x);

function cell(x: unknown): string {
  if (typeof x === 'number') return Number.isInteger(x) ? x.toLocaleString('en-US') : x.toPrecision(4);
  return String(x);
}

/** Arrays of flat records in a loose result file, each rendered as one table. */
function recordTables(data: Json): { caption: string; columns: string[]; rows: string[][] }[] {
  const out: { caption: string; columns: string[]; rows: string[][] }[] = [];
  for (const [key, value] of Object.entries(data)) {
    if (!Array.isArray(value) || value.length === 0) continue;
    if (!value.every((r) => isObject(r) && Object.values(r).every(isCell))) continue;
    const records = value as Json[];
    const columns = [...new Set(records.flatMap((r) => Object.keys(r)))];
    out.push({
      caption: key,
      columns,
      rows: records.map((r) => columns.map((c) => (c in r ? cell(r[c]) : ''))),
    });
  }
  return out;
}

/**
 * Any result file without a dedicated renderer: its `tables` and `notes` if it has them, else every
 * array of flat records as a table and every top-level string or number as a line. Tolerates files
 * without `kind` or `machine` (written before they followed `ResultFileBase`).
 */
function renderGeneric(data: Json, file: string): string {
  const g = data as Partial<GenericResults> & Json;
  const title =
    (typeof g.title === 'string' && g.title) ||
    (typeof g.kind === 'string' && g.kind) ||
    (typeof g.benchmark === 'string' && g.benchmark) ||
    path.basename(file, '.json');
  const out = [`## ${title}`, ''];
  if (g.smoke === true) out.push('> **SMOKE RUN — these numbers are not results.**', '');
  if (isObject(g.machine) && typeof g.machine.date === 'string') out.push(...machineLines(g.machine), '');
  const tables = Array.isArray(g.tables) ? g.tables : recordTables(data);
  if (!Array.isArray(g.tables)) {
    const facts = Object.entries(data).filter(
      ([k, v]) =>
        (typeof v === 'string' || typeof v === 'number') &&
        !['kind', 'schemaVersion', 'title', 'benchmark'].includes(k),
    );
    if (facts.length > 0) out.push(facts.map(([k, v]) => `**${k}**: ${cell(v)}`).join('; ') + '.', '');
  }
  for (const t of tables) out.push(`**${t.caption}**`, '', table(t.columns, t.rows), '');
  for (const n of Array.isArray(g.notes) ? g.notes : []) out.push(String(n), '');
  out.push(`Raw data: \`${file}\`.`);
  return out.join('\n').trimEnd();
}

/** The whole RESULTS.md text for the result files in `resultsDir`. */
export function renderReport(resultsDir: string): string {
  let names: string[] = [];
  try {
    names = readdirSync(resultsDir).filter((f) => f.endsWith('.json') && !f.endsWith('.raw.json'));
  } catch {
    // no results yet
  }
  const parts: { order: number; name: string; text: string }[] = [];
  for (const name of names) {
    const rel = path.posix.join('bench/results', name);
    let data: unknown;
    try {
      data = JSON.parse(readFileSync(path.join(resultsDir, name), 'utf8'));
    } catch (err) {
      parts.push({
        order: GENERIC_ORDER,
        name,
        text: `## ${name}\n\nCould not read \`${rel}\`: ${(err as Error).message}`,
      });
      continue;
    }
    if (!isObject(data)) continue;
    const section = typeof data.kind === 'string' && isObject(data.machine) ? SECTIONS[data.kind] : undefined;
    parts.push(
      section === undefined
        ? { order: GENERIC_ORDER, name, text: renderGeneric(data, rel) }
        : { order: section.order, name, text: section.render(data as unknown as ResultFileBase).trimEnd() },
    );
  }
  parts.sort((a, b) => a.order - b.order || a.name.localeCompare(b.name));
  const head = [
    '# Cairn benchmark results',
    '',
    '<!-- Generated by bench/report.ts from bench/results/*.json. Do not edit by hand: re-run the benchmark or `node --import tsx bench/report.ts`. -->',
    '',
    'Every number below was measured against its peers in the same run, on the machine described in its section. How to run and read these: `bench/README.md`.',
    '',
  ];
  if (parts.length === 0) head.push('No results yet: run `npm run bench`.');
  return `${[...head, ...parts.map((p) => `${p.text}\n`)].join('\n').trimEnd()}\n`;
}

/** Renders and writes RESULTS.md. */
export function writeReport(resultsDir: string, outFile: string): { markdown: string } {
  const markdown = renderReport(resultsDir);
  writeFileSync(outFile, markdown);
  return { markdown };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const benchDir = path.dirname(fileURLToPath(import.meta.url));
  const { values } = parseArgs({ options: { 'results-dir': { type: 'string' }, out: { type: 'string' } } });
  const out = path.resolve(values.out ?? path.join(benchDir, 'RESULTS.md'));
  writeReport(path.resolve(values['results-dir'] ?? path.join(benchDir, 'results')), out);
  console.log(`wrote ${path.relative(process.cwd(), out)}`);
}
