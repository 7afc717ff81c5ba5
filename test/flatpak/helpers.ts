// Shared by the test/flatpak end-to-end tests: Debian's flatpak 1.14 with a private HOME per
// "user", a tiny runtime (static busybox) and an app built with plain `flatpak build-*` commands.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { parse, type Variant, type VarDict } from '../../storage/gvariant';
import { OBJECT_GVARIANT_TYPE } from '../../storage/objects/types';

export const ARCH = 'x86_64';
export const RUNTIME = 'org.cairn.Platform';
export const APP = 'org.cairn.Hello';
/** A 1×1 PNG. */
export const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

/** The path of `bin`, or a failure saying how to install it (these tests never skip). */
export function need(bin: string): string {
  const r = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${bin} is not installed: run scripts/install-test-deps.sh (apt-get install flatpak busybox-static)`);
  return r.stdout.trim();
}

/** flatpak as a user with its own HOME and XDG folders (nothing leaks between tests or into the machine's). */
export function flatpak(home: string, args: string[], opts: { ok?: boolean } = {}): { code: number; out: string; err: string } {
  fs.mkdirSync(home, { recursive: true });
  const r = spawnSync('flatpak', args, {
    encoding: 'utf8',
    env: { ...process.env, HOME: home, XDG_DATA_HOME: path.join(home, 'data'), XDG_CACHE_HOME: path.join(home, 'cache'), XDG_CONFIG_HOME: path.join(home, 'config'), LC_ALL: 'C.UTF-8' },
    timeout: 180_000,
  });
  const res = { code: r.status ?? -1, out: r.stdout ?? '', err: r.stderr ?? '' };
  if (opts.ok !== false) assert.equal(res.code, 0, `flatpak ${args.join(' ')}\n${res.out}\n${res.err}`);
  return res;
}

/** A build setup: a local build repository and a builder "user" with the runtime installed from it. */
export class Builder {
  readonly home: string;
  readonly repo: string;
  constructor(readonly work: string) {
    this.home = path.join(work, 'builder');
    this.repo = path.join(work, 'build-repo');
  }

  /** The runtime (busybox and sh, no SDK), exported and installed for the builder. */
  runtime(): void {
    need('flatpak');
    const busybox = need('busybox');
    const rt = path.join(this.work, 'runtime');
    fs.mkdirSync(path.join(rt, 'files', 'bin'), { recursive: true });
    fs.copyFileSync(fs.realpathSync(busybox), path.join(rt, 'files', 'bin', 'busybox'));
    fs.chmodSync(path.join(rt, 'files', 'bin', 'busybox'), 0o755);
    fs.symlinkSync('busybox', path.join(rt, 'files', 'bin', 'sh'));
    fs.writeFileSync(path.join(rt, 'metadata'), `[Runtime]\nname=${RUNTIME}\nruntime=${RUNTIME}/${ARCH}/stable\nsdk=${RUNTIME}/${ARCH}/stable\n`);
    flatpak(this.home, ['build-export', '--no-update-summary', '--runtime', '--files=files', this.repo, rt, 'stable']);
    // build-init needs the runtime installed: from the build repository itself.
    execFileSync('ostree', ['summary', '-u', `--repo=${this.repo}`]);
    flatpak(this.home, ['remote-add', '--user', '--no-gpg-verify', 'local', `file://${this.repo}`]);
    flatpak(this.home, ['install', '--user', '-y', '--noninteractive', 'local', `runtime/${RUNTIME}/${ARCH}/stable`]);
  }

  /** The app at `version`: `hello` prints "hello from VERSION"; appstream data as flatpak-builder composes it, with an icon. */
  app(version: string, opts: { metainfoOnly?: boolean } = {}): void {
    const appDir = path.join(this.work, `app-${version}`);
    flatpak(this.home, ['build-init', appDir, APP, RUNTIME, RUNTIME, 'stable']);
    fs.mkdirSync(path.join(appDir, 'files', 'bin'), { recursive: true });
    fs.writeFileSync(path.join(appDir, 'files', 'bin', 'hello'), `#!/bin/sh\necho "hello from ${version}"\n`, { mode: 0o755 });
    const component = `<component type="desktop-application">\n    <id>${APP}</id>\n    <name>Hello</name>\n    <summary>Greets cheerfully from a Cairn repository</summary>\n    <metadata_license>CC0-1.0</metadata_license>\n    <project_license>MIT</project_license>\n    <launchable type="desktop-id">${APP}.desktop</launchable>\n    <releases><release version="${version}" timestamp="1700000000"/></releases>\n  </component>`;
    if (opts.metainfoOnly) {
      fs.mkdirSync(path.join(appDir, 'files', 'share', 'metainfo'), { recursive: true });
      fs.writeFileSync(path.join(appDir, 'files', 'share', 'metainfo', `${APP}.metainfo.xml`), `<?xml version="1.0" encoding="UTF-8"?>\n${component}\n`);
      fs.mkdirSync(path.join(appDir, 'files', 'share', 'icons', 'hicolor', '64x64', 'apps'), { recursive: true });
      fs.writeFileSync(path.join(appDir, 'files', 'share', 'icons', 'hicolor', '64x64', 'apps', `${APP}.png`), PNG);
    } else {
      const info = path.join(appDir, 'files', 'share', 'app-info');
      fs.mkdirSync(path.join(info, 'xmls'), { recursive: true });
      fs.mkdirSync(path.join(info, 'icons', 'flatpak', '64x64'), { recursive: true });
      fs.writeFileSync(path.join(info, 'xmls', `${APP}.xml.gz`), gzipSync(`<?xml version="1.0" encoding="UTF-8"?>\n<components version="0.8" origin="flatpak">\n  ${component}\n</components>\n`));
      fs.writeFileSync(path.join(info, 'icons', 'flatpak', '64x64', `${APP}.png`), PNG);
    }
    flatpak(this.home, ['build-finish', '--command=hello', appDir]);
    flatpak(this.home, ['build-export', '--no-update-summary', this.repo, appDir, 'stable']);
  }
}

/** A summary's metadata as a map. */
export function summaryMeta(bytes: Buffer): Map<string, Variant> {
  const [, md] = parse(OBJECT_GVARIANT_TYPE.summary, bytes) as [unknown, VarDict];
  return new Map(md);
}

export function revParse(repo: string, ref: string): string {
  return execFileSync('ostree', ['rev-parse', `--repo=${repo}`, ref], { encoding: 'utf8' }).trim();
}
