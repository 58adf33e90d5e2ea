// Deliberately failing: proves a kit failure reaches vitest's report with its explanation.
import { afterAll, beforeAll, test } from 'vitest';
import { expectHit, startCacheTest } from '../../hooks/testing/index.ts';
import type { CacheTest } from '../../hooks/testing/index.ts';
import { SITE } from './site.ts';

let site: CacheTest;
beforeAll(async () => {
  site = await startCacheTest({ origin: SITE });
});
afterAll(() => site.close());

test('the API is a hit (it is not: no-store)', async () => {
  await site.get('/api/user');
  expectHit(await site.get('/api/user'));
});
