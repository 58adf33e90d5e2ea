/**
 * Flat memory: a 1 GiB download and a 1 GiB upload stream through Cairn with its RSS growing by less
 * than 64 MiB. Cairn runs in a child process (fixtures/engine-streaming-proxy.ts) so only its own
 * memory is measured; the origin and the client here generate and check a repeating pattern
 * without buffering it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { spawnFixture, startOrigin } from '../helpers/servers.ts';
import type { Fixture } from '../helpers/servers.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const BLOCK = makeBlock(64 * 1024);
const FIXTURE = fileURLToPath(new URL('./fixtures/engine-streaming-proxy.ts', import.meta.url));

/** 64 KiB whose bytes do not repeat at any small period, so shifted or dropped data shows. */
function makeBlock(size: number): Buffer {
  const block = Buffer.alloc(size);
  for (let i = 0; i < size; i++) block[i] = (i * 7 + (i >> 8)) & 0xff;
  return block;
}

/** Checks incoming bytes against the pattern at their position in the stream; counts them. */
class PatternChecker {
  bytes = 0;
  mismatchAt = -1;

  check(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && this.mismatchAt < 0) {
      const offset = (this.bytes + at) % BLOCK.length;
      const n = Math.min(BLOCK.length - offset, chunk.length - at);
      if (!chunk.subarray(at, at + n).equals(BLOCK.subarray(offset, offset + n)))
        this.mismatchAt = this.bytes + at;
      at += n;
    }
    this.bytes += chunk.length;
  }
}

/** Write `total` bytes of the pattern to `out`, honouring backpressure; resolve when all is written. */
function writePattern(out: NodeJS.WritableStream & { destroyed: boolean }, total: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let left = total;
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, BLOCK.length);
        left -= n;
        const more = out.write(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n));
        if (left === 0) {
          out.end();
          resolve();
          return;
        }
        if (!more) return;
      }
    };
    out.on('drain', pump);
    out.on('error', reject);
    pump();
  });
}

async function rssReport(fixture: Fixture, type: 'reset' | 'peak'): Promise<{ rss: number; peak: number }> {
  const reply = fixture.message<{ type?: string; rss: number; peak: number }>((m) => m.type === type);
  fixture.send({ type });
  return reply;
}

test(
  '1 GiB down and 1 GiB up stream through Cairn with RSS growth under 64 MiB',
  { timeout: 120_000 },
  async (t) => {
    const origin = await startOrigin(t, (req: IncomingMessage, res: ServerResponse) => {
      if (req.method === 'GET') {
        const size = Number(req.url?.slice(1));
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
        void writePattern(res, size);
        return;
      }
      const checker = new PatternChecker();
      req.on('data', (chunk: Buffer) => checker.check(chunk));
      req.on('end', () => res.end(JSON.stringify({ bytes: checker.bytes, mismatchAt: checker.mismatchAt })));
    });
    const fixture = spawnFixture(t, FIXTURE, { CAIRN_ORIGIN: origin.url }, ['--expose-gc']);
    const { port } = await fixture.message<{ port?: number }>((m) => typeof m.port === 'number');

    const download = (size: number): Promise<PatternChecker> =>
      new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: `/${size}`, agent: false }, (res) => {
          const checker = new PatternChecker();
          res.on('data', (chunk: Buffer) => checker.check(chunk));
          res.on('end', () => resolve(checker));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end();
      });
    const upload = (size: number): Promise<{ bytes: number; mismatchAt: number }> =>
      new Promise((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port,
            method: 'PUT',
            path: '/up',
            agent: false,
            headers: { 'content-length': size },
          },
          (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => (body += chunk));
            res.on('end', () => resolve(JSON.parse(body) as { bytes: number; mismatchAt: number }));
          },
        );
        req.on('error', reject);
        writePattern(req, size).catch(reject);
      });

    // Warm up (JIT, pools, lazily loaded modules), then take the baseline.
    await download(16 * MiB);
    await upload(16 * MiB);
    const { rss: baseline } = await rssReport(fixture, 'reset');

    const down = await download(GiB);
    const afterDown = await rssReport(fixture, 'peak');
    const up = await upload(GiB);
    const afterUp = await rssReport(fixture, 'peak');

    console.log(
      `RSS baseline ${(baseline / MiB).toFixed(1)} MiB, peak ${(afterUp.peak / MiB).toFixed(1)} MiB ` +
        `(+${((afterDown.peak - baseline) / MiB).toFixed(1)} MiB down, +${((afterUp.peak - baseline) / MiB).toFixed(1)} MiB up)`,
    );
    assert.equal(down.bytes, GiB);
    assert.equal(down.mismatchAt, -1, 'the downloaded bytes are the pattern, in order');
    assert.deepEqual(up, { bytes: GiB, mismatchAt: -1 });
    assert.ok(
      afterUp.peak - baseline < 64 * MiB,
      `RSS grew by ${((afterUp.peak - baseline) / MiB).toFixed(1)} MiB`,
    );
  },
);
