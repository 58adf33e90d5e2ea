/**
 * The targets of the pass-through benchmark: what each one is and how to start it. Every target
 * but `direct` is its own child process pinned to the proxy core; `direct` is the origin itself.
 */
import { fileURLToPath } from 'node:url';
import type { ChildSpec, ManagedProcess } from './children.ts';
import { startBenchNginx } from '../targets/nginx.ts';

/** Where things are, as the runner knows them when it starts a target. */
export interface LaunchContext {
  readonly originUrl: string;
  readonly port: number;
  /** A spare port for an admin/metrics listener, for targets that have one. */
  readonly adminPort: number;
  readonly core: number | null;
}

/** How to start a target: a child process, a helper that starts one, or neither (the origin itself). */
export interface Launch {
  readonly spec: ChildSpec | null;
  /** Instead of `spec`: starts the target itself, on a port it picks (nginx, via test/helpers). */
  readonly start?: () => Promise<{ process: ManagedProcess; port: number }>;
  /** Admin `/metrics` URL to scrape origin-connection reuse from, if the target has one. */
  readonly metricsUrl: string | null;
  readonly cleanup?: () => void;
  /** Tried when `spec` fails to start (e.g. the CLI does not know `--admin` yet). */
  readonly fallback?: Launch;
}

export interface TargetDef {
  readonly name: string;
  readonly description: string;
  launch(ctx: LaunchContext): Launch;
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const here = (rel: string): string => fileURLToPath(new URL(`../${rel}`, import.meta.url));

/** `node --import tsx FILE ARGS…` in production mode, run from the repo root. */
function nodeScript(name: string, file: string, args: readonly string[], core: number | null): ChildSpec {
  return {
    name,
    command: process.execPath,
    args: ['--import', 'tsx', file, ...args],
    core,
    cwd: ROOT,
    env: { ...process.env, NODE_ENV: 'production' },
  };
}

/**
 * A Cairn process with an admin listener for `/metrics` (origin-connection reuse), falling back to
 * none if it will not start with one: the admin flag must not cost us the RPS number.
 */
function withAdmin(name: string, file: string, args: readonly string[], ctx: LaunchContext): Launch {
  return {
    spec: nodeScript(name, file, [...args, '--admin', `127.0.0.1:${ctx.adminPort}`], ctx.core),
    metricsUrl: `http://127.0.0.1:${ctx.adminPort}/metrics`,
    fallback: { spec: nodeScript(name, file, args, ctx.core), metricsUrl: null },
  };
}

const proxyArgs = (ctx: LaunchContext): string[] => ['--port', String(ctx.port), '--origin', ctx.originUrl];

export const TARGETS: readonly TargetDef[] = [
  {
    name: 'direct',
    description: 'the origin itself, no proxy (it runs on the origin core, see pinning)',
    launch: () => ({ spec: null, metricsUrl: null }),
  },
  {
    name: 'node-ceiling',
    description:
      'a bare node:http server answering from a Buffer (the origin program) on the proxy core: the most a single Node process can do there',
    launch: (ctx) => ({
      spec: nodeScript('node-ceiling', here('targets/origin.ts'), ['--port', String(ctx.port)], ctx.core),
      metricsUrl: null,
    }),
  },
  {
    name: 'http-proxy',
    description: 'http-proxy 1.x with a keep-alive http.Agent (maxSockets 128)',
    launch: (ctx) => ({
      spec: nodeScript('http-proxy', here('targets/http-proxy.ts'), proxyArgs(ctx), ctx.core),
      metricsUrl: null,
    }),
  },
  {
    name: 'reply-from',
    description: 'fastify 5 + @fastify/reply-from (undici, 128 connections, pipelining 1)',
    launch: (ctx) => ({
      spec: nodeScript('reply-from', here('targets/reply-from.ts'), proxyArgs(ctx), ctx.core),
      metricsUrl: null,
    }),
  },
  {
    name: 'node-floor-proxy',
    description:
      "node:http + one undici Pool (reply-from's settings) forwarding and streaming back, nothing else: the floor under any Node proxy on these libraries",
    launch: (ctx) => ({
      spec: nodeScript('node-floor-proxy', here('targets/node-floor-proxy.ts'), proxyArgs(ctx), ctx.core),
      metricsUrl: null,
    }),
  },
  {
    name: 'nginx',
    description: 'nginx proxy_pass, 1 worker, upstream keepalive 64, HTTP/1.1 to the origin, access log off',
    launch: (ctx) => ({
      spec: null,
      start: () => startBenchNginx({ origin: ctx.originUrl, core: ctx.core }),
      metricsUrl: null,
    }),
  },
  {
    name: 'cairn',
    description: 'the Cairn CLI in pass-through mode (`src/cli.ts --origin …`), access log off',
    launch: (ctx) =>
      withAdmin(
        'cairn',
        here('../src/cli.ts'),
        [
          '--listen',
          `127.0.0.1:${ctx.port}`,
          '--origin',
          ctx.originUrl,
          '--log-level',
          'silent',
          '--no-cache',
        ],
        ctx,
      ),
  },
  {
    name: 'cairn-all-hooks',
    description: 'a ProxyHttp subclass overriding every hook with trivial synchronous code, run by `serve()`',
    launch: (ctx) => withAdmin('cairn-all-hooks', here('targets/cairn-all-hooks.ts'), proxyArgs(ctx), ctx),
  },
  {
    name: 'cairn-bare',
    description:
      'a ProxyHttp subclass overriding only upstreamPeer (baseline for cairn-all-hooks), run by `serve()`',
    launch: (ctx) => withAdmin('cairn-bare', here('targets/cairn-bare.ts'), proxyArgs(ctx), ctx),
  },
];

export const TARGET_NAMES: readonly string[] = TARGETS.map((t) => t.name);
