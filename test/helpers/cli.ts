/**
 * Helpers for tests that run Cairn as a child process through its CLI.
 *
 * - `freePort()`: a port that was free a moment ago (bind 127.0.0.1:0, read it, close). For the
 *   cases that need to know the port before the process starts (the CLI, cluster mode).
 * - `unusedPort()`: a free port below the kernel's ephemeral range, for a peer that must refuse
 *   connections (or start late): no other test's port-0 listener can be given it meanwhile.
 * - `startCli(t, args, options?)` → `CliProcess`: `node --import tsx src/cli.ts …args` (or another
 *   script, e.g. `bin/cairn.js`), in a fresh temp directory (so the default on-disk cache and any
 *   other relative path land there, not in the checkout). Collects stdout (pino JSON lines, parsed) and
 *   stderr; `waitForLog(msg)` resolves with the first line whose `msg` matches (already seen or
 *   to come) and rejects if the process exits first; `exited` resolves with `{ code, signal }`
 *   once the process has exited and its output has been read.
 *   Killed by PID with SIGKILL in `t.after` if it is still running.
 * - `runCli(args, options?)`: run to completion (for bad configs) → `{ code, stdout, stderr }`.
 * - `startTwoWorkers(t, origin, extra?)`: the CLI with `--workers 2` and an admin listener, once
 *   the primary logs `cluster listening` → `{ cli, url, adminUrl }`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Cleanup, LogLine } from './servers.ts';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = 'src/cli.ts';
// Resolved here, so the child finds tsx whatever its working directory.
const TSX = import.meta.resolve('tsx');

/** A port on 127.0.0.1 that was free when this resolved. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * A free port below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`). A port from
 * `freePort()` can be handed to another test's `listen(0)` as soon as it is closed, so a peer meant
 * to refuse connections may answer instead; the kernel never hands out ports below that range.
 */
export async function unusedPort(): Promise<number> {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  } catch {
    // Not Linux: keep the usual default.
  }
  const floor = Math.max(1024, low - 12_000);
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = floor + Math.floor(Math.random() * (low - floor));
    const server = createServer();
    const bound = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!bound) continue;
    server.close();
    await once(server, 'close');
    return port;
  }
  throw new Error('no free port below the ephemeral range');
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface CliProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Parsed JSON lines from stdout. */
  readonly logs: LogLine[];
  stdout(): string;
  stderr(): string;
  /** The first log line whose `msg` is `msg` (and that satisfies `where`, if given). */
  waitForLog(msg: string, where?: (line: LogLine) => boolean): Promise<LogLine>;
  readonly exited: Promise<Exit>;
}

export interface CliOptions {
  /** Script to run instead of `src/cli.ts` (relative to the repo root). */
  readonly script?: string;
  /** Run the script with plain `node` (no `--import tsx`), as a user runs `bin/cairn.js`. */
  readonly plainNode?: boolean;
  readonly env?: Record<string, string>;
  /** Working directory (default: a new temp directory, removed after the test). */
  readonly cwd?: string;
}

export function startCli(t: Cleanup, args: readonly string[], options: CliOptions = {}): CliProcess {
  const execArgs = options.plainNode === true ? [] : ['--import', TSX];
  const tempDir = options.cwd === undefined ? mkdtempSync(join(tmpdir(), 'cairn-cli-')) : undefined;
  const cwd = options.cwd ?? tempDir;
  const child = spawn(process.execPath, [...execArgs, join(REPO_ROOT, options.script ?? CLI), ...args], {
    cwd,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('cairn did not start');
  let stdout = '';
  let stderr = '';
  let partial = '';
  const logs: LogLine[] = [];
  const waiters = new Set<() => void>();
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    stdout += chunk;
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      logs.push(JSON.parse(line) as LogLine);
    }
    for (const wake of waiters) wake();
  });
  child.stderr.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<Exit>((resolve) => {
    // 'close', not 'exit': every line the process wrote has been read by then.
    child.once('close', (code, signal) => {
      resolve({ code, signal });
    });
  });
  let isDone = false;
  void exited.then(() => {
    isDone = true;
    for (const wake of waiters) wake();
  });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(pid, 'SIGKILL');
      await exited;
    }
    if (tempDir !== undefined) rmSync(tempDir, { recursive: true, force: true });
  });
  return {
    child,
    pid,
    logs,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    waitForLog(msg, where = () => true) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const line = logs.find((l) => l.msg === msg && where(l));
          if (line !== undefined) {
            waiters.delete(check);
            resolve(line);
          } else if (isDone) {
            waiters.delete(check);
            reject(new Error(`cairn exited before logging "${msg}"\nstdout:\n${stdout}\nstderr:\n${stderr}`));
          }
        };
        waiters.add(check);
        check();
      });
    },
  };
}

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run the CLI to completion (it must exit by itself: bad flags or config). */
export async function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliRun> {
  const cleanups: (() => unknown)[] = [];
  const cli = startCli({ after: (fn) => cleanups.push(fn) }, args, options);
  const { code } = await cli.exited;
  for (const cleanup of cleanups) await cleanup();
  return { code, stdout: cli.stdout(), stderr: cli.stderr() };
}

/** The CLI proxying to `origin` with `--workers 2` and an admin listener, once the cluster listens. */
export async function startTwoWorkers(
  t: Cleanup,
  origin: string,
  extra: readonly string[] = [],
): Promise<{ cli: CliProcess; url: string; adminUrl: string }> {
  const port = await freePort();
  const adminPort = await freePort();
  const cli = startCli(t, [
    '--listen',
    `127.0.0.1:${port}`,
    '--admin',
    `127.0.0.1:${adminPort}`,
    '--origin',
    origin,
    '--workers',
    '2',
    '--log-level',
    'info',
    ...extra,
  ]);
  await cli.waitForLog('cluster listening');
  return { cli, url: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}` };
}
