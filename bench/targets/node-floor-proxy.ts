/**
 * The `node-floor-proxy` target: the least a proxy built on `node:http` and an undici `Pool` can do
 * per request. It forwards method, URL and the client's headers (minus `Connection`), and streams
 * the origin's answer back with backpressure, minus `Connection`/`Keep-Alive`; on an origin error
 * it answers 502. Nothing else: no hop-by-hop handling beyond that, no `Via` or `X-Forwarded-*`, no
 * timeouts of its own, no metrics, no logs, no hooks, no retries.
 *
 * It is not a proxy anyone should run. It is the floor under every Node proxy on these two libraries
 * (Cairn, `@fastify/reply-from`), measured in the same run, so a ratio against a peer can be read
 * against what the libraries alone cost. It uses undici's lowest-level API (`dispatch` with a
 * handler) and the pool settings `reply-from` is run with (128 connections, pipelining 1, 60 s
 * keep-alive), so the two differ only in what sits on top.
 *
 *   node --import tsx bench/targets/node-floor-proxy.ts --port 8083 --origin http://127.0.0.1:8081
 */
import http from 'node:http';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import { proxyTargetArgs } from '../lib/target-args.ts';

const { port, origin, host } = proxyTargetArgs('node-floor-proxy');

const pool = new Pool(origin, { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 });

/** One per request: undici's handler for the origin exchange, writing straight into `res`. */
class Forward implements Dispatcher.DispatchHandler {
  readonly #res: http.ServerResponse;

  constructor(res: http.ServerResponse) {
    this.#res = res;
  }

  /** Its presence tells undici this is a handler of the current API (without it, the deprecated one). */
  onRequestStart(): void {}

  onResponseStart(
    controller: Dispatcher.DispatchController,
    status: number,
    headers: IncomingHttpHeaders,
  ): void {
    const out: OutgoingHttpHeaders = {};
    for (const name in headers) if (name !== 'connection' && name !== 'keep-alive') out[name] = headers[name];
    this.#res.writeHead(status, out);
    this.#res.on('close', () => {
      if (!this.#res.writableFinished) controller.abort(new Error('client went away'));
    });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#res.write(chunk)) return;
    controller.pause();
    this.#res.once('drain', () => controller.resume());
  }

  onResponseEnd(): void {
    this.#res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, _error: Error): void {
    const res = this.#res;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.writeHead(502, { 'content-length': '0' });
    res.end();
  }
}

function onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
  const headers: Record<string, string | string[]> = {};
  const given = req.headers;
  for (const name in given) if (name !== 'connection') headers[name] = given[name]!;
  const hasBody =
    req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.dispatch(
    {
      path: req.url ?? '/',
      method: req.method as Dispatcher.HttpMethod,
      headers,
      body: hasBody ? req : null,
    },
    new Forward(res),
  );
}

const server = http.createServer({ keepAlive: true }, onRequest);
server.keepAliveTimeout = 120_000;
server.listen(port, host, () => {
  console.log(`node-floor-proxy listening on http://${host}:${port} -> ${origin}`);
});

const stop = (): void => {
  server.close();
  server.closeAllConnections();
  void pool.close();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
