#!/usr/bin/env node
'use strict';
// The compiled CLI lives in dist/ (built by `npm ci` via `prepare`, or `npm run build`).
let cli;
try {
  cli = require('../dist/cli/main.js');
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).includes('dist/cli/main.js')) {
    process.stderr.write('cairn: dist/ is missing; run `npm ci` or `npm run build` first\n');
    process.exit(1);
  }
  throw e;
}
cli.run();
