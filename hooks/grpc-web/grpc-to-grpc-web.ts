/**
 * Native gRPC clients -> a gRPC-web origin. Clients speak gRPC over HTTP/2 to Cairn (serve with
 * `h2c: true` or TLS); the origin speaks gRPC-web over HTTP/1.1 (a plain `HttpPeer`). The codec
 * (`./codec.ts`) does the byte work; this module wires it into the phases:
 *
 * | phase                   | what happens                                                                   |
 * | ----------------------- | ------------------------------------------------------------------------------ |
 * | `upstreamRequestFilter` | `content-type` → `application/grpc-web+…`; `te` dropped (HTTP/1.1)             |
 * | `upstreamResponseFilter`| a gRPC-web answer: `content-type` → `application/grpc+…`. An HTTP error, or    |
 * |                         | anything not gRPC-web: a gRPC response whose status is mapped from the HTTP     |
 * |                         | status (http-grpc-status-mapping.md: 503 → UNAVAILABLE, 404 → UNIMPLEMENTED, …) |
 * | `responseBodyFilter`    | message frames pass; the trailer frame is taken out of the body                |
 * | `responseTrailerFilter` | …and its fields become real HTTP/2 trailers (`grpc-message` re-encoded per spec)|
 * | `failToProxy`           | no origin answer → trailers-only `UNAVAILABLE` / `DEADLINE_EXCEEDED`            |
 *
 * Request bodies need no translation (gRPC and binary gRPC-web frame messages the same way).
 * Deadlines travel as `grpc-timeout`, which gRPC-web servers honour too. Requests that are not gRPC
 * pass through every method untouched.
 *
 * @example
 * ```ts
 * import { GrpcToGrpcWeb } from 'cairn/proxies';
 * const bridge = new GrpcToGrpcWeb();
 * const origin = new HttpPeer('http://127.0.0.1:8080');
 * class Gateway extends ProxyHttp {
 *   override upstreamPeer() { return origin; }
 *   override upstreamRequestFilter(s: Session, r: UpstreamRequest) { bridge.upstreamRequestFilter(s, r); }
 *   override upstreamResponseFilter(s: Session, r: ResponseHead) { bridge.upstreamResponseFilter(s, r); }
 *   override responseBodyFilter(s: Session, c: Buffer | null, end: boolean) { return bridge.responseBodyFilter(s, c, end); }
 *   override responseTrailerFilter(s: Session, t: HeaderMap) { return bridge.responseTrailerFilter(s, t); }
 *   override failToProxy(s: Session, e: CairnError, ctx: object) { return bridge.failToProxy(s, e) ?? super.failToProxy(s, e, ctx); }
 * }
 * await serve(new Gateway(), { listen: '127.0.0.1:50051', h2c: true });
 * ```
 */
import type {
  BodyFilterResult,
  CairnError,
  HeaderMap,
  ResponseHead,
  Session,
  UpstreamRequest,
} from '../../src/index.ts';
import {
  BridgeStates,
  bridgeError,
  first,
  grpcStatusForError,
  respondTrailersOnly,
} from './bridge-shared.ts';
import {
  GrpcFrameParser,
  GrpcStatus,
  decodeTrailerBlock,
  encodeFrameHeader,
  formatGrpcContentType,
  grpcStatusFromHttpStatus,
  parseGrpcContentType,
  percentDecodeGrpcMessage,
  percentEncodeGrpcMessage,
} from './codec.ts';
import type { GrpcHeaderBlock } from './codec.ts';

export interface GrpcToGrpcWebOptions {
  /** Largest message accepted from the origin, bytes. Default 64 MiB (the codec's default). */
  readonly maxMessageBytes?: number;
}

interface State {
  readonly suffix: string;
  /** Parses the gRPC-web body; null when the origin's answer was not gRPC-web. */
  parser: GrpcFrameParser | null;
  /** The trailer frame's fields, once seen. */
  trailers: GrpcHeaderBlock | null;
  /** The response head already carried the status (trailers-only). */
  statusInHead: boolean;
  /** The origin answered with an HTTP error (or not gRPC-web): the status to report instead. */
  httpError: { readonly status: number; readonly message: string } | null;
}

/** The gRPC -> gRPC-web bridge. One instance serves every request. */
export class GrpcToGrpcWeb {
  readonly #states = new BridgeStates<State>();
  readonly #maxMessageBytes: number | undefined;

  constructor(options: GrpcToGrpcWebOptions = {}) {
    this.#maxMessageBytes = options.maxMessageBytes;
  }

  /** Is this a native gRPC call? */
  isGrpc(session: Session): boolean {
    return parseGrpcContentType(first(session.headers['content-type']))?.protocol === 'grpc';
  }

  /** Rewrite a gRPC request into a gRPC-web one. */
  upstreamRequestFilter(session: Session, request: UpstreamRequest): void {
    const type = parseGrpcContentType(first(request.headers['content-type']));
    if (type === undefined || type.protocol !== 'grpc') return;
    this.#states.set(session, {
      suffix: type.suffix,
      parser: null,
      trailers: null,
      statusInHead: false,
      httpError: null,
    });
    const headers = request.headers;
    headers['content-type'] = formatGrpcContentType('grpc-web', type.suffix);
    headers.accept = formatGrpcContentType('grpc-web', type.suffix);
    headers['x-grpc-web'] = '1';
    delete headers.te;
  }

  /** A gRPC-web answer becomes a gRPC head; anything else becomes a gRPC error. */
  upstreamResponseFilter(session: Session, response: ResponseHead): void {
    const state = this.#states.get(session);
    if (state === undefined) return;
    const headers = response.headers;
    const type = parseGrpcContentType(first(headers['content-type']));
    if (response.status !== 200 || type === undefined || type.protocol === 'grpc') {
      // http-grpc-status-mapping.md: an HTTP error from an intermediary or a non-gRPC server. Its
      // body is dropped; the client gets a gRPC response whose trailers carry the mapped status.
      const status = response.status === 200 ? GrpcStatus.UNKNOWN : grpcStatusFromHttpStatus(response.status);
      const given = first(headers['grpc-status']);
      state.httpError = {
        status: given !== undefined && /^\d+$/.test(given) ? Number(given) : status,
        message:
          given !== undefined
            ? percentDecodeGrpcMessage(first(headers['grpc-message']) ?? '')
            : `the origin answered HTTP ${response.status}${type === undefined ? ` (${first(headers['content-type']) ?? 'no content type'})` : ''}`,
      };
      response.status = 200;
      for (const name of Object.keys(headers)) delete headers[name];
      headers['content-type'] = formatGrpcContentType('grpc', state.suffix);
      return;
    }
    state.parser =
      this.#maxMessageBytes === undefined
        ? new GrpcFrameParser()
        : new GrpcFrameParser({ maxMessageBytes: this.#maxMessageBytes });
    state.statusInHead = headers['grpc-status'] !== undefined;
    headers['content-type'] = formatGrpcContentType('grpc', type.suffix);
    // The trailer frame leaves the body: the length changes.
    delete headers['content-length'];
  }

  /** Message frames pass on; the trailer frame is kept for `responseTrailerFilter`. */
  responseBodyFilter(session: Session, chunk: Buffer | null, end: boolean): BodyFilterResult {
    const state = this.#states.get(session);
    if (state === undefined) return undefined;
    if (state.httpError !== null) return null; // the error page is not gRPC: nothing of it goes on
    const parser = state.parser;
    if (parser === null) return undefined;
    try {
      if (chunk === null) {
        if (end) parser.end();
        return undefined;
      }
      const frames = parser.push(chunk);
      if (frames.length === 0) return null;
      const out: Buffer[] = [];
      for (const frame of frames) {
        if (frame.trailer) {
          state.trailers = decodeTrailerBlock(frame.data);
          continue;
        }
        out.push(
          encodeFrameHeader(frame.flags, frame.data.length),
          Buffer.from(frame.data.buffer, frame.data.byteOffset, frame.data.byteLength),
        );
      }
      return out.length === 0 ? null : Buffer.concat(out);
    } catch (error) {
      throw bridgeError(error, 'origin');
    }
  }

  /** The trailer frame's fields (or the mapped HTTP error) become the HTTP/2 trailers. */
  responseTrailerFilter(session: Session, trailers: HeaderMap): undefined {
    const state = this.#states.get(session);
    if (state === undefined) return undefined;
    const error = state.httpError;
    if (error !== null) {
      trailers['grpc-status'] = String(error.status);
      trailers['grpc-message'] = percentEncodeGrpcMessage(error.message);
      return undefined;
    }
    if (state.parser === null) return undefined;
    const block = state.trailers;
    if (block === null) {
      // No trailer frame: fine for a trailers-only answer (status in the head); otherwise the
      // origin broke off, and the spec asks for a synthesised status.
      if (!state.statusInHead) {
        trailers['grpc-status'] = String(GrpcStatus.UNKNOWN);
        trailers['grpc-message'] = percentEncodeGrpcMessage('the gRPC-web origin sent no trailer frame');
      }
      return undefined;
    }
    for (const name in block) {
      const values = block[name] as string[];
      trailers[name] = values.length === 1 ? values[0] : values;
    }
    // Re-encode grpc-message per PROTOCOL-HTTP2.md: some gRPC-web servers escape more than the spec
    // (connect-es uses encodeURIComponent) and some gRPC clients unescape less (grpc-js).
    const message = first(trailers['grpc-message']);
    if (message !== undefined)
      trailers['grpc-message'] = percentEncodeGrpcMessage(percentDecodeGrpcMessage(message));
    return undefined;
  }

  /**
   * For a gRPC call the origin did not answer: a trailers-only gRPC error with the matching status,
   * and the HTTP status used (200). `undefined` for other requests.
   */
  failToProxy(session: Session, error: CairnError): number | undefined {
    const type = parseGrpcContentType(first(session.headers['content-type']));
    if (type === undefined || type.protocol !== 'grpc') return undefined;
    // A response already under way: the default failToProxy cuts it off.
    if (session.responded) return undefined;
    respondTrailersOnly(
      session,
      formatGrpcContentType('grpc', type.suffix),
      grpcStatusForError(error),
      error.message,
    );
    return 200;
  }
}
