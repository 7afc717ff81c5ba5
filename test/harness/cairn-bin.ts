// `cairn` of the build this test file belongs to (bin/cairn.js always loads dist/; a build into
// another folder tests its own CLI through this): node cairn-bin.js COMMAND [options].
// `node --test dist/test/` runs every file under test/ as a test file, this one too, without
// arguments: then there is nothing to run (the CLI would print its usage and exit 2).
// eslint-disable-next-line @typescript-eslint/no-require-imports
if (process.argv.length > 2) (require('../../cli/main') as typeof import('../../cli/main')).run();
