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
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ReverseProxy } from '../hooks/index.ts';
import type { CairnConfig } from './config.ts';
import { loadConfigFile, validateConfig } from './config.ts';
import { startDemoOrigin } from './demo-origin.ts';
import { isCairnError } from './errors.ts';
import type { HttpPeerOptions } from './peer.ts';
import { serve } from './server.ts';

const USAGE = `Usage: cairn [options]

  --listen HOST:PORT     where clients connect (default 127.0.0.1:8080)
  --origin URL           an origin server; repeat for several (round robin).
                         With no origin at all, a demo origin is started on loopback.
  --config FILE          a JSON or YAML config file (flags override it)
  --admin HOST:PORT      admin listener: /metrics, /healthz
  --workers N            processes to run (node:cluster), sharing the listen port
  --log-level LEVEL      fatal|error|warn|info|debug|trace|silent (default info)
  -h, --help             this text
`;

/** Parse flags and the config file into one validated config. Throws coded errors. */
export async function configFromArgs(argv: readonly string[]): Promise<CairnConfig | 'help'> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      listen: { type: 'string' },
      origin: { type: 'string', multiple: true },
      config: { type: 'string' },
      admin: { type: 'string' },
      workers: { type: 'string' },
      'log-level': { type: 'string' },
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
  if (values['log-level'] !== undefined) base.log = { ...(base.log as object), level: values['log-level'] };
  return validateConfig(base, values.config ?? 'flags');
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

/** Run the CLI; resolves with an exit code for errors (a running proxy keeps the process alive). */
export async function main(argv: readonly string[]): Promise<number> {
  let config: CairnConfig | 'help';
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
  let origins = config.origins;
  if (origins.length === 0) {
    // Workers inherit the demo origin the primary started, so they all proxy to the same one.
    const inherited = process.env.CAIRN_DEMO_ORIGIN;
    if (cluster.isWorker && inherited !== undefined) origins = [inherited];
    else {
      const demo = await startDemoOrigin();
      demo.server.unref();
      process.env.CAIRN_DEMO_ORIGIN = demo.url;
      origins = [demo.url];
      process.stderr.write(`cairn: no --origin given: started a demo origin at ${demo.url}\n`);
    }
  }
  try {
    const proxy = new ReverseProxy({ origins, peer: peerOptions(config), forwarding: config.forwarding });
    await serve(proxy, {
      listen: config.listen,
      admin: config.admin,
      workers: config.workers,
      logLevel: config.log.level ?? 'info',
      limits: config.limits,
      shutdownTimeout: config.shutdownTimeout,
      signals: true,
    });
  } catch (error) {
    process.stderr.write(`cairn: ${isCairnError(error) ? `${error.code}: ` : ''}${(error as Error).message}\n`);
    return isCairnError(error) && error.code === 'CAIRN_ERR_CONFIG_INVALID' ? 2 : 1;
  }
  return 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const code = await main(process.argv.slice(2));
  if (code !== 0) process.exit(code);
}
