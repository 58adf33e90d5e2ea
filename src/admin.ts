/**
 * The admin listener: `/metrics` (Prometheus text), `/healthz`, and routes other parts add
 * (purge, upstream membership). It listens on its own address, never on the proxy's.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** An admin route handler; it must answer through `res`. */
export type AdminHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;

/** How a route runs under `serve({ workers })`. */
export interface AdminRouteOptions {
  /**
   * The route reads or changes state each serving process holds for itself (upstream membership,
   * say). Under `workers > 1` the primary then forwards each request to every worker, which runs
   * the handler; the client gets the workers' common answer. Default false: the handler runs in
   * the process that serves the admin listener (the primary), as for a purge, which the cache
   * relays to the workers itself.
   */
  readonly everyWorker?: boolean;
}

interface AdminRoute {
  readonly method: string;
  readonly prefix: string;
  readonly handler: AdminHandler;
  readonly everyWorker: boolean;
}

/**
 * @example
 * ```ts
 * const admin = new AdminServer(() => registry.metrics(), () => !draining);
 * admin.route('POST', '/purge', handlePurge);
 * await admin.listen('127.0.0.1', 9090);
 * ```
 */
export class AdminServer {
  readonly #server: Server;
  readonly #routes: AdminRoute[] = [];
  readonly #metrics: () => Promise<string>;
  readonly #healthy: () => boolean;
  readonly #contentType: string;
  /** In a cluster primary: runs `everyWorker` routes in the workers instead of here. */
  #forward: AdminHandler | undefined;

  constructor(metrics: () => Promise<string>, healthy: () => boolean, contentType: string) {
    this.#metrics = metrics;
    this.#healthy = healthy;
    this.#contentType = contentType;
    this.#forward = undefined;
    this.#server = createServer((req, res) => void this.#handle(req, res));
  }

  /** Add a route: requests whose method matches and whose path starts with `prefix`. */
  route(method: string, prefix: string, handler: AdminHandler, options?: AdminRouteOptions): void {
    this.#routes.push({ method, prefix, handler, everyWorker: options?.everyWorker === true });
  }

  /** Whether any route asked to run in every worker. */
  get hasEveryWorkerRoutes(): boolean {
    return this.#routes.some((r) => r.everyWorker);
  }

  /** Hand requests for `everyWorker` routes to `forward` (the cluster primary's relay to its workers). */
  forwardEveryWorker(forward: AdminHandler): void {
    this.#forward = forward;
  }

  /** Listen on a Unix socket (a worker's private admin listener, reached by the primary only). */
  listenPath(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      // exclusive: a cluster worker binds the socket itself instead of sharing one the primary holds.
      this.#server.listen({ path, exclusive: true }, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    try {
      if (req.method === 'GET' && url.pathname === '/metrics') {
        const body = await this.#metrics();
        res.writeHead(200, { 'content-type': this.#contentType });
        res.end(body);
        return;
      }
      if (req.method === 'GET' && url.pathname === '/healthz') {
        const ok = this.#healthy();
        res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
        res.end(ok ? 'ok\n' : 'draining\n');
        return;
      }
      for (const route of this.#routes) {
        if (route.method === req.method && url.pathname.startsWith(route.prefix)) {
          const forward = route.everyWorker ? this.#forward : undefined;
          await (forward ?? route.handler)(req, res, url);
          return;
        }
      }
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
    } catch (error) {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: (error as Error).message }));
      } else {
        res.destroy();
      }
    }
  }
}
