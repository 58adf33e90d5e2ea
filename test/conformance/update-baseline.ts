/**
 * Refresh the committed http-cache-tests results deliberately:
 *
 *   node --import tsx test/conformance/update-baseline.ts [--runs N]
 *   node --import tsx test/conformance/update-baseline.ts --doc-only
 *
 * Runs the suite N times (default 3) against a fresh CdnProxy each time and records a test as
 * passing only when it passed in every run (so a flaky pass never becomes a baseline a later run
 * "regresses" from). Writes `test/conformance/http-cache-tests.results.json` and the generated
 * counts block of docs/conformance.md, then prints what changed against the previous baseline.
 * `--doc-only` rewrites only the counts block, from the committed baseline.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import {
  BASELINE_FILE,
  countResults,
  countsBlock,
  DOC_FILE,
  extractCountsBlock,
  formatResults,
  loadSuiteTests,
  readBaseline,
  regressions,
  runConformance,
  type Results,
} from './http-cache-tests-harness.ts';

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '3' }, 'doc-only': { type: 'boolean', default: false } },
});
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) {
  console.error('update-baseline: --runs must be a whole number >= 1');
  process.exit(2);
}

const tests = await loadSuiteTests();
let previous: Results = {};
try {
  previous = await readBaseline();
} catch {
  // first baseline
}

async function runAll(): Promise<Results> {
  let merged: Results | undefined;
  for (let i = 1; i <= runs; i++) {
    const results = await runConformance();
    const c = countResults(tests, results);
    console.log(
      `run ${i}/${runs}: required ${c.passed.required}, optimal ${c.passed.optimal}, check ${c.passed.check}`,
    );
    if (merged === undefined) merged = results;
    else
      for (const id of Object.keys(results))
        if (merged[id] === true && results[id] !== true) merged[id] = results[id]!;
  }
  return merged!;
}

const baseline = values['doc-only'] ? previous : await runAll();
if (!values['doc-only']) await writeFile(BASELINE_FILE, formatResults(baseline));
const doc = await readFile(DOC_FILE, 'utf8');
const block = extractCountsBlock(doc);
if (block === undefined) {
  console.error(`update-baseline: ${DOC_FILE} has no counts markers; results written, doc unchanged`);
  process.exit(1);
}
const counts = countResults(tests, baseline);
await writeFile(DOC_FILE, doc.replace(block, countsBlock(counts)));

const lost = regressions(previous, baseline);
const gained = Object.keys(baseline).filter((id) => baseline[id] === true && previous[id] !== true);
console.log(
  `baseline: required ${counts.passed.required}/${counts.total.required}, optimal ${counts.passed.optimal}/${counts.total.optimal}, ` +
    `check ${counts.passed.check}/${counts.total.check}`,
);
for (const id of gained) console.log(`  + ${id}`);
for (const id of lost) console.log(`  - ${id}: ${JSON.stringify(baseline[id])}`);
