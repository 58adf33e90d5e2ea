/**
 * TLS termination: where a listener's certificates come from and how one is chosen per handshake.
 *
 * Three sources, tried in this order for a client's SNI name:
 * 1. `certificateFor(serverName)` — a user hook (may be async), its answers cached per name;
 * 2. `certificates` — a list of `{ serverNames, cert, key }` matched by exact name, then by a
 *    one-label wildcard (`*.example.com` matches `a.example.com`, not `example.com` nor `a.b.example.com`,
 *    RFC 6125 §6.4.3);
 * 3. the default `cert`/`key` (also used when the client sends no SNI).
 *
 * Certificates given as files (`certFile`/`keyFile`) are watched and reloaded when they change —
 * new handshakes get the new certificate, open connections keep theirs, nothing restarts. A file
 * that fails to load (half-written, mismatched key) keeps the previous certificate and is logged.
 */
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { EventEmitter } from 'node:events';
import { basename, dirname, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { SecureContext, SecureContextOptions } from 'node:tls';
import type { Logger } from 'pino';
import { CairnError } from './errors.ts';

/** One certificate: PEM text or Buffers, or paths to PEM files (watched and reloaded). */
export interface CertificateSource {
  /** Certificate chain (PEM), leaf first. */
  readonly cert?: string | Buffer;
  /** Private key (PEM). */
  readonly key?: string | Buffer;
  /** Path of the certificate chain (PEM); reloaded when the file changes. */
  readonly certFile?: string;
  /** Path of the private key (PEM); reloaded when the file changes. */
  readonly keyFile?: string;
}

/** A certificate served for some names: exact (`api.example.com`) or wildcard (`*.example.com`). */
export interface SniCertificate extends CertificateSource {
  readonly serverNames: readonly string[];
}

/**
 * What `certificateFor` may return: a PEM pair, a ready `SecureContext`, or nothing (fall back to
 * the `certificates` list and then the default certificate).
 */
export type CertificateAnswer =
  { readonly cert: string | Buffer; readonly key: string | Buffer } | SecureContext | undefined;

/** TLS settings of a listener. */
export interface TlsServeOptions extends CertificateSource {
  /** Certificates chosen by SNI name. */
  readonly certificates?: readonly SniCertificate[];
  /**
   * Pick the certificate for a client's SNI name (lower-case). May be async. Answers, including
   * `undefined`, are cached per name (up to `certificateCacheSize` names) until a watched file
   * reloads or `CertificateStore.clearCache()` is called; a rejected promise is not cached and fails
   * that handshake.
   *
   * @example
   * ```ts
   * certificateFor: async (name) => name.endsWith('.tenant.example') ? await vault.pemFor(name) : undefined
   * ```
   */
  readonly certificateFor?: (serverName: string) => CertificateAnswer | Promise<CertificateAnswer>;
  /** Most SNI names whose `certificateFor` answer is cached. Default 1000. */
  readonly certificateCacheSize?: number;
  /** Lowest TLS version accepted. Default `TLSv1.2`. */
  readonly minVersion?: 'TLSv1.2' | 'TLSv1.3';
}

interface Entry {
  readonly source: CertificateSource;
  context: SecureContext | undefined;
  /** The PEM the context was made from (a `tls.Server`'s default certificate is given as PEM). */
  pem: { cert: string | Buffer; key: string | Buffer } | undefined;
}

/** Events of a `CertificateStore`. */
export interface CertificateStoreEvents {
  /** A watched certificate was reloaded (`file` is the path that changed). */
  reload: [file: string];
  /** A watched certificate failed to reload; the previous one stays in use. */
  reloadError: [file: string, error: CairnError];
}

/**
 * The certificates of one TLS listener and the SNI lookup over them.
 *
 * @example
 * ```ts
 * const store = await CertificateStore.open({ certFile: 'tls/site.pem', keyFile: 'tls/site.key' }, logger);
 * tls.createServer({ SNICallback: store.sniCallback, secureContext: store.defaultContext });
 * store.events.on('reload', (file) => console.log('reloaded', file));
 * ```
 */
export class CertificateStore {
  readonly events = new EventEmitter<CertificateStoreEvents>();
  readonly #options: TlsServeOptions;
  readonly #logger: Logger;
  readonly #default: Entry | undefined;
  readonly #exact = new Map<string, Entry>();
  /** `*.example.com` stored as `example.com`. */
  readonly #wildcard = new Map<string, Entry>();
  readonly #cache = new Map<string, SecureContext | undefined | Promise<SecureContext | undefined>>();
  readonly #cacheSize: number;
  readonly #watchers: FSWatcher[] = [];
  /** Called when the default certificate changes (the listener swaps its default context). */
  onDefaultChange: ((options: SecureContextOptions) => void) | undefined;

  private constructor(options: TlsServeOptions, logger: Logger) {
    this.#options = options;
    this.#logger = logger;
    this.#cacheSize = options.certificateCacheSize ?? 1000;
    const hasDefault =
      options.cert !== undefined ||
      options.key !== undefined ||
      options.certFile !== undefined ||
      options.keyFile !== undefined;
    this.#default = hasDefault ? { source: options, context: undefined, pem: undefined } : undefined;
    for (const sni of options.certificates ?? []) {
      const entry: Entry = { source: sni, context: undefined, pem: undefined };
      for (const raw of sni.serverNames) {
        const name = raw.toLowerCase();
        if (name.startsWith('*.')) this.#wildcard.set(name.slice(2), entry);
        else this.#exact.set(name, entry);
      }
    }
    if (
      this.#default === undefined &&
      this.#exact.size === 0 &&
      this.#wildcard.size === 0 &&
      options.certificateFor === undefined
    ) {
      throw new CairnError(
        'CAIRN_ERR_CONFIG_INVALID',
        'tls: give cert/key, certFile/keyFile, certificates or certificateFor',
      );
    }
  }

  /** Load every certificate (failing fast on a bad one) and start watching the files. */
  static async open(options: TlsServeOptions, logger: Logger): Promise<CertificateStore> {
    const store = new CertificateStore(options, logger);
    const entries = store.#entries();
    for (const entry of entries) await store.#load(entry);
    for (const entry of entries) store.#watch(entry);
    return store;
  }

  /** The context for clients without SNI or with an unknown name, if a default certificate was given. */
  get defaultContext(): SecureContext | undefined {
    return this.#default?.context;
  }

  /**
   * Options for `tls.createServer` / `setSecureContext`: the default certificate (if any) and the
   * protocol floor. (A `tls.Server` takes its default certificate as PEM, not as a context.)
   */
  defaultOptions(): SecureContextOptions {
    const pem = this.#default?.pem;
    return {
      minVersion: this.#options.minVersion ?? 'TLSv1.2',
      ...(pem === undefined ? {} : { cert: pem.cert, key: pem.key }),
    };
  }

  /** Forget every cached `certificateFor` answer. */
  clearCache(): void {
    this.#cache.clear();
  }

  /** The context for `serverName` (lower-cased), or undefined for the default. */
  lookup(serverName: string): SecureContext | undefined | Promise<SecureContext | undefined> {
    const name = serverName.toLowerCase();
    if (this.#options.certificateFor !== undefined) {
      const cached = this.#cache.get(name);
      if (cached !== undefined || this.#cache.has(name)) return cached;
      const answer = this.#ask(name);
      if (this.#cache.size >= this.#cacheSize) {
        // Drop the oldest name (Map keeps insertion order): a bounded cache, not an unbounded map
        // keyed by whatever names clients send.
        const oldest = this.#cache.keys().next().value;
        if (oldest !== undefined) this.#cache.delete(oldest);
      }
      this.#cache.set(name, answer);
      if (answer instanceof Promise) {
        answer.then(
          (context) => {
            if (this.#cache.get(name) === answer) this.#cache.set(name, context);
          },
          () => {
            if (this.#cache.get(name) === answer) this.#cache.delete(name);
          },
        );
      }
      return answer;
    }
    return this.#fromList(name);
  }

  /** `tls.Server`'s `SNICallback` (bound: pass it as is). */
  readonly sniCallback = (
    serverName: string,
    callback: (error: Error | null, context?: SecureContext) => void,
  ): void => {
    let found: SecureContext | undefined | Promise<SecureContext | undefined>;
    try {
      found = this.lookup(serverName);
    } catch (error) {
      callback(error as Error);
      return;
    }
    if (found instanceof Promise) {
      found.then(
        (context) => callback(null, context ?? this.defaultContext),
        (error: unknown) => {
          this.#logger.warn({ err: error, serverName }, 'certificateFor failed');
          callback(error instanceof Error ? error : new Error(String(error)));
        },
      );
      return;
    }
    callback(null, found ?? this.defaultContext);
  };

  /** Stop watching files. */
  close(): void {
    for (const watcher of this.#watchers) watcher.close();
    this.#watchers.length = 0;
  }

  #ask(name: string): SecureContext | undefined | Promise<SecureContext | undefined> {
    const hook = this.#options.certificateFor as NonNullable<TlsServeOptions['certificateFor']>;
    const answer = hook(name);
    if (answer instanceof Promise) return answer.then((a) => this.#fromAnswer(a, name));
    return this.#fromAnswer(answer, name);
  }

  #fromAnswer(answer: CertificateAnswer, name: string): SecureContext | undefined {
    if (answer === undefined) return this.#fromList(name);
    if ('context' in answer) return answer;
    return createSecureContext({
      cert: answer.cert,
      key: answer.key,
      minVersion: this.#options.minVersion ?? 'TLSv1.2',
    });
  }

  #fromList(name: string): SecureContext | undefined {
    const exact = this.#exact.get(name);
    if (exact !== undefined) return exact.context;
    const dot = name.indexOf('.');
    if (dot > 0) {
      const wild = this.#wildcard.get(name.slice(dot + 1));
      if (wild !== undefined) return wild.context;
    }
    return undefined;
  }

  #entries(): Entry[] {
    const out = new Set<Entry>();
    if (this.#default !== undefined) out.add(this.#default);
    for (const e of this.#exact.values()) out.add(e);
    for (const e of this.#wildcard.values()) out.add(e);
    return [...out];
  }

  /** Read an entry's certificate and key and make its context; the entry is unchanged on failure. */
  async #load(entry: Entry): Promise<void> {
    const source = entry.source;
    const cert = source.certFile !== undefined ? await readFile(source.certFile) : source.cert;
    const key = source.keyFile !== undefined ? await readFile(source.keyFile) : source.key;
    if (cert === undefined || key === undefined) {
      throw new CairnError(
        'CAIRN_ERR_CONFIG_INVALID',
        'tls: a certificate needs both cert (or certFile) and key (or keyFile)',
      );
    }
    let context: SecureContext;
    try {
      context = createSecureContext({ cert, key, minVersion: this.#options.minVersion ?? 'TLSv1.2' });
    } catch (error) {
      throw new CairnError(
        'CAIRN_ERR_TLS_CERTIFICATE',
        `tls: cannot use certificate ${source.certFile ?? '(inline)'}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    entry.context = context;
    entry.pem = { cert, key };
  }

  /**
   * Watch the directories of an entry's files (editors and cert managers replace files by rename,
   * which a watch on the file itself would miss) and reload on any change to either file.
   */
  #watch(entry: Entry): void {
    const files = [entry.source.certFile, entry.source.keyFile]
      .filter((f): f is string => f !== undefined)
      .map((f) => resolve(f));
    const dirs = new Set(files.map((f) => dirname(f)));
    for (const dir of dirs) {
      const names = new Set(files.filter((f) => dirname(f) === dir).map((f) => basename(f)));
      const watcher = watch(dir, { persistent: false }, (_event, filename) => {
        if (filename === null || !names.has(filename.toString())) return;
        this.#reload(entry, resolve(dir, filename.toString()));
      });
      watcher.on('error', (error) => this.#logger.warn({ err: error, dir }, 'certificate watch failed'));
      this.#watchers.push(watcher);
    }
  }

  #reloading = new WeakMap<Entry, Promise<void>>();

  #reload(entry: Entry, file: string): void {
    // One reload at a time per entry; a change during a reload triggers one more after it.
    const previous = this.#reloading.get(entry) ?? Promise.resolve();
    const next = previous.then(async () => {
      try {
        await this.#load(entry);
        this.#cache.clear();
        if (entry === this.#default) this.onDefaultChange?.(this.defaultOptions());
        this.#logger.info({ file }, 'certificate reloaded');
        this.events.emit('reload', file);
      } catch (error) {
        const failure =
          error instanceof CairnError
            ? error
            : new CairnError('CAIRN_ERR_TLS_CERTIFICATE', `tls: cannot reload ${file}`, { cause: error });
        this.#logger.warn({ err: failure, file }, 'certificate reload failed: keeping the previous one');
        this.events.emit('reloadError', file, failure);
      }
    });
    this.#reloading.set(entry, next);
  }
}
