// The cache test kit under vitest: run by test/integration/testing-kit-runners.test.ts.
import { afterAll, beforeAll, expect, test } from 'vitest';
import {
  expectHit,
  expectMiss,
  expectNotStored,
  expectOriginHits,
  expectStored,
  startCacheTest,
} from '../../hooks/testing/index.ts';
import type { CacheTest } from '../../hooks/testing/index.ts';
import { SITE } from './site.ts';

let site: CacheTest;
beforeAll(async () => {
  site = await startCacheTest({ origin: SITE });
});
afterAll(() => site.close());

test('static assets are a hit after the first fetch', async () => {
  const first = await site.get('/static/site.css');
  expectMiss(first);
  expectStored(first);
  expectHit(await site.get('/static/site.css'));
  expectOriginHits(site, '/static/*', 1);
});

test('the API is never stored', async () => {
  expectNotStored(await site.get('/api/user'));
  expectNotStored(await site.get('/api/user'));
  expectOriginHits(site, '/api/*', 2);
  expect(site.hitRatio('/api/*')).toBe(0);
});
