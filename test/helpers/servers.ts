/**
 * Shared helpers for integration tests: real servers on 127.0.0.1 port 0, closed by the test.
 *
 * API (kept stable; other test files depend on it):
 * - `startOrigin(t, handler, options?)` → `Origin`: a `node:http` origin. `origin.url`,
 *   `origin.port`, `origin.peer(options?)` (an `HttpPeer` for it), `origin.requests` (requests seen),
 *   `origin.sockets` (connections accepted), `origin.server`, `origin.close()`.
 * - `startRawOrigin(t, onConnection)` → `RawOrigin`: a `node:net` origin for hand-written replies
 *   (garbage, resets, keep-alive races). `rawOrigin.url`, `.port`, `.connections`, `.close()`.
 * - `startCairn(t, proxy, options?)` → `Cairn`: `serve(proxy)` on 127.0.0.1:0 with the admin listener
 *   on 127.0.0.1:0 and a collecting logger. `cairn.url`, `.port`, `.adminUrl`, `.server`
 *   (`CairnServer`), `.logs` (`LogCollector`), `.metrics()` (scrape → `MetricsSnapshot`).
 * - `collectingLogger(level?)` → `LogCollector`: a pino logger whose JSON lines are kept in
 *   `.lines`; `.waitFor(predicate)` resolves with the first line (already seen or future) that matches;
 *   `.accessLines()` the `msg: 'request'` lines.
 * - `httpRequest(url, options?)` → `HttpResult`: one request over a fresh connection (no agent),
 *   body buffered: `status`, `headers`, `rawHeaders`, `body`, `trailers`, `complete`.
 * - `RawClient.connect(port)`: a `net` socket that collects what it reads: `write()`, `end()`,
 *   `text()`, `waitFor(predicate | string)`, `closed` (resolves when the socket is closed).
 *   `rawRequest(port, bytes)` writes bytes and resolves with everything read until the close.
 * - `scrapeMetrics(adminUrl)` / `parseMetrics(text)` → `MetricsSnapshot`:
 *   `.value(name, labels?)` sums every sample of `name` whose labels include `labels` (0 if none).
 * - `spawnFixture(t, file, env?)` → `Fixture`: `node --import tsx file` with an IPC channel;
 *   `.message(predicate)`, `.send(message)`, `.child`; killed by `t.after`.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import {
  request as httpRequestRaw,
  createServer,
  type IncomingHttpHeaders,
  type RequestListener,
  type Server,
} from 'node:http';
import {
  createServer as createNetServer,
  connect,
  type AddressInfo,
  type Server as NetServer,
  type Socket,
} from 'node:net';
import type { Readable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { HttpPeer, serve } from '../../src/index.ts';
import type { CairnServer, HttpPeerOptions, LogLevel, ProxyHttp, ServeOptions } from '../../src/index.ts';

/** The part of node:test's `TestContext` the helpers use (so `t` or a suite's `after` both fit). */
export interface Cleanup {
  after(fn: () => unknown): void;
}

// ---- origins ------------------------------------------------------------------------------------

export interface Origin {
  readonly server: Server;
  readonly port: number;
  /** `http://127.0.0.1:port` */
  readonly url: string;
  /** Requests the origin has received so far. */
  readonly requests: number;
  /** Connections the origin has accepted so far. */
  readonly sockets: number;
  /** An `HttpPeer` pointing at this origin. */
  peer(options?: HttpPeerOptions): HttpPeer;
  close(): Promise<void>;
}

/** Start a `node:http` origin on 127.0.0.1:0 running `handler`; closed after the test. */
export async function startOrigin(t: Cleanup, handler: RequestListener): Promise<Origin> {
  const server = createServer();
  let requests = 0;
  let sockets = 0;
  server.on('connection', () => {
    sockets++;
  });
  server.on('request', (req, res) => {
    requests++;
    handler(req, res);
  });
  server.on('checkContinue', (req, res) => {
    requests++;
    res.writeContinue();
    handler(req, res);
  });
  await listen(server);
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  const close = (): Promise<void> => closeServer(server);
  t.after(close);
  return {
    server,
    port,
    url,
    get requests() {
      return requests;
    },
    get sockets() {
      return sockets;
    },
    peer: (options?: HttpPeerOptions) => new HttpPeer(url, options),
    close,
  };
}

export interface RawOrigin {
  readonly server: NetServer;
  readonly port: number;
  readonly url: string;
  /** Connections accepted so far. */
  readonly connections: number;
  peer(options?: HttpPeerOptions): HttpPeer;
  close(): Promise<void>;
}

/** Start a `node:net` origin on 127.0.0.1:0; `onConnection` writes whatever it likes. */
export async function startRawOrigin(
  t: Cleanup,
  onConnection: (socket: Socket, index: number) => void,
): Promise<RawOrigin> {
  const open = new Set<Socket>();
  let connections = 0;
  const server = createNetServer((socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => {});
    onConnection(socket, connections++);
  });
  await listen(server);
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  const close = (): Promise<void> =>
    new Promise<void>((resolve) => {
      for (const s of open) s.destroy();
      if (!server.listening) {
        resolve();
        return;
      }
      server.close(() => resolve());
    });
  t.after(close);
  return {
    server,
    port,
    url,
    get connections() {
      return connections;
    },
    peer: (options?: HttpPeerOptions) => new HttpPeer(url, options),
    close,
  };
}

// ---- Cairn ---------------------------------------------------------------------------------------

export interface Cairn {
  readonly server: CairnServer;
  readonly port: number;
  /** `http://127.0.0.1:port` */
  readonly url: string;
  /** `http://127.0.0.1:adminPort` */
  readonly adminUrl: string;
  readonly logs: LogCollector;
  /** Scrape the admin `/metrics`. */
  metrics(): Promise<MetricsSnapshot>;
}

/**
 * `serve(proxy)` on 127.0.0.1:0, admin on 127.0.0.1:0, logging into a `LogCollector`; closed after
 * the test (with a short shutdown deadline so a test that leaves a request hanging still ends).
 */
export async function startCairn<Ctx>(
  t: Cleanup,
  proxy: ProxyHttp<Ctx>,
  options: ServeOptions = {},
): Promise<Cairn> {
  const logs = collectingLogger(options.logLevel ?? 'info');
  const server = await serve(proxy, {
    listen: '127.0.0.1:0',
    admin: '127.0.0.1:0',
    shutdownTimeout: 1000,
    logger: logs.logger,
    ...options,
  });
  t.after(() => server.close());
  const admin = server.adminAddress;
  const adminUrl = admin === undefined ? '' : `http://${admin.host}:${admin.port}`;
  return {
    server,
    port: server.address.port,
    url: `http://${server.address.host}:${server.address.port}`,
    adminUrl,
    logs,
    metrics: () => scrapeMetrics(adminUrl),
  };
}

// ---- logs ----------------------------------------------------------------------------------------

/** One parsed pino line. */
export type LogLine = Record<string, unknown> & { level: number; msg?: string };

export interface LogCollector {
  readonly logger: Logger;
  readonly lines: LogLine[];
  /** The access lines (`msg: 'request'`) written by the default `logging` phase. */
  accessLines(): LogLine[];
  /** The first line, already written or still to come, for which `predicate` is true. */
  waitFor(predicate: (line: LogLine) => boolean): Promise<LogLine>;
}

/** A pino logger (synchronous, no buffering) whose lines are parsed and kept. */
export function collectingLogger(level: LogLevel = 'info'): LogCollector {
  const lines: LogLine[] = [];
  const events = new EventEmitter();
  const destination = {
    write(chunk: string): void {
      for (const text of chunk.split('\n')) {
        if (text === '') continue;
        const line = JSON.parse(text) as LogLine;
        lines.push(line);
        events.emit('line', line);
      }
    },
  };
  const logger = pino({ level }, destination);
  return {
    logger,
    lines,
    accessLines: () => lines.filter((l) => l.msg === 'request'),
    waitFor(predicate) {
      const seen = lines.find(predicate);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve) => {
        const onLine = (line: LogLine): void => {
          if (!predicate(line)) return;
          events.off('line', onLine);
          resolve(line);
        };
        events.on('line', onLine);
      });
    },
  };
}

// ---- HTTP client ---------------------------------------------------------------------------------

export interface HttpRequestOptions {
  method?: string;
  headers?: Record<string, string | string[] | number>;
  /** A body to send; a Readable is piped (so it may be chunked or endless until it ends). */
  body?: string | Buffer | Readable;
}

export interface HttpResult {
  status: number;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  trailers: NodeJS.Dict<string>;
  /** Whether the response body ended normally (false when the connection was cut mid-body). */
  complete: boolean;
}

/**
 * One request on a fresh connection (`agent: false`, so no keep-alive leaks between tests). Resolves
 * with the buffered response, also when the body is cut off (then `complete` is false). Rejects
 * only when no response head arrived.
 */
export function httpRequest(url: string, options: HttpRequestOptions = {}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = httpRequestRaw(url, {
      method: options.method ?? 'GET',
      headers: options.headers,
      agent: false,
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      let settled = false;
      const finish = (complete: boolean): void => {
        if (settled) return;
        settled = true;
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body: Buffer.concat(chunks),
          trailers: res.trailers,
          complete,
        });
      };
      res.on('end', () => finish(res.complete));
      res.on('error', () => finish(false));
      res.on('close', () => finish(res.complete));
    });
    const body = options.body;
    if (body === undefined) req.end();
    else if (typeof body === 'string' || Buffer.isBuffer(body)) req.end(body);
    else body.pipe(req);
  });
}

// ---- raw client ----------------------------------------------------------------------------------

/** A `net` connection that keeps everything it reads, for byte-exact HTTP/1.1 checks. */
export class RawClient {
  readonly socket: Socket;
  readonly #chunks: Buffer[] = [];
  readonly #events = new EventEmitter();
  /** Resolves once the socket is fully closed (by either side). */
  readonly closed: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#events.emit('data');
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    void this.closed.then(() => this.#events.emit('data'));
  }

  static async connect(port: number): Promise<RawClient> {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    return new RawClient(socket);
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  end(data?: string | Buffer): void {
    if (data === undefined) this.socket.end();
    else this.socket.end(data);
  }

  destroy(): void {
    this.socket.destroy();
  }

  bytes(): Buffer {
    return Buffer.concat(this.#chunks);
  }

  text(): string {
    return this.bytes().toString('latin1');
  }

  /**
   * Wait until what was read contains `until` (or satisfies it); rejects if the socket closes first.
   */
  waitFor(until: string | ((text: string) => boolean)): Promise<string> {
    const test = typeof until === 'string' ? (s: string) => s.includes(until) : until;
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const text = this.text();
        if (test(text)) {
          this.#events.off('data', check);
          resolve(text);
        } else if (this.socket.destroyed) {
          this.#events.off('data', check);
          reject(new Error(`socket closed before the expected bytes; got:\n${text}`));
        }
      };
      this.#events.on('data', check);
      check();
    });
  }
}

/** Write `data` on a new connection and resolve with everything read until the connection closes. */
export async function rawRequest(port: number, data: string | Buffer): Promise<string> {
  const client = await RawClient.connect(port);
  client.write(data);
  await client.closed;
  return client.text();
}

// ---- metrics -------------------------------------------------------------------------------------

export interface MetricSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface MetricsSnapshot {
  readonly samples: readonly MetricSample[];
  /** Sum of the samples named `name` whose labels include every given label (0 when none). */
  value(name: string, labels?: Record<string, string>): number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parse the Prometheus text exposition format. */
export function parseMetrics(text: string): MetricsSnapshot {
  const samples: MetricSample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = SAMPLE.exec(line);
    if (match === null) continue;
    const labels: Record<string, string> = {};
    for (const l of (match[2] ?? '').matchAll(LABEL)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, '$1');
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return {
    samples,
    value(name, want = {}) {
      let sum = 0;
      for (const s of samples) {
        if (s.name !== name) continue;
        if (Object.entries(want).every(([k, v]) => s.labels[k] === v)) sum += s.value;
      }
      return sum;
    },
  };
}

export async function scrapeMetrics(adminUrl: string): Promise<MetricsSnapshot> {
  const res = await httpRequest(`${adminUrl}/metrics`);
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status}`);
  return parseMetrics(res.body.toString());
}

// ---- child processes -----------------------------------------------------------------------------

export interface Fixture {
  readonly child: ChildProcess;
  /** The first IPC message (already received or still to come) that matches. */
  message<T = Record<string, unknown>>(predicate: (message: T) => boolean): Promise<T>;
  send(message: unknown): void;
}

/** Run `node --import tsx file` with an IPC channel; killed after the test. */
export function spawnFixture(
  t: Cleanup,
  file: string,
  env: Record<string, string> = {},
  execArgv: readonly string[] = [],
): Fixture {
  const child = fork(file, [], {
    execArgv: ['--import', 'tsx', ...execArgv],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const received: unknown[] = [];
  const events = new EventEmitter();
  child.on('message', (m) => {
    received.push(m);
    events.emit('message', m);
  });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
  });
  return {
    child,
    message<T>(predicate: (message: T) => boolean): Promise<T> {
      const seen = received.find((m) => predicate(m as T));
      if (seen !== undefined) return Promise.resolve(seen as T);
      return new Promise((resolve, reject) => {
        const onMessage = (m: unknown): void => {
          if (!predicate(m as T)) return;
          cleanup();
          resolve(m as T);
        };
        const onExit = (code: number | null): void => {
          cleanup();
          reject(new Error(`fixture ${file} exited (${String(code)}) before the expected message`));
        };
        const cleanup = (): void => {
          events.off('message', onMessage);
          child.off('exit', onExit);
        };
        events.on('message', onMessage);
        child.once('exit', onExit);
      });
    },
    send(message: unknown): void {
      child.send(message as object);
    },
  };
}

// ---- internals -----------------------------------------------------------------------------------

function listen(server: Server | NetServer): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
