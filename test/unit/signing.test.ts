import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import * as openpgp from 'openpgp';
import { CairnError } from '../../storage/errors';
import { Variant, isNormalForm, parse, serialize, type VarDict } from '../../storage/gvariant';
import {
  ed25519KeyPairFromSeed,
  ed25519Sign,
  ed25519Verify,
  formatEd25519PublicKey,
  formatEd25519SecretKey,
  generateEd25519KeyPair,
  parseEd25519PublicKey,
  parseEd25519SecretKey,
} from '../../storage/signing/ed25519';
import { generateGpgKey, gpgSignDetached, gpgSignatureIssuers, gpgVerifyDetached, loadGpgSigningKey, readGpgPublicKeys } from '../../storage/signing/gpg';
import { KEY_FILES, ensureRepoKeys, loadRepoKeys, repoKeysDir } from '../../storage/signing/keys';
import { ED25519_SIGS_KEY, GPG_SIGS_KEY, createRepoSigner } from '../../storage/signing/signer';
import { PROJECT_ROOT, S1, readExtraFile, readRepoFile } from '../helpers/fixtures';
import { makeGpgKey } from '../helpers/gpg';
import { addRemote, commitTree, initRepo, makeTempDir, ostree, ostreeResult, removeTempDirs, run, runCommand, updateSummary } from '../helpers/ostree';

/**
 * Signing: ed25519 against the reference vectors (byte for byte) and node:crypto,
 * GPG against GnuPG 2.2 and the real ostree client, the merge rules of
 * re-signing, and the on-disk key store.
 */

after(removeTempDirs);

function rejectsCode(code: string): (e: unknown) => boolean {
  return (e: unknown) => e instanceof CairnError && e.code === code;
}

function sigs(meta: Buffer, key: string): Buffer[] {
  const dict = parse('a{sv}', meta, { requireNormal: true }) as VarDict;
  const v = dict.find(([k]) => k === key)?.[1];
  assert.ok(v, `${key} present`);
  assert.equal(v.type, 'aay');
  return v.value as Buffer[];
}

const VECTOR_SEED = Buffer.from(Array.from({ length: 32 }, (_, i) => i));

// ---------------------------------------------------------------------------------------------
describe('ed25519', () => {
  const secretText = readExtraFile('ed25519.secret.b64').toString();
  const publicText = readExtraFile('ed25519.public.b64').toString();
  const s1 = readRepoFile(`objects/${S1.slice(0, 2)}/${S1.slice(2)}.commit`);
  const summary = readRepoFile('summary');

  test('the vector secret key is seed 00..1f followed by the vector public key', () => {
    const pair = parseEd25519SecretKey(secretText);
    assert.deepEqual(pair.seed, VECTOR_SEED);
    assert.deepEqual(pair.publicKey, parseEd25519PublicKey(publicText));
    assert.deepEqual(ed25519KeyPairFromSeed(VECTOR_SEED).publicKey, pair.publicKey);
    assert.equal(formatEd25519SecretKey(pair).trim(), secretText.trim());
    assert.equal(formatEd25519PublicKey(pair.publicKey).trim(), publicText.trim());
  });

  test('signatures over S1 and the summary equal the vectors, and the whole a{sv} is byte-identical', async () => {
    const pair = parseEd25519SecretKey(secretText);
    const expectedCommitMeta = readExtraFile('S1.commitmeta.ed25519');
    const expectedSummarySig = readExtraFile('summary.sig.ed25519');
    assert.deepEqual(ed25519Sign(pair, s1), sigs(expectedCommitMeta, ED25519_SIGS_KEY)[0]);
    assert.deepEqual(ed25519Sign(pair, summary), sigs(expectedSummarySig, ED25519_SIGS_KEY)[0]);

    const signer = createRepoSigner({ ed25519: pair });
    assert.deepEqual(await signer.signCommit(s1, null), expectedCommitMeta);
    assert.deepEqual(await signer.signSummary(summary), expectedSummarySig);
  });

  test('node:crypto verifies them independently (key built from JWK, not from our DER prefix)', async () => {
    const pk = parseEd25519PublicKey(publicText);
    const key = crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: pk.toString('base64url') }, format: 'jwk' });
    const pair = parseEd25519SecretKey(secretText);
    const sig = ed25519Sign(pair, s1);
    assert.equal(sig.length, 64);
    assert.ok(crypto.verify(null, s1, key, sig));
    assert.ok(crypto.verify(null, summary, key, sigs(readExtraFile('summary.sig.ed25519'), ED25519_SIGS_KEY)[0]!));
    // and a freshly generated pair
    const fresh = generateEd25519KeyPair();
    const freshKey = crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: fresh.publicKey.toString('base64url') }, format: 'jwk' });
    assert.ok(crypto.verify(null, s1, freshKey, ed25519Sign(fresh, s1)));
    assert.deepEqual(parseEd25519SecretKey(formatEd25519SecretKey(fresh)).seed, fresh.seed);
  });

  test('verification refuses forged signatures, other data, other keys, and wrong lengths', () => {
    const pair = parseEd25519SecretKey(secretText);
    const sig = ed25519Sign(pair, s1);
    assert.equal(ed25519Verify(pair.publicKey, s1, sig), true);
    for (let i = 0; i < sig.length; i += 7) {
      const bad = Buffer.from(sig);
      bad[i]! ^= 0x01;
      assert.equal(ed25519Verify(pair.publicKey, s1, bad), false, `flipped signature byte ${i}`);
    }
    const other = Buffer.from(s1);
    other[other.length - 1]! ^= 0x80;
    assert.equal(ed25519Verify(pair.publicKey, other, sig), false);
    assert.equal(ed25519Verify(generateEd25519KeyPair().publicKey, s1, sig), false);
    assert.throws(() => ed25519Verify(pair.publicKey, s1, sig.subarray(0, 63)), rejectsCode('INVALID_ARGUMENT'));
    assert.throws(() => ed25519Verify(pair.publicKey, s1, Buffer.concat([sig, Buffer.alloc(1)])), rejectsCode('INVALID_ARGUMENT'));
    assert.throws(() => ed25519Verify(pair.publicKey.subarray(1), s1, sig), rejectsCode('INVALID_ARGUMENT'));
  });

  test('malformed key files are refused', () => {
    const raw = Buffer.from(secretText.trim(), 'base64');
    const mismatched = Buffer.from(raw);
    mismatched[40]! ^= 1;
    assert.throws(() => parseEd25519SecretKey(mismatched.toString('base64')), rejectsCode('INVALID_ARGUMENT'));
    assert.throws(() => parseEd25519SecretKey(raw.subarray(0, 32).toString('base64')), rejectsCode('INVALID_ARGUMENT'));
    assert.throws(() => parseEd25519SecretKey(`${secretText.trim().slice(0, -4)}!!!!`), rejectsCode('INVALID_ARGUMENT'));
    assert.throws(() => parseEd25519PublicKey(secretText), rejectsCode('INVALID_ARGUMENT'));
    assert.throws(() => parseEd25519PublicKey(''), rejectsCode('INVALID_ARGUMENT'));
    assert.throws(() => ed25519KeyPairFromSeed(Buffer.alloc(31)), rejectsCode('INVALID_ARGUMENT'));
  });
});

// ---------------------------------------------------------------------------------------------
/** A fresh GNUPGHOME with `armoredPublicKey` imported; the path stays short for the agent socket. */
async function gpgHomeWith(armoredPublicKey: string): Promise<{ home: string; env: NodeJS.ProcessEnv; dispose(): Promise<void> }> {
  const dir = await makeTempDir('cairn-gpg-');
  const home = path.join(dir, 'g');
  await fsp.mkdir(home, { mode: 0o700 });
  const env = { ...process.env, GNUPGHOME: home };
  await fsp.writeFile(path.join(dir, 'key.asc'), armoredPublicKey);
  await run('gpg', ['--batch', '--import', path.join(dir, 'key.asc')], { env });
  return { home, env, dispose: async () => void (await runCommand('gpgconf', ['--homedir', home, '--kill', 'all'], { env })) };
}

describe('gpg', () => {
  test('a generated key is v4 EdDSA without passphrase, and GnuPG 2.2 verifies its binary detached signatures', async () => {
    const generated = await generateGpgKey('Cairn repo unit', 'cairn@localhost');
    const key = await loadGpgSigningKey(generated.armoredPrivateKey);
    assert.equal(key.privateKey.keyPacket.version, 4);
    assert.equal(key.privateKey.keyPacket.algorithm, openpgp.enums.publicKey.eddsaLegacy);
    assert.match(key.keyId, /^[0-9A-F]{16}$/);
    assert.ok(key.fingerprint.endsWith(key.keyId));

    const data = crypto.randomBytes(4096);
    const sig = await gpgSignDetached(key, data);
    assert.notEqual(sig[0], '-'.charCodeAt(0), 'binary, not armored');
    assert.deepEqual(await gpgSignatureIssuers(sig), [key.keyId]);

    const home = await gpgHomeWith(key.armoredPublicKey);
    try {
      const dir = path.dirname(home.home);
      await fsp.writeFile(path.join(dir, 'data'), data);
      await fsp.writeFile(path.join(dir, 'data.sig'), sig);
      const colons = await run('gpg', ['--batch', '--with-colons', '--list-keys'], { env: home.env });
      assert.ok(colons.split('\n').some((l) => l.startsWith('fpr:') && l.split(':')[9] === key.fingerprint), 'gpg sees the same fingerprint');
      assert.ok(colons.includes('Cairn repo unit <cairn@localhost>'));

      const ok = await runCommand('gpg', ['--batch', '--status-fd', '1', '--verify', path.join(dir, 'data.sig'), path.join(dir, 'data')], { env: home.env });
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, new RegExp(`VALIDSIG ${key.fingerprint}`));

      const flipped = Buffer.from(data);
      flipped[1234]! ^= 0x10;
      await fsp.writeFile(path.join(dir, 'data'), flipped);
      const bad = await runCommand('gpg', ['--batch', '--status-fd', '1', '--verify', path.join(dir, 'data.sig'), path.join(dir, 'data')], { env: home.env });
      assert.notEqual(bad.code, 0);
      assert.match(bad.stdout, /BADSIG/);

      // our own verification helper agrees
      const pub = await readGpgPublicKeys(key.armoredPublicKey);
      assert.deepEqual((await gpgVerifyDetached(data, [sig], pub)).validKeyIds, [key.keyId]);
      assert.deepEqual((await gpgVerifyDetached(flipped, [sig], pub)).validKeyIds, []);
      const stranger = await readGpgPublicKeys((await generateGpgKey('x', 'x@localhost')).armoredPublicKey);
      assert.deepEqual((await gpgVerifyDetached(data, [sig], stranger)).validKeyIds, []);
      await assert.rejects(gpgVerifyDetached(data, [Buffer.from('not a signature')], pub), rejectsCode('INVALID_ARGUMENT'));
    } finally {
      await home.dispose();
    }
  });

  test('unusable secret keys are refused with typed errors', async () => {
    await assert.rejects(loadGpgSigningKey('garbage'), rejectsCode('INVALID_ARGUMENT'));
    const { privateKey } = await openpgp.generateKey({ type: 'ecc', userIDs: [{ name: 'p' }], passphrase: 'secret', format: 'armored' });
    await assert.rejects(loadGpgSigningKey(privateKey), rejectsCode('UNSUPPORTED'));
    const v6 = await openpgp.generateKey({ type: 'curve25519', userIDs: [{ name: 'v6' }], format: 'armored', config: { v6Keys: true } });
    await assert.rejects(loadGpgSigningKey(v6.privateKey), (e: unknown) => e instanceof CairnError && /v6/.test(e.message));
  });
});

// ---------------------------------------------------------------------------------------------
describe('the real ostree client', () => {
  let dir: string;
  let server: string;
  let commit: string;
  let commitBytes: Buffer;
  let keysDir: string;
  let gpgAsc: string;
  let signer: ReturnType<typeof createRepoSigner>;
  const REF = 'os/main';

  before(async () => {
    dir = await makeTempDir('cairn-sign-ostree-');
    const tree = path.join(dir, 'tree');
    await fsp.mkdir(path.join(tree, 'etc'), { recursive: true });
    await fsp.writeFile(path.join(tree, 'etc', 'os-release'), 'ID=cairn\n');
    await fsp.writeFile(path.join(tree, 'hello.txt'), 'hello, signed world\n');
    server = await initRepo(path.join(dir, 'server'), 'archive');
    commit = await commitTree(server, { branch: REF, tree, subject: 'signed by cairn', timestamp: 1700000000 });
    commitBytes = await fsp.readFile(path.join(server, 'objects', commit.slice(0, 2), `${commit.slice(2)}.commit`));

    const keys = await ensureRepoKeys(path.join(dir, 'data'), 'main');
    keysDir = keys.dir;
    gpgAsc = path.join(keysDir, KEY_FILES.gpgPublic);
    signer = createRepoSigner(keys);
    await fsp.writeFile(commitMetaPath(), await signer.signCommit(commitBytes, null));
    await updateSummary(server); // ostree's own summary; we only sign it
    await fsp.writeFile(path.join(server, 'summary.sig'), await signer.signSummary(await fsp.readFile(path.join(server, 'summary'))));
  });

  function commitMetaPath(): string {
    return path.join(server, 'objects', commit.slice(0, 2), `${commit.slice(2)}.commitmeta`);
  }

  let clients = 0;
  /** A new client repo with the remote `r` (gpg-verify on, key from the served gpg.asc, summary verification on). */
  async function client(): Promise<string> {
    const repo = await initRepo(path.join(dir, `client-${++clients}`), 'archive');
    await addRemote(repo, 'r', `file://${server}`, { gpgImport: gpgAsc, set: { 'gpg-verify': 'true', 'gpg-verify-summary': 'true' } });
    return repo;
  }

  test('pull with gpg-verify and gpg-verify-summary accepts our commitmeta and summary.sig', async () => {
    const repo = await client();
    const refs = await ostree(['remote', 'refs', 'r'], { repo });
    assert.match(refs, /r:os\/main/);
    await ostree(['pull', 'r', REF], { repo });
    assert.equal((await ostree(['rev-parse', `r:${REF}`], { repo })).trim(), commit);
    const shown = await ostree(['show', `r:${REF}`], { repo });
    assert.match(shown, /Found 1 signature/);
    assert.match(shown, /Good signature from "Cairn repo main <cairn@localhost>"/);
    await ostree(['fsck'], { repo });
  });

  test('a forged commit signature, or none, is rejected', async () => {
    const good = await fsp.readFile(commitMetaPath());
    try {
      const gpgSig = sigs(good, GPG_SIGS_KEY)[0]!;
      const forged = Buffer.from(gpgSig);
      forged[forged.length - 5]! ^= 0x40; // inside the EdDSA signature value
      await fsp.writeFile(commitMetaPath(), serialize('a{sv}', [[GPG_SIGS_KEY, new Variant('aay', [forged])]]));
      const r1 = await ostreeResult(['pull', 'r', REF], { repo: await client() });
      assert.notEqual(r1.code, 0, 'forged signature accepted');
      assert.match(r1.stderr, /BAD signature/);

      // signed by a key the remote does not trust
      const stranger = await loadGpgSigningKey((await generateGpgKey('Mallory', 'm@localhost')).armoredPrivateKey);
      await fsp.writeFile(commitMetaPath(), await createRepoSigner({ gpg: stranger }).signCommit(commitBytes, null));
      const r2 = await ostreeResult(['pull', 'r', REF], { repo: await client() });
      assert.notEqual(r2.code, 0, 'untrusted signer accepted');
      assert.match(r2.stderr, /public key not found/);

      await fsp.rm(commitMetaPath());
      const r3 = await ostreeResult(['pull', 'r', REF], { repo: await client() });
      assert.notEqual(r3.code, 0, 'unsigned commit accepted');
      assert.match(r3.stderr, /no signatures found|without detached metadata/);
    } finally {
      await fsp.writeFile(commitMetaPath(), good);
    }
  });

  test('a forged or missing summary.sig is rejected under gpg-verify-summary', async () => {
    const sigPath = path.join(server, 'summary.sig');
    const good = await fsp.readFile(sigPath);
    try {
      const summary = await fsp.readFile(path.join(server, 'summary'));
      const other = Buffer.from(summary);
      other[0]! ^= 1;
      await fsp.writeFile(sigPath, await signer.signSummary(other)); // a real signature, over other bytes
      const r1 = await ostreeResult(['remote', 'refs', 'r'], { repo: await client() });
      assert.notEqual(r1.code, 0, 'summary.sig over other bytes accepted');
      assert.match(r1.stderr, /BAD signature/);

      await fsp.rm(sigPath);
      const r2 = await ostreeResult(['pull', 'r', REF], { repo: await client() });
      assert.notEqual(r2.code, 0, 'missing summary.sig accepted');
      assert.match(r2.stderr, /no summary\.sig found/);
    } finally {
      await fsp.writeFile(sigPath, good);
    }
    // and the restored one is accepted again
    await ostree(['remote', 'refs', 'r'], { repo: await client() });
  });

  test('after re-signing with foreign signatures present, the client still accepts it', async () => {
    const good = await fsp.readFile(commitMetaPath());
    try {
      const foreign = await loadGpgSigningKey((await generateGpgKey('Build farm', 'farm@localhost')).armoredPrivateKey);
      const farmMeta = await createRepoSigner({ gpg: foreign }).signCommit(commitBytes, [['build.id', new Variant('s', '42')]]);
      const resigned = await signer.signCommit(commitBytes, parse('a{sv}', farmMeta) as VarDict);
      assert.equal(sigs(resigned, GPG_SIGS_KEY).length, 2);
      await fsp.writeFile(commitMetaPath(), resigned);
      const repo = await client();
      await ostree(['pull', 'r', REF], { repo });
      assert.match(await ostree(['show', `r:${REF}`], { repo }), /Found 2 signatures/);
    } finally {
      await fsp.writeFile(commitMetaPath(), good);
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe('re-signing', () => {
  test('replaces our own signatures, keeps foreign ones and foreign keys, and stays normal-form', async () => {
    const ours = createRepoSigner({
      gpg: await loadGpgSigningKey((await generateGpgKey('Cairn repo r', 'cairn@localhost')).armoredPrivateKey),
      ed25519: ed25519KeyPairFromSeed(VECTOR_SEED),
    });
    const farmGpg = await loadGpgSigningKey((await generateGpgKey('Build farm', 'farm@localhost')).armoredPrivateKey);
    const farmEd = generateEd25519KeyPair();
    const commit = readRepoFile(`objects/${S1.slice(0, 2)}/${S1.slice(2)}.commit`);

    const farmGpgSig = await gpgSignDetached(farmGpg, commit);
    const farmEdSig = ed25519Sign(farmEd, commit);
    const existing: VarDict = [
      ['build.id', new Variant('s', 'farm-42')],
      [GPG_SIGS_KEY, new Variant('aay', [farmGpgSig])],
      ['ostree.sign.dummy', new Variant('aay', [Buffer.from('dummy')])],
      [ED25519_SIGS_KEY, new Variant('aay', [farmEdSig, Buffer.alloc(10)])], // a truncated entry the client would choke on
    ];

    let meta = await ours.signCommit(commit, existing);
    for (let i = 0; i < 3; i++) {
      // the promotion path: parse what is there, sign again
      meta = await ours.signCommit(commit, parse('a{sv}', meta) as VarDict);
    }
    assert.ok(isNormalForm('a{sv}', meta));
    const dict = parse('a{sv}', meta) as VarDict;
    assert.deepEqual(dict.map(([k]) => k), ['build.id', GPG_SIGS_KEY, 'ostree.sign.dummy', ED25519_SIGS_KEY], 'foreign keys kept in place');
    assert.deepEqual(dict[0]![1], new Variant('s', 'farm-42'));
    assert.deepEqual(dict[2]![1].value, [Buffer.from('dummy')]);

    const gpgSigs = sigs(meta, GPG_SIGS_KEY);
    assert.equal(gpgSigs.length, 2, 'one foreign + one ours, not one per re-sign');
    assert.deepEqual(gpgSigs[0], farmGpgSig);
    const edSigs = sigs(meta, ED25519_SIGS_KEY);
    assert.deepEqual(edSigs, [farmEdSig, ed25519Sign(ed25519KeyPairFromSeed(VECTOR_SEED), commit)]);

    // an existing value of the wrong type is replaced, not merged
    const fixed = await ours.signCommit(commit, [[ED25519_SIGS_KEY, new Variant('s', 'junk')]]);
    assert.equal(sigs(fixed, ED25519_SIGS_KEY).length, 1);
    assert.equal(sigs(fixed, GPG_SIGS_KEY).length, 1);
  });

  test('a signer needs at least one key', () => {
    assert.throws(() => createRepoSigner({}), rejectsCode('INVALID_ARGUMENT'));
  });
});

// ---------------------------------------------------------------------------------------------
describe('key store', () => {
  async function mode(p: string): Promise<number> {
    return (await fsp.stat(p)).mode & 0o777;
  }

  test('keys are generated once, reused, 0600 for secrets, beside (not inside) the repos', async () => {
    const data = await makeTempDir('cairn-keys-');
    const keys = await ensureRepoKeys(data, 'main');
    assert.equal(keys.dir, path.join(data, 'keys', 'main'));
    assert.equal(repoKeysDir(data, 'main'), keys.dir);
    assert.equal(await mode(path.join(data, 'keys')), 0o700);
    assert.equal(await mode(keys.dir), 0o700);
    assert.equal(await mode(path.join(keys.dir, KEY_FILES.gpgSecret)), 0o600);
    assert.equal(await mode(path.join(keys.dir, KEY_FILES.ed25519Secret)), 0o600);
    assert.equal(await mode(path.join(keys.dir, KEY_FILES.gpgPublic)), 0o644);
    assert.equal(await mode(path.join(keys.dir, KEY_FILES.ed25519Public)), 0o644);
    assert.deepEqual((await fsp.readdir(keys.dir)).sort(), Object.values(KEY_FILES).sort(), 'no temporary files left');
    assert.equal(await fsp.readFile(path.join(keys.dir, KEY_FILES.gpgPublic), 'utf8'), keys.gpgPublicFile);
    assert.equal((await fsp.readFile(path.join(keys.dir, KEY_FILES.ed25519Public), 'utf8')).trim(), keys.ed25519.publicKey.toString('base64'));
    assert.match(keys.gpgPublicFile, /^-----BEGIN PGP PUBLIC KEY BLOCK-----/);
    assert.ok(!keys.gpgPublicFile.includes('PRIVATE'));

    const before = await snapshot(keys.dir);
    const again = await ensureRepoKeys(data, 'main');
    assert.equal(again.gpg.fingerprint, keys.gpg.fingerprint);
    assert.deepEqual(again.ed25519.publicKey, keys.ed25519.publicKey);
    assert.deepEqual(await snapshot(keys.dir), before, 'nothing rewritten');
    const loaded = await loadRepoKeys(data, 'main');
    assert.equal(loaded.gpg.fingerprint, keys.gpg.fingerprint);

    const other = await ensureRepoKeys(data, 'other');
    assert.notEqual(other.gpg.fingerprint, keys.gpg.fingerprint);
    assert.notDeepEqual(other.ed25519.publicKey, keys.ed25519.publicKey);

    await assert.rejects(ensureRepoKeys(data, '../escape'), rejectsCode('INVALID_ARGUMENT'));
    await assert.rejects(loadRepoKeys(data, 'missing'), rejectsCode('NOT_FOUND'));
  });

  test('concurrent first starts (in-process and separate processes) all end up with the same keys', async () => {
    const data = await makeTempDir('cairn-keys-race-');
    const inProcess = await Promise.all(Array.from({ length: 6 }, () => ensureRepoKeys(data, 'main')));
    assert.equal(new Set(inProcess.map((k) => k.gpg.fingerprint)).size, 1);
    assert.equal(new Set(inProcess.map((k) => k.ed25519.publicKey.toString('hex'))).size, 1);

    const keysModule = path.join(PROJECT_ROOT, 'dist', 'storage', 'signing', 'keys.js');
    const script = `require(${JSON.stringify(keysModule)}).ensureRepoKeys(process.argv[1], 'race').then((k) => console.log(k.gpg.fingerprint + ' ' + k.ed25519.publicKey.toString('hex')), (e) => { console.error(e); process.exit(1); })`;
    const outputs = await Promise.all(
      Array.from({ length: 5 }, () => new Promise<string>((resolve, reject) => {
        execFile(process.execPath, ['-e', script, data], (err, stdout, stderr) => (err ? reject(new Error(stderr || String(err))) : resolve(stdout.trim())));
      })),
    );
    assert.equal(new Set(outputs).size, 1, outputs.join('\n'));
    const final = await loadRepoKeys(data, 'race');
    assert.equal(outputs[0], `${final.gpg.fingerprint} ${final.ed25519.publicKey.toString('hex')}`);
    assert.deepEqual((await fsp.readdir(final.dir)).sort(), Object.values(KEY_FILES).sort());
  });

  test('keys placed by an operator are used, and gpg-exported keys work', async () => {
    const data = await makeTempDir('cairn-keys-op-');
    const gpgKey = await makeGpgKey(await makeTempDir('cairn-opgpg-'), 'Operator <ops@example.invalid>');
    try {
      const env = { ...process.env, GNUPGHOME: gpgKey.homedir };
      const secret = await run('gpg', ['--batch', '--pinentry-mode', 'loopback', '--passphrase', '', '--armor', '--export-secret-keys', gpgKey.fingerprint], { env });
      const dir = repoKeysDir(data, 'main');
      await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
      await fsp.writeFile(path.join(dir, KEY_FILES.gpgSecret), secret, { mode: 0o600 });
      await fsp.writeFile(path.join(dir, KEY_FILES.ed25519Secret), readExtraFile('ed25519.secret.b64'), { mode: 0o600 });

      const keys = await ensureRepoKeys(data, 'main');
      assert.equal(keys.gpg.fingerprint, gpgKey.fingerprint);
      assert.deepEqual(keys.ed25519.seed, VECTOR_SEED);
      assert.equal((await fsp.readFile(path.join(dir, KEY_FILES.ed25519Public), 'utf8')).trim(), readExtraFile('ed25519.public.b64').toString().trim());
      assert.equal(await fsp.readFile(path.join(dir, KEY_FILES.gpgSecret), 'utf8'), secret, 'operator key untouched');

      // GnuPG, which made the key, verifies what Cairn signs with it
      const payload = Buffer.from('operator-signed payload');
      const p = await makeTempDir('cairn-opgpg-v-');
      await fsp.writeFile(path.join(p, 'data'), payload);
      await fsp.writeFile(path.join(p, 'data.sig'), await gpgSignDetached(keys.gpg, payload));
      await run('gpg', ['--batch', '--verify', path.join(p, 'data.sig'), path.join(p, 'data')], { env });
    } finally {
      await gpgKey.dispose();
    }
  });

  test('a public file that does not match its secret, or a damaged secret, is an error', async () => {
    const data = await makeTempDir('cairn-keys-bad-');
    const dir = repoKeysDir(data, 'main');
    await fsp.mkdir(dir, { recursive: true });
    // only a public key placed: generating a new secret would silently split from what hosts imported
    await fsp.writeFile(path.join(dir, KEY_FILES.ed25519Public), readExtraFile('ed25519.public.b64'));
    await assert.rejects(ensureRepoKeys(data, 'main'), (e: unknown) => e instanceof CairnError && e.code === 'INVALID_ARGUMENT' && e.message.includes(KEY_FILES.ed25519Public));
    await fsp.writeFile(path.join(dir, KEY_FILES.ed25519Secret), 'AAAA\n');
    await assert.rejects(ensureRepoKeys(data, 'main'), (e: unknown) => e instanceof CairnError && e.code === 'INVALID_ARGUMENT' && e.message.includes(KEY_FILES.ed25519Secret));
    await fsp.writeFile(path.join(dir, KEY_FILES.gpgSecret), 'not a key');
    await assert.rejects(ensureRepoKeys(data, 'main'), (e: unknown) => e instanceof CairnError && e.message.includes(KEY_FILES.gpgSecret));
  });
});

async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of await fsp.readdir(dir)) {
    const st = await fsp.stat(path.join(dir, f));
    out[f] = `${st.ino}:${st.mtimeMs}:${(await fsp.readFile(path.join(dir, f))).toString('hex')}`;
  }
  return out;
}
