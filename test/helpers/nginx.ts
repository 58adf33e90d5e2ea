/**
 * Start and stop a real nginx for tests and benchmarks: a temp prefix, a generated config, loopback
 * ephemeral port, no daemon, every path (pid, error log, temp dirs) inside the temp dir, so it runs
 * as an ordinary user and leaves nothing behind.
 *
 * API:
 * - `findNginx(): string` — the nginx binary: `$NGINX_BIN` (must exist if set), else `nginx` on `PATH`, else
 *   `/usr/sbin/nginx`. Throws (never skips) with an install hint when there is none.
 * - `startNginx(options): Promise<NginxInstance>` — `options.http(port)` returns the *body* of the
 *   `http {}` block (upstreams, `server { listen 127.0.0.1:${port}; … }`); the helper adds the main
 *   context (daemon off, pid, error_log, events, `user` only when root and a master process is
 *   used) and the temp paths. The port is found by binding port 0 and closing; if nginx then fails
 *   with "Address already in use" (another process took it), it retries with a new port.
 * - `NginxInstance`: `port`, `pid`, `prefix` (the temp dir), `url` (`http://127.0.0.1:port`),
 *   `stderr()` (what nginx logged so far), `stop()` (SIGTERM by pid, SIGKILL after a grace period,
 *   waits for exit, removes the temp dir; idempotent).
 *
 * @example
 * ```ts
 * const nginx = await startNginx({
 *   http: (port) => `server { listen 127.0.0.1:${port}; location / { return 200 "ok"; } }`,
 * });
 * try {
 *   const res = await fetch(nginx.url);
 * } finally {
 *   await nginx.stop();
 * }
 * ```
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { once } from 'node:events';

export interface StartNginxOptions {
  /** Body of the `http {}` block for the given listen port. */
  readonly http: (port: number) => string;
  /** Run a master process with workers (for benchmarks); default false (one process). */
  readonly masterProcess?: boolean;
  /** `worker_processes` when `masterProcess` is true; default 1. */
  readonly workerProcesses?: number | 'auto';
  /** `worker_connections`; default 1024. */
  readonly workerConnections?: number;
  /** How long to wait for nginx to accept connections; default 10 s. */
  readonly startTimeoutMs?: number;
  /** Port allocation attempts; default 5. */
  readonly attempts?: number;
  /** nginx binary; default `findNginx()`. */
  readonly binary?: string;
}

export interface NginxInstance {
  readonly port: number;
  readonly pid: number;
  readonly prefix: string;
  readonly url: string;
  stderr(): string;
  stop(): Promise<void>;
}

const INSTALL_HINT =
  'nginx not found: install the Debian package `nginx-light` (or `nginx`): ' +
  '`apt-get install -y nginx-light`, or set NGINX_BIN to the binary';

/**
 * Locate the nginx binary or throw with an install hint.
 * @example
 * ```ts
 * const bin = findNginx(); // '/usr/sbin/nginx'
 * ```
 */
export function findNginx(): string {
  const explicit = process.env['NGINX_BIN'];
  if (explicit) {
    // An explicit choice is honoured or reported, never silently replaced by another nginx.
    try {
      accessSync(explicit, constants.X_OK);
      return explicit;
    } catch (error) {
      throw new Error(`NGINX_BIN=${explicit} is not an executable file; ${INSTALL_HINT}`, { cause: error });
    }
  }
  const candidates: string[] = [];
  for (const dir of (process.env['PATH'] ?? '').split(delimiter))
    if (dir) candidates.push(join(dir, 'nginx'));
  candidates.push('/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx');
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // try the next one
    }
  }
  throw new Error(INSTALL_HINT);
}

/**
 * A port that was free a moment ago: bind port 0 on loopback, read it, close.
 * @example
 * ```ts
 * const port = await freePort();
 * ```
 */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * Start nginx with a generated config; see the module comment.
 * @example
 * ```ts
 * const nginx = await startNginx({ http: (port) => `server { listen 127.0.0.1:${port}; }` });
 * await nginx.stop();
 * ```
 */
export async function startNginx(options: StartNginxOptions): Promise<NginxInstance> {
  const binary = options.binary ?? findNginx();
  const attempts = options.attempts ?? 5;
  let lastError: unknown;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const prefix = await mkdtemp(join(tmpdir(), 'cairn-nginx-'));
    const port = await freePort();
    try {
      return await launch(binary, prefix, port, options);
    } catch (error) {
      await rm(prefix, { recursive: true, force: true });
      lastError = error;
      if (!(error instanceof PortTakenError)) throw error;
    }
  }
  throw new Error(`nginx could not bind a free port after ${attempts} attempts`, { cause: lastError });
}

class PortTakenError extends Error {}

async function launch(
  binary: string,
  prefix: string,
  port: number,
  options: StartNginxOptions,
): Promise<NginxInstance> {
  const master = options.masterProcess ?? false;
  for (const dir of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(join(prefix, dir));
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  // `user` only matters (and is only allowed without a warning) when a root master starts workers;
  // keep them as root so they can use the temp dir we created.
  const conf = [
    master && isRoot ? 'user root;' : '',
    `master_process ${master ? 'on' : 'off'};`,
    master ? `worker_processes ${options.workerProcesses ?? 1};` : '',
    'daemon off;',
    `pid ${join(prefix, 'nginx.pid')};`,
    'error_log stderr notice;',
    `events { worker_connections ${options.workerConnections ?? 1024}; }`,
    'http {',
    '  access_log off;',
    `  client_body_temp_path ${join(prefix, 'body')};`,
    `  proxy_temp_path ${join(prefix, 'proxy')};`,
    `  fastcgi_temp_path ${join(prefix, 'fastcgi')};`,
    `  uwsgi_temp_path ${join(prefix, 'uwsgi')};`,
    `  scgi_temp_path ${join(prefix, 'scgi')};`,
    options.http(port),
    '}',
    '',
  ].join('\n');
  const confPath = join(prefix, 'nginx.conf');
  await writeFile(confPath, conf);

  // -e: the compiled-in error log path may not be writable before the config is read.
  const child = spawn(binary, ['-p', prefix, '-c', confPath, '-e', 'stderr'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = once(child, 'exit').then(() => undefined);
  const spawnError = once(child, 'error').then(([e]) => e as Error);

  const deadline = Date.now() + (options.startTimeoutMs ?? 10_000);
  for (;;) {
    const state = await Promise.race([
      exited.then(() => 'exited' as const),
      spawnError.then(() => 'error' as const),
      canConnect(port).then((ok) => (ok ? ('up' as const) : ('down' as const))),
    ]);
    // The pid file is written only after nginx opened its listening sockets: a connect that
    // succeeds without it reached some other process that took the port.
    if (state === 'up' && existsSync(join(prefix, 'nginx.pid'))) break;
    if (state === 'exited' || state === 'error') {
      if (/Address already in use/.test(stderr)) throw new PortTakenError(stderr);
      throw new Error(
        `nginx exited during startup (code ${String(child.exitCode)}):\n${stderr}\n--- config ---\n${conf}`,
      );
    }
    if (Date.now() > deadline) {
      await kill(child, exited);
      throw new Error(`nginx did not accept connections on 127.0.0.1:${port} in time:\n${stderr}`);
    }
    // Not listening yet: wait for nginx to log something, exit, or 20 ms, whichever is first.
    await Promise.race([exited, once(child.stderr, 'data'), new Promise((r) => setTimeout(r, 20))]);
  }

  let stopping: Promise<void> | undefined;
  return {
    port,
    pid: child.pid!,
    prefix,
    url: `http://127.0.0.1:${port}`,
    stderr: () => stderr,
    stop: () => (stopping ??= kill(child, exited).then(() => rm(prefix, { recursive: true, force: true }))),
  };
}

async function kill(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  process.kill(child.pid!, 'SIGTERM');
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
  }, 5000);
  await exited;
  clearTimeout(timer);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      socket.destroy();
      resolve(false);
    });
  });
}
