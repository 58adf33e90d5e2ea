/**
 * Certificates made at test time with the `openssl` CLI, in a temporary directory removed after the
 * test: a private CA and leaf certificates it signs (any set of DNS names / IPs), plus a self-signed
 * one. Nothing is checked in.
 *
 * - `makeCa(t)` → `TestCa`: `.cert` (PEM), `.dir`, `.issue(names, { days?, file? })` → `TestCert`
 *   `{ cert, key, certFile, keyFile }` signed by the CA (`names`: DNS names, wildcards, or IPs).
 * - `selfSigned(t, names)` → `TestCert` not signed by any CA.
 * - `subjectOf(pem)` → the certificate's subject alternative names, for asserting which one was served.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import type { Cleanup } from './servers.ts';

export interface TestCert {
  readonly cert: string;
  readonly key: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface TestCa {
  readonly dir: string;
  readonly cert: string;
  issue(names: readonly string[], options?: { readonly file?: string }): Promise<TestCert>;
}

function openssl(args: readonly string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd }, (error, _stdout, stderr) => {
      if (error) reject(new Error(`openssl ${args[0]} failed: ${stderr}`, { cause: error }));
      else resolve();
    });
  });
}

function sanList(names: readonly string[]): string {
  return names.map((n) => (isIP(n) === 0 ? `DNS:${n}` : `IP:${n}`)).join(',');
}

let serial = 0;

async function leaf(
  dir: string,
  names: readonly string[],
  file: string,
  signer: { cert: string; key: string } | undefined,
): Promise<TestCert> {
  const keyFile = join(dir, `${file}.key`);
  const certFile = join(dir, `${file}.pem`);
  const csr = join(dir, `${file}.csr`);
  const ext = join(dir, `${file}.ext`);
  const subject = `/CN=${names[0] ?? 'localhost'}`;
  await writeFile(
    ext,
    `subjectAltName=${sanList(names)}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`,
  );
  await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', keyFile], dir);
  await openssl(['req', '-new', '-key', keyFile, '-subj', subject, '-out', csr], dir);
  if (signer === undefined) {
    await openssl(
      ['x509', '-req', '-in', csr, '-signkey', keyFile, '-days', '2', '-extfile', ext, '-out', certFile],
      dir,
    );
  } else {
    serial++;
    await openssl(
      [
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        signer.cert,
        '-CAkey',
        signer.key,
        '-set_serial',
        String(1000 + serial),
        '-days',
        '2',
        '-extfile',
        ext,
        '-out',
        certFile,
      ],
      dir,
    );
  }
  return { cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8'), certFile, keyFile };
}

/** A private CA in a temporary directory (removed after the test). */
export async function makeCa(t: Cleanup): Promise<TestCa> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-certs-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const caKey = join(dir, 'ca.key');
  const caCert = join(dir, 'ca.pem');
  await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', caKey], dir);
  await openssl(
    ['req', '-x509', '-new', '-key', caKey, '-subj', '/CN=Cairn Test CA', '-days', '2', '-out', caCert],
    dir,
  );
  const cert = await readFile(caCert, 'utf8');
  let n = 0;
  return {
    dir,
    cert,
    issue: (names, options) => leaf(dir, names, options?.file ?? `leaf-${++n}`, { cert: caCert, key: caKey }),
  };
}

/** A self-signed certificate for `names` (trusted by nothing). */
export async function selfSigned(t: Cleanup, names: readonly string[]): Promise<TestCert> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-certs-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return leaf(dir, names, 'self', undefined);
}

/** The subject alternative names of a PEM (or DER) certificate, e.g. `DNS:a.example, DNS:b.example`. */
export function subjectOf(cert: string | Buffer): string {
  return new X509Certificate(cert).subjectAltName ?? '';
}
