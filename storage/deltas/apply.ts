/**
 * Applying a static delta to an archive repository (the *processing* side,
 * kept apart from compilation as in libostree).
 *
 * The delta is untrusted: every opcode argument is bounds-checked against the
 * part's blob, tables and object list; every object produced is hashed and
 * compared with the superblock's object list before it is written; fallbacks
 * are verified like uploads; the commit (from the superblock) is written last,
 * after its whole tree is known to be present, so a failed apply never leaves
 * a commit that looks complete.
 */
import { CairnError } from '../errors';
import { checksumFromBytes, sha256Hex } from '../objects/checksum';
import { contentChecksumOf, isSymlink, validateFileHeader, type FileHeader } from '../objects/content';
import { S_IFMT, S_IFREG } from '../objects/dirmeta';
import { ObjectType } from '../objects/types';
import { decodeXattrs } from '../objects/xattrs';
import { walkCommitTree } from '../repo/closure';
import { ingestObject } from '../repo/ingest';
import type { Repo } from '../repo/repo';
import { bspatch } from './bsdiff';
import { DeltaOp, readVarint, superblockCommitmeta, type DeltaObjectRef, type PartPayload } from './format';
import { readContentObject } from './objects-io';
import { loadPart, openDelta, type DeltaSource, type OpenOptions, type OpenedDelta } from './read';

/** Supplies a fallback object's loose bytes (`.filez` for content), e.g. fetched from the origin. */
export type FallbackFetcher = (obj: DeltaObjectRef) => Promise<AsyncIterable<Buffer | Uint8Array>> | AsyncIterable<Buffer | Uint8Array>;

export interface ApplyOptions extends OpenOptions {
  /** Required when the delta lists fallbacks the repository does not already hold. */
  fetchFallback?: FallbackFetcher;
  /** Write the superblock's detached metadata as the commit's .commitmeta (default true). */
  writeCommitmeta?: boolean;
}

export interface ApplyResult {
  commit: string;
  digest: string;
  parts: number;
  /** Objects the parts produced (including ones already present). */
  objects: number;
  /** Objects actually written (not already present). */
  written: number;
  fallbacksFetched: number;
  /** Metadata plus regular-file bytes produced, to compare with the headers' usize. */
  producedBytes: number;
}

function invalid(part: number, why: string): never {
  throw new CairnError('INVALID_OBJECT', `static delta part ${part}: ${why}`, { part });
}

async function* once(b: Buffer): AsyncIterable<Buffer> {
  yield b;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Applies the delta read from `source` to `repo`; returns the commit it brought in. */
export async function applyDelta(repo: Repo, source: DeltaSource, opts: ApplyOptions = {}): Promise<ApplyResult> {
  const d = await openDelta(source, opts);
  const sb = d.superblock;
  if (sb.from && !(await repo.hasObject(sb.from, ObjectType.Commit))) {
    throw new CairnError('MISSING_OBJECTS', `static delta from ${sb.from}: that commit is not in the repository`, { commit: sb.from });
  }
  const result: ApplyResult = { commit: sb.to, digest: d.digest, parts: sb.parts.length, objects: 0, written: 0, fallbacksFetched: 0, producedBytes: 0 };

  for (let i = 0; i < sb.parts.length; i++) {
    const payload = await loadPart(d, i);
    const r = await executePart(repo, d, i, payload);
    result.objects += r.objects;
    result.written += r.written;
    result.producedBytes += r.produced;
  }

  for (const fb of sb.fallbacks) {
    if (await repo.hasObject(fb.checksum, fb.type)) continue;
    if (!opts.fetchFallback) {
      throw new CairnError('MISSING_OBJECTS', `static delta needs fallback object ${fb.checksum} and no fetcher was given`, { object: fb.checksum });
    }
    // ingestObject verifies metadata by hash and .filez by inflating and hashing.
    await ingestObject(repo, fb.checksum, fb.type, await opts.fetchFallback({ type: fb.type, checksum: fb.checksum }));
    result.fallbacksFetched++;
  }

  const meta = opts.writeCommitmeta === false ? null : superblockCommitmeta(sb);
  // The commit's tree must be complete before the commit itself lands.
  const commitSum = sha256Hex(sb.commit);
  if (commitSum !== sb.to) throw new CairnError('CHECKSUM_MISMATCH', `static delta commit hashes to ${commitSum}, not ${sb.to}`);
  const hadCommit = await repo.hasObject(sb.to, ObjectType.Commit);
  await repo.writeMetadata(ObjectType.Commit, sb.commit, sb.to);
  const walk = await walkCommitTree(repo, sb.to);
  if (walk.missing.length > 0) {
    // Undo the commit we just wrote: it must not look complete.
    if (!hadCommit) await repo.backend.remove(`objects/${sb.to.slice(0, 2)}/${sb.to.slice(2)}.commit`);
    throw new CairnError('MISSING_OBJECTS', `after applying the delta, ${walk.missing.length} objects of ${sb.to} are missing`, {
      missing: walk.missing.slice(0, 20).map((o) => `${o.checksum}.${o.type}`),
    });
  }
  if (meta) await repo.writeCommitMeta(sb.to, meta);
  if (!hadCommit) result.written++;
  return result;
}

interface OpenObject {
  ref: DeltaObjectRef;
  header: FileHeader;
  size: number;
  buf: Buffer;
  written: number;
}

/**
 * Runs one part's opcodes. Exported for tests; callers use applyDelta.
 * Mirrors `_ostree_static_delta_part_execute`, with an archive repository as the target.
 */
export async function executePart(
  repo: Repo,
  d: OpenedDelta,
  partIndex: number,
  p: PartPayload,
): Promise<{ objects: number; written: number; produced: number }> {
  const header = d.superblock.parts[partIndex]!;
  const objects = header.objects;
  const ops = p.ops;
  const blob = p.blob;
  const maxObject = d.limits.maxObjectSize;
  let at = 0;
  let next = 0; // index of the next object record
  let written = 0;
  let produced = 0;
  let open: OpenObject | null = null;
  let source: Buffer | null = null;
  let sourceSum: string | null = null;

  const bad: (why: string) => never = (why) => invalid(partIndex, `${why} (op offset ${at})`);
  const arg = (): number => {
    const [v, n] = readVarint(ops, at);
    at = n;
    return v;
  };
  const slice = (offset: number, length: number): Buffer => {
    if (offset > blob.length || length > blob.length - offset) bad(`range ${offset}+${length} outside the ${blob.length}-byte blob`);
    return blob.subarray(offset, offset + length);
  };
  const nextObject = (): DeltaObjectRef => {
    const o = objects[next];
    if (!o) bad(`opcodes produce more than the ${objects.length} listed objects`);
    return o;
  };
  const fileHeader = (modeIdx: number, xattrIdx: number, target: string): FileHeader => {
    const m = p.modes[modeIdx];
    if (!m) bad(`mode index ${modeIdx} outside the table of ${p.modes.length}`);
    const x = p.xattrs[xattrIdx];
    if (!x) bad(`xattr index ${xattrIdx} outside the table of ${p.xattrs.length}`);
    const h: FileHeader = { uid: m.uid, gid: m.gid, mode: m.mode, symlinkTarget: target, xattrs: decodeXattrs(x) };
    validateFileHeader(h);
    return h;
  };
  const storeContent = async (ref: DeltaObjectRef, h: FileHeader, data: Buffer) => {
    const sum = contentChecksumOf(h, data);
    if (sum !== ref.checksum) {
      throw new CairnError('CHECKSUM_MISMATCH', `static delta part ${partIndex}: content object ${ref.checksum} hashes to ${sum}`, { object: ref.checksum, actual: sum });
    }
    if (!isSymlink(h)) produced += data.length;
    if (await repo.hasObject(ref.checksum, ObjectType.File)) return;
    await repo.writeContent(h, isSymlink(h) ? 0 : data.length, isSymlink(h) ? null : () => once(data));
    written++;
  };

  while (at < ops.length) {
    const op = ops[at++]!;
    switch (op) {
      case DeltaOp.OpenSpliceAndClose: {
        if (open) bad('S while an object is open');
        const ref = nextObject();
        if (ref.type === ObjectType.File) {
          const modeIdx = arg();
          const xattrIdx = arg();
          const size = arg();
          const offset = arg();
          if (size > maxObject) throw new CairnError('TOO_LARGE', `static delta part ${partIndex}: object of ${size} bytes`);
          const bytes = slice(offset, size);
          const m = p.modes[modeIdx];
          const symlink = m !== undefined && (m.mode & S_IFMT) !== S_IFREG;
          let target = '';
          if (symlink) {
            try {
              target = utf8.decode(bytes);
            } catch {
              bad('symlink target is not UTF-8');
            }
          }
          const h = fileHeader(modeIdx, xattrIdx, target);
          await storeContent(ref, h, symlink ? Buffer.alloc(0) : bytes);
        } else {
          const size = arg();
          const offset = arg();
          const bytes = slice(offset, size);
          if (ref.type !== ObjectType.DirTree && ref.type !== ObjectType.DirMeta && ref.type !== ObjectType.Commit) bad(`cannot splice object type ${ref.type}`);
          const sum = sha256Hex(bytes);
          if (sum !== ref.checksum) {
            throw new CairnError('CHECKSUM_MISMATCH', `static delta part ${partIndex}: metadata object ${ref.checksum} hashes to ${sum}`, { object: ref.checksum, actual: sum });
          }
          produced += size;
          if (!(await repo.hasObject(ref.checksum, ref.type))) {
            await repo.writeMetadata(ref.type as ObjectType.DirTree | ObjectType.DirMeta | ObjectType.Commit, Buffer.from(bytes), ref.checksum);
            written++;
          }
        }
        next++;
        break;
      }
      case DeltaOp.Open: {
        if (open) bad('o while an object is open');
        const ref = nextObject();
        if (ref.type !== ObjectType.File) bad(`o for a ${ref.type} object`);
        const modeIdx = arg();
        const xattrIdx = arg();
        const size = arg();
        const h = fileHeader(modeIdx, xattrIdx, '');
        // ostree only streams regular files this way; a symlink target has no place here.
        if (isSymlink(h)) bad('o for a symlink');
        if (size > maxObject) throw new CairnError('TOO_LARGE', `static delta part ${partIndex}: object of ${size} bytes`);
        if (produced + size > header.usize) bad(`objects larger than the part's declared usize ${header.usize}`);
        open = { ref, header: h, size, buf: Buffer.alloc(size), written: 0 };
        break;
      }
      case DeltaOp.Write: {
        const size = arg();
        const offset = arg();
        if (!open) bad('w with no open object');
        if (size > open.size - open.written) bad(`w of ${size} bytes past the object's declared size ${open.size}`);
        let from: Buffer;
        if (source) {
          if (offset > source.length || size > source.length - offset) bad(`read-source range ${offset}+${size} outside the ${source.length}-byte source ${sourceSum}`);
          from = source.subarray(offset, offset + size);
        } else {
          from = slice(offset, size);
        }
        from.copy(open.buf, open.written);
        open.written += size;
        break;
      }
      case DeltaOp.SetReadSource: {
        const offset = arg();
        const sum = checksumFromBytes(slice(offset, 32));
        if (sum !== sourceSum) {
          const loaded = await readContentObject(repo, sum, maxObject).catch((e: unknown) => {
            if (e instanceof CairnError && e.code === 'NOT_FOUND') {
              throw new CairnError('MISSING_OBJECTS', `static delta part ${partIndex}: read source ${sum} is not in the repository`, { object: sum });
            }
            throw e;
          });
          if (isSymlink(loaded.header)) bad(`read source ${sum} is a symlink`);
          source = loaded.data;
          sourceSum = sum;
        }
        break;
      }
      case DeltaOp.UnsetReadSource:
        source = null;
        sourceSum = null;
        break;
      case DeltaOp.Bspatch: {
        const offset = arg();
        const length = arg();
        if (!open) bad('B with no open object');
        if (!source) bad('B with no read source');
        if (open.written !== 0) bad('B into an object that already has data');
        const patch = slice(offset, length);
        // bspatch throws CairnError INVALID_OBJECT on a hostile patch and never writes past newSize.
        const out = bspatch(source, patch, open.size);
        if (out.length !== open.size) bad(`bspatch produced ${out.length} bytes, expected ${open.size}`);
        out.copy(open.buf, 0);
        open.written = open.size;
        break;
      }
      case DeltaOp.Close: {
        if (!open) bad('c with no open object');
        if (open.written !== open.size) bad(`object ${open.ref.checksum} closed after ${open.written} of ${open.size} bytes`);
        await storeContent(open.ref, open.header, open.buf);
        open = null;
        next++;
        // As dispatch_close in libostree: closing also drops the read source.
        source = null;
        sourceSum = null;
        break;
      }
      default:
        bad(`unknown opcode 0x${op.toString(16)}`);
    }
  }
  if (open) invalid(partIndex, `object ${open.ref.checksum} left open at the end of the opcodes`);
  if (next !== objects.length) invalid(partIndex, `opcodes produced ${next} of the ${objects.length} listed objects`);
  if (produced > header.usize) invalid(partIndex, `produced ${produced} bytes, more than the declared usize ${header.usize}`);
  return { objects: next, written, produced };
}
