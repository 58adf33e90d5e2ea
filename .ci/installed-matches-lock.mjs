// Check that node_modules holds exactly the versions package-lock.json names (what `npm ci`
// guarantees), for the fallback install in .ci/run. Optional packages may be absent (other
// platforms); every package that is installed must have the locked version.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
const problems = [];
let checked = 0;
for (const [path, entry] of Object.entries(lock.packages ?? {})) {
  if (path === '' || entry.link || entry.extraneous || !path.startsWith('node_modules/')) continue;
  const manifest = join(path, 'package.json');
  if (!existsSync(manifest)) {
    if (!entry.optional && !entry.devOptional && !entry.peer) problems.push(`${path}: missing (locked ${entry.version})`);
    continue;
  }
  const installed = JSON.parse(readFileSync(manifest, 'utf8')).version;
  if (installed !== entry.version) problems.push(`${path}: ${installed} installed, ${entry.version} locked`);
  checked++;
}
if (problems.length > 0) {
  console.error(`node_modules does not match package-lock.json:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log(`node_modules matches package-lock.json (${checked} packages)`);
