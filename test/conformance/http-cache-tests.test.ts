/**
 * The public HTTP cache test suite (npm `http-cache-tests`, https://cache-tests.fyi/) against
 * Cairn's `CdnProxy`: the suite's origin and client run as children on 127.0.0.1, Cairn runs in
 * this process over a temp LMDB directory (see `http-cache-tests-harness.ts`).
 *
 * Fails when:
 * - fewer than TARGETS tests of a kind pass;
 * - a test that passes in the committed baseline (`http-cache-tests.results.json`) now fails
 *   (refresh the baseline deliberately with `node --import tsx test/conformance/update-baseline.ts`);
 * - the counts in docs/conformance.md do not match the baseline.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import {
  countResults,
  countsBlock,
  DOC_FILE,
  extractCountsBlock,
  loadSuiteTests,
  readBaseline,
  regressions,
  runConformance,
  type Results,
} from './http-cache-tests-harness.ts';

/** The targets on http-cache-tests@0.4.5. */
const TARGETS = { required: 155, optimal: 75 } as const;
const SUITE_VERSION = '0.4.5';

test(
  'http-cache-tests against CdnProxy: targets met, no regression against the committed baseline',
  { timeout: 110_000 },
  async (t) => {
    const pkg = JSON.parse(
      await readFile(new URL('../../node_modules/http-cache-tests/package.json', import.meta.url), 'utf8'),
    ) as {
      version: string;
    };
    assert.equal(pkg.version, SUITE_VERSION, 'the baseline and targets are for this suite version');
    const tests = await loadSuiteTests();
    const baseline = await readBaseline();
    const results: Results = await runConformance({ timeLimitMs: 90_000, after: (fn) => t.after(fn) });

    const missing = tests.filter((s) => !(s.id in results)).map((s) => s.id);
    assert.deepEqual(missing, [], 'every test of the suite reported a result');

    const counts = countResults(tests, results);
    t.diagnostic(
      `required ${counts.passed.required}/${counts.total.required}, optimal ${counts.passed.optimal}/${counts.total.optimal}, ` +
        `check ${counts.passed.check}/${counts.total.check}`,
    );
    const lost = regressions(baseline, results);
    for (const id of lost) t.diagnostic(`regression: ${id}: ${JSON.stringify(results[id])}`);
    const gained = Object.keys(results).filter((id) => results[id] === true && baseline[id] !== true);
    for (const id of gained) t.diagnostic(`newly passing (refresh the baseline): ${id}`);

    assert.deepEqual(lost, [], `tests that pass in the baseline now fail: ${lost.join(', ')}`);
    assert.ok(
      counts.passed.required >= TARGETS.required,
      `required passing ${counts.passed.required} < ${TARGETS.required}`,
    );
    assert.ok(
      counts.passed.optimal >= TARGETS.optimal,
      `optimal passing ${counts.passed.optimal} < ${TARGETS.optimal}`,
    );
  },
);

test('the committed baseline meets the targets and docs/conformance.md shows its counts', async () => {
  const tests = await loadSuiteTests();
  const baseline = await readBaseline();
  const ids = new Set(tests.map((s) => s.id));
  assert.deepEqual(
    Object.keys(baseline).filter((id) => !ids.has(id)),
    [],
    'the baseline only names tests of the suite',
  );
  const counts = countResults(tests, baseline);
  assert.ok(counts.passed.required >= TARGETS.required);
  assert.ok(counts.passed.optimal >= TARGETS.optimal);
  const doc = await readFile(DOC_FILE, 'utf8');
  assert.equal(
    extractCountsBlock(doc),
    countsBlock(counts),
    'docs/conformance.md counts differ from the baseline: run `node --import tsx test/conformance/update-baseline.ts`',
  );
});
