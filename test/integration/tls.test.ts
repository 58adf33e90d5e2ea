/**
 * TLS termination and TLS to origins, with certificates made at test time (test/helpers/certs.ts):
 * certificates from files, chosen by SNI (exact, wildcard, the default), the async `certificateFor`
 * hook and its cache, certificate files reloaded on change without a restart, and origins reached
 * over TLS with SNI, verification on by default and a pinned CA.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { rename, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { HttpPeer, ProxyHttp } from '../../src/index.ts';
import type { HttpPeerOptions, Session } from '../../src/index.ts';
import { makeCa, subjectOf } from '../helpers/certs.ts';
import type { TestCa } from '../helpers/certs.ts';
import { httpRequest, startCairn, startOrigin } from '../helpers/servers.ts';
import type { Cleanup } from '../helpers/servers.ts';

class Answer extends ProxyHttp {
  override requestFilter(session: Session): boolean {
    session.respond(200, { 'content-type': 'text/plain' }, `hello ${session.host}\n`);
    return true;
  }
}

class ToPeer extends ProxyHttp {
  readonly peer: HttpPeer;
  constructor(peer: HttpPeer) {
    super();
    this.peer = peer;
  }
  override upstreamPeer(): HttpPeer {
    return this.peer;
  }
}

/** The certificate the listener serves for `servername` (undefined: send no SNI). */
async function servedCertificate(port: number, ca: string, servername: string | undefined): Promise<string> {
  const socket = tlsConnect({
    port,
    host: '127.0.0.1',
    ca,
    ...(servername === undefined ? {} : { servername }),
    // Only look at the certificate; whether it matches the name is the listener's business here.
    checkServerIdentity: () => undefined,
  });
  try {
    await once(socket, 'secureConnect');
    return subjectOf(socket.getPeerCertificate(false).raw);
  } finally {
    socket.destroy();
  }
}

test('SNI picks the exact name, then a one-label wildcard, else the default certificate (from files)', async (t) => {
  const ca = await makeCa(t);
  const fallback = await ca.issue(['default.test']);
  const exact = await ca.issue(['api.example.test']);
  const wildcard = await ca.issue(['*.example.test']);
  const cairn = await startCairn(t, new Answer(), {
    tls: {
      certFile: fallback.certFile,
      keyFile: fallback.keyFile,
      certificates: [
        { serverNames: ['api.example.test'], certFile: exact.certFile, keyFile: exact.keyFile },
        { serverNames: ['*.example.test'], cert: wildcard.cert, key: wildcard.key },
      ],
    },
  });
  assert.equal(await servedCertificate(cairn.port, ca.cert, 'api.example.test'), 'DNS:api.example.test');
  assert.equal(await servedCertificate(cairn.port, ca.cert, 'API.Example.Test'), 'DNS:api.example.test');
  assert.equal(await servedCertificate(cairn.port, ca.cert, 'www.example.test'), 'DNS:*.example.test');
  // A wildcard covers one label only (RFC 6125 §6.4.3).
  assert.equal(await servedCertificate(cairn.port, ca.cert, 'a.b.example.test'), 'DNS:default.test');
  assert.equal(await servedCertificate(cairn.port, ca.cert, 'example.test'), 'DNS:default.test');
  assert.equal(await servedCertificate(cairn.port, ca.cert, undefined), 'DNS:default.test');
});

test('certificateFor: may be async, is asked once per name, and falls back when it has no answer', async (t) => {
  const ca = await makeCa(t);
  const fallback = await ca.issue(['default.test']);
  const tenant = await ca.issue(['tenant-a.test']);
  const asked: string[] = [];
  const cairn = await startCairn(t, new Answer(), {
    tls: {
      cert: fallback.cert,
      key: fallback.key,
      certificateFor: async (name) => {
        asked.push(name);
        await Promise.resolve();
        return name === 'tenant-a.test' ? { cert: tenant.cert, key: tenant.key } : undefined;
      },
    },
  });
  assert.equal(await servedCertificate(cairn.port, ca.cert, 'tenant-a.test'), 'DNS:tenant-a.test');
  assert.equal(await servedCertificate(cairn.port, ca.cert, 'tenant-a.test'), 'DNS:tenant-a.test');
  assert.equal(await servedCertificate(cairn.port, ca.cert, 'other.test'), 'DNS:default.test');
  assert.equal(await servedCertificate(cairn.port, ca.cert, 'other.test'), 'DNS:default.test');
  assert.deepEqual(asked, ['tenant-a.test', 'other.test']);

  // And a full request over the chosen certificate, verified against its name.
  const body = await new Promise<string>((resolve, reject) => {
    const socket = tlsConnect({
      port: cairn.port,
      host: '127.0.0.1',
      ca: ca.cert,
      servername: 'tenant-a.test',
      ALPNProtocols: ['http/1.1'],
    });
    let text = '';
    socket.setEncoding('utf8');
    socket.on('secureConnect', () =>
      socket.write('GET / HTTP/1.1\r\nHost: tenant-a.test\r\nConnection: close\r\n\r\n'),
    );
    socket.on('data', (c: string) => (text += c));
    socket.on('end', () => resolve(text));
    socket.on('error', reject);
  });
  assert.match(body, /^HTTP\/1\.1 200 /);
  assert.match(body, /hello tenant-a\.test/);
});

test('certificate files are reloaded when they change, without a restart; a broken file keeps the old one', async (t) => {
  const ca = await makeCa(t);
  const first = await ca.issue(['first.test']);
  const second = await ca.issue(['second.test']);
  const live = { certFile: join(ca.dir, 'live.pem'), keyFile: join(ca.dir, 'live.key') };
  await writeFile(live.certFile, first.cert);
  await writeFile(live.keyFile, first.key);
  const cairn = await startCairn(t, new Answer(), { tls: live });
  assert.equal(await servedCertificate(cairn.port, ca.cert, 'any.test'), 'DNS:first.test');

  // A half-written certificate: the reload fails and the old certificate stays.
  const failed = cairn.logs.waitFor((l) => l.msg === 'certificate reload failed: keeping the previous one');
  await writeFile(`${live.certFile}.tmp`, '-----BEGIN CERTIFICATE-----\nMIIB\n');
  await rename(`${live.certFile}.tmp`, live.certFile);
  await failed;
  assert.equal(await servedCertificate(cairn.port, ca.cert, 'any.test'), 'DNS:first.test');

  // Replace both files the way certificate managers do (write aside, rename into place).
  const reloaded = cairn.logs.waitFor((l) => l.msg === 'certificate reloaded' && l.file === live.keyFile);
  await writeFile(`${live.certFile}.tmp`, second.cert);
  await rename(`${live.certFile}.tmp`, live.certFile);
  await writeFile(`${live.keyFile}.tmp`, second.key);
  await rename(`${live.keyFile}.tmp`, live.keyFile);
  await reloaded;
  assert.equal(await servedCertificate(cairn.port, ca.cert, 'any.test'), 'DNS:second.test');
  // Clients without SNI get the listener's default context, which was swapped too.
  assert.equal(await servedCertificate(cairn.port, ca.cert, undefined), 'DNS:second.test');
});

// ---- TLS to origins ---------------------------------------------------------------------------

interface TlsOrigin {
  url: string;
  servernames: (string | false | null)[];
}

async function startTlsOrigin(t: Cleanup, ca: TestCa, names: readonly string[]): Promise<TlsOrigin> {
  const cert = await ca.issue(names);
  const servernames: (string | false | null)[] = [];
  const server = createHttpsServer({ cert: cert.cert, key: cert.key }, (req, res) => {
    servernames.push((req.socket as TLSSocket).servername);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('secure origin\n');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, servernames };
}

async function viaCairn(
  t: Cleanup,
  url: string,
  options: HttpPeerOptions,
): Promise<{ status: number; body: string; err: unknown }> {
  const cairn = await startCairn(t, new ToPeer(new HttpPeer(url, options)));
  const res = await httpRequest(`${cairn.url}/`);
  const line = await cairn.logs.waitFor((l) => l.msg === 'request');
  return { status: res.status, body: res.body.toString(), err: line.err };
}

test('TLS to an origin: verification is on by default; a pinned CA and SNI make it pass', async (t) => {
  const ca = await makeCa(t);
  const origin = await startTlsOrigin(t, ca, ['origin.test']);

  const unpinned = await viaCairn(t, origin.url, { sni: 'origin.test' });
  assert.equal(unpinned.status, 502);
  assert.equal(unpinned.err, 'CAIRN_ERR_UPSTREAM_TLS');

  const pinned = await viaCairn(t, origin.url, { sni: 'origin.test', tls: { ca: ca.cert } });
  assert.equal(pinned.status, 200);
  assert.equal(pinned.body, 'secure origin\n');
  assert.deepEqual(origin.servernames, ['origin.test']);

  // The CA is trusted but the name is not on the certificate: still refused.
  const wrongName = await viaCairn(t, origin.url, { sni: 'other.test', tls: { ca: ca.cert } });
  assert.equal(wrongName.status, 502);
  assert.equal(wrongName.err, 'CAIRN_ERR_UPSTREAM_TLS');

  // Verification can be switched off explicitly (and only explicitly).
  const unverified = await viaCairn(t, origin.url, {
    sni: 'origin.test',
    tls: { rejectUnauthorized: false },
  });
  assert.equal(unverified.status, 200);
});

test('a TLS listener refuses to start without any certificate, and with an unreadable one', async (t) => {
  const origin = await startOrigin(t, (_req, res) => res.end());
  await assert.rejects(startCairn(t, new ToPeer(origin.peer()), { tls: {} }), {
    code: 'CAIRN_ERR_CONFIG_INVALID',
  });
  await assert.rejects(
    startCairn(t, new ToPeer(origin.peer()), { tls: { cert: 'not a pem', key: 'not a key' } }),
    { code: 'CAIRN_ERR_TLS_CERTIFICATE' },
  );
});
