import { parseArgs, type ParseArgsConfig } from 'node:util';
import * as path from 'node:path';

/** One `cairn` subcommand. Each lives in its own file under cli/commands/ and is listed in cli/commands/index.ts. */
export interface Command {
  name: string;
  /** One line for `cairn --help`. */
  summary: string;
  /** Full usage text for `cairn NAME --help`. */
  usage: string;
  /** Returns the exit status (resolves when the command is over; for `serve`, when the server stops). */
  run(args: string[]): Promise<number>;
}

/** Bad command line: printed with a pointer to --help, exit status 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** node:util parseArgs (strict), with its errors turned into UsageErrors. */
export function parseCommandLine<O extends Options>(command: string, args: string[], options: O, allowPositionals: boolean) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message, command);
  }
}

export function wantsHelp(args: string[]): boolean {
  return args.includes('--help') || args.includes('-h');
}

/** The data folder: --data, else CAIRN_DATA, else ./data (absolute). */
export function dataDirOption(data: string | undefined): string {
  return path.resolve(data ?? process.env.CAIRN_DATA ?? './data');
}
