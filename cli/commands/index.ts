import type { Command } from '../command';
import { adopt } from './adopt';
import { commit } from './commit';
import { delta } from './delta';
import { initRepo } from './initRepo';
import { pushCommand } from './push';
import { serve } from './serve';
import { token } from './token';

/** The dispatch table: to add a command, write cli/commands/NAME.ts and list it here. */
export const COMMANDS: readonly Command[] = [
  serve,
  initRepo,
  commit,
  token,
  pushCommand,
  delta,
  adopt,
];
