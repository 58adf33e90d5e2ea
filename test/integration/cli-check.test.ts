// `cairn check FILE`: YAML and JSON files, against a Cairn it starts (scripted origin or a real
// origin URL) and against a running cache by URL; exit codes, --json, JUnit XML, progress output.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkCommand, startCacheTest } from '../../hooks/testing/index.ts';
import type { CheckReport, CommandIo } from '../../hooks/testing/index.ts';
import { runCli } from '../helpers/cli.ts';
import { startOrigin } from '../helpers/servers.ts';
import type { Cleanup } from '../helpers/servers.ts';

interface Captured {
  readonly io: CommandIo;
  stdout(): string;
  stderr(): string;
}

function capture(tty = false): Captured {
  let out = '';
  let err = '';
  return {
    io: {
      stdout: { write: (c: string) => ((out += c), true) },
      stderr: { write: (c: string) => ((err += c), true), isTTY: tty },
    },
    stdout: () => out,
    stderr: () => err,
  };
}

function tempDir(t: Cleanup): string {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-check-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function write(dir: string, name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

async function check(argv: string[], tty = false): Promise<{ code: number; stdout: string; stderr: string }> {
  const c = capture(tty);
  const code = await checkCommand(argv, c.io);
  return { code, stdout: c.stdout(), stderr: c.stderr() };
}

const SITE_YAML = `
origin:
  routes:
    /static/*:
      headers: { cache-control: "public, max-age=3600", content-type: text/css }
      body: "body{}"
    /api/*:
      headers: { cache-control: no-store, content-type: application/json }
      body: "{}"
scenarios:
  - name: static assets hit after the first fetch
    steps:
      - name: first fetch
        request: /static/site.css
        expect: { cache: miss, stored: true, status: 200, maxAge: { min: 3600 } }
      - request: GET /static/site.css
        repeat: 3
        expect: { cache: hit, ttl: { min: 3000 }, age: { max: 5 }, headers: { content-type: text/css, set-cookie: { absent: true } } }
    originHits: { /static/*: 1 }
    hitRatio: { min: 0.75 }
  - name: the API is never stored
    steps:
      - request: { method: GET, path: /api/user, headers: { accept: application/json } }
        repeat: 2
        expect: { cache: [miss, bypass], stored: false, headers: { content-type: { contains: json } } }
    originHits: 2
`;

test('a YAML file with a scripted origin: every expectation holds, exit 0, a table and a summary', async (t) => {
  const file = write(tempDir(t), 'site.yaml', SITE_YAML);
  const run = await check([file]);
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /^cairn check .*site\.yaml: a Cairn in front of the scripted origin/);
  assert.match(run.stdout, /\n {2}# +step +request +status +cache +result\n/);
  assert.match(
    run.stdout,
    /\nstatic assets hit after the first fetch\n {2}1 +first fetch +GET \/static\/site\.css +200 +miss +ok\n/,
  );
  assert.match(run.stdout, /\n {2}2 +step 2 \(×3\) +GET \/static\/site\.css +200 ×3 +hit ×3 +ok\n/);
  assert.match(run.stdout, /originHits \/static\/\* +expected 1 origin request, got 1 +ok/);
  assert.match(
    run.stdout,
    /hitRatio +expected a hit ratio >= 0\.75, got 0\.750 \(3 of 4 served from cache\) +ok/,
  );
  assert.match(run.stdout, /\ncheck: 9 passed, 0 failed in [\d.]+ s\n$/);
  assert.equal(run.stderr, '', 'no progress bar for a short run');
});

test('a JSON file against a real origin URL: a failed expectation exits 1 and says why; --json and --junit', async (t) => {
  const origin = await startOrigin(t, (req, res) => {
    // x-note puts XML's special characters into the failure details the JUnit file carries.
    const headers: Record<string, string> =
      req.url === '/home'
        ? { 'cache-control': 'max-age=60', 'set-cookie': 'sid=abc', 'x-note': `<b> & "c" 'd'` }
        : { 'cache-control': 'max-age=60' };
    res.writeHead(200, headers);
    res.end('hello & <welcome>');
  });
  const dir = tempDir(t);
  const file = write(
    dir,
    'home.json',
    JSON.stringify({
      scenarios: [
        {
          name: 'home page is cached',
          steps: [
            { request: '/home', expect: { stored: true } },
            { request: '/home', expect: { cache: 'hit' } },
          ],
          originHits: { '/home': 1 },
        },
        {
          name: 'about page is cached',
          steps: [
            { request: '/about', expect: { stored: true, status: 200 } },
            { request: '/about', expect: { cache: 'hit' } },
          ],
        },
      ],
    }),
  );
  const junit = join(dir, 'report.xml');
  const run = await check([file, '--origin', origin.url, '--junit', junit]);
  assert.equal(run.code, 1, run.stdout);
  assert.match(run.stdout, /: a Cairn in front of http:\/\/127\.0\.0\.1:\d+\n/);
  assert.match(
    run.stdout,
    /FAIL home page is cached › step 1: GET \/home\n {2}- stored: expected stored, got not stored \(detail=set-cookie\)/,
  );
  assert.match(run.stdout, /origin answered 200 with:\n(?: {4}.*\n)* {4}set-cookie: sid=abc/);
  assert.match(run.stdout, /Not stored: the response sets a cookie \(Set-Cookie\)/);
  assert.match(run.stdout, /FAIL home page is cached › originHits \/home: expected 1 origin request, got 2/);
  assert.match(run.stdout, /\ncheck: 2 passed, 3 failed in /);

  const xml = readFileSync(junit, 'utf8');
  assertWellFormedXml(xml);
  assert.match(xml, /<testsuites name="cairn check [^"]*home\.json" tests="5" failures="3" skipped="0"/);
  assert.match(xml, /<testsuite name="home page is cached" tests="3" failures="3"/);
  assert.match(xml, /<testsuite name="about page is cached" tests="2" failures="0"/);
  assert.match(
    xml,
    /<failure message="stored: expected stored, got not stored \(detail=set-cookie\)" type="CacheExpectation">/,
  );
  assert.match(xml, /x-note: &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;/);

  const json = await check([file, '--origin', origin.url, '--json']);
  assert.equal(json.code, 1);
  const report = JSON.parse(json.stdout) as CheckReport;
  assert.equal(report.mode, 'origin');
  assert.equal(report.url, origin.url);
  assert.deepEqual([report.passed, report.failed, report.notJudged], [2, 3, 0]);
  const home = report.scenarios[0]!;
  assert.equal(home.verdict, 'failed');
  assert.deepEqual(
    home.steps.map((s) => [s.label, s.outcome, s.verdict]),
    [
      ['step 1', 'miss', 'failed'],
      ['step 2', 'miss', 'failed'],
    ],
  );
  assert.match(home.steps[0]!.details ?? '', /why: +Not stored: the response sets a cookie/);
  assert.equal(report.scenarios[1]!.verdict, 'passed');
});

test('--target: a running Cairn judged by its headers; origin hits are "not judged", not failed; {{run}} makes first fetches miss', async (t) => {
  const cairn = await startCacheTest({
    origin: { '/static/*': { headers: { 'cache-control': 'max-age=600' }, body: 'x' } },
  });
  t.after(() => cairn.close());
  const file = write(
    tempDir(t),
    'target.yaml',
    `
scenarios:
  - name: assets
    steps:
      - request: /static/app.js?run={{run}}
        expect: { cache: miss, stored: true }
      - request: /static/app.js?run={{run}}
        expect: { cache: hit }
    originHits: { /static/*: 1 }
`,
  );
  for (let i = 0; i < 2; i++) {
    // Twice against the same long-running cache: {{run}} gives each run fresh URLs.
    const run = await check([file, '--target', cairn.url]);
    assert.equal(run.code, 0, run.stdout);
    assert.match(run.stdout, new RegExp(`: the running cache at ${cairn.url.replace(/[./]/g, '\\$&')}`));
    assert.match(
      run.stdout,
      /originHits \/static\/\* +cannot count origin hits against a running cache \(--target\) +n\/a/,
    );
    assert.match(
      run.stdout,
      /\nNot judged:\n {2}assets › originHits \/static\/\*: cannot count origin hits against a running cache/,
    );
    assert.match(run.stdout, /\ncheck: 2 passed, 0 failed, 1 not judged in /);
  }
  assert.equal(cairn.originHits('/static/*'), 2, 'one miss per run reached the origin');
});

test('--target: another vendor\'s cache judged by X-Cache and Age; "stored" cannot be told, a wrong outcome fails', async (t) => {
  let n = 0;
  const vendor = await startOrigin(t, (_req, res) => {
    n++;
    res.writeHead(
      200,
      n === 1 ? { 'x-cache': 'MISS from vendor' } : { 'x-cache': 'HIT from vendor', age: String(n) },
    );
    res.end('v');
  });
  const file = write(
    tempDir(t),
    'vendor.yaml',
    `
scenarios:
  - name: vendor
    steps:
      - request: /a
        expect: { cache: miss, stored: true }
      - request: /a
        expect: { cache: hit, age: { min: 1 } }
      - request: /a
        expect: { cache: miss }
`,
  );
  const run = await check([file, '--target', vendor.url, '--json']);
  assert.equal(run.code, 1);
  const report = JSON.parse(run.stdout) as CheckReport;
  const steps = report.scenarios[0]!.steps;
  assert.deepEqual(
    steps.map((s) => [s.outcome, s.cacheSignal, s.verdict]),
    [
      ['miss', 'MISS from vendor', 'passed'],
      ['hit', 'HIT from vendor', 'passed'],
      ['hit', 'HIT from vendor', 'failed'],
    ],
  );
  assert.match(
    steps[0]!.notJudged[0] ?? '',
    /^stored: the response does not say whether it was stored \(only x-cache; needs Cache-Status\)/,
  );
  assert.match(steps[2]!.failures[0] ?? '', /^cache: expected miss, got hit \(from HIT from vendor\)/);
});

test('progress: a bar on stderr for long runs (a line per tenth off a terminal, redrawn on one); --no-progress and --progress', async (t) => {
  const dir = tempDir(t);
  const long = write(
    dir,
    'long.yaml',
    `
origin: { routes: { /s/*: { headers: { cache-control: max-age=60 }, body: s } } }
scenarios:
  - name: many
    steps:
      - request: /s/a
        repeat: 25
`,
  );
  const run = await check([long]);
  assert.equal(run.code, 0, run.stdout);
  const lines = run.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 10, run.stderr);
  assert.match(lines[0]!, /^progress \[####\.{26}\] 3\/25 requests \(12%\)$/);
  assert.equal(lines.at(-1), 'progress [##############################] 25/25 requests (100%)');

  const tty = await check([long], true);
  assert.equal(tty.stderr.split('\r').length, 26, 'redrawn once per request');
  assert.ok(tty.stderr.endsWith('25/25 requests (100%)\n'));

  assert.equal((await check([long, '--no-progress'])).stderr, '');
  const short = write(
    dir,
    'short.yaml',
    `origin: { routes: { /x: { body: x } } }\nscenarios: [{ name: one, steps: [{ request: /x }] }]\n`,
  );
  assert.equal((await check([short])).stderr, '');
  assert.match((await check([short, '--progress'])).stderr, /^progress \[#{30}\] 1\/1 requests \(100%\)\n$/);
});

test('bad command lines and bad files exit 2 and name the problem', async (t) => {
  const dir = tempDir(t);
  const bad = write(
    dir,
    'bad.yaml',
    'scenarios:\n  - name: x\n    steps:\n      - request: /\n        expect: { cache: hitt, colour: blue }\n',
  );
  let run = await check([bad, '--origin', 'http://127.0.0.1:9']);
  assert.equal(run.code, 2);
  assert.match(
    run.stderr,
    /CAIRN_ERR_CONFIG_INVALID: .*bad\.yaml: scenarios\.0\.steps\.0\.expect\.cache\.0: Invalid enum value\. Expected 'hit' \| 'stale' \| 'miss' \| 'revalidated' \| 'expired' \| 'bypass' \| 'unknown', received 'hitt'/,
  );
  assert.match(run.stderr, /scenarios\.0\.steps\.0\.expect: Unrecognized key\(s\) in object: 'colour'/);
  const noOrigin = write(dir, 'no-origin.yaml', 'scenarios: [{ name: x, steps: [{ request: / }] }]\n');
  run = await check([noOrigin]);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /nothing to test: give --origin URL \(or origin: in the file\) or --target URL/);
  run = await check([noOrigin, '--origin', 'http://127.0.0.1:9', '--target', 'http://127.0.0.1:9']);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /give --origin or --target, not both/);
  run = await check([join(dir, 'missing.yaml'), '--origin', 'http://127.0.0.1:9']);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /missing\.yaml: cannot read/);
  run = await check([]);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /give exactly one FILE/);
  run = await check([noOrigin, '--colour']);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /Unknown option '--colour'/);
});

test('an origin that refuses connections: the steps fail (502), exit 1', async (t) => {
  const origin = await startOrigin(t, (_req, res) => res.end());
  const url = origin.url;
  await origin.close();
  const file = write(
    tempDir(t),
    'down.yaml',
    'scenarios: [{ name: down, steps: [{ request: /, expect: { status: 200 } }] }]\n',
  );
  const run = await check([file, '--origin', url]);
  assert.equal(run.code, 1);
  assert.match(run.stdout, /- status: expected 200, got 502/);
});

test('bin/cairn.js check: the subcommand through the real CLI, exit status and output', async (t) => {
  const dir = tempDir(t);
  const file = write(dir, 'site.yaml', SITE_YAML.replace('cache: [miss, bypass]', 'cache: hit'));
  const run = await runCli(['check', file, '--junit', join(dir, 'out.xml')], {
    script: 'bin/cairn.js',
    plainNode: true,
  });
  assert.equal(run.code, 1, run.stderr);
  assert.match(
    run.stdout,
    /FAIL the API is never stored › step 1 \(1\/2\): GET \/api\/user\n {2}- cache: expected hit, got miss \(fwd=uri-miss: nothing was stored for this URL yet\), not stored \(detail=no-store\)/,
  );
  assert.match(run.stdout, /\(and 1 more request of this step failed the same way\)/);
  assert.match(run.stdout, /\ncheck: 7 passed, 2 failed in /);
  assertWellFormedXml(readFileSync(join(dir, 'out.xml'), 'utf8'));
  const help = await runCli(['check', '--help'], { script: 'bin/cairn.js', plainNode: true });
  assert.equal(help.code, 0);
  assert.match(
    help.stdout,
    /^Usage: cairn check FILE \[--origin URL \| --target URL\] \[--json\] \[--junit FILE\]/,
  );
});

/**
 * XML 1.0 well-formedness, strictly enough for a JUnit report: one root element, every tag closed
 * in order, attributes quoted, only the five predefined entities (or character references), no
 * raw `<` or `&` in text or attributes.
 */
function assertWellFormedXml(xml: string): void {
  let rest = xml;
  const decl = /^<\?xml version="1\.0" encoding="UTF-8"\?>\n/.exec(rest);
  assert.ok(decl, 'XML declaration');
  rest = rest.slice(decl[0].length);
  const stack: string[] = [];
  let roots = 0;
  const text = /^[^<]*/;
  const entityOk = (s: string): boolean => !/&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.test(s);
  while (rest.length > 0) {
    const t = text.exec(rest)![0];
    assert.ok(entityOk(t), `bad entity in text: ${t.slice(0, 80)}`);
    if (stack.length === 0) assert.equal(t.trim(), '', `text outside the root: ${t.slice(0, 80)}`);
    rest = rest.slice(t.length);
    if (rest.length === 0) break;
    const close = /^<\/([A-Za-z_][\w.-]*)\s*>/.exec(rest);
    if (close !== null) {
      assert.equal(stack.pop(), close[1], `closing </${close[1]}> out of order`);
      rest = rest.slice(close[0].length);
      continue;
    }
    const open = /^<([A-Za-z_][\w.-]*)((?:\s+[A-Za-z_][\w.-]*="[^"<]*")*)\s*(\/?)>/.exec(rest);
    assert.ok(open, `malformed tag at: ${rest.slice(0, 80)}`);
    assert.ok(entityOk(open[2] ?? ''), `bad entity in attributes of <${open[1]}>`);
    const names = [...(open[2] ?? '').matchAll(/([A-Za-z_][\w.-]*)=/g)].map((m) => m[1]);
    assert.equal(new Set(names).size, names.length, `repeated attribute in <${open[1]}>`);
    if (stack.length === 0) roots++;
    if (open[3] !== '/') stack.push(open[1]!);
    rest = rest.slice(open[0].length);
  }
  assert.deepEqual(stack, [], 'every element closed');
  assert.equal(roots, 1, 'one root element');
}
