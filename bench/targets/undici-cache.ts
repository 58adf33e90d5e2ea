/**
 * The `undici-cache-interceptor` reference target of the cache-hit bench: a bare `node:http`
 * front that forwards every request through an undici `Agent` composed with undici's own
 * `interceptors.cache()` (its default in-memory store, shared-cache semantics). A hit is answered
 * by the interceptor without an origin request; the front copies status, headers and body.
 * Reference only: it shows what "a Node HTTP cache" costs without Cairn's engine.
 *
 *   node --import tsx bench/targets/undici-cache.ts --port 8080 --origin http://127.0.0.1:8081
 */
import http from 'node:http';
import { proxyTargetArgs } from '../lib/target-args.ts';
import { Agent, interceptors } from 'undici';

const { port, origin, host } = proxyTargetArgs('undici-cache');

const dispatcher = new Agent({ connections: 128, keepAliveTimeout: 60_000 }).compose(interceptors.cache());

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection']);

function onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
  dispatcher
    .request({
      origin,
      path: req.url ?? '/',
      method: req.method ?? 'GET',
      headers: { host: req.headers.host ?? '' },
    })
    .then(({ statusCode, headers, body }) => {
      const out: Record<string, string | string[]> = {};
      for (const name in headers) {
        const v = headers[name];
        if (v !== undefined && !HOP_BY_HOP.has(name)) out[name] = v;
      }
      res.writeHead(statusCode, out);
      body.pipe(res);
    })
    .catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(502, { 'content-length': '0' });
      res.end();
      void error;
    });
}

const server = http.createServer({ keepAlive: true }, onRequest);
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
server.requestTimeout = 0;
server.listen(port, host);

const stop = (): void => {
  server.close();
  server.closeAllConnections();
  void dispatcher.close();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
