/**
 * gRPC-web clients -> a native gRPC origin. Browsers (and other gRPC-web clients) speak
 * `application/grpc-web` (binary) or `application/grpc-web-text` (base64), with any `+proto` /
 * `+json` suffix, over HTTP/1.1 or HTTP/2; the origin speaks gRPC over HTTP/2 (give it an
 * `HttpPeer` with `http2: true`). The codec (`./codec.ts`) does the byte work; this module only
 * wires it into the phases:
 *
 * | phase                   | what happens                                                                 |
 * | ----------------------- | ---------------------------------------------------------------------------- |
 * | `requestFilter`         | answers the CORS preflight (`OPTIONS` + `Access-Control-Request-Method`)     |
 * | `upstreamRequestFilter` | `content-type` → `application/grpc+…`; text bodies lose their length          |
 * | `requestBodyFilter`     | text mode: base64 → bytes (frames are the same on both protocols)             |
 * | `upstreamResponseFilter`| `content-type` → `application/grpc-web(-text)+…`; CORS headers exposed       |
 * | `responseBodyFilter`    | text mode: bytes → base64                                                     |
 * | `responseTrailerFilter` | the origin's HTTP/2 trailers → the trailer frame at the end of the body       |
 * | `failToProxy`           | no origin answer → a trailers-only gRPC-web error (`UNAVAILABLE`, …)          |
 *
 * Deadlines travel as `grpc-timeout`, unchanged. A response is sent in text mode when the request
 * was, or when it `Accept`s `application/grpc-web-text` (PROTOCOL-WEB.md). Requests that are not
 * gRPC-web pass through every method untouched.
 *
 * @example
 * ```ts
 * import { GrpcWebToGrpc } from 'cairn/proxies';
 * const bridge = new GrpcWebToGrpc({ cors: { allowOrigins: ['https://app.example'] } });
 * const origin = new HttpPeer('http://127.0.0.1:50051', { http2: true });
 * class Gateway extends ProxyHttp {
 *   override requestFilter(s: Session) { return bridge.requestFilter(s); }
 *   override upstreamPeer() { return origin; }
 *   override upstreamRequestFilter(s: Session, r: UpstreamRequest) { bridge.upstreamRequestFilter(s, r); }
 *   override requestBodyFilter(s: Session, c: Buffer | null, end: boolean) { return bridge.requestBodyFilter(s, c, end); }
 *   override upstreamResponseFilter(s: Session, r: ResponseHead) { bridge.upstreamResponseFilter(s, r); }
 *   override responseBodyFilter(s: Session, c: Buffer | null, end: boolean) { return bridge.responseBodyFilter(s, c, end); }
 *   override responseTrailerFilter(s: Session, t: HeaderMap) { return bridge.responseTrailerFilter(s, t); }
 *   override failToProxy(s: Session, e: CairnError, ctx: object) { return bridge.failToProxy(s, e) ?? super.failToProxy(s, e, ctx); }
 * }
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
  GrpcWebTextDecoder,
  GrpcWebTextEncoder,
  encodeTrailerFrame,
  formatGrpcContentType,
  parseGrpcContentType,
} from './codec.ts';

/** Cross-origin access for browser clients (the Fetch standard's CORS protocol). */
export interface GrpcWebCorsOptions {
  /** Origins allowed to call: `'*'` for any, or exact origins (`https://app.example`). */
  readonly allowOrigins: '*' | readonly string[];
  /** Request headers allowed in the preflight answer. Default: whatever the browser asks for. */
  readonly allowHeaders?: readonly string[];
  /** Response headers scripts may read, besides `grpc-status`, `grpc-message`, `grpc-status-details-bin`. */
  readonly exposeHeaders?: readonly string[];
  /** Seconds a browser may cache the preflight answer. Default 86400. */
  readonly maxAge?: number;
  /** Allow credentials (cookies); then `allowOrigins` must list origins (no `'*'`). Default false. */
  readonly allowCredentials?: boolean;
}

export interface GrpcWebToGrpcOptions {
  /** CORS for browser clients; `false` (default) answers no preflight and adds no CORS headers. */
  readonly cors?: GrpcWebCorsOptions | false;
}

interface State {
  /** Request body arrives base64-encoded. */
  readonly textRequest: boolean;
  /** Response body goes back base64-encoded. */
  readonly textResponse: boolean;
  /** The `+suffix` of the request's content type (`proto` when none was given). */
  readonly suffix: string;
  readonly decoder: GrpcWebTextDecoder | null;
  readonly encoder: GrpcWebTextEncoder | null;
  /** The origin answered as gRPC (so its trailers become the trailer frame). */
  grpcResponse: boolean;
}

const ALWAYS_EXPOSED = ['grpc-status', 'grpc-message', 'grpc-status-details-bin'];

/**
 * The gRPC-web -> gRPC bridge. One instance serves every request; per-request state is keyed by
 * the session.
 */
export class GrpcWebToGrpc {
  readonly #states = new BridgeStates<State>();
  readonly #cors: GrpcWebCorsOptions | false;
  readonly #expose: string;

  constructor(options: GrpcWebToGrpcOptions = {}) {
    this.#cors = options.cors ?? false;
    this.#expose = [
      ...ALWAYS_EXPOSED,
      ...(this.#cors === false ? [] : (this.#cors.exposeHeaders ?? [])),
    ].join(', ');
  }

  /** Is this a gRPC-web call (binary or text)? */
  isGrpcWeb(session: Session): boolean {
    const type = parseGrpcContentType(first(session.headers['content-type']));
    return type !== undefined && type.protocol !== 'grpc';
  }

  /**
   * Answer a CORS preflight for a gRPC-web call (`204`, or `403` for an origin not allowed).
   * Returns true when it answered. Everything else: false.
   */
  requestFilter(session: Session): boolean {
    const cors = this.#cors;
    if (cors === false || session.method !== 'OPTIONS') return false;
    const asked = first(session.headers['access-control-request-method']);
    if (asked === undefined) return false;
    const origin = first(session.headers.origin);
    const allowed = this.#allowedOrigin(origin);
    if (allowed === undefined) {
      session.respond(403, { vary: 'origin', 'content-type': 'text/plain' }, 'origin not allowed\n');
      return true;
    }
    const requested = first(session.headers['access-control-request-headers']);
    const headers: HeaderMap = {
      'access-control-allow-origin': allowed,
      'access-control-allow-methods': 'POST, OPTIONS',
      'access-control-allow-headers':
        cors.allowHeaders?.join(', ') ?? requested ?? 'content-type, x-grpc-web, x-user-agent, grpc-timeout',
      'access-control-max-age': String(cors.maxAge ?? 86_400),
      vary: 'origin, access-control-request-headers',
    };
    if (cors.allowCredentials === true) headers['access-control-allow-credentials'] = 'true';
    session.respond(204, headers);
    return true;
  }

  /** Rewrite a gRPC-web request into a gRPC one. */
  upstreamRequestFilter(session: Session, request: UpstreamRequest): void {
    const type = parseGrpcContentType(first(request.headers['content-type']));
    if (type === undefined || type.protocol === 'grpc') return;
    const textRequest = type.protocol === 'grpc-web-text';
    const accept = first(session.headers.accept) ?? '';
    const textResponse = textRequest || accept.toLowerCase().includes('application/grpc-web-text');
    this.#states.set(session, {
      textRequest,
      textResponse,
      suffix: type.suffix,
      decoder: textRequest ? new GrpcWebTextDecoder() : null,
      encoder: textResponse ? new GrpcWebTextEncoder() : null,
      grpcResponse: false,
    });
    const headers = request.headers;
    headers['content-type'] = formatGrpcContentType('grpc', type.suffix);
    // The decoded body is 3/4 of the text: its length is not known in advance.
    if (textRequest) delete headers['content-length'];
    delete headers.accept;
    delete headers['x-grpc-web'];
    headers.te = 'trailers';
  }

  /** Text mode: decode the base64 request body to the gRPC frames it carries. */
  requestBodyFilter(session: Session, chunk: Buffer | null, end: boolean): BodyFilterResult {
    const decoder = this.#states.get(session)?.decoder;
    if (decoder === undefined || decoder === null) return undefined;
    try {
      const bytes = chunk === null ? Buffer.alloc(0) : decoder.push(chunk);
      if (!end) return bytes;
      const tail = decoder.end();
      return tail.length === 0 ? bytes : Buffer.concat([bytes, tail]);
    } catch (error) {
      throw bridgeError(error, 'client');
    }
  }

  /** The gRPC response head becomes a gRPC-web one. */
  upstreamResponseFilter(session: Session, response: ResponseHead): void {
    const state = this.#states.get(session);
    if (state === undefined) return;
    const headers = response.headers;
    const type = parseGrpcContentType(first(headers['content-type']));
    this.#addCors(session, headers);
    if (type === undefined || type.protocol !== 'grpc') return; // not gRPC (an HTTP error): as is
    state.grpcResponse = true;
    headers['content-type'] = formatGrpcContentType(
      state.textResponse ? 'grpc-web-text' : 'grpc-web',
      type.suffix,
    );
    // The trailer frame (and base64) change the length.
    delete headers['content-length'];
  }

  /** Text mode: encode the response body as base64. */
  responseBodyFilter(session: Session, chunk: Buffer | null, _end: boolean): BodyFilterResult {
    const state = this.#states.get(session);
    const encoder = state?.encoder;
    if (encoder === undefined || encoder === null || !state?.grpcResponse || chunk === null) return undefined;
    return encoder.push(chunk);
  }

  /**
   * The origin's HTTP/2 trailers become the gRPC-web trailer frame, the last bytes of the body;
   * they are removed from the HTTP trailers. A trailers-only response (status in the headers) has
   * none, and needs none.
   */
  responseTrailerFilter(session: Session, trailers: HeaderMap): Buffer | undefined {
    const state = this.#states.get(session);
    if (state === undefined || !state.grpcResponse) return undefined;
    let frame: Buffer | undefined;
    if (trailers['grpc-status'] !== undefined) {
      try {
        frame = encodeTrailerFrame(trailers);
      } catch (error) {
        throw bridgeError(error, 'origin');
      }
      for (const name of Object.keys(trailers)) delete trailers[name];
    }
    const encoder = state.encoder;
    if (encoder === null) return frame;
    // Text: finish the message bytes' base64, then the trailer frame as its own padded segment.
    const rest = encoder.flush();
    if (frame === undefined) return rest;
    return Buffer.concat([rest, encoder.push(frame), encoder.end()]);
  }

  /**
   * For a gRPC-web call the origin did not answer: a trailers-only gRPC-web response with the
   * matching gRPC status, and the status used (200). `undefined` for other requests.
   */
  failToProxy(session: Session, error: CairnError): number | undefined {
    const state = this.#states.get(session);
    const type = parseGrpcContentType(first(session.headers['content-type']));
    if (type === undefined || type.protocol === 'grpc') return undefined;
    // A response already under way: the default failToProxy cuts it off.
    if (session.responded) return undefined;
    const extra: HeaderMap = {};
    this.#addCors(session, extra);
    const text = state?.textResponse ?? type.protocol === 'grpc-web-text';
    respondTrailersOnly(
      session,
      formatGrpcContentType(text ? 'grpc-web-text' : 'grpc-web', type.suffix),
      grpcStatusForError(error),
      error.message,
      extra,
    );
    return 200;
  }

  #allowedOrigin(origin: string | undefined): string | undefined {
    const cors = this.#cors;
    if (cors === false || origin === undefined) return undefined;
    if (cors.allowOrigins === '*') return cors.allowCredentials === true ? origin : '*';
    return cors.allowOrigins.includes(origin) ? origin : undefined;
  }

  #addCors(session: Session, headers: HeaderMap): void {
    if (this.#cors === false) return;
    const allowed = this.#allowedOrigin(first(session.headers.origin));
    if (allowed === undefined) return;
    headers['access-control-allow-origin'] = allowed;
    headers['access-control-expose-headers'] = this.#expose;
    if (this.#cors.allowCredentials === true) headers['access-control-allow-credentials'] = 'true';
    headers.vary = headers.vary === undefined ? 'origin' : `${String(headers.vary)}, origin`;
  }
}
