/**
 * Admin routes that act on state each serving process holds for itself (the upstream API's
 * membership, weights and algorithm), under `serve({ workers })`. The primary serves the admin
 * listener but no requests, so a change it applied to its own copy would reach no worker. Each
 * worker instead serves its routes on a private Unix socket (in a directory only this user can
 * enter), tells the primary where over the cluster IPC channel, and the primary forwards every
 * request for such a route to all of its workers and answers with what they answered.
 */
import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AdminServer } from './admin.ts';

/** Largest admin request body the primary forwards, in bytes. */
const FORWARD_BODY_LIMIT = 1024 * 1024;
/** How long the primary waits for a worker that has not yet said where its admin socket is. */
const SOCKET_WAIT_MS = 5_000;
/** How long a forwarded request may take in a worker (a `DELETE …?wait=1` waits for a drain). */
const FORWARD_TIMEOUT_MS = 60_000;

interface AdminSocketMessage {
  readonly cairn: 'admin-socket';
  readonly path: string;
}

function isAdminSocketMessage(message: unknown): message is AdminSocketMessage {
  if (typeof message !== 'object' || message === null) return false;
  const m = message as Partial<Record<string, unknown>>;
  return m.cairn === 'admin-socket' && typeof m.path === 'string';
}

/**
 * The worker's half: serve `admin`'s routes on a private socket and tell the primary. Resolves to
 * a function that closes it and removes the socket's directory.
 */
export async function serveWorkerAdmin(admin: AdminServer): Promise<() => Promise<void>> {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-admin-'));
  const path = join(dir, 'admin.sock');
  await admin.listenPath(path);
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

/** The primary's half: knows each worker's admin socket and forwards requests to all of them. */
export class WorkerAdminRelay {
  readonly #sockets = new Map<number, string>();
  readonly #announced = new EventEmitter();

  constructor() {
    cluster.on('message', (worker: Worker, message: unknown) => {
      if (!isAdminSocketMessage(message)) return;
      this.#sockets.set(worker.id, message.path);
      this.#announced.emit('socket');
    });
    cluster.on('exit', (worker: Worker) => {
      this.#sockets.delete(worker.id);
    });
  }

  /** An `AdminHandler`: run the request in every worker; answer with their common answer. */
  readonly forward = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await readBody(req);
    if (body === undefined) return sendJson(res, 413, { error: `body over ${FORWARD_BODY_LIMIT} bytes` });
    const workers = await this.#readyWorkers();
    if (workers.length === 0)
      return sendJson(res, 503, { error: 'no worker is ready to take admin requests' });
    const answers = await Promise.all(
      workers.map(([worker, path]) => forwardTo(worker.process.pid, path, req, body)),
    );
    const [first] = answers;
    if (first === undefined) return sendJson(res, 503, { error: 'no worker answered' });
    if (answers.every((a) => a.status === first.status)) {
      const headers: Record<string, string> = {
        'content-length': String(first.body.length),
        'cache-control': 'no-store',
      };
      const type = first.headers['content-type'];
      if (type !== undefined) headers['content-type'] = type;
      res.writeHead(first.status, headers);
      res.end(first.body);
      return;
    }
    // The workers' state has diverged (say, one restarted from the config after the API changed it):
    // show every answer rather than pick one.
    sendJson(res, 502, {
      error: 'the workers answered differently',
      answers: answers.map((a) => ({ pid: a.pid, status: a.status, body: a.body.toString('utf8') })),
    });
  };

  /** Every connected worker with its socket, waiting a little for any that has not announced it yet. */
  async #readyWorkers(): Promise<(readonly [Worker, string])[]> {
    const deadline = Date.now() + SOCKET_WAIT_MS;
    for (;;) {
      const connected = Object.values(cluster.workers ?? {}).filter(
        (w): w is Worker => w !== undefined && w.isConnected(),
      );
      const ready = connected.flatMap((w) => {
        const path = this.#sockets.get(w.id);
        return path === undefined ? [] : [[w, path] as const];
      });
      const left = deadline - Date.now();
      if (ready.length === connected.length || left <= 0) return ready;
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
function forwardTo(
  pid: number | undefined,
  socketPath: string,
  req: IncomingMessage,
  body: Buffer,
): Promise<WorkerAnswer> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = { 'content-length': String(body.length) };
    const type = req.headers['content-type'];
    if (type !== undefined) headers['content-type'] = type;
    const failed = (error: Error): void =>
      resolve({ pid, status: 502, headers: {}, body: Buffer.from(JSON.stringify({ error: error.message })) });
    const out = request(
      { socketPath, method: req.method, path: req.url, headers, timeout: FORWARD_TIMEOUT_MS },
      (answer) => {
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
      },
    );
    out.on('timeout', () =>
      out.destroy(new Error(`worker ${String(pid)} did not answer in ${FORWARD_TIMEOUT_MS} ms`)),
    );
    out.on('error', failed);
    out.end(body);
  });
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
