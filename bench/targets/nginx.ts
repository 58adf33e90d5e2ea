/**
 * The nginx peer: Debian's nginx as a pass-through `proxy_pass` with upstream keep-alive, one
 * worker process (fair against one Node process), no access log. Settings that would otherwise
 * handicap nginx against Node, which has no such limits by default, are lifted:
 * `keepalive_requests` (default 1000 per connection, both sides) and response buffers large
 * enough that a 64 KiB body never spills to a temp file.
 *
 * The config is written into a fresh temp directory used as nginx's prefix (pid, temp paths,
 * error log), so no system nginx files are read or touched.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildSpec } from '../lib/children.ts';

export interface NginxOptions {
  readonly port: number;
  /** `http://127.0.0.1:PORT` */
  readonly origin: string;
  readonly core: number | null;
}

/** The nginx.conf text for a pass-through proxy on `port` to `origin`. */
export function nginxConfig(dir: string, port: number, origin: string): string {
  const upstream = new URL(origin);
  // As root, nginx would switch its worker to `nobody`, which cannot use our 0700 temp dir.
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  return `# Written by bench/targets/nginx.ts for one benchmark run.
${user}worker_processes 1;
daemon off;
master_process on;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;

events {
  worker_connections 4096;
}

http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;

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
}
`;
}

/** Writes the config and returns how to start nginx in the foreground, plus a cleanup. */
export function nginxSpec(opts: NginxOptions): { spec: ChildSpec; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cairn-bench-nginx-'));
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConfig(dir, opts.port, opts.origin));
  return {
    spec: {
      name: 'nginx',
      command: 'nginx',
      // -e: errors before the config is read go to stderr, not /var/log/nginx.
      args: ['-p', dir, '-c', conf, '-e', 'stderr'],
      core: opts.core,
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
