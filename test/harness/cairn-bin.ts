// `cairn` of the build this test file belongs to (bin/cairn.js always loads dist/; a build into
// another folder tests its own CLI through this): node cairn-bin.js COMMAND [options].
// eslint-disable-next-line @typescript-eslint/no-require-imports
(require('../../cli/main') as typeof import('../../cli/main')).run();
