/** Markdown helpers shared by the RESULTS.md section renderers. */
import type { MachineInfo } from '../lib/results.ts';

/** A GitHub-flavoured Markdown table; columns whose every cell starts with a digit are right-aligned. */
export function table(columns: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cells = rows.map((r) => r.map((c) => String(c)));
  const numeric = columns.map((_, i) => cells.length > 0 && cells.every((r) => /^\**\d/.test(r[i] ?? '')));
  const head = `| ${columns.join(' | ')} |`;
  const rule = `|${columns.map((_, i) => (numeric[i] === true ? '---:' : '---')).join('|')}|`;
  return [head, rule, ...cells.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a';
}

export function fmtMs(n: number): string {
  return Number.isFinite(n) ? n.toFixed(2) : 'n/a';
}

/** Where and when a result was taken, with a warning if the machine was already busy. */
export function machineLines(m: MachineInfo): string[] {
  const tools = Object.entries(m.tools)
    .map(([k, v]) => `${k} ${v.replace(new RegExp(`^${k}[ /]*`), '')}`)
    .join(', ');
  const busy = (m.loadAverageAtStart[0] ?? 0) > m.cores * 0.25;
  return [
    ...(busy
      ? [
          `> **Warning:** load average ${m.loadAverageAtStart[0]} on ${m.cores} cores when the run started: other work was running, so these numbers are noisy.`,
          '',
        ]
      : []),
    `**Run.** ${m.date.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}, commit \`${m.gitCommit ?? 'unknown'}\`; ` +
      `${m.cores} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.os}; Node ${m.node}${tools === '' ? '' : `, ${tools}`}; ` +
      `load average at start ${m.loadAverageAtStart.join(' / ')}.`,
  ];
}

/** How the run treated target processes between rounds, as a clause of the Method paragraph. */
/** How a round's passes were taken, for the Method paragraph (nothing for one pass a round). */
export function passesNote(passes: number | undefined): string {
  return passes === undefined || passes <= 1
    ? ''
    : ` of ${passes} passes each (every target, every size, ${passes} times between restarts; a "round" in the tables and the pairing below is one pass)`;
}

export function freshNote(freshPerRound: boolean | undefined): string {
  if (freshPerRound === true) {
    return '; every target was started afresh (and warmed again) for each round, so a process that happens to run slow counts in one round, not in all';
  }
  return freshPerRound === false ? '; each target ran as one process for the whole run' : '';
}
