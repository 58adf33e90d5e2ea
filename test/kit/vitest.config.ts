// vitest for the kit's runner examples only (Cairn's own tests use node:test). vitest reads its
// config from a default export, so this file is the one exception to named exports.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: { include: ['test/kit/**/*.vitest.ts'] },
});
