// cairn/testing under vitest and jest: the examples in test/kit pass under each runner, and a
// deliberately failing example fails with the kit's explanation in the runner's report.
// (node:test is proven by testing-kit.test.ts itself.)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { REPO_ROOT } from '../helpers/cli.ts';

interface Run {
  readonly code: number | null;
  readonly output: string;
}

const BIN = join(REPO_ROOT, 'node_modules', '.bin');

/** Run a runner's own bin from node_modules/.bin (what `npx` resolves to); killed by PID in t.after. */
function runRunner(
  t: { after(fn: () => unknown): void },
  bin: string,
  args: readonly string[],
): Promise<Run> {
  // No colours, no watch mode, no interactive reporter: plain text to read. NODE_TEST_CONTEXT would
  // make a child think it runs under this node:test process.
  const env: NodeJS.ProcessEnv = { ...process.env, CI: 'true', NO_COLOR: '1', FORCE_COLOR: '0' };
  delete env.NODE_TEST_CONTEXT;
  const child = spawn(join(BIN, bin), args, {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  t.after(() => {
    if (pid !== undefined && child.exitCode === null && child.signalCode === null)
      process.kill(pid, 'SIGKILL');
  });
  let output = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (c: string) => (output += c));
  child.stderr.on('data', (c: string) => (output += c));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, output })));
}

const VITEST = ['run', '--config', 'test/kit/vitest.config.ts'];
const JEST = ['--config', 'test/kit/jest.config.json', '--ci'];

// The explanation a failing expectHit must carry into any runner's report.
function assertExplains(output: string): void {
  assert.match(output, /expectHit: expected a cache hit, got miss/);
  assert.match(output, /request: {2}GET http:\/\/127\.0\.0\.1:\d+\/api\/user/);
  assert.match(output, /cache-status: Cairn; fwd=uri-miss; fwd-status=200; detail=no-store/);
  assert.match(output, /Not stored: the response has no-store in Cache-Control/);
}

// Two runner processes at a time: each is mostly start-up, and the machine has two cores.
describe('the kit under other runners', { concurrency: 2 }, () => {
  test('vitest: the example suite passes', async (t) => {
    const run = await runRunner(t, 'vitest', [...VITEST, 'test/kit/example.vitest.ts']);
    assert.equal(run.code, 0, run.output);
    assert.match(run.output, /Tests\s+2 passed/);
  });

  test('vitest: a failing cache expectation fails the run with the explanation', async (t) => {
    const run = await runRunner(t, 'vitest', [...VITEST, 'test/kit/failing.vitest.ts']);
    assert.equal(run.code, 1, run.output);
    assert.match(run.output, /1 failed/);
    assertExplains(run.output);
  });

  test('jest: the example suite passes', async (t) => {
    const run = await runRunner(t, 'jest', [...JEST, 'test/kit/example.jest.ts']);
    assert.equal(run.code, 0, run.output);
    assert.match(run.output, /Tests:\s+2 passed, 2 total/);
  });

  test('jest: a failing cache expectation fails the run with the explanation', async (t) => {
    const run = await runRunner(t, 'jest', [...JEST, 'test/kit/failing.jest.ts']);
    assert.equal(run.code, 1, run.output);
    assert.match(run.output, /Tests:\s+1 failed, 1 total/);
    assertExplains(run.output);
  });
});
