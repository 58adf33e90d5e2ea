/**
 * A tiny origin for first runs: `cairn` with no `--origin` starts it on a loopback port so a
 * newcomer sees a proxy working (and, with the cache, a hit) without writing a server first.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

const PAGE = Buffer.from(
  '<!doctype html><title>Cairn demo origin</title><h1>Hello from the demo origin</h1>\n' +
    '<p>This page is cacheable for 60 s. Fetch it twice through Cairn and look at Cache-Status.</p>\n',
);

/** Start the demo origin on 127.0.0.1 (port 0 = any free port). */
export async function startDemoOrigin(port = 0): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    if (req.url === '/time') {
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
      res.end(`${new Date().toISOString()}\n`);
      return;
    }
    if (req.url === '/' || req.url === '/index.html') {
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'public, max-age=60',
        'content-length': PAGE.length,
      });
      res.end(req.method === 'HEAD' ? undefined : PAGE);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain', 'cache-control': 'max-age=10' });
    res.end('not found\n');
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const { port: bound } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${bound}`, server };
}
