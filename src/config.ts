/**
 * The config file (JSON or YAML) and its validation. Every error names the key path and the
 * reason (`limits.maxHeaderSize: must be >= 1024`), and a bad config never starts a proxy.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { CairnError } from './errors.ts';
import { ALGORITHMS } from './lb/selector.ts';
import type { Algorithm } from './lb/selector.ts';
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
  .object({
    via: z.union([z.string().min(1), z.literal(false)]),
    xForwarded: z.boolean(),
    forwarded: z.boolean(),
  })
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

// ---- upstream groups (load balancing) ----------------------------------------------------------

const backendEntry = z.union([
  z.string().min(1),
  z
    .object({
      address: z.string().min(1),
      weight: z.number().int().min(1).max(10_000).optional(),
      id: z.string().min(1).max(256).optional(),
    })
    .strict(),
]);

const HASH_KEY = /^(?:uri|path|host|client-ip|(?:header|query|cookie):[!#$%&'*+.^_`|~0-9A-Za-z-]+)$/;

const healthCheck = z
  .object({
    type: z.enum(['http', 'tcp']).default('http'),
    method: z
      .string()
      .regex(/^[A-Z]+$/, 'must be an upper-case method')
      .optional(),
    path: z.string().startsWith('/').optional(),
    host: z.string().min(1).optional(),
    expectStatus: z
      .tuple([z.number().int().min(100).max(599), z.number().int().min(100).max(599)])
      .refine(([lo, hi]) => lo <= hi, 'must be [low, high] with low <= high')
      .optional(),
    intervalMs: ms.optional(),
    timeoutMs: ms.optional(),
    rise: z.number().int().min(1).max(100).optional(),
    fall: z.number().int().min(1).max(100).optional(),
    jitter: z.number().min(0).max(1).optional(),
    concurrency: z.number().int().min(1).max(1024).optional(),
    initiallyHealthy: z.boolean().optional(),
  })
  .strict();

const passiveHealth = z
  .object({ maxFails: z.number().int().min(0), ejectMs: z.number().int().min(0) })
  .strict()
  .partial();

const ratio = z.number().gt(0).max(1);
const circuitBreaker = z
  .object({
    windowMs: ms,
    buckets: z.number().int().min(1).max(1000),
    minRequests: z.number().int().min(0),
    errorRatio: ratio,
    slowMs: ms,
    slowRatio: ratio,
    openMs: z.number().int().min(0),
    halfOpenProbes: z.number().int().min(1),
  })
  .strict()
  .partial();

const resolveEntry = z
  .object({
    hostname: z.string().min(1),
    port: z.number().int().min(1).max(65_535),
    weight: z.number().int().min(1).max(10_000).optional(),
    protocol: z.enum(['http:', 'https:']).optional(),
    intervalMs: ms.optional(),
    family: z.union([z.literal(0), z.literal(4), z.literal(6)]).optional(),
  })
  .strict();

/** One upstream group: backends, algorithm, hash key, active/passive health, breaker, routing match. */
export const upstreamGroupSchema = z
  .object({
    algorithm: z.enum(ALGORITHMS as [Algorithm, ...Algorithm[]]).default('round-robin'),
    hashKey: z
      .string()
      .regex(HASH_KEY, 'must be uri, path, host, client-ip, header:NAME, query:NAME or cookie:NAME')
      .optional(),
    backends: z.array(backendEntry).max(10_000).default([]),
    resolve: z.array(resolveEntry).max(100).default([]),
    health: z.union([healthCheck, z.literal(false)]).default(false),
    passive: z.union([passiveHealth, z.literal(false)]).optional(),
    breaker: z.union([circuitBreaker, z.literal(false)]).optional(),
    failureStatus: z.array(z.number().int().min(100).max(599)).optional(),
    match: z
      .object({
        hosts: z.array(z.string().min(1)).min(1).optional(),
        pathPrefix: z.string().startsWith('/').optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((group, ctx) => {
    // Backend ids must be unique within a group (the admin API and the ketama ring address them by id).
    const seen = new Set<string>();
    group.backends.forEach((entry, i) => {
      const id = typeof entry === 'string' ? entry : (entry.id ?? entry.address);
      if (seen.has(id))
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: ['backends', i],
          message: `duplicate backend id "${id}"`,
        });
      seen.add(id);
    });
  });

export type UpstreamGroupConfig = z.output<typeof upstreamGroupSchema>;

const GROUP_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** This node as one of a cluster of Cairn nodes (`ClusterCdnProxy`, docs/cluster.md). */
const clusterSection = z
  .object({
    /** Where the other nodes reach this one, as they list it; default `listen`. */
    self: address.optional(),
    peers: z.array(address).min(1),
    downMs: z.number().int().min(0).optional(),
    connectTimeout: ms.optional(),
    purgeTimeout: ms.optional(),
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
    /** The default group (`default`); shorthand for `upstreams: { default: … }`. */
    upstream: upstreamGroupSchema.optional(),
    upstreams: z
      .record(z.string().regex(GROUP_NAME, 'group names are 1-64 of A-Z a-z 0-9 _ . -'), upstreamGroupSchema)
      .default({}),
    limits: limits.default({}),
    peer: peer.default({}),
    forwarding: forwarding.default({}),
    cache: cache.default({}),
    cluster: clusterSection.optional(),
  })
  .strict()
  .superRefine((config, ctx) => {
    if (config.cluster !== undefined && !config.cache.enabled) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['cluster'],
        message: 'a cluster shares a cache: it needs cache.enabled',
      });
    }
    if (config.upstream !== undefined && config.upstreams.default !== undefined) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['upstream'],
        message: 'give either upstream or upstreams.default, not both',
      });
    }
  });

export type CairnConfig = z.output<typeof configSchema>;

/**
 * Every upstream group the config names, in order: `--origin`/`origins` (round robin) form the
 * group `default` and take its place, then `upstream` (also `default`), then `upstreams`.
 */
export function upstreamGroupsOf(config: CairnConfig): Record<string, UpstreamGroupConfig> {
  const groups: Record<string, UpstreamGroupConfig> = {};
  if (config.origins.length > 0) {
    groups.default = upstreamGroupSchema.parse({
      ...(config.upstream ?? config.upstreams.default ?? {}),
      backends: config.origins,
    });
  } else if (config.upstream !== undefined) groups.default = config.upstream;
  for (const [name, group] of Object.entries(config.upstreams))
    if (groups[name] === undefined) groups[name] = group;
  return groups;
}
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
    throw new CairnError(
      'CAIRN_ERR_CONFIG_INVALID',
      `${path}: not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'} (${(error as Error).message})`,
      {
        cause: error,
      },
    );
  }
  return validateConfig(parsed, path);
}
