import { isCairnError } from '../storage/errors';
import { UsageError, wantsHelp } from './command';
import { COMMANDS, type CommandEntry } from './commands';

/**
 * `cairn COMMAND [options]`. Exit status: 0 ok, 1 failure, 2 bad usage.
 * Errors are one line on stderr (`cairn: …`), never a stack trace, unless
 * CAIRN_DEBUG is set.
 */

function find(name: string): CommandEntry | undefined {
  return COMMANDS.find((c) => c.name === name);
}

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return `Usage: cairn COMMAND [options]\n\nCommands:\n${lines.join('\n')}\n\nRun 'cairn COMMAND --help' for a command's options.`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const cmd = name === 'help' && args[0] ? find(args[0]) : undefined;
    if (name === 'help' && args[0] && !cmd) return usageError(new UsageError(`unknown command "${args[0]}"`));
    process.stdout.write((cmd ? cmd.load().usage : overview()) + '\n');
    return name === undefined ? 2 : 0;
  }
  const entry = find(name);
  if (!entry) return usageError(new UsageError(name.startsWith('-') ? `unknown option "${name}"` : `unknown command "${name}"`));
  // Only now is the command's module (and what it imports) loaded.
  const cmd = entry.load();
  if (wantsHelp(args)) {
    process.stdout.write(cmd.usage + '\n');
    return 0;
  }
  try {
    return await cmd.run(args);
  } catch (e) {
    if (e instanceof UsageError) return usageError(e);
    const msg = isCairnError(e) ? e.message : e instanceof Error ? e.message : String(e);
    process.stderr.write(`cairn ${cmd.name}: ${msg}\n`);
    if (process.env.CAIRN_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
}

function usageError(e: UsageError): number {
  const hint = e.command ? `cairn ${e.command} --help` : 'cairn --help';
  process.stderr.write(`cairn${e.command ? ' ' + e.command : ''}: ${e.message}\nRun '${hint}' for usage.\n`);
  return 2;
}

/** Entry point used by bin/cairn.js. */
export function run(): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`cairn: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
