import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Request, Response } from 'express';
import { LRUCache } from 'lru-cache';
import {
  commitDetail,
  diffCommits,
  listDirectory,
  listRefDetails,
  openFile,
  refHistory,
  repoStats,
  verifyKeysOf,
  DEFAULT_HISTORY_LIMIT,
  DEFAULT_TREE_PAGE,
  MAX_HISTORY_LIMIT,
  MAX_TREE_PAGE,
  type RepoStats,
  type TreeEntry,
  type VerifyKeys,
} from '../../storage/browse';
import { CairnError, isCairnError } from '../../storage/errors';
import type { Repo } from '../../storage/repo/repo';
import { loadRepoKeys } from '../../storage/signing/keys';
import type { ServerContext } from '../context';
import { commitSizes } from './sizes';
import { reply, route, type AnyRoute } from './route';
import {
  checksum,
  commitPath,
  pageOf,
  ref,
  refName,
  type Branch,
  type BranchesAnswer,
  type CommitAnswer,
  type HistoryAnswer,
  type TreeAnswer,
  type TreeItem,
} from './schema';

/**
 * Read views for operators (issue #10 item 2), over storage/browse: storage
 * statistics, refs with their commits' details, a ref's history, a commit's
 * detail (signatures checked with the repository's keys; sizes computed in
 * the background: server/api/sizes.ts), a commit's tree one directory page
 * at a time, one file's bytes (streamed, never rendered on Cairn's origin),
 * and the diff of two commits. Every answer is bounded by its query schema
 * and storage's own bounds.
 *
 * Caching: a commit never changes, so its tree pages, files and diffs carry
 * an ETag and `Cache-Control: private, max-age=…, immutable` — `private`
 * always (a shared cache must never keep them: a repository may become
 * private), and for a private repository `private, no-cache`, so every use
 * asks again and passes the token check (a 304 comes only after it). The
 * commit detail also shows deltas and signatures, which can change: it is
 * revalidated every time (`no-cache` and an ETag of its content), and not
 * cached at all while its sizes are pending.
 */

const COMMITS = '/api/repos/:repo/commits/:commit';
const commitParams = { type: 'object', required: ['commit'], additionalProperties: false, properties: { commit: checksum } } as const;

/** Bump when an answer's shape changes: ETags of immutable answers are derived from their request, not their bytes. */
const SHAPE_VERSION = '1';
const IMMUTABLE_MAX_AGE = 24 * 3600;

/** Sets the caching headers of an answer that never changes; true when the client's copy is current (answer 304). */
function immutable(req: Request, res: Response, etag: string): boolean {
  res.setHeader('ETag', etag);
  res.setHeader('Cache-Control', res.locals.privateRepo === true ? 'private, no-cache' : `private, max-age=${IMMUTABLE_MAX_AGE}, immutable`);
  return fresh(req, etag);
}

/** Whether If-None-Match names `etag` (weak comparison, as RFC 9110 asks for If-None-Match). */
function fresh(req: Request, etag: string): boolean {
  const h = req.headers['if-none-match'];
  // `*` is not honoured: it would answer 304 for a commit that does not exist (the answer is computed, or 404s).
  if (typeof h !== 'string' || h.length > 8192) return false;
  const bare = etag.replace(/^W\//, '');
  return h.split(',').some((t) => t.trim().replace(/^W\//, '') === bare);
}

function requestTag(...parts: Array<string | number | boolean | undefined>): string {
  const h = createHash('sha256').update(SHAPE_VERSION);
  for (const p of parts) h.update('\0' + String(p ?? ''));
  return `"${h.digest('hex').slice(0, 40)}"`;
}

// ---- the repository's verification keys ----

const keyMemo = new LRUCache<string, Promise<VerifyKeys>>({ max: 256, ttl: 60_000 });

/**
 * The keys a repository's commits are checked with: its own key pair
 * (DATA/keys/NAME/), never generated here; none (signatures reported as not
 * checked, `valid: null`) when it has none.
 */
function verifyKeysFor(ctx: ServerContext, repo: Repo): Promise<VerifyKeys> {
  const k = `${ctx.dataDir}\0${repo.name}`;
  let p = keyMemo.get(k);
  if (!p) {
    p = loadRepoKeys(ctx.dataDir, repo.name).then(verifyKeysOf, (e: unknown) => {
      if (isCairnError(e, 'NOT_FOUND')) return {};
      keyMemo.delete(k);
      throw e;
    });
    keyMemo.set(k, p);
  }
  return p;
}

// ---- storage statistics: a listing of the repository, cached for a minute ----

const STATS_TTL_MS = 60_000;
const statsMemo = new LRUCache<string, Promise<RepoStats>>({ max: 256, ttl: STATS_TTL_MS });

function cachedStats(repo: Repo): Promise<RepoStats> {
  const k = repo.backend.location;
  let p = statsMemo.get(k);
  if (!p) {
    p = repoStats(repo);
    p.catch(() => statsMemo.delete(k));
    statsMemo.set(k, p);
  }
  return p;
}

function treeItem(e: TreeEntry): TreeItem {
  return {
    name: e.name,
    path: e.path,
    kind: e.kind,
    mode: e.mode,
    permissions: e.permissions,
    uid: e.uid,
    gid: e.gid,
    size: e.size,
    archivedSize: e.archivedSize,
    target: e.symlinkTarget,
    xattrs: e.xattrs,
    ...(e.xattrsTruncated ? { xattrsTruncated: true } : {}),
    checksum: e.checksum,
    metaChecksum: e.metaChecksum,
  };
}

/** `/usr/bin/` is taken as `/usr/bin`. */
function normalPath(p: string | undefined): string {
  if (!p) return '/';
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

// ---- file downloads ----

/** Largest file `inline=1` shows as text. */
export const MAX_INLINE_BYTES = 1024 * 1024;

/** `attachment; filename="x"; filename*=UTF-8''…`: an ASCII stand-in and the exact name (RFC 6266, 8187). */
function contentDisposition(kind: 'attachment' | 'inline', name: string): string {
  const ascii = name.replace(/[^A-Za-z0-9._+-]/g, '_').slice(0, 200) || 'file';
  const exact = encodeURIComponent(name).replace(/['()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${exact}`;
}

/** Headers every file answer carries: never sniffed, never rendered as a page of Cairn's origin. */
function safeFileHeaders(res: Response): void {
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Content-Security-Policy', "sandbox; default-src 'none'");
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
}

/**
 * Writes `stream` to `res` with backpressure, holding back the last chunk
 * until the stream has ended cleanly: the storage stream checks the content
 * checksum at its end, so a corrupt object ends with a body one chunk short
 * of its Content-Length (the client sees a failed download, never bad bytes
 * presented as complete). A client that goes away stops the read.
 */
async function sendHeld(stream: Readable, res: Response): Promise<void> {
  const gone = () => stream.destroy();
  res.once('close', gone);
  let held: Buffer | null = null;
  try {
    for await (const chunk of stream) {
      if (res.destroyed) return;
      if (held && !res.write(held)) await drained(res);
      held = chunk as Buffer;
    }
    if (!res.destroyed) res.end(held ?? undefined);
  } catch (e) {
    res.destroy(e instanceof Error ? e : new Error(String(e)));
  } finally {
    res.off('close', gone);
    stream.destroy();
  }
}

/** Resolves when `res` can take more, or is gone (its listeners removed either way). */
function drained(res: Response): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

async function readAll(stream: Readable, max: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of stream) {
    n += (c as Buffer).length;
    if (n > max) {
      stream.destroy();
      throw new CairnError('TOO_LARGE', 'file too large to show inline');
    }
    parts.push(c as Buffer);
  }
  return Buffer.concat(parts);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export const browseRoutes: AnyRoute[] = [
  route({
    method: 'get',
    path: '/api/repos/:repo/stats',
    label: 'api_repo_stats',
    summary: 'Storage statistics: objects and bytes by type, refs, static deltas (cached for a minute)',
    access: { repo: 'read' },
    responses: { 200: { description: 'statistics', schema: ref('RepoStats') } },
    async handler({ repo }) {
      return cachedStats(repo);
    },
  }),
  route<Record<string, never>, { cursor?: string; limit: number; prefix?: string }>({
    method: 'get',
    path: '/api/repos/:repo/branches',
    label: 'api_branches',
    summary: "Refs, by name, each with its commit's subject, version, date, signature presence and sizes",
    description:
      "Sizes are those of the commit's closure; when not known yet they are null with `sizesPending: true` and computed in the background (ask again).",
    access: { repo: 'read' },
    query: {
      type: 'object',
      additionalProperties: false,
      properties: {
        cursor: { ...refName, description: 'the `next` of the previous page (refs after this name)' },
        limit: { type: 'integer', minimum: 1, maximum: 200, default: 100 },
        prefix: { type: 'string', maxLength: 1024, description: 'only refs starting with this' },
      },
    },
    responses: { 200: { description: 'a page of refs', schema: pageOf(ref('Branch'), { total: { type: 'integer', minimum: 0 } }, ['total']) } },
    async handler({ env, repo, query }): Promise<BranchesAnswer> {
      const page = await listRefDetails(repo, { after: query.cursor ?? null, limit: query.limit, prefix: query.prefix });
      const items = page.refs.map((r): Branch => {
        const s = r.summary;
        return {
          ref: r.ref,
          commit: r.commit,
          subject: s?.subject ?? null,
          version: s?.version ?? null,
          timestamp: s?.timestamp ?? null,
          date: s?.date ?? null,
          signed: r.signed,
          signatureTypes: r.signatureTypes,
          ...(s ? commitSizes(repo, r.commit, env.logger) : { objects: null, archivedBytes: null, unpackedBytes: null, sizesPending: false, sizesIncomplete: true }),
        };
      });
      return { items, next: page.next, total: page.total };
    },
  }),
  route<Record<string, never>, { ref: string; cursor?: string; limit: number }>({
    method: 'get',
    path: '/api/repos/:repo/history',
    label: 'api_history',
    summary: "A ref's history following parents, newest first, one page at a time",
    description: 'A page costs `limit` commit reads whatever the history\'s length. `end` says why the history ends on this page: "root" (no parent) or "missing" (the parent is not in the repository: a shallow copy, or pruned; `tombstone` when ostree left one).',
    access: { repo: 'read' },
    query: {
      type: 'object',
      required: ['ref'],
      additionalProperties: false,
      properties: {
        ref: refName,
        cursor: { ...checksum, description: 'the `next` of the previous page (the next commit to show)' },
        limit: { type: 'integer', minimum: 1, maximum: MAX_HISTORY_LIMIT, default: DEFAULT_HISTORY_LIMIT },
      },
    },
    responses: {
      200: {
        description: 'a page of the history',
        schema: pageOf(ref('HistoryEntry'), { ref: refName, head: checksum, end: { enum: ['root', 'missing', null] }, missing: checksum, tombstone: { type: 'boolean' } }, ['ref', 'head', 'end']),
      },
    },
    async handler({ repo, query }): Promise<HistoryAnswer> {
      const page = await refHistory(repo, query.ref, { cursor: query.cursor ?? null, limit: query.limit });
      const out: HistoryAnswer = {
        ref: page.ref,
        head: page.head,
        items: page.entries.map((e) => ({ commit: e.checksum, parent: e.parent, subject: e.subject, version: e.version, timestamp: e.timestamp, date: e.date, signed: e.signed })),
        next: page.next,
        end: page.end?.reason ?? null,
      };
      if (page.end?.reason === 'missing') {
        out.missing = page.end.commit;
        out.tombstone = page.end.tombstone;
      }
      return out;
    },
  }),
  route<{ commit: string }>({
    method: 'get',
    path: COMMITS,
    label: 'api_commit',
    summary: "A commit's detail: fields, metadata, signatures checked with the repository's keys, sizes, deltas to and from it",
    description:
      "Sizes (objects, archived and unpacked bytes of the closure) are computed in the background the first time: until then they are null and `sizesPending` is true. Signatures are checked with the repository's own keys; `valid: null` when it has no key of that kind.",
    access: { repo: 'read' },
    params: commitParams,
    responses: { 200: { description: 'the commit', schema: ref('CommitDetail') }, 304: { description: 'the copy named by If-None-Match is current' } },
    async handler({ ctx, env, req, res, repo, params }) {
      const d = await commitDetail(repo, params.commit, { keys: await verifyKeysFor(ctx, repo), closure: 'cached' });
      const sizes = commitSizes(repo, params.commit, env.logger);
      const sig = d.signatures;
      const body: CommitAnswer = {
        commit: d.checksum,
        parent: d.parent,
        parentPresent: d.parentPresent,
        subject: d.subject,
        body: d.body,
        textTruncated: d.textTruncated,
        version: d.version,
        timestamp: d.timestamp,
        date: d.date,
        rootTree: d.rootTree,
        rootMeta: d.rootMeta,
        contentChecksum: d.contentChecksum,
        metadata: d.metadata,
        metadataTruncated: d.metadataTruncated,
        commitBytes: d.commitBytes,
        signed: sig.signatures.length > 0,
        verified: sig.verified,
        signatures: sig.signatures.map((s) => ({
          kind: s.type,
          index: s.index,
          keyId: s.keyIds[0] ?? null,
          keyIds: s.keyIds,
          valid: s.valid,
          validKeys: s.validKeys,
          bytes: s.bytes,
          ...(s.error !== undefined ? { error: s.error } : {}),
        })),
        detachedMetadata: sig.otherMetadata,
        ...sizes,
        deltas: d.deltas,
      };
      if (sizes.sizesPending) return reply(200, body, { 'Cache-Control': 'no-store' });
      const etag = `"${createHash('sha256').update(JSON.stringify(body)).digest('hex').slice(0, 40)}"`;
      res.setHeader('ETag', etag);
      res.setHeader('Cache-Control', 'private, no-cache');
      if (fresh(req, etag)) return reply(304);
      return body;
    },
  }),
  route<{ commit: string }, { path?: string; cursor?: string; limit: number }>({
    method: 'get',
    path: `${COMMITS}/tree`,
    label: 'api_commit_tree',
    summary: "One directory of a commit's tree, a page at a time (files, then directories, in ostree ls order)",
    access: { repo: 'read' },
    params: commitParams,
    query: {
      type: 'object',
      additionalProperties: false,
      properties: {
        path: { ...commitPath, default: '/' },
        cursor: { type: 'string', pattern: '^[0-9]{1,9}$', description: 'the `next` of the previous page' },
        limit: { type: 'integer', minimum: 1, maximum: MAX_TREE_PAGE, default: DEFAULT_TREE_PAGE },
      },
    },
    responses: {
      200: {
        description: 'a page of the directory',
        schema: pageOf(ref('TreeEntry'), { commit: checksum, path: { type: 'string' }, dir: ref('TreeEntry'), total: { type: 'integer', minimum: 0 } }, ['commit', 'path', 'dir', 'total']),
      },
      304: { description: 'the copy named by If-None-Match is current' },
    },
    async handler({ req, res, repo, params, query }): Promise<TreeAnswer | ReturnType<typeof reply>> {
      const path = normalPath(query.path);
      if (immutable(req, res, requestTag('tree', params.commit, path, query.cursor, query.limit))) return reply(304);
      const page = await listDirectory(repo, params.commit, path, { cursor: query.cursor ?? null, limit: query.limit });
      return { commit: page.commit, path: page.dir.path, dir: treeItem(page.dir), items: page.entries.map(treeItem), next: page.next, total: page.total };
    },
  }),
  route<{ commit: string }, { path: string; inline: 0 | 1 }>({
    method: 'get',
    path: `${COMMITS}/file`,
    label: 'api_commit_file',
    summary: "One file's bytes, as a download (application/octet-stream, attachment, nosniff, sandboxed)",
    description: `Streamed, and checked against the content checksum as it is sent (a corrupt object ends the answer short of its Content-Length). \`inline=1\` answers text/plain; charset=utf-8 for valid UTF-8 text without NUL bytes of at most ${MAX_INLINE_BYTES} bytes, 400 for anything else. Directories and symlinks are refused (400; a symlink's target is in error.details).`,
    access: { repo: 'read' },
    params: commitParams,
    query: {
      type: 'object',
      required: ['path'],
      additionalProperties: false,
      properties: { path: commitPath, inline: { type: 'integer', enum: [0, 1], default: 0, description: '1: show small text as text/plain' } },
    },
    responses: {
      200: { description: "the file's bytes", contentType: 'application/octet-stream', schema: { type: 'string', format: 'binary' } },
      304: { description: 'the copy named by If-None-Match is current' },
    },
    async handler({ req, res, repo, params, query }) {
      const path = normalPath(query.path);
      const opened = await openFile(repo, params.commit, path);
      const { entry, stream } = opened;
      safeFileHeaders(res);
      // The content checksum covers bytes, mode, owner and xattrs: the same file under the same tag.
      if (immutable(req, res, `"${entry.checksum}${query.inline === 1 ? '-inline' : ''}"`)) {
        stream.destroy();
        return reply(304);
      }
      if (query.inline === 1) {
        let text: string | null = null;
        if (entry.size <= MAX_INLINE_BYTES) {
          const bytes = await readAll(stream, MAX_INLINE_BYTES);
          if (!bytes.includes(0)) {
            try {
              text = utf8.decode(bytes);
            } catch {
              text = null;
            }
          }
        } else stream.destroy();
        if (text === null) {
          throw new CairnError('INVALID_ARGUMENT', `${entry.path} is not text of at most ${MAX_INLINE_BYTES} bytes: download it without inline=1`, {
            path: entry.path,
            size: entry.size,
            reason: entry.size > MAX_INLINE_BYTES ? 'too-large' : 'binary',
          });
        }
        res.setHeader('Content-Type', 'text/plain; charset=utf-8');
        res.setHeader('Content-Disposition', contentDisposition('inline', entry.name));
        res.status(200).send(text);
        return undefined;
      }
      res.setHeader('Content-Type', 'application/octet-stream');
      res.setHeader('Content-Disposition', contentDisposition('attachment', entry.name));
      res.setHeader('Content-Length', String(entry.size));
      res.status(200);
      if (req.method === 'HEAD') {
        stream.destroy();
        res.end();
        return undefined;
      }
      await sendHeld(stream, res);
      return undefined;
    },
  }),
  route<Record<string, never>, { from: string; to: string; text: 0 | 1; texts: number; limit: number }>({
    method: 'get',
    path: '/api/repos/:repo/diff',
    label: 'api_diff',
    summary: 'The difference between two commits, as `ostree diff` reports it, with sizes, modes, owners, xattrs and optional unified text diffs',
    description:
      'Subtrees the two commits share are not entered. At most `limit` entries in all, and a bound on large file headers (xattrs) decoded (`truncated` then). With `text=1`, the first `texts` modified regular files carry a unified diff when both sides are small UTF-8 text.',
    access: { repo: 'read' },
    query: {
      type: 'object',
      required: ['from', 'to'],
      additionalProperties: false,
      properties: {
        from: checksum,
        to: checksum,
        text: { type: 'integer', enum: [0, 1], default: 0, description: '1: unified diffs of small text files' },
        texts: { type: 'integer', minimum: 1, maximum: 100, default: 20, description: 'modified files given a text diff, at most' },
        limit: { type: 'integer', minimum: 1, maximum: 100_000, default: 10_000, description: 'entries of the three lists together, at most' },
      },
    },
    responses: { 200: { description: 'the diff', schema: ref('Diff') }, 304: { description: 'the copy named by If-None-Match is current' } },
    async handler({ req, res, repo, query }) {
      if (immutable(req, res, requestTag('diff', query.from, query.to, query.text, query.texts, query.limit))) return reply(304);
      const d = await diffCommits(repo, query.from, query.to, { maxEntries: query.limit, textDiffs: query.text === 1 ? query.texts : 0 });
      // A text diff cut by the time budget depends on the moment (load), not on the commits: not cached.
      if (d.modified.some((m) => m.text?.status === 'too-complex')) {
        res.removeHeader('ETag');
        res.setHeader('Cache-Control', 'no-store');
      }
      const side = (s: (typeof d.modified)[number]['old']) => ({ kind: s.kind, size: s.size, checksum: s.checksum, treeChecksum: s.treeChecksum, mode: s.mode, uid: s.uid, gid: s.gid, target: s.symlinkTarget });
      return {
        from: d.from,
        to: d.to,
        added: d.added,
        removed: d.removed,
        modified: d.modified.map((m) => ({
          path: m.path,
          old: side(m.old),
          new: side(m.new),
          kindChanged: m.kindChanged,
          sizeChanged: m.sizeChanged,
          modeChanged: m.modeChanged,
          ownerChanged: m.ownerChanged,
          targetChanged: m.targetChanged,
          xattrChanges: m.xattrChanges,
          ...(m.text ? { textDiff: m.text } : {}),
        })),
        truncated: d.truncated,
      };
    },
  }),
];
