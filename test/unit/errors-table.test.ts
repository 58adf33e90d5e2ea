/**
 * The error table in `src/errors.ts` and the one in `docs/errors.md` list the same codes with the
 * same status, source and retryable (fastify checks its `lib/errors.js` against its docs this way).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CairnError, ERROR_CODES, isCairnError } from '../../src/errors.ts';
import type { ErrorCode } from '../../src/errors.ts';

interface DocRow {
  status: number;
  source: string;
  retryable: string;
  meaning: string;
}

const ROW = /^\|\s*`([A-Z0-9_]+)`\s*\|\s*(\d{3})\s*\|\s*([a-z]+)\s*\|\s*([a-z-]+)\s*\|\s*(.*?)\s*\|\s*$/;

function documentedCodes(): Map<string, DocRow> {
  const text = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const rows = new Map<string, DocRow>();
  for (const line of text.split('\n')) {
    const match = ROW.exec(line);
    if (match === null) continue;
    const code = match[1]!;
    assert.ok(!rows.has(code), `${code} is documented twice`);
    rows.set(code, { status: Number(match[2]), source: match[3]!, retryable: match[4]!, meaning: match[5]! });
  }
  return rows;
}

const codes = Object.keys(ERROR_CODES) as ErrorCode[];

test('docs/errors.md has a row for at least every code (the parser found the table)', () => {
  assert.ok(documentedCodes().size >= codes.length && codes.length > 0);
});

test('every code in ERROR_CODES is documented with its status, source and retryable', () => {
  const docs = documentedCodes();
  for (const code of codes) {
    const info = ERROR_CODES[code];
    const row = docs.get(code);
    assert.ok(row !== undefined, `${code} is missing from docs/errors.md`);
    assert.equal(row.status, info.status, `${code}: status`);
    assert.equal(row.source, info.source, `${code}: source`);
    assert.equal(row.retryable, String(info.retryable), `${code}: retryable`);
    assert.notEqual(row.meaning, '', `${code}: meaning`);
  }
});

test('every documented code exists in ERROR_CODES', () => {
  for (const code of documentedCodes().keys()) {
    assert.ok(
      Object.hasOwn(ERROR_CODES, code),
      `docs/errors.md lists ${code}, which src/errors.ts does not define`,
    );
  }
});

test('codes follow CAIRN_ERR_<AREA>_<WHAT> and each has a known source and a description', () => {
  for (const code of codes) {
    const info = ERROR_CODES[code];
    assert.match(code, /^CAIRN_ERR_[A-Z0-9]+(_[A-Z0-9]+)*$/);
    assert.ok(['upstream', 'downstream', 'internal'].includes(info.source), code);
    assert.ok(info.retryable === true || info.retryable === false || info.retryable === 'if-reused', code);
    assert.ok(info.status >= 400 && info.status <= 599, code);
    assert.ok(info.description.length > 10, code);
  }
});

test('a CairnError takes code, source, retryable and status from the table, and keeps its cause', () => {
  const cause = new Error('ECONNREFUSED');
  for (const code of codes) {
    const error = new CairnError(code, 'x', { cause });
    assert.equal(error.code, code);
    assert.equal(error.source, ERROR_CODES[code].source);
    assert.equal(error.retryable, ERROR_CODES[code].retryable);
    assert.equal(error.status, ERROR_CODES[code].status);
    assert.equal(error.retry, false);
    assert.equal(error.cause, cause);
    assert.ok(isCairnError(error));
  }
  // A copy from a second install is recognised by its code, not its class.
  const foreign = Object.assign(new Error('x'), { code: 'CAIRN_ERR_UPSTREAM_CONNECT' });
  assert.ok(isCairnError(foreign));
  assert.ok(!isCairnError(Object.assign(new Error('x'), { code: 'ECONNRESET' })));
});
