// The README shows `cairn --help` as it is: if the CLI's options change, the README must too.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

const root = join(import.meta.dirname, '..', '..');

test('the README CLI block is exactly what `cairn --help` prints', async () => {
  const readme = await readFile(join(root, 'README.md'), 'utf8');
  const block = /```text cli-usage\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(block !== undefined, 'README.md has a ```text cli-usage block');
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', join(root, 'src/cli.ts'), '--help'],
    {
      cwd: root,
    },
  );
  assert.equal(block.trimEnd(), stdout.trimEnd());
});
