/**
 * The nginx peer: Debian's nginx as a pass-through `proxy_pass` with upstream keep-alive, one
 * worker process (fair against one Node process), no access log. Settings that would otherwise
 * handicap nginx against Node, which has no such limits by default, are lifted:
 * `keepalive_requests` (default 1000 per connection, both sides) and response buffers large
 * enough that a 64 KiB body never spills to a temp file.
 *
 * Started by the shared helper `test/helpers/nginx.ts` (temp prefix, no daemon, nothing outside
 * the temp dir), then pinned: the helper spawns nginx itself, so the master and its worker are
 * moved to the proxy core with `taskset -p` once the worker exists.
 */
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { startNginx } from '../../test/helpers/nginx.ts';
import { adoptProcess, descendants, tasksetAvailable, type ManagedProcess } from '../lib/children.ts';

export interface BenchNginxOptions {
  /** `http://127.0.0.1:PORT` */
  readonly origin: string;
  readonly core: number | null;
  /** `proxy_cache` in front of the origin (the cache-hit bench) instead of a pass-through. */
  readonly cache?: boolean;
}

/** The body of the `http {}` block: a pass-through proxy on `port` to `origin`. */
export function nginxHttpBlock(port: number, origin: string): string {
  const upstream = new URL(origin);
  return `
  keepalive_timeout 120s;
  keepalive_requests 1000000;

  upstream origin {
    server ${upstream.host};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
  }

  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffer_size 16k;
      proxy_buffers 16 16k;
      proxy_max_temp_file_size 0;
    }
  }
`;
}

/**
 * The body of the `http {}` block for the cache-hit bench: the same proxy with `proxy_cache`.
 * The cache lives under the temp prefix (a relative path is resolved against it), keyed by URI;
 * what the origin's `Cache-Control: public, max-age=3600` allows is cached (no `proxy_cache_valid`
 * override). `sendfile on` as in Debian's stock nginx.conf: a hit is a file in the page cache.
 * `X-Cache-Status` shows HIT/MISS so the bench can check a hit before it measures.
 */
export function nginxCacheHttpBlock(port: number, origin: string): string {
  const upstream = new URL(origin);
  return `
  keepalive_timeout 120s;
  keepalive_requests 1000000;
  sendfile on;
  proxy_cache_path cache levels=1:2 keys_zone=bench:10m max_size=256m inactive=60m use_temp_path=off;

  upstream origin {
    server ${upstream.host};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
  }

  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffer_size 16k;
      proxy_buffers 16 16k;
      proxy_cache bench;
      proxy_cache_key $uri;
      add_header X-Cache-Status $upstream_cache_status;
    }
  }
`;
}

/** Pins a running process (all its threads) to `core`. */
function pin(pid: number, core: number): void {
  const r = spawnSync('taskset', ['-a', '-p', '-c', String(core), String(pid)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`taskset -p ${pid} failed: ${r.stderr.trim()}`);
}

/** Starts nginx with one worker, pinned to `core`; the run owns it from here (signals, stopAll). */
export async function startBenchNginx(
  opts: BenchNginxOptions,
): Promise<{ process: ManagedProcess; port: number }> {
  const nginx = await startNginx({
    http: (port) => (opts.cache === true ? nginxCacheHttpBlock : nginxHttpBlock)(port, opts.origin),
    masterProcess: true,
    workerProcesses: 1,
    workerConnections: 4096,
  });
  const proc = adoptProcess(
    'nginx',
    nginx.pid,
    () => nginx.stop(),
    () => nginx.stderr(),
  );
  try {
    // nginx listens before it forks its worker: wait for the worker so it is pinned too.
    const deadline = Date.now() + 5000;
    while (descendants(nginx.pid).length === 0) {
      if (Date.now() > deadline) throw new Error('nginx started no worker process within 5 s');
      await sleep(20);
    }
    if (opts.core !== null && tasksetAvailable()) {
      for (const pid of [nginx.pid, ...descendants(nginx.pid)]) pin(pid, opts.core);
    }
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return { process: proc, port: nginx.port };
}
