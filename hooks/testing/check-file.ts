/**
 * The `cairn check` file: request sequences and what each response must show. YAML or JSON,
 * validated with every problem named by its key path.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { CairnError } from '../../src/index.ts';
import { CACHE_OUTCOMES } from './observe.ts';
import type { CacheOutcome } from './observe.ts';
import type { ScriptedReply, ScriptedRoutes } from './origin.ts';

const httpUrl = z
  .string()
  .url()
  .refine((v) => /^https?:\/\//i.test(v), 'must be an http:// or https:// URL');

const headerMap = z.record(z.union([z.string(), z.number().transform(String)]));

const reply = z
  .object({
    status: z.number().int().min(100).max(599).optional(),
    headers: z.record(z.union([z.string(), z.number(), z.array(z.string())])).optional(),
    body: z.string().optional(),
    delayMs: z.number().int().min(0).max(60_000).optional(),
  })
  .strict();

/** A scripted route in a file: one reply, or `replies` answered in turn (the last one repeats). */
const route = z.union([reply, z.object({ replies: z.array(reply).min(1) }).strict()]);

const range = z.union([
  z.number(),
  z
    .object({ min: z.number().optional(), max: z.number().optional() })
    .strict()
    .refine((r) => r.min !== undefined || r.max !== undefined, 'give min, max or both'),
]);

const headerExpectation = z.union([
  z.string(),
  z.object({ equals: z.string() }).strict(),
  z.object({ contains: z.string() }).strict(),
  z
    .object({ matches: z.string() })
    .strict()
    .refine((m) => {
      try {
        new RegExp(m.matches);
        return true;
      } catch {
        return false;
      }
    }, 'must be a valid regular expression'),
  z.object({ present: z.literal(true) }).strict(),
  z.object({ absent: z.literal(true) }).strict(),
]);

const outcome = z.enum(CACHE_OUTCOMES as [CacheOutcome, ...CacheOutcome[]]);

const expectation = z
  .object({
    status: z.number().int().min(100).max(599).optional(),
    // One outcome or a list; a lone string becomes a list first, so a typo is reported against the
    // list of outcomes rather than as a bare 'Invalid input' from a union.
    cache: z.preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(outcome).min(1)).optional(),
    stored: z.boolean().optional(),
    headers: z.record(headerExpectation).optional(),
    maxAge: range.optional(),
    ttl: range.optional(),
    age: range.optional(),
  })
  .strict();

const request = z.union([
  z.string().min(1),
  z
    .object({
      method: z
        .string()
        .regex(/^[A-Za-z]+$/, 'must be an HTTP method')
        .optional(),
      path: z.string().min(1),
      headers: headerMap.optional(),
      body: z.string().optional(),
    })
    .strict(),
]);

const step = z
  .object({
    name: z.string().optional(),
    request,
    repeat: z.number().int().min(1).max(100_000).default(1),
    expect: expectation.default({}),
  })
  .strict();

const scenario = z
  .object({
    name: z.string().min(1),
    steps: z.array(step).min(1),
    originHits: z.union([z.number().int().min(0), z.record(z.number().int().min(0))]).optional(),
    hitRatio: range.optional(),
  })
  .strict();

/**
 * The schema of a check file (zod); {@link validateCheckFile} reports its errors by key path.
 *
 * @example
 * ```ts
 * checkFileSchema.safeParse(parsedYaml).success;
 * ```
 */
export const checkFileSchema = z
  .object({
    origin: z.union([httpUrl, z.object({ routes: z.record(route) }).strict()]).optional(),
    target: httpUrl.optional(),
    cache: z
      .object({
        name: z.string().min(1).optional(),
        policy: z
          .object({
            maxHeuristicTtl: z.number().int().min(0),
            setCookie: z.enum(['bypass', 'strip', 'store']),
            defaultStaleIfError: z.number().int().min(0),
            requestDirectives: z.boolean(),
            targetedFields: z.array(z.string().min(1)),
          })
          .strict()
          .partial()
          .optional(),
      })
      .strict()
      .optional(),
    headers: headerMap.optional(),
    scenarios: z.array(scenario).min(1),
  })
  .strict();

/** A validated check file. */
export type CheckFile = z.output<typeof checkFileSchema>;
/** One scenario of a check file. */
export type CheckScenario = CheckFile['scenarios'][number];
/** One step of a scenario. */
export type CheckStep = CheckScenario['steps'][number];
/** What one step expects. */
export type CheckExpectation = CheckStep['expect'];
/** A number (exact) or `{ min, max }`. */
export type CheckRange = z.output<typeof range>;
/** One header expectation. */
export type HeaderExpectation = z.output<typeof headerExpectation>;

/**
 * Validate a parsed check file; throws `CAIRN_ERR_CONFIG_INVALID` naming every bad key.
 *
 * @example
 * ```ts
 * const file = validateCheckFile({ scenarios: [{ name: 'home', steps: [{ request: '/' }] }] }, 'inline');
 * ```
 */
export function validateCheckFile(input: unknown, source: string): CheckFile {
  const result = checkFileSchema.safeParse(input ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const path = issue.path.length === 0 ? '(top level)' : issue.path.join('.');
    const keys = issue.code === 'unrecognized_keys' ? `: ${issue.keys.map((k) => `"${k}"`).join(', ')}` : '';
    return `${path}: ${issue.message}${keys}`;
  });
  throw new CairnError('CAIRN_ERR_CONFIG_INVALID', `${source}: ${problems.join('; ')}`);
}

/**
 * Read and validate a check file (`.json` is JSON, anything else YAML).
 *
 * @example
 * ```ts
 * const file = await loadCheckFile('cache-checks.yaml');
 * ```
 */
export async function loadCheckFile(path: string): Promise<CheckFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new CairnError('CAIRN_ERR_CONFIG_INVALID', `${path}: cannot read (${(error as Error).message})`, {
      cause: error,
    });
  }
  const json = path.endsWith('.json');
  let parsed: unknown;
  try {
    parsed = json ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new CairnError(
      'CAIRN_ERR_CONFIG_INVALID',
      `${path}: not valid ${json ? 'JSON' : 'YAML'} (${(error as Error).message})`,
      {
        cause: error,
      },
    );
  }
  return validateCheckFile(parsed, path);
}

/**
 * The scripted routes a file declares, as the kit's `ScriptedRoutes`.
 *
 * @example
 * ```ts
 * if (typeof file.origin === 'object') await startScriptedOrigin(routesOf(file.origin.routes));
 * ```
 */
export function routesOf(routes: Readonly<Record<string, z.output<typeof route>>>): ScriptedRoutes {
  const out: Record<string, ScriptedReply | ((r: { hit: number }) => ScriptedReply)> = {};
  for (const [pattern, r] of Object.entries(routes)) {
    if ('replies' in r) {
      const replies = r.replies;
      out[pattern] = (req) => replies[Math.min(req.hit, replies.length) - 1]!;
    } else out[pattern] = r;
  }
  return out;
}
