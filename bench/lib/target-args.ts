/**
 * The command line every peer proxy target takes: `--port N --origin URL [--host H]`. Kept apart
 * from `cli.ts` so a target process loads nothing of the runner or the report.
 */
import { parseArgs } from 'node:util';

export interface ProxyTargetArgs {
  readonly port: number;
  readonly origin: string;
  readonly host: string;
}

export function proxyTargetArgs(target: string): ProxyTargetArgs {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      origin: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
    },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port <= 0 || values.origin === undefined)
    throw new Error(`${target} target: --port N --origin URL are required`);
  return { port, origin: values.origin, host: values.host };
}
