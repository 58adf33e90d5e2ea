/**
 * Child processes of a benchmark run: spawn pinned to a core, wait until they answer, stop them by
 * PID. Every child started here is remembered until it has exited, so an error, SIGINT or SIGTERM
 * in the runner still stops each of them (and the processes they forked, e.g. nginx workers) —
 * by PID, never by name, because the machine is shared.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** What to start. `core` null means "do not pin". */
export interface ChildSpec {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly core: number | null;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
}

/** A process the run owns and must stop: one it spawned, or one a helper started for it. */
export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  hasExited(): boolean;
  /** The last output, for reporting why it failed. */
  outputTail(): string;
  /** Stops it (and what it forked); idempotent. */
  stop(): Promise<void>;
}

/** A child spawned by `startChild`, with the tail of its output kept for error reports. */
export interface RunningChild extends ManagedProcess {
  readonly process: ChildProcess;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
}

const TAIL_BYTES = 4096;
const live = new Set<ManagedProcess>();
let stopping = false;

/** True once SIGINT/SIGTERM arrived: the runner should stop starting work and write nothing. */
export function isStopping(): boolean {
  return stopping;
}
let tasksetChecked: boolean | undefined;

/** Whether `taskset` can be used (it ships in util-linux; absent on macOS). */
export function tasksetAvailable(): boolean {
  tasksetChecked ??= spawnSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' }).status === 0;
  return tasksetChecked;
}

/** `[command, args]` wrapped in `taskset -c CORE` when pinning is asked for and possible. */
export function pinnedCommand(
  command: string,
  args: readonly string[],
  core: number | null,
): [string, string[]] {
  if (core === null || !tasksetAvailable()) return [command, [...args]];
  // taskset execs the command, so the PID we get is the PID of the command itself.
  return ['taskset', ['-c', String(core), command, ...args]];
}

/** Starts a child. Its stdout and stderr are kept (last 4 KiB) for reporting a failed start. */
export function startChild(spec: ChildSpec): RunningChild {
  const [command, args] = pinnedCommand(spec.command, spec.args, spec.core);
  const proc = spawn(command, args, {
    cwd: spec.cwd,
    env: spec.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  let exitedFlag = false;
  const keep = (chunk: Buffer): void => {
    tail = (tail + chunk.toString('utf8')).slice(-TAIL_BYTES);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  const exited = new Promise<number | string>((resolve) => {
    proc.once('error', (err) => {
      keep(Buffer.from(`spawn error: ${err.message}\n`));
      exitedFlag = true;
      resolve(-1);
    });
    proc.once('exit', (code, signal) => {
      exitedFlag = true;
      resolve(code ?? signal ?? -1);
    });
  });
  const child: RunningChild = {
    name: spec.name,
    pid: proc.pid ?? -1,
    process: proc,
    exited,
    hasExited: () => exitedFlag,
    outputTail: () => tail.trim(),
    stop: () => stopChild(child),
  };
  live.add(child);
  void exited.then(() => live.delete(child));
  return child;
}

/** One GET on loopback; resolves with status and body length, rejects on error or timeout. */
export function probe(
  url: string,
  timeoutMs = 2000,
): Promise<{ status: number; length: number; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      let length = 0;
      res.on('data', (c: Buffer) => {
        length += c.length;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, length, headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/**
 * Waits until `url` answers 200, the child exits (a failed start), or `timeoutMs` passes.
 * Throws an Error whose message says which, with the child's output tail.
 */
export async function waitReady(child: RunningChild, url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (child.hasExited()) {
      const code = await child.exited;
      throw new Error(`exited during start (code ${String(code)})${formatTail(child)}`);
    }
    try {
      const r = await probe(url, 1000);
      if (r.status === 200) return;
      last = `HTTP ${r.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(150);
  }
  throw new Error(`not ready after ${timeoutMs} ms (${last})${formatTail(child)}`);
}

function formatTail(child: RunningChild): string {
  const tail = child.outputTail();
  if (tail === '') return '';
  const lines = tail.split('\n');
  const last = lines.slice(-8);
  // A stack trace pushes the message out of the last lines: keep the first line naming an error.
  const first = lines.find((l) => /error/i.test(l));
  const shown = first !== undefined && !last.includes(first) ? [first, '…', ...last] : last;
  return `\n    ${shown.join('\n    ')}`;
}

/** PIDs of every descendant of `pid` (children first-level first), from /proc. */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift()!;
    let text = '';
    try {
      text = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const s of text.trim().split(/\s+/)) {
      const c = Number(s);
      if (Number.isInteger(c) && c > 0) {
        out.push(c);
        queue.push(c);
      }
    }
  }
  return out;
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Stops one child: SIGTERM, then SIGKILL to it and its descendants after `graceMs`. */
export async function stopChild(child: RunningChild, graceMs = 3000): Promise<void> {
  if (child.hasExited() || child.pid <= 0) return;
  const kids = descendants(child.pid);
  killQuietly(child.pid, 'SIGTERM');
  const done = await Promise.race([child.exited.then(() => true), sleep(graceMs).then(() => false)]);
  if (!done) {
    killQuietly(child.pid, 'SIGKILL');
    await Promise.race([child.exited, sleep(1000)]);
  }
  // A parent that died hard can leave forked workers behind (nginx): stop those we saw.
  for (const k of kids) killQuietly(k, 'SIGKILL');
}

/**
 * Takes charge of a process some helper started (e.g. `test/helpers/nginx.ts`), so that signals,
 * errors and `stopAll` stop it like the children spawned here.
 */
export function adoptProcess(
  name: string,
  pid: number,
  stop: () => Promise<void>,
  outputTail: () => string,
): ManagedProcess {
  let stopped: Promise<void> | undefined;
  const adopted: ManagedProcess = {
    name,
    pid,
    hasExited: () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    },
    outputTail,
    stop: () => (stopped ??= stop().finally(() => live.delete(adopted))),
  };
  live.add(adopted);
  return adopted;
}

/** Stops every child still running, in parallel. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((c) => c.stop()));
}

/**
 * Makes SIGINT/SIGTERM stop every child before the runner exits, and SIGKILLs any left over if
 * the runner exits some other way (an uncaught error).
 */
export function installCleanupHandlers(): void {
  const onSignal = (signal: NodeJS.Signals): void => {
    stopping = true;
    console.error(`\n${signal}: stopping ${live.size} child process(es)…`);
    void stopAll().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', () => {
    for (const c of live) {
      for (const k of descendants(c.pid)) killQuietly(k, 'SIGKILL');
      killQuietly(c.pid, 'SIGKILL');
    }
  });
}

const handedOut = new Set<number>();

/** A loopback TCP port that is free now and was not handed out before in this run. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const addr = srv.address();
        const p = typeof addr === 'object' && addr !== null ? addr.port : 0;
        srv.close(() => resolve(p));
      });
    });
    if (port > 0 && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}
