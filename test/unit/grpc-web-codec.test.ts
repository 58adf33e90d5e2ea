import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  FLAG_COMPRESSED,
  FLAG_DATA,
  FLAG_TRAILER,
  GrpcCodecError,
  GrpcFrameParser,
  GrpcStatus,
  GrpcWebTextDecoder,
  GrpcWebTextEncoder,
  decodeBinaryMetadataValue,
  decodeTrailerBlock,
  encodeBinaryMetadataValue,
  encodeFrame,
  encodeFrameHeader,
  encodeTrailerBlock,
  encodeTrailerFrame,
  formatGrpcContentType,
  formatGrpcTimeout,
  grpcStatusFromHttpStatus,
  grpcStatusName,
  grpcToGrpcWebContentType,
  grpcWebToGrpcContentType,
  isGrpcContentType,
  isGrpcWebContentType,
  isGrpcWebTextContentType,
  parseGrpcContentType,
  parseGrpcTimeout,
  percentDecodeGrpcMessage,
  percentEncodeGrpcMessage,
  trailersFromWire,
  trailersToWire,
} from '../../hooks/grpc-web/codec.ts';
import type { GrpcCodecErrorCode, GrpcFrame, GrpcTrailers } from '../../hooks/grpc-web/codec.ts';

// ---------------------------------------------------------------------------------------------
// helpers

/** Deterministic PRNG (mulberry32) so a failing random chunking can be reproduced from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(length: number, seed: number): Buffer {
  const rnd = prng(seed);
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(rnd() * 256);
  return out;
}

/** Split `buf` at the given ascending offsets. */
function splitAt(buf: Buffer, points: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  out.push(buf.subarray(prev));
  return out;
}

/** Random chunk sizes in [1, maxChunk] (also 0-length chunks now and then: they must be harmless). */
function randomChunks(buf: Buffer, maxChunk: number, seed: number): Buffer[] {
  const rnd = prng(seed);
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < buf.length) {
    if (rnd() < 0.05) out.push(buf.subarray(pos, pos));
    const size = 1 + Math.floor(rnd() * maxChunk);
    out.push(buf.subarray(pos, pos + size));
    pos += size;
  }
  return out;
}

interface PlainFrame {
  flags: number;
  data: Buffer;
}

function parseAll(chunks: readonly Buffer[], parser = new GrpcFrameParser()): GrpcFrame[] {
  const frames: GrpcFrame[] = [];
  for (const chunk of chunks) frames.push(...parser.push(chunk));
  parser.end();
  return frames;
}

function plain(frames: readonly GrpcFrame[]): PlainFrame[] {
  return frames.map((f) => ({ flags: f.flags, data: Buffer.from(f.data) }));
}

function codeOf(fn: () => unknown): GrpcCodecErrorCode | undefined {
  try {
    fn();
  } catch (error) {
    if (error instanceof GrpcCodecError) return error.code;
    throw error;
  }
  return undefined;
}

// A body exercising every shape: empty frame, compressed flag, a frame longer than a header,
// a 1-byte frame, and a trailer frame last.
const SAMPLE_FRAMES: readonly PlainFrame[] = [
  { flags: FLAG_DATA, data: Buffer.from('hello') },
  { flags: FLAG_DATA, data: Buffer.alloc(0) },
  { flags: FLAG_COMPRESSED, data: randomBytes(17, 1) },
  { flags: FLAG_DATA, data: Buffer.from([0xff]) },
  { flags: FLAG_TRAILER, data: Buffer.from('grpc-status: 0\r\n') },
];
const SAMPLE_BODY = Buffer.concat(SAMPLE_FRAMES.map((f) => encodeFrame(f.flags, f.data)));

// ---------------------------------------------------------------------------------------------

void describe('frame encoding', () => {
  void it('writes flags and a big-endian 32-bit length before the payload', () => {
    assert.deepEqual(
      encodeFrame(FLAG_DATA, Buffer.from([0x0a, 0x01, 0x41])),
      Buffer.from([0, 0, 0, 0, 3, 0x0a, 0x01, 0x41]),
    );
    assert.deepEqual(encodeFrameHeader(FLAG_TRAILER, 0x01020304), Buffer.from([0x80, 1, 2, 3, 4]));
    assert.deepEqual(
      encodeFrame(FLAG_TRAILER | FLAG_COMPRESSED, Buffer.alloc(0)),
      Buffer.from([0x81, 0, 0, 0, 0]),
    );
  });

  void it('rejects lengths a 4-byte prefix cannot carry', () => {
    assert.throws(() => encodeFrameHeader(0, -1), RangeError);
    assert.throws(() => encodeFrameHeader(0, 2 ** 32), RangeError);
    assert.throws(() => encodeFrameHeader(0, 1.5), RangeError);
    assert.deepEqual(encodeFrameHeader(0, 2 ** 32 - 1), Buffer.from([0, 0xff, 0xff, 0xff, 0xff]));
  });
});

void describe('GrpcFrameParser', () => {
  void it('parses a whole body in one chunk, flags decoded', () => {
    const frames = parseAll([SAMPLE_BODY]);
    assert.deepEqual(plain(frames), SAMPLE_FRAMES);
    assert.deepEqual(
      frames.map((f) => [f.compressed, f.trailer]),
      [
        [false, false],
        [false, false],
        [true, false],
        [false, false],
        [false, true],
      ],
    );
  });

  void it('gives the same frames for every single split point', () => {
    for (let i = 0; i <= SAMPLE_BODY.length; i++) {
      assert.deepEqual(plain(parseAll(splitAt(SAMPLE_BODY, [i]))), SAMPLE_FRAMES, `split at ${i}`);
    }
  });

  void it('gives the same frames for every pair of split points', () => {
    for (let i = 0; i <= SAMPLE_BODY.length; i++) {
      for (let j = i; j <= SAMPLE_BODY.length; j++) {
        assert.deepEqual(plain(parseAll(splitAt(SAMPLE_BODY, [i, j]))), SAMPLE_FRAMES, `split at ${i},${j}`);
      }
    }
  });

  void it('gives the same frames one byte at a time', () => {
    const bytes = [...SAMPLE_BODY].map((b) => Buffer.from([b]));
    assert.deepEqual(plain(parseAll(bytes)), SAMPLE_FRAMES);
  });

  void it('gives the same frames for random chunkings of many frames', () => {
    const frames: PlainFrame[] = [];
    const rnd = prng(7);
    for (let n = 0; n < 200; n++) {
      const len = rnd() < 0.1 ? 0 : Math.floor(rnd() * 3000);
      frames.push({ flags: rnd() < 0.2 ? FLAG_COMPRESSED : FLAG_DATA, data: randomBytes(len, n) });
    }
    frames.push({ flags: FLAG_TRAILER, data: Buffer.from('grpc-status: 0\r\n') });
    const body = Buffer.concat(frames.map((f) => encodeFrame(f.flags, f.data)));
    for (const [seed, max] of [
      [1, 3],
      [2, 64],
      [3, 1000],
      [4, 70000],
    ] as const) {
      assert.deepEqual(plain(parseAll(randomChunks(body, max, seed))), frames, `seed ${seed}`);
    }
  });

  void it('holds at most one partial frame, never the body', () => {
    const frames = [randomBytes(100, 1), randomBytes(3000, 2), randomBytes(10, 3)];
    const body = Buffer.concat(frames.map((f) => encodeFrame(FLAG_DATA, f)));
    const parser = new GrpcFrameParser();
    let largestPartial = 0;
    for (const chunk of randomChunks(body, 50, 11)) {
      parser.push(chunk);
      largestPartial = Math.max(largestPartial, parser.bufferedBytes);
    }
    parser.end();
    assert.ok(largestPartial < 3000, `held ${largestPartial} bytes`);
    assert.equal(parser.bufferedBytes, 0);
  });

  void it('hands out a view (no copy) when a frame is whole inside one chunk', () => {
    const chunk = encodeFrame(FLAG_DATA, Buffer.from('abc'));
    const [frame] = new GrpcFrameParser().push(chunk);
    assert.ok(frame);
    assert.equal(frame.data.buffer, chunk.buffer);
  });

  void it('parses a 4 MiB message fed in 64 KiB chunks, holding only that frame', () => {
    const message = randomBytes(4 * 1024 * 1024, 42);
    const body = Buffer.concat([encodeFrame(FLAG_DATA, message), encodeTrailerFrame({ 'grpc-status': '0' })]);
    const parser = new GrpcFrameParser();
    const frames: GrpcFrame[] = [];
    for (let pos = 0; pos < body.length; pos += 65536) {
      frames.push(...parser.push(body.subarray(pos, pos + 65536)));
      assert.ok(parser.bufferedBytes <= message.length + 5);
    }
    parser.end();
    assert.equal(frames.length, 2);
    assert.ok(frames[0]!.data.equals(message));
    assert.equal(frames[1]!.trailer, true);
    assert.equal(parser.trailerSeen, true);
  });

  void it('parses a 4 MiB message split at random sizes', () => {
    const message = randomBytes(4 * 1024 * 1024 + 3, 43);
    const body = encodeFrame(FLAG_DATA, message);
    const frames = parseAll(randomChunks(body, 200_000, 5));
    assert.equal(frames.length, 1);
    assert.ok(frames[0]!.data.equals(message));
  });

  void it('reports a body that stops inside a frame, at every cut point', () => {
    const ends = new Set<number>();
    let pos = 0;
    for (const f of SAMPLE_FRAMES) ends.add((pos += 5 + f.data.length));
    for (let cut = 1; cut < SAMPLE_BODY.length; cut++) {
      const parser = new GrpcFrameParser();
      parser.push(SAMPLE_BODY.subarray(0, cut));
      const code = codeOf(() => parser.end());
      assert.equal(code, ends.has(cut) ? undefined : 'GRPC_CODEC_TRUNCATED_FRAME', `cut at ${cut}`);
    }
  });

  void it('an empty body is not an error (trailers-only responses carry no body)', () => {
    const parser = new GrpcFrameParser();
    assert.deepEqual(parser.push(Buffer.alloc(0)), []);
    parser.end();
    assert.equal(parser.trailerSeen, false);
  });

  void it('rejects a length prefix over the limit before buffering it', () => {
    const parser = new GrpcFrameParser({ maxMessageBytes: 10 });
    assert.equal(parser.push(encodeFrame(FLAG_DATA, Buffer.alloc(10))).length, 1);
    assert.equal(
      codeOf(() => parser.push(encodeFrameHeader(FLAG_DATA, 11))),
      'GRPC_CODEC_FRAME_TOO_LARGE',
    );
    assert.equal(
      codeOf(() => parser.push(Buffer.alloc(1))),
      'GRPC_CODEC_FAILED',
    );
    assert.equal(
      codeOf(() => new GrpcFrameParser().push(encodeFrameHeader(FLAG_DATA, DEFAULT_MAX_MESSAGE_BYTES + 1))),
      'GRPC_CODEC_FRAME_TOO_LARGE',
    );
    assert.throws(() => new GrpcFrameParser({ maxMessageBytes: -1 }), RangeError);
  });

  void it('rejects bytes after the trailer frame, in the same chunk or a later one', () => {
    const trailer = encodeTrailerFrame({ 'grpc-status': '0' });
    const extra = encodeFrame(FLAG_DATA, Buffer.from('x'));
    assert.equal(
      codeOf(() => new GrpcFrameParser().push(Buffer.concat([trailer, extra]))),
      'GRPC_CODEC_DATA_AFTER_TRAILER',
    );
    const parser = new GrpcFrameParser();
    assert.equal(parser.push(trailer).length, 1);
    assert.equal(
      codeOf(() => parser.push(Buffer.from([0]))),
      'GRPC_CODEC_DATA_AFTER_TRAILER',
    );
  });

  void it('refuses use after end()', () => {
    const parser = new GrpcFrameParser();
    parser.end();
    assert.equal(
      codeOf(() => parser.push(Buffer.from([0]))),
      'GRPC_CODEC_FAILED',
    );
    assert.equal(
      codeOf(() => parser.end()),
      'GRPC_CODEC_FAILED',
    );
  });

  void it('accepts Uint8Array chunks that are not Buffers', () => {
    const body = encodeFrame(FLAG_DATA, Buffer.from('xyz'));
    const u8 = new Uint8Array(body.length + 4);
    u8.set(body, 2);
    const frames = new GrpcFrameParser().push(u8.subarray(2, 2 + body.length));
    assert.equal(frames[0]?.data.toString(), 'xyz');
  });
});

// ---------------------------------------------------------------------------------------------

void describe('trailer block', () => {
  void it('encodes name: value CRLF lines, lower-case, without a terminating blank line', () => {
    const block = encodeTrailerBlock({
      'Grpc-Status': '0',
      'grpc-message': '',
      'x-multi': ['a', 'b'],
      skipped: undefined,
      ':status': '200',
    });
    assert.equal(
      block.toString('latin1'),
      'grpc-status: 0\r\ngrpc-message: \r\nx-multi: a\r\nx-multi: b\r\n',
    );
    assert.equal(encodeTrailerBlock({}).length, 0);
  });

  void it('refuses values that would forge another line, and names that are not tokens', () => {
    assert.equal(
      codeOf(() => encodeTrailerBlock({ a: 'x\r\ngrpc-status: 0' })),
      'GRPC_CODEC_BAD_METADATA',
    );
    assert.equal(
      codeOf(() => encodeTrailerBlock({ a: 'x\ny' })),
      'GRPC_CODEC_BAD_METADATA',
    );
    assert.equal(
      codeOf(() => encodeTrailerBlock({ a: ['ok', 'nul\0'] })),
      'GRPC_CODEC_BAD_METADATA',
    );
    assert.equal(
      codeOf(() => encodeTrailerBlock({ 'a b': 'x' })),
      'GRPC_CODEC_BAD_METADATA',
    );
    assert.equal(
      codeOf(() => encodeTrailerBlock({ 'a:b': 'x' })),
      'GRPC_CODEC_BAD_METADATA',
    );
  });

  void it('decodes into a null-prototype record with every value in order', () => {
    const decoded = decodeTrailerBlock(
      Buffer.from('grpc-status: 5\r\nGRPC-Message: gone\r\nx: 1\r\nx: 2\r\n__proto__: p\r\n'),
    );
    assert.equal(Object.getPrototypeOf(decoded), null);
    assert.deepEqual(Object.entries(decoded), [
      ['grpc-status', ['5']],
      ['grpc-message', ['gone']],
      ['x', ['1', '2']],
      ['__proto__', ['p']],
    ]);
  });

  void it('is lenient like an HTTP/1 parser: bare LF, OWS, blank lines, missing final CRLF, colon in value', () => {
    const decoded = decodeTrailerBlock(Buffer.from('a:1\nb:   two words  \r\n\r\nc: x:y\r\nd: last'));
    assert.deepEqual({ ...decoded }, { a: ['1'], b: ['two words'], c: ['x:y'], d: ['last'] });
    assert.deepEqual({ ...decodeTrailerBlock(Buffer.alloc(0)) }, {});
  });

  void it('rejects lines that are not name: value', () => {
    assert.equal(
      codeOf(() => decodeTrailerBlock(Buffer.from('grpc-status 0\r\n'))),
      'GRPC_CODEC_BAD_TRAILER',
    );
    assert.equal(
      codeOf(() => decodeTrailerBlock(Buffer.from(': 0\r\n'))),
      'GRPC_CODEC_BAD_TRAILER',
    );
    assert.equal(
      codeOf(() => decodeTrailerBlock(Buffer.from('bad name: 0\r\n'))),
      'GRPC_CODEC_BAD_TRAILER',
    );
  });

  void it('round-trips through encode and decode', () => {
    const headers = {
      'grpc-status': ['13'],
      'grpc-message': ['boom%20here'],
      'x-a': ['1', '2', ''],
      'trace-bin': ['AQID'],
    };
    assert.deepEqual({ ...decodeTrailerBlock(encodeTrailerBlock(headers)) }, headers);
  });

  void it('encodeTrailerFrame makes a 0x80 frame the parser reports as the trailer', () => {
    const frame = encodeTrailerFrame({ 'grpc-status': '0' });
    assert.equal(frame[0], 0x80);
    const [parsed] = new GrpcFrameParser().push(frame);
    assert.ok(parsed?.trailer);
    assert.deepEqual({ ...decodeTrailerBlock(parsed.data) }, { 'grpc-status': ['0'] });
  });
});

void describe('grpc-message percent-encoding', () => {
  void it('keeps %x20-24 and %x26-7E, encodes everything else as upper-case %XX of UTF-8', () => {
    for (let b = 0; b < 0x80; b++) {
      const ch = String.fromCharCode(b);
      const expected =
        b >= 0x20 && b <= 0x7e && b !== 0x25 ? ch : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
      assert.equal(percentEncodeGrpcMessage(ch), expected, `byte ${b}`);
    }
    assert.equal(percentEncodeGrpcMessage('50% off: ü'), '50%25 off: %C3%BC');
    assert.equal(percentEncodeGrpcMessage('日本'), '%E6%97%A5%E6%9C%AC');
    assert.equal(percentEncodeGrpcMessage('😀'), '%F0%9F%98%80');
  });

  void it('round-trips any Unicode string', () => {
    const samples = ['', 'plain', '100%', '%25', 'line\nbreak\ttab', 'ünïcødé 日本 😀', '\u0000\u007f'];
    for (const s of samples) assert.equal(percentDecodeGrpcMessage(percentEncodeGrpcMessage(s)), s);
  });

  void it('never throws on broken input: keeps bad escapes, accepts lower-case hex, replaces bad UTF-8', () => {
    assert.equal(percentDecodeGrpcMessage('%zz%4%'), '%zz%4%');
    assert.equal(percentDecodeGrpcMessage('%c3%bc'), 'ü');
    assert.equal(percentDecodeGrpcMessage('%FF'), '\ufffd');
    assert.equal(percentDecodeGrpcMessage('ü %41'), 'ü A');
    assert.equal(percentDecodeGrpcMessage('😀%21'), '😀!');
  });
});

void describe('binary (-bin) metadata values', () => {
  void it('emits unpadded base64 and accepts padded, unpadded and comma-joined values', () => {
    assert.equal(encodeBinaryMetadataValue(Buffer.from([1, 2])), 'AQI');
    assert.equal(encodeBinaryMetadataValue(Buffer.from([1, 2, 3])), 'AQID');
    assert.deepEqual(decodeBinaryMetadataValue('AQI'), [Buffer.from([1, 2])]);
    assert.deepEqual(decodeBinaryMetadataValue('AQI='), [Buffer.from([1, 2])]);
    assert.deepEqual(decodeBinaryMetadataValue('AQI, AwQ='), [Buffer.from([1, 2]), Buffer.from([3, 4])]);
  });

  void it('round-trips every byte value', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    for (let len = 0; len <= 5; len++) {
      const value = all.subarray(100, 100 + len);
      assert.deepEqual(decodeBinaryMetadataValue(encodeBinaryMetadataValue(value)), [value]);
    }
    assert.deepEqual(decodeBinaryMetadataValue(encodeBinaryMetadataValue(all)), [all]);
  });
});

void describe('trailers record', () => {
  const record: GrpcTrailers = {
    status: GrpcStatus.INVALID_ARGUMENT,
    message: 'bad "name": ünïcødé 100%\nsecond line',
    metadata: new Map<string, (string | Buffer)[]>([
      ['x-request-id', ['abc-123']],
      ['x-multi', ['a', 'b']],
      ['trace-bin', [Buffer.from([0, 1, 0xfe, 0xff]), Buffer.from('zz')]],
    ]),
  };

  void it('round-trips through wire fields and a trailer frame', () => {
    const wire = trailersToWire(record);
    assert.equal(wire['grpc-status']?.[0], '3');
    assert.equal(wire['grpc-message']?.[0], 'bad "name": %C3%BCn%C3%AFc%C3%B8d%C3%A9 100%25%0Asecond line');
    assert.deepEqual(wire['trace-bin'], ['AAH+/w', 'eno']);
    const [frame] = new GrpcFrameParser().push(encodeTrailerFrame(wire));
    assert.ok(frame);
    const back = trailersFromWire(decodeTrailerBlock(frame.data));
    assert.deepEqual(back, record);
  });

  void it('omits an empty grpc-message and decodes a status-only block', () => {
    const wire = trailersToWire({ status: 0, message: '', metadata: new Map() });
    assert.deepEqual({ ...wire }, { 'grpc-status': ['0'] });
    assert.deepEqual(trailersFromWire(wire), { status: 0, message: '', metadata: new Map() });
  });

  void it('reads Node-style headers (string values, upper-case names, undefined, pseudo-headers)', () => {
    const t = trailersFromWire({
      ':status': '200',
      'Grpc-Status': '7',
      'grpc-message': 'no',
      a: undefined,
      b: 'v',
      'c-bin': 'AQI,AwQ',
    });
    assert.equal(t.status, GrpcStatus.PERMISSION_DENIED);
    assert.equal(t.message, 'no');
    assert.deepEqual(
      [...t.metadata],
      [
        ['b', ['v']],
        ['c-bin', [Buffer.from([1, 2]), Buffer.from([3, 4])]],
      ],
    );
  });

  void it('synthesises UNKNOWN when grpc-status is missing or malformed', () => {
    assert.equal(trailersFromWire({}).status, GrpcStatus.UNKNOWN);
    assert.match(trailersFromWire({}).message, /missing grpc-status/);
    for (const bad of ['', '05', '-1', 'OK', '1.0', '0x1']) {
      const t = trailersFromWire({ 'grpc-status': bad, 'grpc-message': 'ignored' });
      assert.equal(t.status, GrpcStatus.UNKNOWN, bad);
      assert.match(t.message, /malformed grpc-status/);
    }
    // Codes beyond 16 are passed through: the spec reserves them, it does not forbid them.
    assert.equal(trailersFromWire({ 'grpc-status': '42' }).status, 42);
  });

  void it('refuses metadata that cannot go on the wire', () => {
    const bad = (name: string, values: (string | Buffer)[]): GrpcCodecErrorCode | undefined =>
      codeOf(() => trailersToWire({ status: 0, message: '', metadata: new Map([[name, values]]) }));
    assert.equal(bad('Upper', ['x']), 'GRPC_CODEC_BAD_METADATA');
    assert.equal(bad('sp ace', ['x']), 'GRPC_CODEC_BAD_METADATA');
    assert.equal(bad('grpc-status', ['0']), 'GRPC_CODEC_BAD_METADATA');
    assert.equal(bad('x', ['line\r\nbreak']), 'GRPC_CODEC_BAD_METADATA');
    assert.equal(bad('x', ['ü']), 'GRPC_CODEC_BAD_METADATA');
    assert.equal(bad('x', [Buffer.from('a')]), 'GRPC_CODEC_BAD_METADATA');
    assert.equal(bad('x-bin', ['AQI']), 'GRPC_CODEC_BAD_METADATA');
    assert.equal(bad('x_y.z-0', ['ok']), undefined);
    assert.equal(
      codeOf(() => trailersToWire({ status: -1, message: '', metadata: new Map() })),
      'GRPC_CODEC_BAD_METADATA',
    );
  });
});

// ---------------------------------------------------------------------------------------------

void describe('grpc-web-text base64', () => {
  function encodeChunks(chunks: readonly Buffer[], flushAfterEach = false): Buffer {
    const encoder = new GrpcWebTextEncoder();
    const out: Buffer[] = [];
    for (const chunk of chunks) {
      const piece = encoder.push(chunk);
      assert.equal(piece.length % 4, 0, 'encoder output stays 4-character aligned');
      out.push(piece);
      if (flushAfterEach) out.push(encoder.flush());
    }
    out.push(encoder.end());
    return Buffer.concat(out);
  }

  function decodeChunks(chunks: readonly Buffer[]): Buffer {
    const decoder = new GrpcWebTextDecoder();
    const out = chunks.map((c) => decoder.push(c));
    out.push(decoder.end());
    return Buffer.concat(out);
  }

  const data = randomBytes(40, 9);

  void it('encodes to exactly the base64 of the whole input, for every split point', () => {
    const whole = data.toString('base64');
    for (let i = 0; i <= data.length; i++) {
      for (let j = i; j <= data.length; j++) {
        assert.equal(encodeChunks(splitAt(data, [i, j])).toString('latin1'), whole, `split at ${i},${j}`);
      }
    }
  });

  void it('flush() pads mid-stream; the result decodes back for every split point of the text', () => {
    const sizes = [1, 2, 3, 4, 5, 7, 11];
    const pieces = splitAt(
      data,
      sizes.reduce<number[]>((acc, s) => [...acc, (acc.at(-1) ?? 0) + s], []),
    );
    const text = encodeChunks(pieces, true);
    assert.match(text.toString('latin1'), /=[A-Za-z0-9+/]/, 'padding appears mid-stream');
    for (let i = 0; i <= text.length; i++) {
      for (let j = i; j <= text.length; j++) {
        assert.ok(decodeChunks(splitAt(text, [i, j])).equals(data), `split at ${i},${j}`);
      }
    }
  });

  void it('decodes concatenated padded segments (as the spec allows a server to flush)', () => {
    assert.equal(decodeChunks([Buffer.from('QQ==QkI=Q0NDRA==')]).toString(), 'ABBCCCD');
    assert.equal(decodeChunks([Buffer.from('QQ'), Buffer.from('='), Buffer.from('=QkI=')]).toString(), 'ABB');
    assert.equal(decodeChunks([]).length, 0);
  });

  void it('accepts a final unpadded quantum, rejects a truncated one', () => {
    assert.equal(decodeChunks([Buffer.from('QUJD'), Buffer.from('QQ')]).toString(), 'ABCA');
    assert.equal(decodeChunks([Buffer.from('QUI')]).toString(), 'AB');
    for (const tail of ['Q', 'QQ=', 'QUJDQ']) {
      const decoder = new GrpcWebTextDecoder();
      decoder.push(Buffer.from(tail));
      assert.equal(
        codeOf(() => decoder.end()),
        'GRPC_CODEC_TRUNCATED_BASE64',
        tail,
      );
    }
  });

  void it('rejects characters outside the alphabet and misplaced padding instead of skipping them', () => {
    for (const bad of ['QU JD', 'QUJD\r\n', 'QU#D', 'Q===', '=QUJ', 'QQ=A', 'QUJDé000']) {
      const decoder = new GrpcWebTextDecoder();
      assert.equal(
        codeOf(() => [decoder.push(Buffer.from(bad, 'utf8')), decoder.end()]),
        'GRPC_CODEC_BAD_BASE64',
        bad,
      );
      assert.equal(
        codeOf(() => decoder.push(Buffer.from('QUJD'))),
        'GRPC_CODEC_FAILED',
      );
    }
  });

  void it('streams a 4 MiB body of frames through encoder and decoder with random chunking', () => {
    const message = randomBytes(4 * 1024 * 1024, 77);
    const body = Buffer.concat([encodeFrame(FLAG_DATA, message), encodeTrailerFrame({ 'grpc-status': '0' })]);
    const text = encodeChunks(randomChunks(body, 100_000, 3));
    assert.equal(text.toString('latin1'), body.toString('base64'));
    const decoder = new GrpcWebTextDecoder();
    const parser = new GrpcFrameParser();
    const frames: GrpcFrame[] = [];
    for (const chunk of randomChunks(text, 100_001, 4)) frames.push(...parser.push(decoder.push(chunk)));
    frames.push(...parser.push(decoder.end()));
    parser.end();
    assert.equal(frames.length, 2);
    assert.ok(frames[0]!.data.equals(message));
    assert.deepEqual({ ...decodeTrailerBlock(frames[1]!.data) }, { 'grpc-status': ['0'] });
  });

  void it('frames encoded with a flush per frame decode through the parser at every split point', () => {
    const encoder = new GrpcWebTextEncoder();
    const text = Buffer.concat([
      ...SAMPLE_FRAMES.map((f) =>
        Buffer.concat([encoder.push(encodeFrame(f.flags, f.data)), encoder.flush()]),
      ),
      encoder.end(),
    ]);
    for (let i = 0; i <= text.length; i++) {
      const decoder = new GrpcWebTextDecoder();
      const parser = new GrpcFrameParser();
      const frames: GrpcFrame[] = [];
      for (const chunk of splitAt(text, [i])) frames.push(...parser.push(decoder.push(chunk)));
      frames.push(...parser.push(decoder.end()));
      parser.end();
      assert.deepEqual(plain(frames), SAMPLE_FRAMES, `split at ${i}`);
    }
  });

  void it('the encoder copies what it holds back, so callers may reuse their chunk buffer', () => {
    const encoder = new GrpcWebTextEncoder();
    const scratch = Buffer.from('ab');
    const a = encoder.push(scratch);
    scratch.fill(0x7a);
    const b = encoder.end();
    assert.equal(Buffer.concat([a, b]).toString(), Buffer.from('ab').toString('base64'));
    assert.equal(
      codeOf(() => encoder.push(Buffer.from('x'))),
      'GRPC_CODEC_FAILED',
    );
  });
});

// ---------------------------------------------------------------------------------------------

void describe('content types', () => {
  void it('parses the three formats with their codec suffix, case-insensitively, ignoring parameters', () => {
    const cases: [string, ReturnType<typeof parseGrpcContentType>][] = [
      ['application/grpc', { protocol: 'grpc', suffix: '', codec: 'proto' }],
      ['application/grpc+proto', { protocol: 'grpc', suffix: 'proto', codec: 'proto' }],
      ['application/grpc+json', { protocol: 'grpc', suffix: 'json', codec: 'json' }],
      ['application/grpc-web', { protocol: 'grpc-web', suffix: '', codec: 'proto' }],
      ['application/grpc-web+thrift', { protocol: 'grpc-web', suffix: 'thrift', codec: 'thrift' }],
      [
        'Application/GRPC-Web-Text+Proto; charset=utf-8',
        { protocol: 'grpc-web-text', suffix: 'proto', codec: 'proto' },
      ],
      [' application/grpc-web-text ', { protocol: 'grpc-web-text', suffix: '', codec: 'proto' }],
      ['application/grpcx', undefined],
      ['application/grpc-webby', undefined],
      ['application/grpc-web-textual', undefined],
      ['application/grpc+', undefined],
      ['application/json', undefined],
      ['', undefined],
    ];
    for (const [value, expected] of cases) assert.deepEqual(parseGrpcContentType(value), expected, value);
    assert.equal(parseGrpcContentType(undefined), undefined);
  });

  void it('detects each protocol', () => {
    assert.equal(isGrpcContentType('application/grpc+proto'), true);
    assert.equal(isGrpcContentType('application/grpc-web'), false);
    assert.equal(isGrpcWebContentType('application/grpc-web+proto'), true);
    assert.equal(isGrpcWebContentType('application/grpc-web-text'), true);
    assert.equal(isGrpcWebContentType('application/grpc'), false);
    assert.equal(isGrpcWebTextContentType('application/grpc-web-text+proto'), true);
    assert.equal(isGrpcWebTextContentType('application/grpc-web+proto'), false);
    assert.equal(isGrpcContentType(undefined), false);
  });

  void it('maps between gRPC-web (binary or text) and gRPC, keeping the codec suffix', () => {
    assert.equal(grpcWebToGrpcContentType('application/grpc-web'), 'application/grpc');
    assert.equal(grpcWebToGrpcContentType('application/grpc-web+proto'), 'application/grpc+proto');
    assert.equal(grpcWebToGrpcContentType('application/grpc-web-text+json'), 'application/grpc+json');
    assert.equal(grpcWebToGrpcContentType('application/grpc+proto'), undefined);
    assert.equal(grpcToGrpcWebContentType('application/grpc'), 'application/grpc-web');
    assert.equal(grpcToGrpcWebContentType('application/grpc+proto'), 'application/grpc-web+proto');
    assert.equal(grpcToGrpcWebContentType('application/grpc+proto', true), 'application/grpc-web-text+proto');
    assert.equal(grpcToGrpcWebContentType('application/grpc-web'), undefined);
    assert.equal(formatGrpcContentType('grpc-web-text'), 'application/grpc-web-text');
  });
});

void describe('status mapping', () => {
  void it('maps HTTP statuses per http-grpc-status-mapping.md', () => {
    const table: [number, number][] = [
      [400, GrpcStatus.INTERNAL],
      [401, GrpcStatus.UNAUTHENTICATED],
      [403, GrpcStatus.PERMISSION_DENIED],
      [404, GrpcStatus.UNIMPLEMENTED],
      [429, GrpcStatus.UNAVAILABLE],
      [431, GrpcStatus.INTERNAL],
      [502, GrpcStatus.UNAVAILABLE],
      [503, GrpcStatus.UNAVAILABLE],
      [504, GrpcStatus.UNAVAILABLE],
    ];
    for (const [http, grpc] of table) assert.equal(grpcStatusFromHttpStatus(http), grpc, String(http));
    for (const other of [100, 200, 204, 301, 402, 405, 408, 415, 500, 501, 505, 599]) {
      assert.equal(grpcStatusFromHttpStatus(other), GrpcStatus.UNKNOWN, String(other));
    }
  });

  void it('names every code 0-16 and nothing else', () => {
    assert.equal(grpcStatusName(0), 'OK');
    assert.equal(grpcStatusName(4), 'DEADLINE_EXCEEDED');
    assert.equal(grpcStatusName(16), 'UNAUTHENTICATED');
    for (const [name, code] of Object.entries(GrpcStatus)) assert.equal(grpcStatusName(code), name);
    assert.equal(grpcStatusName(17), undefined);
    assert.equal(grpcStatusName(-1), undefined);
    assert.equal(grpcStatusName(1.5), undefined);
  });
});

void describe('grpc-timeout', () => {
  void it('parses every unit into milliseconds', () => {
    assert.equal(parseGrpcTimeout('2H'), 7_200_000);
    assert.equal(parseGrpcTimeout('3M'), 180_000);
    assert.equal(parseGrpcTimeout('1S'), 1000);
    assert.equal(parseGrpcTimeout('250m'), 250);
    assert.equal(parseGrpcTimeout('1500u'), 1.5);
    assert.equal(parseGrpcTimeout('2000000n'), 2);
    assert.equal(parseGrpcTimeout('99999999S'), 99_999_999_000);
    assert.equal(parseGrpcTimeout('0m'), 0);
    assert.equal(parseGrpcTimeout('00000001S'), 1000);
  });

  void it('rejects more than 8 digits, missing or unknown units, signs and junk', () => {
    for (const bad of [
      '123456789m',
      '000000001S',
      'S',
      '10',
      '10s',
      '10h',
      '10 S',
      '-1S',
      '+1S',
      '1.5S',
      '1e3m',
      '',
      '1SS',
    ]) {
      assert.equal(parseGrpcTimeout(bad), undefined, bad);
    }
  });

  void it('formats with the finest unit that fits in 8 digits, rounding up', () => {
    assert.equal(formatGrpcTimeout(1), '1000000n');
    assert.equal(formatGrpcTimeout(1.1), '1100000n');
    assert.equal(formatGrpcTimeout(99.999999), '99999999n');
    assert.equal(formatGrpcTimeout(100), '100000u');
    assert.equal(formatGrpcTimeout(1000), '1000000u');
    assert.equal(formatGrpcTimeout(100_000.0001), '100001m');
    assert.equal(formatGrpcTimeout(86_400_000), '86400000m');
    assert.equal(formatGrpcTimeout(100_000_000), '100000S');
    assert.equal(formatGrpcTimeout(99_999_999_001), '1666667M');
    assert.equal(formatGrpcTimeout(1e-9), '1n');
    assert.equal(formatGrpcTimeout(0), '0n');
    assert.equal(formatGrpcTimeout(-5), '0n');
    assert.equal(formatGrpcTimeout(99_999_999 * 3_600_000), '99999999H');
  });

  void it('never shortens a deadline and stays within one unit of it', () => {
    const rnd = prng(99);
    for (let n = 0; n < 2000; n++) {
      const ms = Math.exp(rnd() * 40) / 1e6; // 1 ns .. ~2.35e11 ms
      const formatted = formatGrpcTimeout(ms);
      const back = parseGrpcTimeout(formatted);
      assert.ok(back !== undefined, formatted);
      // Tolerances: float rounding, and sub-nanosecond remainders that cannot be expressed.
      assert.ok(back >= ms * (1 - 1e-12) - 1e-9, `${ms} -> ${formatted}`);
      assert.ok(
        back - ms <= parseGrpcTimeout(`1${formatted.at(-1)!}`)! * (1 + 1e-9),
        `${ms} -> ${formatted}`,
      );
    }
  });

  void it('refuses NaN and timeouts beyond 99999999 hours', () => {
    assert.equal(
      codeOf(() => formatGrpcTimeout(Number.NaN)),
      'GRPC_CODEC_BAD_TIMEOUT',
    );
    assert.equal(
      codeOf(() => formatGrpcTimeout(Number.POSITIVE_INFINITY)),
      'GRPC_CODEC_BAD_TIMEOUT',
    );
    assert.equal(
      codeOf(() => formatGrpcTimeout(100_000_000 * 3_600_000)),
      'GRPC_CODEC_BAD_TIMEOUT',
    );
  });
});
