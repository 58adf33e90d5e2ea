// docs/cache-regression-testing.md is run, not just read: its files are written to a temporary
// project that imports `cairn/testing` by package name, its test suite runs under node's test
// runner (and fails when the origin breaks a rule), every `npx cairn …` line runs, and the output it
// shows is what those commands print. A fenced block of any other kind fails this test.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import {
  checkOrExplain,
  expectNotStored,
  startCacheTest,
  startScriptedOrigin,
} from '../../hooks/testing/index.ts';
import type { CheckReport, ScriptedRoutes } from '../../hooks/testing/index.ts';
import { REPO_ROOT } from '../helpers/cli.ts';

const DOC = join(REPO_ROOT, 'docs', 'cache-regression-testing.md');
const TSX = import.meta.resolve('tsx');

interface Block {
  readonly lang: string;
  readonly info: string;
  readonly body: string;
}

function blocks(markdown: string): Block[] {
  const out: Block[] = [];
  for (const m of markdown.matchAll(/^```(\w+)([^\n]*)\n([\s\S]*?)^```$/gm)) {
    out.push({ lang: m[1]!, info: m[2]!.trim(), body: m[3]! });
  }
  return out;
}

/** Lines compared without their padding (the table's column widths depend on the run id). */
function lines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.replace(/\s+/g, ' ').trim())
    .filter((l) => l !== '');
}

function normalise(text: string): string {
  return text
    .replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:PORT')
    .replace(/check=[0-9a-f]{8}/g, 'check=RUN')
    .replace(/ in [\d.]+ s$/gm, ' in X s');
}

/** Every line of `shown` appears in `actual`, in the same order (the doc may leave lines out). */
function assertShown(shown: string, actual: string, what: string): void {
  const want = lines(normalise(shown));
  const got = lines(normalise(actual));
  let at = 0;
  for (const line of want) {
    const found = got.indexOf(line, at);
    assert.ok(
      found >= 0,
      `${what}: the doc shows\n  ${line}\nbut the real output (from line ${at}) is:\n${got.slice(at).join('\n')}`,
    );
    at = found + 1;
  }
}

function runNodeTest(
  t: { after(fn: () => unknown): void },
  cwd: string,
  file: string,
): Promise<{ code: number | null; output: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  // TAP on every Node (24 defaults to the spec reporter when not on a terminal), so the counts parse alike.
  const child = spawn(process.execPath, ['--import', TSX, '--test', '--test-reporter=tap', file], {
    cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  t.after(() => {
    if (pid !== undefined && child.exitCode === null && child.signalCode === null)
      process.kill(pid, 'SIGKILL');
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, output })));
}

test('every snippet of docs/cache-regression-testing.md runs and shows what it really prints', async (t) => {
  const doc = blocks(readFileSync(DOC, 'utf8'));
  const dir = mkdtempSync(join(tmpdir(), 'cairn-doc-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // A user's project: ESM, with cairn installed (here: linked to this checkout).
  writeFileSync(join(dir, 'package.json'), '{ "type": "module", "private": true }\n');
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(REPO_ROOT, join(dir, 'node_modules', 'cairn'), 'dir');

  const files = doc.filter((b) => b.info.startsWith('file='));
  const commands = doc.filter((b) => b.lang === 'sh');
  const outputs = new Map(doc.filter((b) => b.lang === 'text').map((b) => [b.info, b.body]));
  const known = new Set([
    ...files,
    ...commands,
    ...doc.filter((b) => b.lang === 'text' && ['check', 'explain', 'failure'].includes(b.info)),
  ]);
  for (const b of doc)
    assert.ok(known.has(b), `a fenced block this test does not run: \`\`\`${b.lang} ${b.info}\n${b.body}`);
  assert.deepEqual(
    files.map((b) => b.info),
    ['file=shop-origin.ts', 'file=site-cache.test.ts', 'file=site-checks.yaml'],
  );
  for (const b of files) writeFileSync(join(dir, b.info.slice('file='.length)), b.body);

  // The guide's suite passes under node's test runner…
  const suite = await runNodeTest(t, dir, 'site-cache.test.ts');
  assert.equal(suite.code, 0, suite.output);
  assert.match(suite.output, /^# pass 3$/m);

  // …and the commands run against the shop (localhost:3000) and a running Cairn (localhost:8080).
  const { SHOP } = (await import(pathToFileURL(join(dir, 'shop-origin.ts')).href)) as {
    SHOP: ScriptedRoutes;
  };
  const origin = await startScriptedOrigin(SHOP);
  t.after(() => origin.close());
  const running = await startCacheTest({ origin: SHOP });
  t.after(() => running.close());
  const printed = new Map<string, string>();
  let ran = 0;
  for (const block of commands) {
    for (const raw of block.body.split('\n')) {
      const line = raw.replace(/\s+#.*$/, '').trim();
      if (line === '') continue;
      const m = /^npx cairn (.+?)(?:\s+>\s+(\S+))?$/.exec(line);
      assert.ok(m, `a shell line this test cannot run: ${line}`);
      const args = m[1]!
        .split(/\s+/)
        .map((a, i) =>
          a === 'http://localhost:3000' || a.startsWith('http://localhost:3000/')
            ? a.replace('http://localhost:3000', origin.url)
            : a.startsWith('http://localhost:8080')
              ? a.replace('http://localhost:8080', running.url)
              : i > 0 && !a.startsWith('-') && !a.startsWith('http')
                ? join(dir, a)
                : a,
        );
      let stdout = '';
      let stderr = '';
      const code = await checkOrExplain(args, {
        stdout: { write: (c: string) => ((stdout += c), true) },
        stderr: { write: (c: string) => ((stderr += c), true) },
      });
      assert.equal(code, 0, `${line}\n${stdout}${stderr}`);
      if (m[2] !== undefined) writeFileSync(join(dir, m[2]), stdout);
      if (!printed.has(args[0]!)) printed.set(args[0]!, stdout);
      ran++;
    }
  }
  assert.equal(ran, 5, 'every npx cairn line ran');
  const report = JSON.parse(readFileSync(join(dir, 'cairn-check.json'), 'utf8')) as CheckReport;
  assert.deepEqual([report.failed, report.passed], [0, 20]);
  assert.ok(existsSync(join(dir, 'cairn-check.xml')));
  assert.match(
    readFileSync(join(dir, 'cairn-check.xml'), 'utf8'),
    /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<testsuites name="cairn check [^"]*site-checks\.yaml" tests="20" failures="0"/,
  );
  assertShown(outputs.get('check')!, printed.get('check')!, 'cairn check');
  assertShown(outputs.get('explain')!, printed.get('explain')!, 'cairn explain');

  // "What a failure tells you": the API turned public by a deploy.
  const broken = {
    ...SHOP,
    '/api/*': {
      headers: { 'cache-control': 'public, max-age=60', 'content-type': 'application/json' },
      body: '{"items":[]}',
    },
  };
  const site = await startCacheTest({ origin: broken });
  t.after(() => site.close());
  const res = await site.get('/api/cart');
  const message = (() => {
    try {
      expectNotStored(res);
    } catch (error) {
      return (error as Error).message;
    }
    return assert.fail('expectNotStored passed on a stored response');
  })();
  assertShown(outputs.get('failure')!, message, 'the failure message');

  // The guide's suite is a real regression test: the same deploy makes it fail, with that message.
  writeFileSync(
    join(dir, 'shop-origin.ts'),
    files[0]!.body.replace("'private, no-store'", "'public, max-age=60'"),
  );
  const failing = await runNodeTest(t, dir, 'site-cache.test.ts');
  assert.equal(failing.code, 1, failing.output);
  assert.match(failing.output, /^# fail 1$/m);
  assert.match(failing.output, /expectNotStored: expected the response not to be stored, but it was stored/);
});
