/**
 * The config file (JSON or YAML) and its validation. Every error names the key path and the
 * reason (`limits.maxHeaderSize: must be >= 1024`), and a bad config never starts a proxy.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { CairnError } from './errors.ts';
import { LOG_LEVELS } from './logger.ts';
import type { LogLevel } from './logger.ts';

const address = z.string().regex(/^(?:\[[^\]]+\]|[^:]*):\d{1,5}$/, 'must be host:port');
const ms = z.number().int().positive();
const url = z
  .string()
  .url()
  .refine((value) => /^https?:\/\//.test(value), 'must be an http:// or https:// URL');

const limits = z
  .object({
    maxHeaderSize: z.number().int().min(1024).max(1_048_576),
    maxHeadersCount: z.number().int().min(8).max(10_000),
    keepAliveTimeout: ms,
    headersTimeout: ms,
    requestTimeout: z.number().int().min(0),
    maxRequestsPerSocket: z.number().int().min(0),
  })
  .strict()
  .partial()
  .superRefine((given, ctx) => {
    // Node refuses a header deadline longer than the whole-request one (0 = no request deadline).
    const { headersTimeout, requestTimeout } = given;
    if (headersTimeout === undefined || requestTimeout === undefined) return;
    if (requestTimeout > 0 && headersTimeout > requestTimeout) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['headersTimeout'],
        message: 'must be <= limits.requestTimeout',
      });
    }
  });

const peer = z
  .object({
    connectTimeout: ms,
    headersTimeout: ms,
    idleTimeout: ms,
    keepAliveTimeout: ms,
    maxConnections: z.number().int().positive().max(65_536),
    hostHeader: z.string().min(1),
    allowH2: z.boolean(),
    sni: z.string().min(1),
    tls: z
      .object({ caFile: z.string().min(1), rejectUnauthorized: z.boolean() })
      .strict()
      .partial(),
  })
  .strict()
  .partial();

const forwarding = z
  .object({ via: z.union([z.string().min(1), z.literal(false)]), xForwarded: z.boolean(), forwarded: z.boolean() })
  .strict()
  .partial();

const bytes = z.number().int().positive();

const cache = z
  .object({
    enabled: z.boolean().default(true),
    memory: z
      .object({ maxBytes: bytes.default(256 * 1024 ** 2), maxObjectBytes: bytes.default(8 * 1024 ** 2) })
      .strict()
      .default({}),
    disk: z
      .union([
        z
          .object({
            path: z.string().min(1).default('.cairn-cache'),
            maxBytes: bytes.default(1024 ** 3),
            maxObjectBytes: bytes.optional(),
          })
          .strict(),
        z.literal(false),
      ])
      .default({}),
    lock: z.union([z.object({ timeoutMs: ms }).strict().partial(), z.literal(false)]).default({}),
    policy: z
      .object({
        maxHeuristicTtl: z.number().int().min(0),
        setCookie: z.enum(['bypass', 'strip', 'store']),
        defaultStaleIfError: z.number().int().min(0),
        requestDirectives: z.boolean(),
      })
      .strict()
      .partial()
      .default({}),
    purgeFrom: z.array(z.string().ip()).optional(),
  })
  .strict();

/** The schema of the config file; every key is optional except where noted. */
export const configSchema = z
  .object({
    listen: address.default('127.0.0.1:8080'),
    admin: z.union([address, z.literal(false)]).default(false),
    workers: z.number().int().min(1).max(256).default(1),
    log: z
      .object({ level: z.enum(LOG_LEVELS as [LogLevel, ...LogLevel[]]) })
      .strict()
      .partial()
      .default({}),
    shutdownTimeout: ms.default(10_000),
    origins: z.array(url).default([]),
    limits: limits.default({}),
    peer: peer.default({}),
    forwarding: forwarding.default({}),
    cache: cache.default({}),
  })
  .strict();

export type CairnConfig = z.output<typeof configSchema>;
export type CairnConfigInput = z.input<typeof configSchema>;

/** Validate a parsed config object; throws `CAIRN_ERR_CONFIG_INVALID` naming every bad key. */
export function validateConfig(input: unknown, source = 'config'): CairnConfig {
  const result = configSchema.safeParse(input ?? {});
  if (result.success) return result.data;
  const problems: string[] = [];
  for (const issue of result.error.issues) {
    // An unknown key is named by its own path (`limits.maxHeaderSiz: unknown key`), one per key.
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) problems.push(`${keyPath([...issue.path, key])}: unknown key`);
    } else {
      problems.push(`${keyPath(issue.path)}: ${issue.message}`);
    }
  }
  throw new CairnError('CAIRN_ERR_CONFIG_INVALID', `${source}: ${problems.join('; ')}`);
}

/** `limits.maxHeaderSize`, `origins[0]`; `(top level)` for the root. */
function keyPath(path: readonly (string | number)[]): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out === '' ? part : `.${part}`;
  return out === '' ? '(top level)' : out;
}

/** Read and validate a JSON or YAML config file. */
export async function loadConfigFile(path: string): Promise<CairnConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new CairnError('CAIRN_ERR_CONFIG_INVALID', `${path}: cannot read (${(error as Error).message})`, {
      cause: error,
    });
  }
  let parsed: unknown;
  try {
    parsed = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new CairnError('CAIRN_ERR_CONFIG_INVALID', `${path}: not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'} (${(error as Error).message})`, {
      cause: error,
    });
  }
  return validateConfig(parsed, path);
}
