/**
 * The `http-proxy` peer: node-http-proxy in front of the origin, configured as its docs advise
 * for throughput — a keep-alive `http.Agent` (without one, http-proxy sends `Connection: close`
 * and opens a new origin connection per request). Pool size matches reply-from's default (128).
 * No logging, no x-forwarded headers, like the other peers.
 *
 *   node --import tsx bench/targets/http-proxy.ts --port 8082 --origin http://127.0.0.1:8081
 */
import http from 'node:http';
import httpProxy from 'http-proxy';
import { proxyTargetArgs } from '../lib/target-args.ts';

const { port, origin, host } = proxyTargetArgs('http-proxy');

const agent = new http.Agent({
  keepAlive: true,
  maxSockets: 128,
  maxFreeSockets: 128,
  keepAliveMsecs: 60_000,
});
const proxy = httpProxy.createProxyServer({ target: origin, agent });

proxy.on('error', (err, _req, res) => {
  // Answer instead of crashing the process; a 502 shows up as a non-2xx error in the sample.
  if (res instanceof http.ServerResponse && !res.headersSent) {
    res.writeHead(502, { 'content-length': '0' });
    res.end();
  } else {
    res.destroy();
  }
  console.error(`http-proxy: ${err.message}`);
});

const server = http.createServer({ keepAlive: true }, (req, res) => {
  proxy.web(req, res);
});
server.keepAliveTimeout = 120_000;
server.listen(port, host, () => {
  console.log(`http-proxy listening on http://${host}:${port} -> ${origin}`);
});

const stop = (): void => {
  server.close();
  server.closeAllConnections();
  agent.destroy();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
