/**
 * The Varnish peer of the cache-hit bench: Debian's `varnishd` in the foreground (`-F`), with a
 * temp work dir (`-n`), listening on loopback, the origin as its backend (`-b`, so the builtin VCL:
 * what the origin's `Cache-Control` allows is cached), `-s malloc,256m`, pinned to the proxy core
 * (taskset is inherited by the cache child process and all its threads). `-j none` keeps it as the
 * invoking user, so a root run can use the temp dir. Stopped by PID like every child (SIGTERM to
 * the manager stops the cache child; leftovers are killed by PID).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildSpec } from '../lib/children.ts';

/** The varnishd binary, or null when it is not installed. */
export function findVarnishd(): string | null {
  for (const candidate of ['varnishd', '/usr/sbin/varnishd']) {
    const r = spawnSync(candidate, ['-V'], { stdio: 'ignore' });
    if (r.error === undefined && r.status === 0) return candidate;
  }
  return null;
}

/** A child spec for varnishd on `port` in front of `origin`, and the cleanup of its work dir. */
export function varnishSpec(
  port: number,
  origin: string,
  core: number | null,
): { spec: ChildSpec; cleanup: () => void } {
  const binary = findVarnishd();
  if (binary === null)
    throw new Error('varnishd not found: install the Debian package `varnish` (apt-get install -y varnish)');
  const workdir = mkdtempSync(path.join(os.tmpdir(), 'cairn-varnish-'));
  const backend = new URL(origin).host;
  return {
    spec: {
      name: 'varnish',
      command: binary,
      args: [
        '-F',
        '-j',
        'none',
        '-n',
        path.join(workdir, 'n'),
        '-a',
        `127.0.0.1:${port}`,
        '-b',
        backend,
        '-s',
        'malloc,256m',
      ],
      core,
    },
    cleanup: () => rmSync(workdir, { recursive: true, force: true }),
  };
}
