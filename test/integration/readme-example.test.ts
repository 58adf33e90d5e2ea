// The README's "Write your own proxy" example, extracted and run as written: if the README drifts
// from the API, this fails.
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';

const root = join(import.meta.dirname, '..', '..');

interface Seen {
  path: string;
  headers: IncomingHttpHeaders;
}

async function origin(name: string, seen: Seen[]): Promise<Server> {
  const server = createServer((req, res) => {
    seen.push({ path: req.url ?? '', headers: req.headers });
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`${name}\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

test('the README example proxy runs as documented', async (t) => {
  const readme = await readFile(join(root, 'README.md'), 'utf8');
  const match = /```ts readme-example\n([\s\S]*?)```/.exec(readme);
  assert.ok(match?.[1], 'README.md has a ```ts readme-example block');
  // Inside the package, so `import … from 'cairn'` resolves through package.json "exports".
  const dir = join(root, '.tmp', `readme-${process.pid}`);
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'example.ts');
  await writeFile(file, match[1]);
  t.after(() => rm(dir, { recursive: true, force: true }));

  const apiSeen: Seen[] = [];
  const webSeen: Seen[] = [];
  const api = await origin('api', apiSeen);
  const web = await origin('web', webSeen);
  t.after(() => {
    api.close();
    web.close();
  });
  process.env.API_ORIGIN = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
  process.env.WEB_ORIGIN = `http://127.0.0.1:${(web.address() as AddressInfo).port}`;
  process.env.LISTEN = '127.0.0.1:0';
  const mod = (await import(pathToFileURL(file).href)) as {
    server: { address: { port: number }; close(): Promise<void> };
  };
  t.after(() => mod.server.close());
  const base = `http://127.0.0.1:${mod.server.address.port}`;

  const refused = await fetch(`${base}/api/items`);
  assert.equal(refused.status, 401);
  assert.equal(await refused.text(), 'token required\n');
  assert.equal(apiSeen.length + webSeen.length, 0, 'a refused request reaches no origin');

  const viaApi = await fetch(`${base}/api/items?x=1`, { headers: { authorization: 'Bearer alice' } });
  assert.equal(viaApi.status, 200);
  assert.equal(await viaApi.text(), 'api\n');
  assert.equal(viaApi.headers.get('x-proxied-by'), 'my-proxy');
  assert.equal(apiSeen[0]?.path, '/items?x=1');
  assert.equal(apiSeen[0]?.headers['x-user'], 'alice');
  assert.equal(apiSeen[0]?.headers.authorization, undefined);

  const viaWeb = await fetch(`${base}/home`, { headers: { authorization: 'Bearer bob' } });
  assert.equal(await viaWeb.text(), 'web\n');
  assert.equal(
    webSeen[0]?.headers.host,
    `127.0.0.1:${(web.address() as AddressInfo).port}`,
    "hostHeader: 'peer'",
  );
});
