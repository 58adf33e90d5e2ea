/**
 * The `cairn` command: proxying from flags with no code, the demo origin, JSON and YAML config
 * files, and bad configs refused with exit code 2 and a message naming the key path and the reason.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { freePort, runCli, startCli } from '../helpers/cli.ts';
import type { CliOptions } from '../helpers/cli.ts';
import { httpRequest, startOrigin, type Origin } from '../helpers/servers.ts';

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-cli-test-'));
});
after(() => rm(dir, { recursive: true, force: true }));

let files = 0;
async function configFile(extension: 'json' | 'yaml' | 'yml', text: string): Promise<string> {
  const path = join(dir, `config-${++files}.${extension}`);
  await writeFile(path, text);
  return path;
}

async function helloOrigin(t: TestContext): Promise<Origin> {
  return startOrigin(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
    res.end(`hello from the origin: ${req.url ?? ''}`);
  });
}

/** Start the CLI with `args`, wait until it listens, and return the port it reported. */
async function startProxy(t: TestContext, args: readonly string[], options?: CliOptions) {
  const cli = startCli(t, args, options);
  const line = await cli.waitForLog('listening');
  const listen = String(line.listen);
  const port = Number(listen.slice(listen.lastIndexOf(':') + 1));
  return { cli, port, line };
}

describe('cairn proxies with no code', () => {
  test('--listen HOST:PORT --origin URL', { timeout: 30_000 }, async (t) => {
    const origin = await helloOrigin(t);
    const port = await freePort();
    const { cli } = await startProxy(t, ['--listen', `127.0.0.1:${port}`, '--origin', origin.url]);
    const res = await httpRequest(`http://127.0.0.1:${port}/a?b=1`);
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'hello from the origin: /a?b=1');
    assert.match(String(res.headers.via), /cairn/);
    assert.equal(origin.requests, 1);
    process.kill(cli.pid, 'SIGTERM');
    assert.deepEqual(await cli.exited, { code: 0, signal: null });
  });

  test('with no --origin, a demo origin is started and a GET works', { timeout: 30_000 }, async (t) => {
    const port = await freePort();
    const { cli } = await startProxy(t, ['--listen', `127.0.0.1:${port}`]);
    assert.match(cli.stderr(), /demo origin at http:\/\/127\.0\.0\.1:\d+/);
    const res = await httpRequest(`http://127.0.0.1:${port}/`);
    assert.equal(res.status, 200);
    assert.match(res.body.toString(), /Hello from the demo origin/);
  });

  test('--config FILE (JSON), with --admin from the file', { timeout: 30_000 }, async (t) => {
    const origin = await helloOrigin(t);
    const port = await freePort();
    const adminPort = await freePort();
    const config = await configFile(
      'json',
      JSON.stringify({
        listen: `127.0.0.1:${port}`,
        admin: `127.0.0.1:${adminPort}`,
        origins: [origin.url],
        limits: { maxHeaderSize: 8192, keepAliveTimeout: 2000 },
        log: { level: 'info' },
      }),
    );
    await startProxy(t, ['--config', config]);
    const res = await httpRequest(`http://127.0.0.1:${port}/json`);
    assert.equal(res.body.toString(), 'hello from the origin: /json');
    const health = await httpRequest(`http://127.0.0.1:${adminPort}/healthz`);
    assert.equal(health.status, 200);
    // The limit from the file is in force: a head over 8 KiB is refused.
    const big = await httpRequest(`http://127.0.0.1:${port}/`, { headers: { 'x-big': 'a'.repeat(10_000) } });
    assert.equal(big.status, 431);
  });

  test('--config FILE (YAML), and flags override the file', { timeout: 30_000 }, async (t) => {
    const origin = await helloOrigin(t);
    const filePort = await freePort();
    const flagPort = await freePort();
    const config = await configFile(
      'yaml',
      [
        '# a comment',
        `listen: "127.0.0.1:${filePort}"`,
        'origins:',
        `  - ${origin.url}`,
        'shutdownTimeout: 2000',
        'limits:',
        '  maxHeadersCount: 50',
        '',
      ].join('\n'),
    );
    const { port } = await startProxy(t, ['--config', config, '--listen', `127.0.0.1:${flagPort}`]);
    assert.equal(port, flagPort);
    const res = await httpRequest(`http://127.0.0.1:${flagPort}/yaml`);
    assert.equal(res.body.toString(), 'hello from the origin: /yaml');
  });

  test(
    '--workers 2: two worker processes serve the port; SIGTERM to the primary stops them all',
    { timeout: 40_000 },
    async (t) => {
      const origin = await helloOrigin(t);
      const port = await freePort();
      const cli = startCli(t, ['--listen', `127.0.0.1:${port}`, '--origin', origin.url, '--workers', '2']);
      const ready = await cli.waitForLog('cluster listening');
      assert.equal(ready.workers, 2);
      assert.equal(ready.pid, cli.pid);
      // Connections are handed to the workers in turn; each access line carries its worker's pid.
      for (let i = 0; i < 6; i++) {
        const res = await httpRequest(`http://127.0.0.1:${port}/w${i}`);
        assert.equal(res.body.toString(), `hello from the origin: /w${i}`);
      }
      const servedBy = new Set<unknown>();
      for (let i = 0; i < 6; i++)
        servedBy.add((await cli.waitForLog('request', (l) => l.path === `/w${i}`)).pid);
      assert.equal(servedBy.size, 2, `served by ${[...servedBy].join(', ')}`);
      assert.ok(!servedBy.has(cli.pid), 'the primary serves no requests');
      process.kill(cli.pid, 'SIGTERM');
      assert.deepEqual(await cli.exited, { code: 0, signal: null });
      for (const pid of servedBy) assert.throws(() => process.kill(Number(pid), 0), /ESRCH/);
    },
  );

  test('bin/cairn.js runs with plain node (no --import tsx)', { timeout: 30_000 }, async (t) => {
    const origin = await helloOrigin(t);
    const port = await freePort();
    await startProxy(t, ['--listen', `127.0.0.1:${port}`, '--origin', origin.url], {
      script: 'bin/cairn.js',
      plainNode: true,
    });
    const res = await httpRequest(`http://127.0.0.1:${port}/bin`);
    assert.equal(res.body.toString(), 'hello from the origin: /bin');
  });

  test('bin/cairn.js --help prints the usage and exits 0', { timeout: 30_000 }, async () => {
    const run = await runCli(['--help'], { script: 'bin/cairn.js', plainNode: true });
    assert.equal(run.code, 0);
    assert.match(run.stdout, /^Usage: cairn \[options\]/);
    assert.match(run.stdout, /--origin URL/);
  });
});

interface BadConfig {
  readonly name: string;
  /** A config file to write, or none (flags only). */
  readonly file?: { readonly extension: 'json' | 'yaml'; readonly text: string };
  readonly args?: readonly string[];
  /** What stderr must say: the key path and the reason. */
  readonly says: readonly RegExp[];
}

const BAD: readonly BadConfig[] = [
  {
    name: 'an unknown top-level key',
    file: { extension: 'json', text: JSON.stringify({ lisen: '127.0.0.1:8080' }) },
    says: [/lisen: unknown key/],
  },
  {
    name: 'an unknown nested key',
    file: { extension: 'yaml', text: 'limits:\n  maxHeaderSiz: 4096\n' },
    says: [/limits\.maxHeaderSiz: unknown key/],
  },
  {
    name: 'a value of the wrong type',
    file: { extension: 'json', text: JSON.stringify({ workers: 'two' }) },
    says: [/workers: Expected number, received string/],
  },
  {
    name: 'limits.maxHeaderSize out of range',
    file: { extension: 'yaml', text: 'limits:\n  maxHeaderSize: 100\n' },
    says: [/limits\.maxHeaderSize: Number must be greater than or equal to 1024/],
  },
  {
    name: 'limits.headersTimeout longer than limits.requestTimeout',
    file: {
      extension: 'json',
      text: JSON.stringify({ limits: { headersTimeout: 5000, requestTimeout: 1000 } }),
    },
    says: [/limits\.headersTimeout: must be <= limits\.requestTimeout/],
  },
  {
    name: 'an origin that is not a URL',
    file: { extension: 'json', text: JSON.stringify({ origins: ['http://127.0.0.1:1', 'not a url'] }) },
    says: [/origins\[1\]: Invalid url/],
  },
  {
    name: 'an origin that is not http(s)',
    file: { extension: 'yaml', text: 'origins:\n  - ftp://127.0.0.1/\n' },
    says: [/origins\[0\]: must be an http:\/\/ or https:\/\/ URL/],
  },
  {
    name: 'a listen address without a port',
    file: { extension: 'yaml', text: 'listen: localhost\n' },
    says: [/listen: must be host:port/],
  },
  {
    name: 'malformed YAML',
    file: { extension: 'yaml', text: 'limits:\n  maxHeaderSize: [1, 2\nlisten: x\n' },
    says: [/not valid YAML/, /line \d+/],
  },
  {
    name: 'malformed JSON',
    file: { extension: 'json', text: '{"listen": "127.0.0.1:1",}' },
    says: [/not valid JSON/],
  },
  {
    name: 'several problems at once: each is named',
    file: { extension: 'json', text: JSON.stringify({ workers: 0, limits: { maxHeadersCount: 'many' } }) },
    says: [
      /workers: Number must be greater than or equal to 1/,
      /limits\.maxHeadersCount: Expected number, received string/,
    ],
  },
  {
    name: 'a config file that does not exist',
    args: ['--config', '/nonexistent/cairn.yaml'],
    says: [/cannot read/],
  },
  { name: 'a bad --origin flag', args: ['--origin', 'nope'], says: [/flags: origins\[0\]: Invalid url/] },
  {
    name: 'a bad --workers flag',
    args: ['--workers', 'lots'],
    says: [/workers: Expected number, received string/],
  },
  { name: 'an unknown flag', args: ['--orign', 'http://127.0.0.1:1'], says: [/Unknown option '--orign'/] },
];

describe(
  'bad configuration: exit code 2 and a message naming the key and the reason',
  { concurrency: 4 },
  () => {
    for (const bad of BAD) {
      test(bad.name, { timeout: 30_000 }, async () => {
        const args = [...(bad.args ?? [])];
        if (bad.file !== undefined)
          args.push('--config', await configFile(bad.file.extension, bad.file.text));
        // Never a proxy: it must not listen on the default port (or anywhere).
        const run = await runCli(args);
        assert.equal(run.code, 2, `exit code; stderr:\n${run.stderr}`);
        for (const pattern of bad.says) assert.match(run.stderr, pattern);
        assert.match(run.stderr, /^cairn: /);
        assert.doesNotMatch(run.stdout, /"msg":"listening"/);
      });
    }
  },
);
