/**
 * The `cairn check` and `cairn explain` subcommands (dispatched from `src/cli.ts`).
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { isCairnError } from '../../src/index.ts';
import { loadCheckFile } from './check-file.ts';
import { formatJUnit, formatReportTable, ProgressBar } from './check-report.ts';
import type { ProgressStream } from './check-report.ts';
import { countRequests, runCheck } from './check-run.ts';
import { explainUrl, formatUrlExplanation } from './explain-url.ts';

/** Where a subcommand writes (the process's streams by default; tests pass their own). */
export interface CommandIo {
  readonly stdout: ProgressStream;
  readonly stderr: ProgressStream;
}

const CHECK_USAGE = `Usage: cairn check FILE [--origin URL | --target URL] [--json] [--junit FILE]

  FILE             a YAML or JSON file of scenarios: requests and expectations
  --origin URL     start a Cairn (fresh in-memory cache per scenario) in front of this origin
  --target URL     test a cache that is already running (judged by Cache-Status, Age, X-Cache)
  --json           print the report as JSON instead of a table
  --junit FILE     also write the report as JUnit XML
  --progress       always show the progress bar (default: for runs of ${20} requests or more)
  --no-progress    never show it
  -h, --help       this text

Exit status: 0 when every expectation holds, 1 when one fails, 2 for a bad command line or file.
`;

const EXPLAIN_USAGE = `Usage: cairn explain URL [-X METHOD] [-H 'Name: value']... [--set-cookie MODE] [--json]

  Fetch URL once and explain, in words, whether Cairn's cache would store the response, for how
  long, what makes it vary, and what would change that.

  -X, --method M       request method (default GET)
  -H, --header H       a request header, 'Name: value'; repeat for several
  --set-cookie MODE    the cache's policy.setCookie: bypass (default), strip or store
  --json               print the explanation as JSON
  -h, --help           this text
`;

const PROGRESS_FROM = 20;

function defaultIo(): CommandIo {
  return { stdout: process.stdout, stderr: process.stderr };
}

function usageError(io: CommandIo, message: string, usage: string): number {
  io.stderr.write(`cairn: ${message}\n\n${usage}`);
  return 2;
}

/**
 * `cairn check FILE …`; resolves with the exit status.
 *
 * @example
 * ```ts
 * process.exitCode = await checkCommand(['site-checks.yaml', '--origin', 'http://127.0.0.1:3000']);
 * ```
 */
export async function checkCommand(argv: readonly string[], io: CommandIo = defaultIo()): Promise<number> {
  let values: {
    origin?: string;
    target?: string;
    json?: boolean;
    junit?: string;
    progress?: boolean;
    'no-progress'?: boolean;
    help?: boolean;
  };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...argv],
      options: {
        origin: { type: 'string' },
        target: { type: 'string' },
        json: { type: 'boolean' },
        junit: { type: 'string' },
        progress: { type: 'boolean' },
        'no-progress': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: true,
    }));
  } catch (error) {
    return usageError(io, (error as Error).message, CHECK_USAGE);
  }
  if (values.help === true) {
    io.stdout.write(CHECK_USAGE);
    return 0;
  }
  if (positionals.length !== 1) return usageError(io, 'check: give exactly one FILE', CHECK_USAGE);
  if (values.origin !== undefined && values.target !== undefined)
    return usageError(io, 'check: give --origin or --target, not both', CHECK_USAGE);
  const path = positionals[0]!;
  try {
    const file = await loadCheckFile(path);
    const total = countRequests(file);
    const showProgress =
      values['no-progress'] !== true && (values.progress === true || total >= PROGRESS_FROM);
    const bar = showProgress ? new ProgressBar(io.stderr, total) : undefined;
    const report = await runCheck(file, path, {
      ...(values.origin === undefined ? {} : { origin: values.origin }),
      ...(values.target === undefined ? {} : { target: values.target }),
      ...(bar === undefined ? {} : { onProgress: (done: number) => bar.update(done) }),
    });
    bar?.done();
    if (values.junit !== undefined) await writeFile(values.junit, formatJUnit(report));
    io.stdout.write(
      values.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatReportTable(report),
    );
    return report.failed > 0 ? 1 : 0;
  } catch (error) {
    io.stderr.write(`cairn: ${isCairnError(error) ? `${error.code}: ` : ''}${(error as Error).message}\n`);
    return isCairnError(error) && error.code === 'CAIRN_ERR_CONFIG_INVALID' ? 2 : 1;
  }
}

/**
 * `cairn explain URL …`; resolves with the exit status (0 when fetched and explained).
 *
 * @example
 * ```ts
 * await explainCommand(['http://127.0.0.1:3000/static/app.js']);
 * ```
 */
export async function explainCommand(argv: readonly string[], io: CommandIo = defaultIo()): Promise<number> {
  let values: { method?: string; header?: string[]; 'set-cookie'?: string; json?: boolean; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...argv],
      options: {
        method: { type: 'string', short: 'X' },
        header: { type: 'string', short: 'H', multiple: true },
        'set-cookie': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: true,
    }));
  } catch (error) {
    return usageError(io, (error as Error).message, EXPLAIN_USAGE);
  }
  if (values.help === true) {
    io.stdout.write(EXPLAIN_USAGE);
    return 0;
  }
  if (positionals.length !== 1) return usageError(io, 'explain: give exactly one URL', EXPLAIN_USAGE);
  const headers: Record<string, string> = {};
  for (const h of values.header ?? []) {
    const colon = h.indexOf(':');
    if (colon <= 0) return usageError(io, `explain: header "${h}" is not 'Name: value'`, EXPLAIN_USAGE);
    headers[h.slice(0, colon).trim().toLowerCase()] = h.slice(colon + 1).trim();
  }
  const setCookie = values['set-cookie'];
  if (setCookie !== undefined && setCookie !== 'bypass' && setCookie !== 'strip' && setCookie !== 'store') {
    return usageError(
      io,
      `explain: --set-cookie must be bypass, strip or store (got "${setCookie}")`,
      EXPLAIN_USAGE,
    );
  }
  try {
    const e = await explainUrl(positionals[0]!, {
      headers,
      ...(values.method === undefined ? {} : { method: values.method }),
      ...(setCookie === undefined ? {} : { policy: { setCookie } }),
    });
    io.stdout.write(values.json === true ? `${JSON.stringify(e, null, 2)}\n` : formatUrlExplanation(e));
    return 0;
  } catch (error) {
    io.stderr.write(`cairn: ${isCairnError(error) ? `${error.code}: ` : ''}${(error as Error).message}\n`);
    return isCairnError(error) && error.code === 'CAIRN_ERR_CONFIG_INVALID' ? 2 : 1;
  }
}

/**
 * Run `cairn check …` or `cairn explain …` (`argv[0]` names the subcommand); resolves with the
 * exit status.
 *
 * @example
 * ```ts
 * const code = await checkOrExplain(['explain', 'http://127.0.0.1:3000/']);
 * ```
 */
export function checkOrExplain(argv: readonly string[], io: CommandIo = defaultIo()): Promise<number> {
  return argv[0] === 'check' ? checkCommand(argv.slice(1), io) : explainCommand(argv.slice(1), io);
}
