import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import { createClients } from '../../lambdas/shared/clients';
import { remoteContextOf, TfStateError } from '../../lambdas/shared/tfstate/errors';
import {
  backupKeyFor,
  type LockOwner,
  lockIdFor,
  parseS3StateUrl,
  readRemoteState,
  type S3BackendSettings,
  type StateEdit,
  stateObjectKey,
  updateRemoteState,
} from '../../lambdas/shared/tfstate/s3-backend';
import { type JsonObject, nextSerial, readState, writeState } from '../../lambdas/shared/tfstate/state';
import { Sandbox } from '../../sandbox/index';

const BUCKET = 'acme-terraform-state';
const KEY = 'app/terraform.tfstate';
const TABLE = 'terraform-locks';
const PATH = `${BUCKET}/${KEY}`;
const LOCK_FILE = `${KEY}.tflock`;
const DIGEST_ITEM = `S:${PATH}-md5`;
const LOCK_ITEM = `S:${PATH}`;
const ORIGINAL = readFileSync(join(__dirname, '../fixtures/tfstate/core/terraform.tfstate'), 'utf8');
const KMS_KEY = 'arn:aws:kms:eu-west-1:123456789012:key/0f3c1c0e-5a7b-4d2e-9c8f-1a2b3c4d5e6f';

const md5 = (bytes: string | Uint8Array) => createHash('md5').update(bytes).digest('hex');
const sha256 = (bytes: string | Uint8Array) => createHash('sha256').update(bytes).digest('base64');

/** An edit like reconcile's: one output value changes, serial + 1; already done → nothing to write. */
const setEip =
  (ip: string): StateEdit =>
  (current) => {
    const summary = current.outputs.summary;
    const value = summary?.value as JsonObject;
    if (!summary || value.eip === ip) return undefined;
    return {
      ...current,
      serial: nextSerial(current.serial),
      outputs: { ...current.outputs, summary: { ...summary, value: { ...value, eip: ip } } },
    };
  };
const NEW_IP = '198.51.100.7';
const edited = (text: string, ip = NEW_IP) => writeState(setEip(ip)(readState(text)) ?? readState(text));
const EXPECTED = edited(ORIGINAL);

const RUN = 'arn:aws:states:eu-west-1:123456789012:execution:understudy:web-2025-06-01';
const owner = (runId = RUN): LockOwner => ({
  runId,
  operation: 'understudy-reconcile',
  who: 'understudy@web-2025-06-01',
  version: '0.1.0',
  leaseSeconds: 900,
});

type Mode = 'both' | 'lockfile' | 'dynamodb';
const settingsFor = (mode: Mode, extra: Partial<S3BackendSettings> = {}): S3BackendSettings => ({
  bucket: BUCKET,
  key: KEY,
  useLockfile: mode !== 'dynamodb',
  ...(mode !== 'lockfile' ? { dynamodbTable: TABLE } : {}),
  lockTimeoutSeconds: 30,
  ...extra,
});

let sandbox: Sandbox;
let clients: { s3: S3Client; dynamodb: DynamoDBClient };

const seedState = (text = ORIGINAL, options: { digest?: boolean; key?: string; kms?: boolean } = {}) => {
  const key = options.key ?? KEY;
  const etag = sandbox.s3.seedObject(BUCKET, key, text, {
    contentType: 'application/json',
    checksumSha256: true,
    ...(options.kms ? { serverSideEncryption: 'aws:kms', kmsKeyId: KMS_KEY } : {}),
  });
  if (options.digest !== false) {
    sandbox.dynamodb.seedItem(TABLE, { LockID: { S: `${BUCKET}/${key}-md5` }, Digest: { S: md5(text) } });
  }
  return etag;
};

/** A lock as `terraform apply` leaves it while it runs (LockInfo JSON, random UUID, user@host). */
const TERRAFORM_LOCK = {
  ID: '5a1c9e3f-2b4d-4c6e-8f0a-1b2c3d4e5f60',
  Operation: 'OperationTypeApply',
  Info: '',
  Who: 'alice@build-7',
  Version: '1.13.4',
  Created: '2025-06-01T09:14:03.271822Z',
  Path: PATH,
};
const understudyLock = (runId: string, leaseExpires: string, id = lockIdFor(runId)) => ({
  ID: id,
  Operation: 'understudy-reconcile',
  Info: JSON.stringify({ understudy: { runId, leaseExpires } }),
  Who: 'understudy@earlier',
  Version: '0.1.0',
  Created: '2025-06-01T08:00:00Z',
  Path: PATH,
});

const state = () => sandbox.s3.details(BUCKET, KEY);
const digest = () => sandbox.dynamodb.item(TABLE, DIGEST_ITEM)?.Digest?.S;
const lockFile = () => sandbox.s3.details(BUCKET, LOCK_FILE);
const lockItem = () => sandbox.dynamodb.item(TABLE, LOCK_ITEM);
const callsTo = (action: string, key?: string) =>
  sandbox.calls.filter(
    (c) => c.action === action && (key === undefined || (c.input as { Key?: unknown }).Key === key),
  );
const backupKey = (serial: string, runId = RUN) => backupKeyFor(KEY, runId, serial);

interface Stack {
  add(middleware: unknown, options: { step: 'initialize'; name: string }): void;
}
type Middleware = (
  next: (args: { input: Record<string, unknown> }) => Promise<unknown>,
  context: { commandName?: string },
) => (args: { input: Record<string, unknown> }) => Promise<unknown>;

let onCallCount = 0;
/** Runs `after` once a matching call has completed (it may wait on it: a crash never resolves). */
const onCall = (
  client: S3Client | DynamoDBClient,
  matches: (command: string, input: Record<string, unknown>) => boolean,
  after: () => Promise<unknown> | undefined,
) => {
  const middleware: Middleware = (next, context) => async (args) => {
    const result = await next(args);
    if (matches(context.commandName ?? '', args.input)) await after();
    return result;
  };
  onCallCount += 1;
  (client.middlewareStack as unknown as Stack).add(middleware, {
    step: 'initialize',
    name: `testOnCall${onCallCount}`,
  });
};

/** The process dies right after the matching call succeeded: no finally, no release. */
const crashAfter = (
  client: S3Client | DynamoDBClient,
  matches: (command: string, input: Record<string, unknown>) => boolean,
): Promise<void> => {
  let crashed = () => {};
  const signal = new Promise<void>((resolve) => {
    crashed = resolve;
  });
  onCall(client, matches, () => {
    crashed();
    return new Promise<never>(() => {});
  });
  return signal;
};

beforeEach(async () => {
  sandbox = await Sandbox.start();
  sandbox.createBucket(BUCKET);
  sandbox.createTable(TABLE, 'LockID');
  const built = createClients();
  clients = { s3: built.s3, dynamodb: built.dynamodb };
});
afterEach(async () => {
  await sandbox.stop();
});

const refusal = async (promise: Promise<unknown>): Promise<TfStateError> => {
  try {
    await promise;
  } catch (error) {
    if (error instanceof TfStateError) return error;
    throw error;
  }
  throw new Error('expected a refusal, the update succeeded');
};

describe('S3 state URLs and object keys', () => {
  it('splits s3://bucket/key into the backend bucket and key', () => {
    expect(parseS3StateUrl('s3://acme-terraform-state/app/terraform.tfstate')).toEqual({
      bucket: BUCKET,
      key: KEY,
    });
  });

  it.each([
    ['https://acme/app.tfstate', 'not an S3 state URL'],
    ['s3://acme-terraform-state/', 'is empty'],
    ['s3://acme-terraform-state//app.tfstate', 'starts with "/"'],
    ['s3://acme-terraform-state/app/', 'ends with "/"'],
    ['s3://acme-terraform-state/app//x.tfstate', 'contains "//"'],
    ['s3://Acme_State/app.tfstate', 'not an S3 bucket name'],
  ])('refuses %s with InvalidBackend naming the fix', (url, problem) => {
    const error = (() => {
      try {
        parseS3StateUrl(url);
      } catch (caught) {
        return caught as TfStateError;
      }
      throw new Error('accepted');
    })();

    expect(error.reason).toBe('InvalidBackend');
    expect(error.message).toContain(problem);
    expect(error.message).toMatch(/use /);
  });

  it('keeps the key for the default workspace and prefixes other workspaces with env:/<workspace>/', () => {
    const base = settingsFor('lockfile');

    expect(stateObjectKey(base)).toBe(KEY);
    expect(stateObjectKey({ ...base, workspace: 'default' })).toBe(KEY);
    expect(stateObjectKey({ ...base, workspace: 'dev' })).toBe('env:/dev/app/terraform.tfstate');
    expect(stateObjectKey({ ...base, workspace: 'dev', workspaceKeyPrefix: 'workspaces' })).toBe(
      'workspaces/dev/app/terraform.tfstate',
    );
    expect(stateObjectKey({ ...base, workspace: 'dev', workspaceKeyPrefix: '' })).toBe(
      'dev/app/terraform.tfstate',
    );
  });

  it('refuses a workspace key prefix with a leading or trailing slash', () => {
    expect(() =>
      stateObjectKey({ ...settingsFor('lockfile'), workspace: 'dev', workspaceKeyPrefix: 'env:/' }),
    ).toThrow(expect.objectContaining({ reason: 'InvalidBackend' }));
  });

  it('derives a stable UUID-shaped lock ID from the run id, different per run', () => {
    const id = lockIdFor(RUN);

    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(lockIdFor(RUN)).toBe(id);
    expect(lockIdFor(`${RUN}-2`)).not.toBe(id);
  });
});

describe('updateRemoteState writes like Terraform', () => {
  it.each<Mode>(['both', 'lockfile', 'dynamodb'])(
    'with %s locking: takes the lock(s), backs up, writes the edit and its digest, and releases',
    async (mode) => {
      const etag = seedState();

      const result = await updateRemoteState(clients, settingsFor(mode), owner(), setEip(NEW_IP));

      expect(result).toMatchObject({
        outcome: 'written',
        bucket: BUCKET,
        objectKey: KEY,
        backupKey: backupKey('17'),
        serialBefore: '17',
        serialAfter: '18',
        digest: md5(EXPECTED),
      });
      expect(state()?.body).toBe(EXPECTED);
      expect(callsTo('PutObject', KEY)[0]?.input).toMatchObject({
        IfMatch: etag,
        ContentType: 'application/json',
      });
      expect(callsTo('PutObject', LOCK_FILE).length).toBe(mode === 'dynamodb' ? 0 : 1);
      expect(
        callsTo('PutItem').filter((c) => JSON.stringify(c.input).includes('attribute_not_exists')),
      ).toHaveLength(mode === 'lockfile' ? 0 : 1);
      expect(lockFile()).toBeUndefined();
      expect(lockItem()).toBeUndefined();
      expect(result.warnings).toEqual([]);
    },
  );

  it('writes a Terraform-shaped LockInfo (Go field order, RFC3339Nano UTC, Path bucket/key) to the file and the item', async () => {
    seedState();

    await updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP));

    const fileBody = String(
      (callsTo('PutObject', LOCK_FILE)[0]?.input as { Body?: unknown } | undefined)?.Body,
    );
    const lockPut = callsTo('PutItem').find((c) => JSON.stringify(c.input).includes('attribute_not_exists'));
    const info = JSON.parse(fileBody) as Record<string, string>;
    expect(Object.keys(info)).toEqual(['ID', 'Operation', 'Info', 'Who', 'Version', 'Created', 'Path']);
    expect(info).toMatchObject({
      ID: lockIdFor(RUN),
      Operation: 'understudy-reconcile',
      Who: 'understudy@web-2025-06-01',
      Version: '0.1.0',
      Path: PATH,
    });
    expect(info.Created).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$/);
    expect(JSON.parse(info.Info ?? '')).toEqual({
      understudy: { runId: RUN, leaseExpires: expect.stringMatching(/Z$/) },
    });
    expect(callsTo('PutObject', LOCK_FILE)[0]?.input).toMatchObject({
      IfNoneMatch: '*',
      ContentType: 'application/json',
      ChecksumSHA256: sha256(fileBody),
    });
    expect(lockPut?.input).toMatchObject({
      TableName: TABLE,
      Item: { LockID: { S: PATH }, Info: { S: fileBody } },
      ConditionExpression: 'attribute_not_exists(LockID)',
    });
  });

  it('sets the DynamoDB digest to the MD5 of the exact bytes written, with a SHA-256 checksum on the object', async () => {
    seedState();

    await updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP));

    const written = state();
    expect(written?.bytes.equals(Buffer.from(EXPECTED, 'utf8'))).toBe(true);
    expect(digest()).toBe(md5(written?.bytes ?? ''));
    expect(written?.checksumSha256).toBe(sha256(written?.bytes ?? ''));
    expect(written?.contentType).toBe('application/json');
  });

  it('keeps a byte-identical, checksum-verified backup of the state it replaced', async () => {
    seedState();

    const result = await updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP));

    const backup = sandbox.s3.details(BUCKET, result.backupKey ?? '');
    expect(result.backupKey).toMatch(
      /^app\/terraform\.tfstate\.understudy-backups\/.*web-2025-06-01-[0-9a-f]{12}\/serial-17\.tfstate$/,
    );
    expect(backup?.bytes.equals(Buffer.from(ORIGINAL, 'utf8'))).toBe(true);
    expect(backup?.checksumSha256).toBe(sha256(ORIGINAL));
    expect(callsTo('PutObject', result.backupKey)[0]?.input).toMatchObject({ IfNoneMatch: '*' });
    expect(callsTo('HeadObject', result.backupKey)[0]?.input).toMatchObject({ ChecksumMode: 'ENABLED' });
  });

  it('writes state and backup with the SSE-KMS key the object had', async () => {
    seedState(ORIGINAL, { kms: true });

    const result = await updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP));

    expect(state()).toMatchObject({ serverSideEncryption: 'aws:kms', kmsKeyId: KMS_KEY });
    expect(sandbox.s3.details(BUCKET, result.backupKey ?? '')).toMatchObject({
      serverSideEncryption: 'aws:kms',
      kmsKeyId: KMS_KEY,
    });
  });

  it('writes the lock file with the SSE-KMS settings of the state object, as Terraform does', async () => {
    seedState(ORIGINAL, { kms: true });

    await updateRemoteState(clients, settingsFor('lockfile'), owner(), setEip(NEW_IP));

    expect(callsTo('PutObject', LOCK_FILE)[0]?.input).toMatchObject({
      ServerSideEncryption: 'aws:kms',
      SSEKMSKeyId: KMS_KEY,
    });
  });

  it('uses env:/<workspace>/<key> for the object, the lock file, the lock item and the digest', async () => {
    const objectKey = 'env:/dev/app/terraform.tfstate';
    seedState(ORIGINAL, { key: objectKey });

    const result = await updateRemoteState(
      clients,
      settingsFor('both', { workspace: 'dev' }),
      owner(),
      setEip(NEW_IP),
    );

    expect(result.objectKey).toBe(objectKey);
    expect(sandbox.s3.details(BUCKET, objectKey)?.body).toBe(EXPECTED);
    expect(sandbox.s3.details(BUCKET, KEY)).toBeUndefined();
    expect(callsTo('PutObject', `${objectKey}.tflock`)).toHaveLength(1);
    expect(JSON.stringify(callsTo('PutItem')[0]?.input)).toContain(`"S":"${BUCKET}/${objectKey}"`);
    expect(sandbox.dynamodb.item(TABLE, `S:${BUCKET}/${objectKey}-md5`)?.Digest?.S).toBe(md5(EXPECTED));
  });

  it('raises the serial itself when an edit changed the state but not its serial, as Terraform does', async () => {
    seedState();
    const keepSerial: StateEdit = (current) => {
      const next = setEip(NEW_IP)(current);
      return next && { ...next, serial: current.serial };
    };

    const result = await updateRemoteState(clients, settingsFor('lockfile'), owner(), keepSerial);

    expect(result.serialAfter).toBe('18');
    expect(state()?.body).toBe(EXPECTED);
  });

  it('is unchanged, writes nothing and keeps the serial when the edit has nothing to do', async () => {
    const etag = seedState(EXPECTED);

    const result = await updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP));

    expect(result).toMatchObject({ outcome: 'unchanged', serialBefore: '18', serialAfter: '18' });
    expect(result.backupKey).toBeUndefined();
    expect(state()?.etag).toBe(etag);
    expect(callsTo('PutObject').filter((c) => (c.input as { Key: string }).Key !== LOCK_FILE)).toEqual([]);
    expect(lockFile()).toBeUndefined();
  });

  it('dry run: reads, checks the digest and edits, but takes no lock and writes nothing', async () => {
    seedState();

    const result = await updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP), {
      dryRun: true,
    });

    expect(result).toMatchObject({
      outcome: 'dry-run',
      serialBefore: '17',
      serialAfter: '18',
      digest: md5(EXPECTED),
    });
    expect(sandbox.calls.filter((c) => c.mutating)).toEqual([]);
    expect(state()?.body).toBe(ORIGINAL);
  });

  it('readRemoteState returns the exact text and ETag without taking a lock', async () => {
    const etag = seedState();

    const read = await readRemoteState(clients, settingsFor('both'));

    expect(read.text).toBe(ORIGINAL);
    expect(read.etag).toBe(etag);
    expect(read.state.serial).toBe(17);
    expect(sandbox.calls.filter((c) => c.mutating)).toEqual([]);
  });

  it('refuses a missing state object with StateNotFound and releases the lock', async () => {
    const error = await refusal(updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP)));

    expect(error.reason).toBe('StateNotFound');
    expect(error.message).toContain(`s3://${BUCKET}/${KEY}`);
    expect(lockFile()).toBeUndefined();
    expect(lockItem()).toBeUndefined();
  });

  it('releases the lock and writes nothing when the edit refuses', async () => {
    const etag = seedState();
    const refuse: StateEdit = () => {
      throw new TfStateError('ExpectedInstanceDiffers', 'the state names i-0aaa, not i-0bbb');
    };

    const error = await refusal(updateRemoteState(clients, settingsFor('both'), owner(), refuse));

    expect(error.reason).toBe('ExpectedInstanceDiffers');
    expect(state()?.etag).toBe(etag);
    expect(sandbox.s3.keys(BUCKET)).toEqual([KEY]);
    expect(lockItem()).toBeUndefined();
  });
});

describe('locks held by someone else', () => {
  it('never breaks a Terraform user lock: retries with backoff 1 s doubling, then fails naming the holder, writing nothing', async () => {
    const stateEtag = seedState();
    const lockEtag = sandbox.s3.seedObject(BUCKET, LOCK_FILE, JSON.stringify(TERRAFORM_LOCK));
    const started = sandbox.clock.now();

    const error = await refusal(updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP)));

    expect(error.reason).toBe('LockHeld');
    expect(error.message).toContain('alice@build-7');
    expect(error.message).toContain(TERRAFORM_LOCK.ID);
    expect(error.message).toContain('OperationTypeApply');
    expect(error.message).toContain(TERRAFORM_LOCK.Created);
    const attempts = callsTo('PutObject', LOCK_FILE).map(
      (c) => c.at - (callsTo('PutObject', LOCK_FILE)[0]?.at ?? 0),
    );
    expect(attempts).toEqual([0, 1000, 3000, 7000, 15000, 30000]);
    expect(sandbox.clock.now() - started).toBe(30000);
    expect(lockFile()?.etag).toBe(lockEtag);
    expect(state()?.etag).toBe(stateEtag);
    expect(sandbox.s3.keys(BUCKET)).toEqual([KEY, LOCK_FILE]);
    expect(callsTo('DeleteObject')).toEqual([]);
    expect(lockItem()).toBeUndefined();
    expect(digest()).toBe(md5(ORIGINAL));
  });

  it('never breaks a Terraform user DynamoDB lock, and gives back the lock file it took first', async () => {
    seedState();
    sandbox.dynamodb.seedItem(TABLE, { LockID: { S: PATH }, Info: { S: JSON.stringify(TERRAFORM_LOCK) } });

    const error = await refusal(
      updateRemoteState(clients, settingsFor('both', { lockTimeoutSeconds: 0 }), owner(), setEip(NEW_IP)),
    );

    expect(error.reason).toBe('LockHeld');
    expect(error.message).toContain('alice@build-7');
    expect(error.message).toContain('DynamoDB lock item');
    expect(lockFile()).toBeUndefined();
    expect(lockItem()?.Info?.S).toBe(JSON.stringify(TERRAFORM_LOCK));
    expect(state()?.body).toBe(ORIGINAL);
  });

  it('proceeds once the holder releases its lock during the wait', async () => {
    seedState();
    sandbox.s3.seedObject(BUCKET, LOCK_FILE, JSON.stringify(TERRAFORM_LOCK));
    void sandbox.clock.sleep(5000).then(() => sandbox.s3.removeObject(BUCKET, LOCK_FILE));

    const result = await updateRemoteState(clients, settingsFor('lockfile'), owner(), setEip(NEW_IP));

    expect(result.outcome).toBe('written');
    expect(state()?.body).toBe(EXPECTED);
    const attempts = callsTo('PutObject', LOCK_FILE).map(
      (c) => c.at - (callsTo('PutObject', LOCK_FILE)[0]?.at ?? 0),
    );
    expect(attempts).toEqual([0, 1000, 3000, 7000]);
    expect(lockFile()).toBeUndefined();
  });

  it('breaks the lock of an earlier Understudy run whose lease expired, in both places', async () => {
    seedState();
    const stale = JSON.stringify(understudyLock('run-that-died', '2000-01-01T00:00:00.000Z'));
    sandbox.s3.seedObject(BUCKET, LOCK_FILE, stale);
    sandbox.dynamodb.seedItem(TABLE, { LockID: { S: PATH }, Info: { S: stale } });

    const result = await updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP));

    expect(result.outcome).toBe('written');
    expect(result.warnings.filter((w) => w.includes('broke the expired'))).toHaveLength(2);
    expect(callsTo('DeleteObject', LOCK_FILE)[0]?.input).toMatchObject({ IfMatch: expect.any(String) });
    expect(lockFile()).toBeUndefined();
    expect(lockItem()).toBeUndefined();
  });

  it.each([
    ['whose lease has not expired', understudyLock('other-run', '2999-01-01T00:00:00.000Z')],
    [
      'whose ID is not derived from the run id in its Info',
      understudyLock('other-run', '2000-01-01T00:00:00.000Z', TERRAFORM_LOCK.ID),
    ],
  ])('does not break an Understudy-marked lock %s', async (_what, lock) => {
    seedState();
    sandbox.s3.seedObject(BUCKET, LOCK_FILE, JSON.stringify(lock));

    const error = await refusal(
      updateRemoteState(clients, settingsFor('lockfile', { lockTimeoutSeconds: 3 }), owner(), setEip(NEW_IP)),
    );

    expect(error.reason).toBe('LockHeld');
    expect(lockFile()?.body).toBe(JSON.stringify(lock));
    expect(state()?.body).toBe(ORIGINAL);
  });
});

describe('ETag races', () => {
  /**
   * Another writer (locking nothing) replaces the state and its digest right after our digest check,
   * so our read passed and our If-Match write meets the new ETag.
   */
  const raceAfterReads = (count: number) => {
    let races = 0;
    onCall(
      clients.dynamodb,
      (command, input) =>
        command === 'GetItemCommand' && input.ProjectionExpression !== undefined && races < count,
      async () => {
        races += 1;
        const current = sandbox.s3.details(BUCKET, KEY)?.body ?? '';
        const parsed = readState(current);
        const theirs = writeState({
          ...parsed,
          serial: nextSerial(parsed.serial),
          outputs: { ...parsed.outputs, extra: { value: `race-${races}`, type: 'string' } },
        });
        sandbox.s3.seedObject(BUCKET, KEY, theirs, { contentType: 'application/json' });
        sandbox.dynamodb.seedItem(TABLE, { LockID: { S: `${PATH}-md5` }, Digest: { S: md5(theirs) } });
      },
    );
  };

  it('re-reads, re-applies the edit over the other write, backs up again and succeeds on the retry', async () => {
    seedState();
    raceAfterReads(1);

    const result = await updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP));

    const final = readState(state()?.body ?? '');
    expect(result).toMatchObject({ outcome: 'written', serialBefore: '18', serialAfter: '19' });
    expect(final.outputs.extra?.value).toBe('race-1');
    expect((final.outputs.summary?.value as JsonObject | undefined)?.eip).toBe(NEW_IP);
    expect(digest()).toBe(md5(state()?.bytes ?? ''));
    expect(result.backupKey).toBe(backupKey('18'));
    expect(sandbox.s3.details(BUCKET, backupKey('17'))?.body).toBe(ORIGINAL);
    expect(result.warnings.some((w) => w.includes('read again and retried once'))).toBe(true);
  });

  it('refuses with EtagChanged after a second race and writes neither state nor digest', async () => {
    seedState();
    raceAfterReads(2);

    const error = await refusal(updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP)));

    expect(error.reason).toBe('EtagChanged');
    expect(readState(state()?.body ?? '').outputs.extra?.value).toBe('race-2');
    expect(digest()).toBe(md5(state()?.bytes ?? ''));
    expect(callsTo('PutObject', KEY).map((c) => c.error)).toEqual([
      'PreconditionFailed',
      'PreconditionFailed',
    ]);
    expect(callsTo('PutItem').filter((c) => JSON.stringify(c.input).includes('"Digest"'))).toEqual([]);
    expect(lockFile()).toBeUndefined();
    expect(lockItem()).toBeUndefined();
  });
});

describe('a lock lost while working', () => {
  it('refuses with LockLost and does not write the state when another run took the lock meanwhile', async () => {
    const etag = seedState();
    const theirs = JSON.stringify(understudyLock('run-that-broke-ours', '2999-01-01T00:00:00.000Z'));
    onCall(
      clients.s3,
      (command, input) =>
        command === 'PutObjectCommand' && String(input.Key).includes('.understudy-backups/'),
      async () => sandbox.s3.seedObject(BUCKET, LOCK_FILE, theirs),
    );

    const error = await refusal(updateRemoteState(clients, settingsFor('lockfile'), owner(), setEip(NEW_IP)));

    expect(error.reason).toBe('LockLost');
    expect(error.message).toContain(lockIdFor('run-that-broke-ours'));
    expect(state()?.etag).toBe(etag);
    expect(lockFile()?.body).toBe(theirs);
  });
});

describe('another attempt of the same run', () => {
  it('lets a second attempt that re-entered the lock do the work: this one writes nothing and leaves the lock to it', async () => {
    const etag = seedState();
    let reentered = '';
    onCall(
      clients.s3,
      (command, input) =>
        command === 'PutObjectCommand' && String(input.Key).includes('.understudy-backups/'),
      async () => {
        // What the other attempt's re-entry does: the same ID, a new lease, written over ours.
        const ours = JSON.parse(sandbox.s3.details(BUCKET, LOCK_FILE)?.body ?? '{}') as { Created: string };
        reentered = JSON.stringify({
          ...JSON.parse(sandbox.s3.details(BUCKET, LOCK_FILE)?.body ?? '{}'),
          Created: `${ours.Created}x`,
        });
        sandbox.s3.seedObject(BUCKET, LOCK_FILE, reentered);
      },
    );

    const error = await refusal(updateRemoteState(clients, settingsFor('lockfile'), owner(), setEip(NEW_IP)));

    expect(error.reason).toBe('LockLost');
    expect(error.message).toContain('another attempt of this run');
    expect(state()?.etag).toBe(etag);
    expect(lockFile()?.body).toBe(reentered);
  });
});

describe('writes whose answer is lost', () => {
  const failAfter = (command: string, key: string, name: string, onlyChecksumReads = false) =>
    onCall(
      clients.s3,
      (c, input) =>
        c === command && input.Key === key && (!onlyChecksumReads || input.ChecksumMode === 'ENABLED'),
      async () => {
        const error = new Error(`${name} after the request was processed`);
        error.name = name;
        throw error;
      },
    );

  it('counts a state write that S3 stored but answered with an error as written, and records its digest', async () => {
    seedState();
    failAfter('PutObjectCommand', KEY, 'InternalError');

    const result = await updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP));

    expect(result).toMatchObject({ outcome: 'written', serialAfter: '18', digest: md5(EXPECTED) });
    expect(state()?.body).toBe(EXPECTED);
    expect(digest()).toBe(md5(EXPECTED));
    expect(lockFile()).toBeUndefined();
    expect(lockItem()).toBeUndefined();
  });

  it('when S3 cannot say whether a failed write landed, refuses with WriteUncertain naming the backup and the digest to set', async () => {
    seedState();
    failAfter('PutObjectCommand', KEY, 'InternalError');
    // The read-back after the failed write (the one that asks for the checksum) fails too.
    failAfter('HeadObjectCommand', KEY, 'ServiceUnavailable', true);

    const error = await refusal(updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP)));

    expect(error.reason).toBe('WriteUncertain');
    expect(error.message).toContain(backupKey('17'));
    expect(error.message).toContain(md5(EXPECTED));
    expect(lockFile()).toBeUndefined();
  });

  it('carries the backup key and the warnings on a failure, for the caller to report', async () => {
    seedState();
    failAfter('PutObjectCommand', KEY, 'InternalError');
    // The read-back after the failed write (the one that asks for the checksum) fails too.
    failAfter('HeadObjectCommand', KEY, 'ServiceUnavailable', true);

    const error = await refusal(updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP)));

    expect(remoteContextOf(error)).toEqual({ backupKey: backupKey('17'), warnings: [] });
  });
});

describe('the digest', () => {
  it("refuses a state whose digest does not match with Terraform's wording after polling, and writes nothing", async () => {
    seedState(ORIGINAL, { digest: false });
    sandbox.dynamodb.seedItem(TABLE, { LockID: { S: `${PATH}-md5` }, Digest: { S: md5('something else') } });
    const started = sandbox.clock.now();

    const error = await refusal(updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP)));

    expect(error.reason).toBe('DigestMismatch');
    expect(error.message).toMatch(/^state data in S3 does not have the expected content\./);
    expect(error.message).toContain(`Calculated checksum: ${md5(ORIGINAL)}`);
    expect(error.message).toContain(`Stored checksum: ${md5('something else')}`);
    expect(error.message).toMatch(
      new RegExp(
        `update the Digest value stored in the DynamoDB table to the following value: ${md5(ORIGINAL)}$`,
      ),
    );
    expect(sandbox.clock.now() - started).toBeGreaterThanOrEqual(10000);
    expect(state()?.body).toBe(ORIGINAL);
    expect(sandbox.s3.keys(BUCKET)).toEqual([KEY]);
    expect(lockItem()).toBeUndefined();
  });

  it('waits out a digest that catches up within the consistency window', async () => {
    seedState(ORIGINAL, { digest: false });
    sandbox.dynamodb.seedItem(TABLE, { LockID: { S: `${PATH}-md5` }, Digest: { S: md5('previous') } });
    void sandbox.clock
      .sleep(3000)
      .then(() =>
        sandbox.dynamodb.seedItem(TABLE, { LockID: { S: `${PATH}-md5` }, Digest: { S: md5(ORIGINAL) } }),
      );

    const result = await updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP));

    expect(result.outcome).toBe('written');
    expect(digest()).toBe(md5(EXPECTED));
  });

  it('treats a missing digest as Terraform does (no check) and records one after writing', async () => {
    seedState(ORIGINAL, { digest: false });

    await updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP));

    expect(digest()).toBe(md5(EXPECTED));
  });

  it('removes the digest item and names the value when the digest cannot be recorded', async () => {
    seedState();
    // From the state write on, every PutItem is refused (a policy without the digest item, say).
    onCall(
      clients.s3,
      (command, input) => command === 'PutObjectCommand' && input.Key === KEY,
      async () =>
        sandbox.injectFault({
          service: 'dynamodb',
          action: 'PutItem',
          fault: {
            error: 'AccessDeniedException',
            message: 'not authorized to perform dynamodb:PutItem',
            httpStatus: 400,
          },
        }),
    );

    const result = await updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP));

    expect(result.outcome).toBe('written');
    expect(state()?.body).toBe(EXPECTED);
    expect(digest()).toBeUndefined();
    expect(result.warnings.some((w) => w.includes(`set its Digest to ${md5(EXPECTED)}`))).toBe(true);
    expect(lockItem()).toBeUndefined();
  });
});

describe('crashes', () => {
  const isLockFilePut = (c: string, i: Record<string, unknown>) =>
    c === 'PutObjectCommand' && i.Key === LOCK_FILE;
  const isBackupPut = (c: string, i: Record<string, unknown>) =>
    c === 'PutObjectCommand' && String(i.Key).includes('.understudy-backups/');
  const isStatePut = (c: string, i: Record<string, unknown>) => c === 'PutObjectCommand' && i.Key === KEY;
  const isDigestPut = (c: string, i: Record<string, unknown>) =>
    c === 'PutItemCommand' && JSON.stringify(i).includes('"Digest"');
  const isLockItemPut = (c: string, i: Record<string, unknown>) =>
    c === 'PutItemCommand' && JSON.stringify(i).includes('attribute_not_exists');
  const isItemUnlock = (c: string, i: Record<string, unknown>) =>
    c === 'DeleteItemCommand' && JSON.stringify(i).includes('#info');
  const isFileUnlock = (c: string, i: Record<string, unknown>) =>
    c === 'DeleteObjectCommand' && i.Key === LOCK_FILE;

  type Point = readonly [string, 's3' | 'dynamodb', (c: string, i: Record<string, unknown>) => boolean];
  const points: Point[] = [
    ['taking the lock file', 's3', isLockFilePut],
    ['taking the DynamoDB lock', 'dynamodb', isLockItemPut],
    ['writing the backup', 's3', isBackupPut],
    ['writing the state', 's3', isStatePut],
    ['recording the digest', 'dynamodb', isDigestPut],
    ['releasing the DynamoDB lock', 'dynamodb', isItemUnlock],
    ['releasing the lock file', 's3', isFileUnlock],
  ];

  it.each(points)(
    'a crash right after %s, then the same run again: the edited state, its digest, a backup, no lock',
    async (_point, service, matches) => {
      seedState();
      const crashed = crashAfter(clients[service], matches);
      void updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP));
      await crashed;

      const restarted = createClients();
      const result = await updateRemoteState(
        { s3: restarted.s3, dynamodb: restarted.dynamodb },
        settingsFor('both'),
        owner(),
        setEip(NEW_IP),
      );

      expect(['written', 'unchanged']).toContain(result.outcome);
      expect(state()?.body).toBe(EXPECTED);
      expect(digest()).toBe(md5(EXPECTED));
      expect(sandbox.s3.details(BUCKET, backupKey('17'))?.body).toBe(ORIGINAL);
      expect(lockFile()).toBeUndefined();
      expect(lockItem()).toBeUndefined();
      expect(sandbox.s3.keys(BUCKET)).toEqual([KEY, backupKey('17')].sort());
    },
  );

  it('the same run re-enters the lock it took before a crash instead of waiting for it', async () => {
    seedState();
    const crashed = crashAfter(clients.dynamodb, isLockItemPut);
    void updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP));
    await crashed;
    const lockedAt = sandbox.clock.now();

    const restarted = createClients();
    const result = await updateRemoteState(
      { s3: restarted.s3, dynamodb: restarted.dynamodb },
      settingsFor('both', { lockTimeoutSeconds: 0 }),
      owner(),
      setEip(NEW_IP),
    );

    expect(result.outcome).toBe('written');
    expect(result.warnings.filter((w) => w.includes("re-entered this run's own"))).toHaveLength(2);
    expect(sandbox.clock.now()).toBe(lockedAt);
  });

  it('after a crash between the state write and the digest update, the same run repairs the digest and says so', async () => {
    seedState();
    const crashed = crashAfter(clients.s3, isStatePut);
    void updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP));
    await crashed;
    const before = digest();

    const restarted = createClients();
    const result = await updateRemoteState(
      { s3: restarted.s3, dynamodb: restarted.dynamodb },
      settingsFor('both'),
      owner(),
      setEip(NEW_IP),
    );

    expect(before).toBe(md5(ORIGINAL));
    expect(result.outcome).toBe('unchanged');
    expect(result.warnings.some((w) => w.includes(`the digest was set to ${md5(EXPECTED)}`))).toBe(true);
    expect(digest()).toBe(md5(EXPECTED));
  });

  it("another run finds the crashed run's lock held until its lease expires, then breaks it", async () => {
    seedState();
    const crashed = crashAfter(clients.s3, isBackupPut);
    void updateRemoteState(clients, settingsFor('both'), owner(), setEip(NEW_IP));
    await crashed;
    const restarted = createClients();
    const other = { s3: restarted.s3, dynamodb: restarted.dynamodb };

    const refused = await refusal(
      updateRemoteState(
        other,
        settingsFor('both', { lockTimeoutSeconds: 0 }),
        owner('another-run'),
        setEip(NEW_IP),
      ),
    );
    await sandbox.clock.sleep(900_000);
    const result = await updateRemoteState(other, settingsFor('both'), owner('another-run'), setEip(NEW_IP));

    expect(refused.reason).toBe('LockHeld');
    expect(refused.message).toContain(lockIdFor(RUN));
    expect(result.outcome).toBe('written');
    expect(state()?.body).toBe(EXPECTED);
    expect(lockFile()).toBeUndefined();
    expect(lockItem()).toBeUndefined();
  });
});
