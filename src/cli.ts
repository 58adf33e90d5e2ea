/**
 * `cairn`: run a ready-made proxy from flags and/or a config file.
 *
 *   cairn --listen 127.0.0.1:8080 --origin http://127.0.0.1:3000
 *   cairn --config cairn.yaml
 *
 * This file is the composition root: the one place in `src/` that picks a ready-made proxy from
 * `hooks/` (which itself only uses the public API).
 */
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { CdnProxy, ClusterCdnProxy, ReverseProxy } from '../hooks/index.ts';
import type { UpstreamGroupOptions } from '../hooks/index.ts';
import { HttpCache } from '../cache/http-cache.ts';
import type { CairnConfig, UpstreamGroupConfig } from './config.ts';
import { loadConfigFile, upstreamGroupsOf, validateConfig } from './config.ts';
import { announceConfigReload } from './cluster-admin.ts';
import { watchConfigFile } from './config-watch.ts';
import { startDemoOrigin } from './demo-origin.ts';
import { isCairnError } from './errors.ts';
import type { HttpPeerOptions } from './peer.ts';
import { parseAddress, serve } from './server.ts';

const USAGE = `Usage: cairn [options]
       cairn check FILE [--origin URL | --target URL] [--json] [--junit FILE]
       cairn explain URL

  --listen HOST:PORT     where clients connect (default 127.0.0.1:8080)
  --origin URL           an origin server; repeat for several (round robin; the
                         upstream group "default"). With no origin and no upstream
                         group at all, a demo origin is started on loopback.
  --config FILE          a JSON or YAML config file (flags override it); watched:
                         upstream changes apply without a restart
  --admin HOST:PORT      admin listener: /metrics, /healthz, POST /purge, /upstreams
  --cache-dir DIR        the LMDB disk tier's directory (default .cairn-cache)
  --memory-only          cache in memory only (no disk tier)
  --no-cache             plain reverse proxy, no caching
  --workers N            processes to run (node:cluster), sharing the listen port
  --cluster-peer H:P     a node of a Cairn cluster; repeat for every node (docs/cluster.md)
  --cluster-self H:P     this node as the others list it (default: --listen)
  --log-level LEVEL      fatal|error|warn|info|debug|trace|silent (default info)
  -h, --help             this text
`;

/** A validated config and the file it came from (watched for changes). */
export type CliConfig = CairnConfig & { readonly source?: string };

/** Parse flags and the config file into one validated config. Throws coded errors. */
export async function configFromArgs(argv: readonly string[]): Promise<CliConfig | 'help'> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      listen: { type: 'string' },
      origin: { type: 'string', multiple: true },
      config: { type: 'string' },
      admin: { type: 'string' },
      workers: { type: 'string' },
      'log-level': { type: 'string' },
      'cache-dir': { type: 'string' },
      'memory-only': { type: 'boolean' },
      'no-cache': { type: 'boolean' },
      'cluster-self': { type: 'string' },
      'cluster-peer': { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help === true) return 'help';
  const base: Record<string, unknown> =
    values.config === undefined ? {} : { ...(await loadConfigFile(values.config)) };
  if (values.listen !== undefined) base.listen = values.listen;
  if (values.origin !== undefined) base.origins = values.origin;
  if (values.admin !== undefined) base.admin = values.admin === 'off' ? false : values.admin;
  if (values.workers !== undefined) base.workers = numberOrText(values.workers);
  const cacheSection = { ...(base.cache as Record<string, unknown> | undefined) };
  if (values['no-cache'] === true) cacheSection.enabled = false;
  if (values['memory-only'] === true) cacheSection.disk = false;
  if (values['cache-dir'] !== undefined) {
    cacheSection.disk = {
      ...(typeof cacheSection.disk === 'object' ? cacheSection.disk : {}),
      path: values['cache-dir'],
    };
  }
  base.cache = cacheSection;
  if (values['cluster-self'] !== undefined || values['cluster-peer'] !== undefined) {
    const section: Record<string, unknown> = { ...(base.cluster as Record<string, unknown> | undefined) };
    if (values['cluster-self'] !== undefined) section.self = values['cluster-self'];
    if (values['cluster-peer'] !== undefined) section.peers = values['cluster-peer'];
    base.cluster = section;
  }
  if (values['log-level'] !== undefined) base.log = { ...(base.log as object), level: values['log-level'] };
  const config = validateConfig(base, values.config ?? 'flags');
  return values.config === undefined ? config : { ...config, source: values.config };
}

/**
 * Apply a re-read config to a running proxy: upstream groups change live (`applyUpstreams`: nothing
 * is dropped); anything else needs a restart, which is logged rather than half-applied.
 */
function applyConfig(proxy: ReverseProxy, running: CairnConfig, next: CairnConfig, logger: Logger): unknown {
  const changes = proxy.applyUpstreams(groupOptions(upstreamGroupsOf(next)));
  const restart: string[] = [];
  for (const key of Object.keys(next) as (keyof CairnConfig | 'source')[]) {
    if (key === 'source') continue;
    if (key === 'upstream' || key === 'upstreams' || key === 'origins') continue;
    if (JSON.stringify(next[key]) !== JSON.stringify(running[key])) restart.push(key);
  }
  if (restart.length > 0 || changes.restartNeeded.length > 0) {
    logger.warn(
      { keys: [...restart, ...changes.restartNeeded] },
      'config changes that apply only after a restart',
    );
  }
  return changes;
}

function numberOrText(value: string): number | string {
  return /^\d+$/.test(value) ? Number(value) : value;
}

function peerOptions(config: CairnConfig): HttpPeerOptions {
  const { tls, ...rest } = config.peer;
  if (tls === undefined) return rest;
  return {
    ...rest,
    tls: {
      ...(tls.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: tls.rejectUnauthorized }),
      ...(tls.caFile === undefined ? {} : { ca: readFileSync(tls.caFile) }),
    },
  };
}

/** Config-file groups as `ReverseProxy` options (the schema already checked every value). */
function groupOptions(groups: Record<string, UpstreamGroupConfig>): Record<string, UpstreamGroupOptions> {
  return groups as Record<string, UpstreamGroupOptions>;
}

/** The ready-made proxy the config asks for: a caching `CdnProxy` unless the cache is off. */
async function buildProxy(
  config: CairnConfig,
  upstreams: Record<string, UpstreamGroupOptions>,
): Promise<ReverseProxy> {
  const common = { upstreams, peer: peerOptions(config), forwarding: config.forwarding };
  const c = config.cache;
  if (!c.enabled) return new ReverseProxy(common);
  const allowed = purgeFrom(config);
  const cache = await HttpCache.open({
    memory: c.memory,
    ...(c.disk === false
      ? {}
      : {
          disk: {
            path: c.disk.path,
            maxBytes: c.disk.maxBytes,
            ...(c.disk.maxObjectBytes === undefined ? {} : { maxObjectBytes: c.disk.maxObjectBytes }),
          },
        }),
    lock: c.lock,
    policy: c.policy,
    ...(allowed === undefined ? {} : { purgeFrom: allowed }),
  });
  const cl = config.cluster;
  if (cl === undefined) return new CdnProxy({ ...common, cache });
  const { self = config.listen, ...rest } = cl;
  return new ClusterCdnProxy({ ...common, cache, cluster: { ...rest, self } });
}

/**
 * Who may `PURGE`: the configured list (default loopback) plus, in a cluster, every peer given as
 * an IP address, so purges fanned out by the other nodes are accepted.
 */
function purgeFrom(config: CairnConfig): readonly string[] | undefined {
  const given = config.cache.purgeFrom;
  const peers = config.cluster?.peers.map((p) => parseAddress(p).host).filter((h) => isIP(h) !== 0) ?? [];
  if (peers.length === 0) return given;
  return [...new Set([...(given ?? ['127.0.0.1', '::1', '::ffff:127.0.0.1']), ...peers])];
}

/** Run the CLI; resolves with an exit code for errors (a running proxy keeps the process alive). */
export async function main(argv: readonly string[]): Promise<number> {
  // `cairn check` / `cairn explain` (the cache test kit), loaded only when asked for.
  if (argv[0] === 'check' || argv[0] === 'explain')
    return (await import('../hooks/testing/cli.ts')).checkOrExplain(argv);
  let config: CliConfig | 'help';
  try {
    config = await configFromArgs(argv);
  } catch (error) {
    process.stderr.write(`cairn: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (config === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  let upstreams = groupOptions(upstreamGroupsOf(config));
  if (Object.keys(upstreams).length === 0) {
    // Workers inherit the demo origin the primary started, so they all proxy to the same one.
    const inherited = process.env.CAIRN_DEMO_ORIGIN;
    if (cluster.isWorker && inherited !== undefined) upstreams = { default: { backends: [inherited] } };
    else {
      const demo = await startDemoOrigin();
      demo.server.unref();
      process.env.CAIRN_DEMO_ORIGIN = demo.url;
      upstreams = { default: { backends: [demo.url] } };
      process.stderr.write(`cairn: no --origin given: started a demo origin at ${demo.url}\n`);
    }
  }
  try {
    const proxy = await buildProxy(config, upstreams);
    const server = await serve(proxy, {
      adminRoutes: (a) => proxy.adminRoutes(a),
      services: [proxy],
      listen: config.listen,
      admin: config.admin,
      workers: config.workers,
      logLevel: config.log.level ?? 'info',
      limits: config.limits,
      shutdownTimeout: config.shutdownTimeout,
      signals: true,
    });
    const configPath = config.source;
    // Each serving process watches the file itself (a cluster primary serves no requests).
    if (configPath !== undefined && !(cluster.isPrimary && config.workers > 1)) {
      watchConfigFile({
        path: configPath,
        load: async () => {
          const next = await configFromArgs(argv);
          if (next === 'help') throw new Error('unexpected --help');
          return next;
        },
        apply: (next: CairnConfig) => {
          const changes = applyConfig(proxy, config, next, server.logger);
          // The file is the state again: the primary stops replaying earlier API changes to new workers.
          announceConfigReload();
          return changes;
        },
        logger: server.logger,
      });
    }
  } catch (error) {
    process.stderr.write(
      `cairn: ${isCairnError(error) ? `${error.code}: ` : ''}${(error as Error).message}\n`,
    );
    return isCairnError(error) && error.code === 'CAIRN_ERR_CONFIG_INVALID' ? 2 : 1;
  }
  return 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const code = await main(process.argv.slice(2));
  if (code !== 0) process.exit(code);
}
