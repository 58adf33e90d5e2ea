/**
 * What the machine is (recorded with every result) and how busy its cores and the target process
 * were during a sample, from /proc. Busy-core shares tell which side was the bottleneck: a proxy
 * core below ~95% busy means the proxy was not what limited the number.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { MachineInfo } from './results.ts';

function firstLine(command: string, args: readonly string[]): string | null {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  if (r.error !== undefined || r.status !== 0) return null;
  // nginx -v and wrk -v print to stderr.
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  return text.split('\n')[0]?.trim() ?? null;
}

/** Versions of external tools, for the report. Missing tools are left out. */
export function toolVersions(): Record<string, string> {
  const tools: Record<string, string> = {};
  const nginx = firstLine('nginx', ['-v']);
  if (nginx !== null) tools.nginx = nginx.replace(/^nginx version:\s*/, '');
  // `wrk -v` exits 1 after printing its version line.
  const wrk = spawnSync('wrk', ['-v'], { encoding: 'utf8' });
  const wrkLine = `${wrk.stdout ?? ''}${wrk.stderr ?? ''}`.trim().split('\n')[0];
  if (wrk.error === undefined && wrkLine !== undefined && wrkLine.startsWith('wrk'))
    tools.wrk = wrkLine.replace(/\s*Copyright.*$/, '');
  return tools;
}

export function machineInfo(cwd: string): MachineInfo {
  const cpus = os.cpus();
  const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd, encoding: 'utf8' });
  return {
    date: new Date().toISOString(),
    hostname: os.hostname(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    loadAverageAtStart: os.loadavg().map((n) => Math.round(n * 100) / 100),
    gitCommit: commit.status === 0 ? commit.stdout.trim() : null,
    tools: toolVersions(),
  };
}

/** Per-core [busy, total] jiffies from /proc/stat (Linux only; null elsewhere). */
export function readCoreTimes(): [number, number][] | null {
  let text: string;
  try {
    text = readFileSync('/proc/stat', 'utf8');
  } catch {
    return null;
  }
  const out: [number, number][] = [];
  for (const line of text.split('\n')) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (m === null) continue;
    const f = m[2]!.trim().split(/\s+/).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    out[Number(m[1])] = [total - idle, total];
  }
  return out;
}

/** Busy share per core between two `readCoreTimes()` readings. */
export function coreBusyBetween(
  before: [number, number][] | null,
  after: [number, number][] | null,
): number[] | null {
  if (before === null || after === null) return null;
  return after.map(([busy, total], i) => {
    const b = before[i];
    if (b === undefined || total === b[1]) return 0;
    return Math.round(((busy - b[0]) / (total - b[1])) * 1000) / 1000;
  });
}

let clockTicks: number | undefined;

function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    const n = Number(r.stdout?.trim());
    clockTicks = r.status === 0 && n > 0 ? n : 100;
  }
  return clockTicks;
}

/** CPU seconds (user + system) used so far by the given processes, from /proc/PID/stat. */
export function cpuSeconds(pids: readonly number[]): number | null {
  let ticks = 0;
  let found = false;
  for (const pid of pids) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue;
    }
    // The command name (field 2) may contain spaces: split after its closing parenthesis.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    ticks += Number(rest[11]) + Number(rest[12]);
    found = true;
  }
  return found ? ticks / ticksPerSecond() : null;
}
