// Debian's Chromium driven by playwright-core (no browser download): the web UI's
// browser tests and bench:ui launch it through here. A missing /usr/bin/chromium
// fails loudly with how to install it; it is never a reason to skip.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { projectRoot } from '../helpers/cairn-process';

export const CHROMIUM = process.env.CAIRN_CHROMIUM ?? '/usr/bin/chromium';

export async function launchChromium(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the web UI's browser tests need Debian's Chromium (apt-get install -y chromium, as scripts/install-test-deps.sh does)`);
  }
  // We run as root in CI: Chromium's sandbox needs an unprivileged user.
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
}

/** test-output/ui/ under the project root (gitignored), for screenshots. */
export function outputDir(): string {
  const d = path.join(projectRoot(), 'test-output', 'ui');
  fs.mkdirSync(d, { recursive: true });
  return d;
}

/**
 * What must never happen on a page: a script error, an alert or other dialog
 * (what injected markup would open), a Content-Security-Policy violation.
 * Collected from the moment of the call; `check()` throws if any happened.
 */
export function watchPage(page: Page): { problems: string[]; check(): void } {
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('dialog', (d) => {
    problems.push(`dialog (${d.type()}): ${d.message()}`);
    void d.dismiss();
  });
  // API answers of 4xx are logged by the browser too: only policy violations count here.
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) problems.push(`console error: ${m.text()}`);
  });
  return {
    problems,
    check() {
      if (problems.length) throw new Error(`the page misbehaved:\n${problems.join('\n')}`);
    },
  };
}

/** Waits until the UI has drawn its page (main[data-ready]) and returns its state ('ready' or 'error'). */
export async function pageDrawn(page: Page, timeout = 30_000): Promise<string> {
  await page.waitForSelector('main[data-ready="true"]', { timeout });
  return (await page.getAttribute('main', 'data-state')) ?? '';
}
