/**
 * How a `cairn check` report is shown: a table for people, JUnit XML for CI systems, and a
 * progress bar on stderr for long runs.
 */
import type { CheckReport, CheckVerdict, StepResult } from './check-run.ts';

const WORD: Readonly<Record<CheckVerdict, string>> = { passed: 'ok', failed: 'FAIL', 'not-judged': 'n/a' };

function cut(s: string, width: number): string {
  return s.length <= width ? s : `${s.slice(0, width - 1)}…`;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

/** Steps of one scenario grouped back into the file's steps (a `repeat: N` step is one row). */
function groupSteps(steps: readonly StepResult[]): StepResult[][] {
  const groups: StepResult[][] = [];
  for (const step of steps) {
    const base = step.label.replace(/ \(\d+\/\d+\)$/, '');
    const last = groups.at(-1);
    if (last !== undefined && last[0]!.label.replace(/ \(\d+\/\d+\)$/, '') === base && base !== step.label)
      last.push(step);
    else groups.push([step]);
  }
  return groups;
}

function counted(values: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  if (values.length === 1) return values[0]!;
  return [...counts].map(([v, n]) => `${v} ×${n}`).join(', ');
}

/**
 * The report as a table (one row per step of the file, one per scenario check), then the details
 * of every failure, then one summary line.
 *
 * @example
 * ```ts
 * process.stdout.write(formatReportTable(report));
 * ```
 */
export function formatReportTable(report: CheckReport): string {
  const header = ['#', 'step', 'request', 'status', 'cache', 'result'];
  const sections: { title: string; rows: string[][] }[] = [];
  let n = 0;
  for (const s of report.scenarios) {
    const rows: string[][] = [];
    for (const group of groupSteps(s.steps)) {
      const first = group[0]!;
      const failed = group.filter((x) => x.verdict === 'failed').length;
      const judged = group.filter((x) => x.verdict !== 'not-judged').length;
      const result =
        failed > 0
          ? group.length === 1
            ? 'FAIL'
            : `FAIL ${failed}/${group.length}`
          : judged === 0
            ? 'n/a'
            : 'ok';
      rows.push([
        String(++n),
        cut(
          group.length === 1
            ? first.label
            : `${first.label.replace(/ \(\d+\/\d+\)$/, '')} (×${group.length})`,
          40,
        ),
        cut(`${first.method} ${first.path}`, 40),
        counted(group.map((x) => (x.status === undefined ? '-' : String(x.status)))),
        counted(group.map((x) => x.outcome ?? '-')),
        result,
      ]);
    }
    // A scenario check spans the request, status and cache columns (marked by an empty status).
    for (const c of s.checks) rows.push(['', cut(c.label, 40), c.message, '', '', WORD[c.verdict], 'span']);
    sections.push({ title: s.name, rows });
  }
  const all = [header, ...sections.flatMap((x) => x.rows)];
  const widths = header.map((_, col) =>
    Math.max(...all.filter((r) => r[6] !== 'span' || col < 2 || col > 4).map((r) => r[col]!.length)),
  );
  // Widen the request column so scenario-check messages (up to 72 characters) fit in their span.
  const longest = Math.min(72, Math.max(0, ...all.filter((r) => r[6] === 'span').map((r) => r[2]!.length)));
  widths[2] = Math.max(widths[2]!, longest - widths[3]! - widths[4]! - 4);
  const line = (r: readonly string[]): string => {
    if (r[6] === 'span') {
      const span = widths[2]! + widths[3]! + widths[4]! + 4;
      return `  ${r[0]!.padEnd(widths[0]!)}  ${r[1]!.padEnd(widths[1]!)}  ${cut(r[2]!, span).padEnd(span)}  ${r[5]!}`.trimEnd();
    }
    return `  ${r
      .slice(0, 6)
      .map((cell, col) => cell.padEnd(widths[col]!))
      .join('  ')}`.trimEnd();
  };
  const where =
    report.mode === 'target'
      ? `the running cache at ${report.url}`
      : `a Cairn in front of ${report.url === 'scripted' ? 'the scripted origin' : report.url}`;
  const out = [`cairn check ${report.source}: ${where}`, '', line(header)];
  for (const section of sections) {
    out.push(`${section.title}`);
    for (const r of section.rows) out.push(line(r));
  }
  const failures: string[] = [];
  const notes: string[] = [];
  for (const s of report.scenarios) {
    for (const group of groupSteps(s.steps)) {
      const failedOnes = group.filter((x) => x.verdict === 'failed');
      const shown = new Set<string>();
      let same = 0;
      for (const step of failedOnes) {
        const key = step.failures.join('\n');
        if (shown.has(key)) {
          same++;
          continue;
        }
        shown.add(key);
        failures.push(`FAIL ${s.name} › ${step.label}: ${step.method} ${step.path}`);
        for (const f of step.failures) failures.push(`  - ${f}`);
        if (step.details !== undefined) failures.push(step.details);
        failures.push('');
      }
      if (same > 0)
        failures.push(
          `  (and ${same} more request${same === 1 ? '' : 's'} of this step failed the same way)`,
          '',
        );
      const seen = new Set<string>();
      for (const step of group) for (const nj of step.notJudged) seen.add(nj);
      for (const nj of seen)
        notes.push(`  ${s.name} › ${group[0]!.label.replace(/ \(\d+\/\d+\)$/, '')}: ${nj}`);
    }
    for (const c of s.checks) {
      if (c.verdict === 'failed') failures.push(`FAIL ${s.name} › ${c.label}: ${c.message}`, '');
      if (c.verdict === 'not-judged') notes.push(`  ${s.name} › ${c.label}: ${c.message}`);
    }
  }
  if (failures.length > 0) out.push('', ...failures);
  if (notes.length > 0) out.push('', 'Not judged:', ...notes);
  out.push(
    '',
    `check: ${report.passed} passed, ${report.failed} failed${report.notJudged > 0 ? `, ${report.notJudged} not judged` : ''} in ${seconds(report.durationMs)}`,
  );
  return `${out.join('\n').replace(/\n{3,}/g, '\n\n')}\n`;
}

function xml(s: string): string {
  // XML 1.0 allows only these characters; drop the rest (control bytes from a response header).
  const clean = s.replace(/[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/gu, '');
  return clean
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/**
 * The report as JUnit XML: a `<testsuite>` per scenario, a `<testcase>` per request and per
 * scenario check; failures carry the full details, not-judged cases are `<skipped>`.
 *
 * @example
 * ```ts
 * await writeFile('cairn-check.xml', formatJUnit(report));
 * ```
 */
export function formatJUnit(report: CheckReport): string {
  const out = ['<?xml version="1.0" encoding="UTF-8"?>'];
  out.push(
    `<testsuites name="cairn check ${xml(report.source)}" tests="${report.passed + report.failed + report.notJudged}" failures="${report.failed}" skipped="${report.notJudged}" time="${(report.durationMs / 1000).toFixed(3)}">`,
  );
  for (const s of report.scenarios) {
    const cases = s.steps.length + s.checks.length;
    const failures = [...s.steps, ...s.checks].filter((x) => x.verdict === 'failed').length;
    const skipped = [...s.steps, ...s.checks].filter((x) => x.verdict === 'not-judged').length;
    out.push(
      `  <testsuite name="${xml(s.name)}" tests="${cases}" failures="${failures}" errors="0" skipped="${skipped}" time="${(s.durationMs / 1000).toFixed(3)}" timestamp="${xml(report.startedAt.replace(/\.\d+Z$/, ''))}">`,
    );
    for (const step of s.steps) {
      const name = xml(`${step.label}: ${step.method} ${step.path}`);
      const head = `    <testcase classname="${xml(s.name)}" name="${name}" time="${(step.durationMs / 1000).toFixed(3)}"`;
      if (step.verdict === 'failed') {
        out.push(`${head}>`);
        out.push(
          `      <failure message="${xml(step.failures.join('; '))}" type="CacheExpectation">${xml([...step.failures, '', step.details ?? ''].join('\n'))}</failure>`,
        );
        out.push('    </testcase>');
      } else if (step.verdict === 'not-judged') {
        out.push(
          `${head}>`,
          `      <skipped message="${xml(step.notJudged.join('; '))}"/>`,
          '    </testcase>',
        );
      } else out.push(`${head}/>`);
    }
    for (const c of s.checks) {
      const head = `    <testcase classname="${xml(s.name)}" name="${xml(c.label)}" time="0.000"`;
      if (c.verdict === 'failed')
        out.push(
          `${head}>`,
          `      <failure message="${xml(c.message)}" type="CacheExpectation">${xml(c.message)}</failure>`,
          '    </testcase>',
        );
      else if (c.verdict === 'not-judged')
        out.push(`${head}>`, `      <skipped message="${xml(c.message)}"/>`, '    </testcase>');
      else out.push(`${head}/>`);
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>');
  return `${out.join('\n')}\n`;
}

/** Where progress goes: a stream with `write`, and `isTTY` when it is a terminal. */
export interface ProgressStream {
  write(chunk: string): boolean;
  readonly isTTY?: boolean;
}

/**
 * A progress bar: redrawn in place on a terminal; on a pipe or a CI log, one line at every tenth.
 *
 * @example
 * ```ts
 * const bar = new ProgressBar(process.stderr, 200);
 * bar.update(1); // … bar.update(200); bar.done();
 * ```
 */
export class ProgressBar {
  readonly #stream: ProgressStream;
  readonly #total: number;
  readonly #tty: boolean;
  #lastTenth = 0;

  constructor(stream: ProgressStream, total: number) {
    this.#stream = stream;
    this.#total = total;
    this.#tty = stream.isTTY === true;
    this.#lastTenth = 0;
  }

  /** Render the bar for `done` of the total requests. */
  render(done: number): string {
    const width = 30;
    const filled = this.#total === 0 ? width : Math.round((done / this.#total) * width);
    const pct = this.#total === 0 ? 100 : Math.floor((done / this.#total) * 100);
    return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${this.#total} requests (${pct}%)`;
  }

  update(done: number): void {
    if (this.#tty) {
      this.#stream.write(`\r${this.render(done)}`);
      return;
    }
    const tenth = this.#total === 0 ? 10 : Math.floor((done * 10) / this.#total);
    if (tenth > this.#lastTenth) {
      this.#lastTenth = tenth;
      this.#stream.write(`progress ${this.render(done)}\n`);
    }
  }

  /** End the line on a terminal. */
  done(): void {
    if (this.#tty) this.#stream.write('\n');
  }
}
