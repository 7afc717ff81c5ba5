import type { Command } from '../command';

/**
 * One entry of the dispatch table: the name and summary `cairn --help` lists,
 * and how to load the command. A command's module (and everything it imports:
 * the server, the delta compiler, …) is required only when that command runs
 * or prints its help, so `cairn push` does not pay for loading `serve`.
 * The summary must be the command's own (test/unit/cli-lazy.test.ts checks).
 */
export interface CommandEntry {
  name: string;
  summary: string;
  load(): Command;
}

/** The dispatch table: to add a command, write cli/commands/NAME.ts and list it here. */
export const COMMANDS: readonly CommandEntry[] = [
  {
    name: 'serve',
    summary: 'serve the repositories of a data folder over HTTP',
    load: () => (require('./serve') as typeof import('./serve')).serve,
  },
  {
    name: 'init-repo',
    summary: 'create a new empty repository in the data folder',
    load: () => (require('./initRepo') as typeof import('./initRepo')).initRepo,
  },
  {
    name: 'commit',
    summary: 'commit a folder into a repository and move a ref to it',
    load: () => (require('./commit') as typeof import('./commit')).commit,
  },
  {
    name: 'token',
    summary: 'issue an access token for publishing or reading',
    load: () => (require('./token') as typeof import('./token')).token,
  },
  {
    name: 'push',
    summary: 'upload a commit to a Cairn server and move a ref to it',
    load: () => (require('./push') as typeof import('./push')).pushCommand,
  },
  {
    name: 'delta',
    summary: 'generate, list, show and prune static deltas',
    load: () => (require('./delta') as typeof import('./delta')).delta,
  },
  {
    name: 'adopt',
    summary: 'let Cairn publish into a repository it did not create',
    load: () => (require('./adopt') as typeof import('./adopt')).adopt,
  },
  {
    name: 'prune',
    summary: 'cut the history of refs, keeping the last N commits and/or the younger ones',
    load: () => (require('./prune') as typeof import('./prune')).pruneCommand,
  },
  {
    name: 'gc',
    summary: 'delete unreachable objects of a repository, safe while publishing',
    load: () => (require('./gc') as typeof import('./gc')).gcCommand,
  },
  {
    name: 'fsck',
    summary: 'verify every object and ref closure; --repair quarantines corrupt objects',
    load: () => (require('./fsck') as typeof import('./fsck')).fsckCommand,
  },
];
