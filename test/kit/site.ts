/**
 * The small site the runner examples test: static assets cacheable for an hour, an API that must
 * never be stored. Shared by the node:test, vitest and jest examples (files named so that only
 * their own runner picks them up: `*.node.ts`, `*.vitest.ts`, `*.jest.ts`).
 */
import type { ScriptedRoutes } from '../../hooks/testing/index.ts';

export const SITE: ScriptedRoutes = {
  '/static/*': {
    headers: { 'cache-control': 'public, max-age=3600', 'content-type': 'text/css' },
    body: 'body{}',
  },
  '/api/*': {
    headers: { 'cache-control': 'no-store', 'content-type': 'application/json' },
    body: '{"user":1}',
  },
};
