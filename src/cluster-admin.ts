/**
 * Admin routes that act on state each serving process holds for itself (the upstream API's
 * membership, weights and algorithm), under `serve({ workers })`. The primary serves the admin
 * listener but no requests, so a change it applied to its own copy would reach no worker. Each
 * worker instead serves its routes on a private Unix socket (in a directory only this user can
 * enter), tells the primary where over the cluster IPC channel, and the primary forwards every
 * request for such a route to all of its workers and answers with what they answered.
 *
 * A worker that dies is replaced by one started from the config, which knows nothing of the
 * changes made through these routes since. The primary keeps every change all workers accepted (a
 * journal of the requests, cleared when a worker reports a config reload, which resets that state
 * to the file) and replays it to a new worker before forwarding anything else to it.
 */
import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { AdminServer } from './admin.ts';

/** Largest admin request body the primary forwards, in bytes. */
const FORWARD_BODY_LIMIT = 1024 * 1024;
/** How long the primary waits for a worker that has not yet said where its admin socket is. */
const SOCKET_WAIT_MS = 5_000;
/** How long a forwarded request may take in a worker (a `DELETE …?wait=1` waits for a drain). */
const FORWARD_TIMEOUT_MS = 60_000;
/** Most request-body bytes the journal of accepted changes holds; past it, replay is given up. */
const JOURNAL_LIMIT = 16 * 1024 * 1024;
/** The prefix of each worker's private admin-socket directory in the OS temp dir. */
const SOCKET_DIR_PREFIX = 'cairn-admin-';

interface AdminSocketMessage {
  readonly cairn: 'admin-socket';
  readonly path: string;
}

interface ConfigReloadedMessage {
  readonly cairn: 'config-reloaded';
}

function isAdminSocketMessage(message: unknown): message is AdminSocketMessage {
  if (typeof message !== 'object' || message === null) return false;
  const m = message as Partial<Record<string, unknown>>;
  return m.cairn === 'admin-socket' && typeof m.path === 'string';
}

function isConfigReloadedMessage(message: unknown): message is ConfigReloadedMessage {
  return (
    typeof message === 'object' &&
    message !== null &&
    (message as Partial<Record<string, unknown>>).cairn === 'config-reloaded'
  );
}

/**
 * In a cluster worker, tell the primary that this process re-applied its config file: what the
 * file holds is again the state, so the primary drops the changes it would replay to a new worker.
 * Does nothing outside a cluster worker.
 */
export function announceConfigReload(): void {
  if (!cluster.isWorker) return;
  const message: ConfigReloadedMessage = { cairn: 'config-reloaded' };
  process.send?.(message);
}

/**
 * The worker's half: serve `admin`'s routes on a private socket and tell the primary. Resolves to
 * a function that closes it and removes the socket's directory.
 */
export async function serveWorkerAdmin(admin: AdminServer, logger: Logger): Promise<() => Promise<void>> {
  const dir = mkdtempSync(join(tmpdir(), SOCKET_DIR_PREFIX));
  const path = join(dir, 'admin.sock');
  await admin.listenPath(path);
  logger.info({ path }, 'worker admin socket');
  const message: AdminSocketMessage = { cairn: 'admin-socket', path };
  process.send?.(message);
  return async () => {
    await admin.close();
    rmSync(dir, { recursive: true, force: true });
  };
}

interface WorkerAnswer {
  readonly pid: number | undefined;
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** A change every worker accepted, as it was asked for: what a new worker is given again. */
interface JournalEntry {
  readonly method: string;
  readonly url: string;
  readonly contentType: string | undefined;
  readonly body: Buffer;
}

/** The primary's half: knows each worker's admin socket and forwards requests to all of them. */
export class WorkerAdminRelay {
  /** Each worker's announced socket, by cluster id: its directory is removed when the worker exits. */
  readonly #sockets = new Map<number, string>();
  /** Workers ready for forwarded requests: announced, and given the journal. */
  readonly #admitted = new Set<number>();
  readonly #announced = new EventEmitter();
  readonly #logger: Logger;
  readonly #journal: JournalEntry[] = [];
  #journalBytes = 0;
  /** Set when the journal outgrew JOURNAL_LIMIT: a new worker then starts from the config alone. */
  #journalLost = false;
  /** Changes and replays run one at a time, so a new worker cannot miss one made during its replay. */
  #changes: Promise<void> = Promise.resolve();

  constructor(logger: Logger) {
    this.#logger = logger;
    cluster.on('message', (worker: Worker, message: unknown) => {
      if (isAdminSocketMessage(message)) {
        this.#sockets.set(worker.id, message.path);
        this.#announced.emit('socket');
        void this.#serialized(() => this.#admit(worker, message.path));
      } else if (isConfigReloadedMessage(message)) {
        this.#journal.length = 0;
        this.#journalBytes = 0;
        this.#journalLost = false;
      }
    });
    cluster.on('exit', (worker: Worker) => {
      this.#admitted.delete(worker.id);
      const path = this.#sockets.get(worker.id);
      this.#sockets.delete(worker.id);
      // A worker that shut down removed its directory itself; one that was killed could not.
      if (path !== undefined) removeSocketDir(path);
    });
  }

  /** Give a new worker the changes the others accepted, then forward to it like the rest. */
  async #admit(worker: Worker, path: string): Promise<void> {
    if (this.#journalLost)
      this.#logger.warn(
        { workerPid: worker.process.pid },
        'admin changes outgrew the replay journal: this worker starts from the config alone',
      );
    let replayed = 0;
    for (const entry of this.#journal) {
      if (!worker.isConnected()) return;
      const answer = await forwardTo(worker.process.pid, path, entry);
      if (answer.status < 200 || answer.status > 299) {
        this.#logger.error(
          {
            workerPid: worker.process.pid,
            method: entry.method,
            url: entry.url,
            status: answer.status,
            answer: answer.body.toString('utf8'),
          },
          'a new worker refused an admin change the others had accepted',
        );
      }
      replayed++;
    }
    if (!worker.isConnected()) return;
    this.#logger.info({ workerPid: worker.process.pid, replayed }, 'worker takes admin requests');
    this.#admitted.add(worker.id);
    this.#announced.emit('socket');
  }

  #serialized(step: () => Promise<void>): Promise<void> {
    const next = this.#changes.then(step);
    this.#changes = next.catch((error: unknown) => {
      this.#logger.error({ err: error }, 'admin relay step failed');
    });
    return next;
  }

  #record(entry: JournalEntry): void {
    if (this.#journalLost) return;
    this.#journalBytes += entry.body.length + entry.url.length;
    if (this.#journalBytes > JOURNAL_LIMIT) {
      this.#journal.length = 0;
      this.#journalLost = true;
      return;
    }
    this.#journal.push(entry);
  }

  /** An `AdminHandler`: run the request in every worker; answer with their common answer. */
  readonly forward = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await readBody(req);
    if (body === undefined) return sendJson(res, 413, { error: `body over ${FORWARD_BODY_LIMIT} bytes` });
    const entry: JournalEntry = {
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      contentType: req.headers['content-type'],
      body,
    };
    if (entry.method === 'GET' || entry.method === 'HEAD') {
      await this.#forwardAll(entry, res);
      return;
    }
    await this.#serialized(async () => {
      if (await this.#forwardAll(entry, res)) this.#record(entry);
    });
  };

  /** Run `entry` in every ready worker and answer `res`; true if they all accepted it (2xx). */
  async #forwardAll(entry: JournalEntry, res: ServerResponse): Promise<boolean> {
    const workers = await this.#readyWorkers();
    if (workers.length === 0) {
      sendJson(res, 503, { error: 'no worker is ready to take admin requests' });
      return false;
    }
    const answers = await Promise.all(
      workers.map(([worker, path]) => forwardTo(worker.process.pid, path, entry)),
    );
    const [first] = answers;
    if (first === undefined) {
      sendJson(res, 503, { error: 'no worker answered' });
      return false;
    }
    if (answers.every((a) => a.status === first.status)) {
      const headers: Record<string, string> = {
        'content-length': String(first.body.length),
        'cache-control': 'no-store',
      };
      const type = first.headers['content-type'];
      if (type !== undefined) headers['content-type'] = type;
      res.writeHead(first.status, headers);
      res.end(first.body);
      return first.status >= 200 && first.status <= 299;
    }
    // The workers' state has diverged (say, a new worker refused a replayed change, or one was
    // started while the journal was given up): show every answer rather than pick one.
    sendJson(res, 502, {
      error: 'the workers answered differently',
      answers: answers.map((a) => ({ pid: a.pid, status: a.status, body: a.body.toString('utf8') })),
    });
    // Some workers took it: a new worker should too, so it matches the ones that did.
    return answers.some((a) => a.status >= 200 && a.status <= 299);
  }

  /**
   * Every worker ready for forwarded requests, after waiting a little for connected workers that
   * have not announced their socket yet. One that has announced but is still being given the
   * journal is left out: its replay comes after any change in progress, and includes it.
   */
  async #readyWorkers(): Promise<(readonly [Worker, string])[]> {
    const deadline = Date.now() + SOCKET_WAIT_MS;
    for (;;) {
      const connected = Object.values(cluster.workers ?? {}).filter(
        (w): w is Worker => w !== undefined && w.isConnected(),
      );
      const left = deadline - Date.now();
      if (left <= 0 || connected.every((w) => this.#sockets.has(w.id))) {
        return connected.flatMap((w) => {
          const path = this.#sockets.get(w.id);
          return path === undefined || !this.#admitted.has(w.id) ? [] : [[w, path] as const];
        });
      }
      await Promise.race([
        once(this.#announced, 'socket'),
        new Promise((resolve) => setTimeout(resolve, left).unref()),
      ]);
    }
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > FORWARD_BODY_LIMIT) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** One forwarded request; a worker that fails to answer counts as a 502 answer saying why. */
function forwardTo(pid: number | undefined, socketPath: string, entry: JournalEntry): Promise<WorkerAnswer> {
  const { method, url, contentType, body } = entry;
  return new Promise((resolve) => {
    const headers: Record<string, string> = { 'content-length': String(body.length) };
    if (contentType !== undefined) headers['content-type'] = contentType;
    const failed = (error: Error): void =>
      resolve({ pid, status: 502, headers: {}, body: Buffer.from(JSON.stringify({ error: error.message })) });
    const out = request({ socketPath, method, path: url, headers, timeout: FORWARD_TIMEOUT_MS }, (answer) => {
      const chunks: Buffer[] = [];
      answer.on('data', (chunk: Buffer) => chunks.push(chunk));
      answer.on('end', () =>
        resolve({
          pid,
          status: answer.statusCode ?? 502,
          headers: answer.headers,
          body: Buffer.concat(chunks),
        }),
      );
      answer.on('error', failed);
    });
    out.on('timeout', () =>
      out.destroy(new Error(`worker ${String(pid)} did not answer in ${FORWARD_TIMEOUT_MS} ms`)),
    );
    out.on('error', failed);
    out.end(body);
  });
}

/** Remove a dead worker's socket directory: only ever one this module made, in the OS temp dir. */
function removeSocketDir(socketPath: string): void {
  const dir = dirname(socketPath);
  if (dirname(dir) !== tmpdir() || !basename(dir).startsWith(SOCKET_DIR_PREFIX)) return;
  rmSync(dir, { recursive: true, force: true });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}
