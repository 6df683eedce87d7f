import { createHash } from 'node:crypto';
import {
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import {
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  PutObjectCommand,
  type PutObjectCommandInput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { tfStateError, withRemoteContext } from './errors';
import { BUCKET_NAME, type S3BackendSettings, stateObjectKey } from './s3-keys';
import {
  acquireLocks,
  DIGEST_SUFFIX,
  type HeldLocks,
  isConditionFailed,
  isNoSuchKey,
  type LockOwner,
  sleep,
} from './s3-lock';
import { nextSerial, readStateUtf8, type StateV4, serialText, writeState } from './state';

/**
 * The Terraform S3 backend, as `internal/backend/remote-state/s3` reads and writes it
 * (terraform-state.md §3): object keys and workspaces, the `.tflock` file and/or DynamoDB lock, the
 * `-md5` digest item. On top of what Terraform does, every write is preceded by a verified backup and
 * guarded by If-Match on the ETag read, so a crash at any point leaves the old state or the new one, a
 * backup, and a lock the same run recognises (or that expires by its lease).
 */

export { parseS3StateUrl, type S3BackendSettings, stateObjectKey } from './s3-keys';
export { DIGEST_SUFFIX, LOCK_FILE_SUFFIX, type LockOwner, lockIdFor } from './s3-lock';

/** Backups live next to the state: `<objectKey>.understudy-backups/<run>/serial-<n>.tfstate`. */
export const BACKUP_INFIX = '.understudy-backups/';

export type StateEdit = (current: StateV4) => StateV4 | undefined;

export interface RemoteUpdateResult {
  readonly outcome: 'written' | 'unchanged' | 'dry-run';
  readonly bucket: string;
  readonly objectKey: string;
  readonly backupKey?: string;
  readonly serialBefore: string;
  readonly serialAfter: string;
  /** Hex MD5 of the bytes written (or that a dry run would write). */
  readonly digest?: string;
  readonly warnings: readonly string[];
}

export interface RemoteClients {
  readonly s3: S3Client;
  readonly dynamodb?: DynamoDBClient;
}

/** A path segment for the run id: readable, but kept apart from other run ids by a hash. */
const runSegment = (runId: string): string => {
  const readable = runId
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .slice(-64);
  const hash = createHash('sha256').update(runId).digest('hex').slice(0, 12);
  return readable ? `${readable}-${hash}` : hash;
};

/** Where this run backs up the state of a given serial (deterministic, so a retry finds its own). */
export const backupKeyFor = (objectKey: string, runId: string, serial: string): string =>
  `${objectKey}${BACKUP_INFIX}${runSegment(runId)}/serial-${serial}.tfstate`;

// ---------------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------------

const md5Hex = (bytes: Uint8Array) => createHash('md5').update(bytes).digest('hex');
const sha256Base64 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('base64');

interface RemoteObject {
  readonly bytes: Uint8Array;
  readonly etag: string;
  readonly state: StateV4;
  /** The object's encryption, written back as it was. */
  readonly encryption: Pick<
    PutObjectCommandInput,
    'ServerSideEncryption' | 'SSEKMSKeyId' | 'BucketKeyEnabled'
  >;
}

interface Place {
  readonly clients: RemoteClients;
  readonly settings: S3BackendSettings;
  readonly bucket: string;
  readonly objectKey: string;
  /** `<bucket>/<objectKey>`: the lock and digest item names. */
  readonly path: string;
}

const placeOf = (clients: RemoteClients, settings: S3BackendSettings): Place => {
  const objectKey = stateObjectKey(settings);
  if (!BUCKET_NAME.test(settings.bucket)) {
    throw tfStateError(
      'InvalidBackend',
      `${JSON.stringify(settings.bucket)} is not an S3 bucket name: use the backend's bucket`,
    );
  }
  if (settings.dynamodbTable !== undefined && !clients.dynamodb) {
    throw tfStateError(
      'InvalidBackend',
      `the backend uses the DynamoDB table ${settings.dynamodbTable} but no DynamoDB client was given`,
    );
  }
  return { clients, settings, bucket: settings.bucket, objectKey, path: `${settings.bucket}/${objectKey}` };
};

const getObject = async (place: Place): Promise<RemoteObject> => {
  const where = `s3://${place.bucket}/${place.objectKey}`;
  let out: GetObjectCommandOutput;
  let bytes: Uint8Array;
  try {
    const response = await place.clients.s3.send(
      new GetObjectCommand({ Bucket: place.bucket, Key: place.objectKey, ChecksumMode: 'ENABLED' }),
    );
    out = response;
    bytes = (await response.Body?.transformToByteArray()) ?? new Uint8Array();
  } catch (error) {
    if ((error as Error).name === 'NoSuchBucket') {
      throw tfStateError(
        'InvalidBackend',
        `S3 bucket "${place.bucket}" does not exist: check the backend's bucket`,
        {
          cause: error,
        },
      );
    }
    if (isNoSuchKey(error)) {
      throw tfStateError(
        'StateNotFound',
        `there is no state at ${where}: check the bucket, key and workspace of the backend`,
        { cause: error },
      );
    }
    throw error;
  }
  if (bytes.length === 0) {
    throw tfStateError(
      'StateNotFound',
      `the state object ${where} is empty: Terraform reads that as no state`,
    );
  }
  const sse = out.ServerSideEncryption;
  const kms = sse === 'aws:kms' || sse === 'aws:kms:dsse';
  return {
    bytes,
    etag: String(out.ETag ?? ''),
    // Parsed from the bytes: a decoded copy of a large state would be held for nothing.
    state: readStateUtf8(bytes, where),
    encryption: {
      ...(sse ? { ServerSideEncryption: sse } : {}),
      ...(kms && typeof out.SSEKMSKeyId === 'string' ? { SSEKMSKeyId: out.SSEKMSKeyId } : {}),
      ...(kms && out.BucketKeyEnabled === true ? { BucketKeyEnabled: true } : {}),
    },
  };
};

const digestKey = (place: Place) => ({ LockID: { S: `${place.path}${DIGEST_SUFFIX}` } });

/** The stored digest; a missing or malformed one is no digest, as for Terraform (§3.4). */
const getDigest = async (place: Place, warnings: string[]): Promise<string | undefined> => {
  const dynamodb = place.clients.dynamodb;
  if (place.settings.dynamodbTable === undefined || !dynamodb) return undefined;
  const out = await dynamodb.send(
    new GetItemCommand({
      TableName: place.settings.dynamodbTable,
      Key: digestKey(place),
      ConsistentRead: true,
      ProjectionExpression: 'LockID, Digest',
    }),
  );
  const digest = out.Item?.Digest?.S;
  if (digest === undefined) return undefined;
  if (!/^[0-9a-f]{32}$/i.test(digest)) {
    warnings.push(`the stored digest ${JSON.stringify(digest)} is not an MD5: ignored, as Terraform does`);
    return undefined;
  }
  return digest.toLowerCase();
};

const digestMismatch = (place: Place, calculated: string, stored: string) =>
  tfStateError(
    'DigestMismatch',
    [
      'state data in S3 does not have the expected content.',
      'The checksum calculated for the state stored in S3 does not match the checksum stored in DynamoDB.',
      `Bucket: ${place.bucket}, Key: ${place.objectKey}, Calculated checksum: ${calculated}, Stored checksum: ${stored}.`,
      'This may be caused by unusually long delays in S3 processing a previous state update. Please wait for a minute or two and try again.',
      'If this problem persists, and neither S3 nor DynamoDB are experiencing an outage, you may need to manually verify the remote state and update the Digest value stored in the DynamoDB table to the following value:',
      calculated,
    ].join(' '),
  );

/** Terraform's own patience with a digest that does not match yet (`consistencyRetryTimeout`). */
const CONSISTENCY_TIMEOUT_MS = 10_000;
const CONSISTENCY_POLL_MS = 2_000;

/**
 * The digest names the state this run backed up just before writing the current object: the run
 * wrote the state and died before it could record the digest. Then the object is ours and correct.
 */
const isOwnUnrecordedWrite = async (
  place: Place,
  object: RemoteObject,
  stored: string,
  runId: string,
): Promise<string | undefined> => {
  const serial = BigInt(serialText(object.state.serial));
  if (serial <= 0n) return undefined;
  const key = backupKeyFor(place.objectKey, runId, (serial - 1n).toString());
  try {
    const out = await place.clients.s3.send(new GetObjectCommand({ Bucket: place.bucket, Key: key }));
    const bytes = (await out.Body?.transformToByteArray()) ?? new Uint8Array();
    return md5Hex(bytes) === stored ? key : undefined;
  } catch (error) {
    if (isNoSuchKey(error)) return undefined;
    throw error;
  }
};

/**
 * Reads the state and checks it against the digest like Terraform: a mismatch is polled for a while
 * (eventual consistency), then refused. The one mismatch that is not refused is this run's own write
 * whose digest update a crash cut short: with `repair` the digest is set to the object, otherwise a
 * warning says so.
 */
const readChecked = async (
  place: Place,
  warnings: string[],
  own?: { readonly runId: string; readonly repair: boolean },
): Promise<RemoteObject> => {
  const deadline = Date.now() + CONSISTENCY_TIMEOUT_MS;
  let checkedOwn = false;
  for (;;) {
    const object = await getObject(place);
    const stored = await getDigest(place, warnings);
    const calculated = md5Hex(object.bytes);
    if (stored === undefined || stored === calculated) return object;
    if (own && !checkedOwn) {
      checkedOwn = true;
      const backupKey = await isOwnUnrecordedWrite(place, object, stored, own.runId);
      if (backupKey) {
        if (own.repair) {
          await putDigest(place, calculated, stored);
          warnings.push(
            `this run wrote the state before and stopped before recording its digest (backup ${backupKey}): the digest was set to ${calculated}`,
          );
        } else {
          warnings.push(
            `this run wrote the state before and stopped before recording its digest (backup ${backupKey}): the digest still needs to be set to ${calculated}`,
          );
        }
        return object;
      }
    }
    if (Date.now() >= deadline) throw digestMismatch(place, calculated, stored);
    await sleep(Math.min(CONSISTENCY_POLL_MS, Math.max(0, deadline - Date.now())));
  }
};

// ---------------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------------

/** Records the digest; with `replacing`, only over that value (our repair must not undo another's). */
const putDigest = async (place: Place, digest: string, replacing?: string): Promise<void> => {
  const dynamodb = place.clients.dynamodb;
  if (place.settings.dynamodbTable === undefined || !dynamodb) return;
  await dynamodb.send(
    new PutItemCommand({
      TableName: place.settings.dynamodbTable,
      Item: { ...digestKey(place), Digest: { S: digest } },
      ...(replacing !== undefined
        ? {
            ConditionExpression: 'Digest = :stored',
            ExpressionAttributeValues: { ':stored': { S: replacing } },
          }
        : {}),
    }),
  );
};

const DIGEST_ATTEMPTS = 3;

/**
 * After the state was written: record its digest. If that keeps failing, remove the digest instead (a
 * missing digest is a safe reset, a wrong one breaks the next `terraform plan`) and say what to set.
 */
const recordDigest = async (place: Place, digest: string, warnings: string[]): Promise<void> => {
  let last: unknown;
  for (let attempt = 1; attempt <= DIGEST_ATTEMPTS; attempt++) {
    try {
      await putDigest(place, digest);
      return;
    } catch (error) {
      last = error;
      if (attempt < DIGEST_ATTEMPTS) await sleep(1000 * attempt);
    }
  }
  const table = place.settings.dynamodbTable ?? '';
  const item = `${place.path}${DIGEST_SUFFIX}`;
  const why = `${(last as Error)?.name ?? 'Error'}: ${(last as Error)?.message ?? String(last)}`;
  try {
    await place.clients.dynamodb?.send(new DeleteItemCommand({ TableName: table, Key: digestKey(place) }));
    warnings.push(
      `the state was written but its digest could not be recorded (${why}); the digest item ${item} in ${table} was removed, which Terraform accepts. To restore it, set its Digest to ${digest}`,
    );
  } catch {
    warnings.push(
      `the state was written but its digest could not be recorded (${why}) nor removed: terraform will report "state data in S3 does not have the expected content" until Digest of ${item} in ${table} is set to ${digest}`,
    );
  }
};

const backupFailed = (key: string, why: string, cause?: unknown) =>
  tfStateError(
    'BackupFailed',
    `the state could not be backed up to ${key} (${why}); nothing was written to the state`,
    {
      ...(cause !== undefined ? { cause } : {}),
    },
  );

/** The backup's checksum as S3 reports it (or, for stores without checksums, its bytes compared). */
const backupMatches = async (
  place: Place,
  key: string,
  object: RemoteObject,
  sha: string,
): Promise<boolean> => {
  if (place.settings.skipS3Checksum) {
    const out = await place.clients.s3.send(new GetObjectCommand({ Bucket: place.bucket, Key: key }));
    const bytes = (await out.Body?.transformToByteArray()) ?? new Uint8Array();
    return Buffer.from(bytes).equals(Buffer.from(object.bytes));
  }
  const head = await place.clients.s3.send(
    new HeadObjectCommand({ Bucket: place.bucket, Key: key, ChecksumMode: 'ENABLED' }),
  );
  return head.ChecksumSHA256 === sha && head.ContentLength === object.bytes.length;
};

/**
 * A verified copy of the exact bytes read, at a key derived from the run and the serial: written
 * create-only, so a retry of the same run finds its own copy (same checksum: fine) and never overwrites
 * one. A different copy already there (same serial, other content) goes to a key with its hash.
 */
const writeBackup = async (place: Place, object: RemoteObject, runId: string): Promise<string> => {
  const sha = sha256Base64(object.bytes);
  const primary = backupKeyFor(place.objectKey, runId, serialText(object.state.serial));
  const alternate = primary.replace(
    /\.tfstate$/,
    `-${Buffer.from(sha, 'base64').toString('hex').slice(0, 12)}.tfstate`,
  );
  for (const key of [primary, alternate]) {
    let created = true;
    try {
      await place.clients.s3.send(
        new PutObjectCommand({
          Bucket: place.bucket,
          Key: key,
          Body: object.bytes,
          IfNoneMatch: '*',
          ContentType: 'application/json',
          ...(place.settings.skipS3Checksum
            ? {}
            : { ChecksumAlgorithm: 'SHA256' as const, ChecksumSHA256: sha }),
          ...object.encryption,
        }),
      );
    } catch (error) {
      if (!isConditionFailed(error))
        throw backupFailed(key, `${(error as Error).name}: ${(error as Error).message}`, error);
      created = false;
    }
    let matches: boolean;
    try {
      matches = await backupMatches(place, key, object, sha);
    } catch (error) {
      throw backupFailed(key, `it could not be read back: ${(error as Error).name}`, error);
    }
    if (matches) return key;
    if (created) throw backupFailed(key, 'the copy read back does not match the state read');
  }
  throw backupFailed(alternate, 'other copies already exist under both names');
};

interface Edited {
  readonly state: StateV4;
  readonly bytes: Uint8Array;
}

/**
 * The edit's result as bytes. Like Terraform's state manager, a changed state gets serial + 1 unless
 * the edit already raised it.
 */
const applyEdit = (edit: StateEdit, object: RemoteObject): Edited | undefined => {
  const next = edit(object.state);
  if (!next) return undefined;
  const bytes = Buffer.from(writeState(next), 'utf8');
  if (bytes.equals(object.bytes)) return undefined;
  if (BigInt(serialText(next.serial)) <= BigInt(serialText(object.state.serial))) {
    const state = { ...next, serial: nextSerial(object.state.serial) };
    return { state, bytes: Buffer.from(writeState(state), 'utf8') };
  }
  return { state: next, bytes };
};

/**
 * Whether the object now holds exactly `edited` (checksum and length, or the bytes when checksums are
 * off); undefined when S3 cannot say. Asked after a write that failed: a timeout or a 5xx can come
 * after S3 stored the object, and an SDK retry of a write that landed answers 412 to its own success.
 */
const landed = async (place: Place, edited: Edited): Promise<boolean | undefined> => {
  try {
    if (place.settings.skipS3Checksum) {
      const out = await place.clients.s3.send(
        new GetObjectCommand({ Bucket: place.bucket, Key: place.objectKey }),
      );
      const bytes = (await out.Body?.transformToByteArray()) ?? new Uint8Array();
      return Buffer.from(bytes).equals(Buffer.from(edited.bytes));
    }
    const head = await place.clients.s3.send(
      new HeadObjectCommand({ Bucket: place.bucket, Key: place.objectKey, ChecksumMode: 'ENABLED' }),
    );
    return head.ChecksumSHA256 === sha256Base64(edited.bytes) && head.ContentLength === edited.bytes.length;
  } catch {
    return undefined;
  }
};

/** The state object's encryption, learnt before locking: the lock file is written with the same. */
const headEncryption = async (place: Place): Promise<RemoteObject['encryption']> => {
  try {
    const head = await place.clients.s3.send(
      new HeadObjectCommand({ Bucket: place.bucket, Key: place.objectKey }),
    );
    const sse = head.ServerSideEncryption;
    const kms = sse === 'aws:kms' || sse === 'aws:kms:dsse';
    return {
      ...(sse ? { ServerSideEncryption: sse } : {}),
      ...(kms && head.SSEKMSKeyId ? { SSEKMSKeyId: head.SSEKMSKeyId } : {}),
      ...(kms && head.BucketKeyEnabled === true ? { BucketKeyEnabled: true } : {}),
    };
  } catch (error) {
    // A missing state is reported by the read that follows, with its own message.
    if (isNoSuchKey(error) || (error as Error).name === 'NotFound') return {};
    throw error;
  }
};

const putState = async (place: Place, object: RemoteObject, edited: Edited): Promise<void> => {
  await place.clients.s3.send(
    new PutObjectCommand({
      Bucket: place.bucket,
      Key: place.objectKey,
      Body: edited.bytes,
      IfMatch: object.etag,
      ContentType: 'application/json',
      ...(place.settings.skipS3Checksum
        ? {}
        : { ChecksumAlgorithm: 'SHA256' as const, ChecksumSHA256: sha256Base64(edited.bytes) }),
      ...object.encryption,
    }),
  );
};

/**
 * Locks, reads (verifying the digest), edits, backs up, writes with If-Match, records the digest and
 * unlocks, as design §4 describes. An ETag change between read and write is re-read and retried once,
 * then refused with EtagChanged. A dry run reads and edits only: no lock, no write.
 */
export async function updateRemoteState(
  clients: RemoteClients,
  settings: S3BackendSettings,
  owner: LockOwner,
  edit: StateEdit,
  options: { readonly dryRun?: boolean } = {},
): Promise<RemoteUpdateResult> {
  const place = placeOf(clients, settings);
  const warnings: string[] = [];
  const base = { bucket: place.bucket, objectKey: place.objectKey, warnings };

  if (options.dryRun) {
    const object = await readChecked(place, warnings, { runId: owner.runId, repair: false });
    const edited = applyEdit(edit, object);
    const serialBefore = serialText(object.state.serial);
    return edited
      ? {
          ...base,
          outcome: 'dry-run',
          serialBefore,
          serialAfter: serialText(edited.state.serial),
          digest: md5Hex(edited.bytes),
        }
      : { ...base, outcome: 'unchanged', serialBefore, serialAfter: serialBefore };
  }

  if (!settings.useLockfile && settings.dynamodbTable === undefined) {
    warnings.push(
      'the backend configures no lock (neither use_lockfile nor dynamodb_table): written without one',
    );
  }
  const locking = settings.useLockfile || settings.dynamodbTable !== undefined;
  const locks: HeldLocks | undefined = locking
    ? await acquireLocks(
        {
          ...place.settings,
          ...clients,
          objectKey: place.objectKey,
          ...(settings.useLockfile ? { encryption: await headEncryption(place) } : {}),
        },
        owner,
        warnings,
      )
    : undefined;
  let backupKey: string | undefined;
  try {
    for (let attempt = 1; ; attempt++) {
      const object = await readChecked(place, warnings, { runId: owner.runId, repair: true });
      const serialBefore = serialText(object.state.serial);
      const edited = applyEdit(edit, object);
      if (!edited) return { ...base, outcome: 'unchanged', serialBefore, serialAfter: serialBefore };
      backupKey = await writeBackup(place, object, owner.runId);
      await locks?.verify();
      let written = true;
      let failure: unknown;
      try {
        await putState(place, object, edited);
      } catch (error) {
        failure = error;
        const outcome = await landed(place, edited);
        if (outcome === undefined) {
          throw tfStateError(
            'WriteUncertain',
            `writing the state at s3://${place.bucket}/${place.objectKey} failed (${(error as Error).name}: ${(error as Error).message}) and S3 could not say whether it landed: compare the object with the backup ${backupKey}; if it holds the new state (serial ${serialText(edited.state.serial)}), set the digest to ${md5Hex(edited.bytes)}`,
            { cause: error },
          );
        }
        if (!outcome && !isConditionFailed(error) && !isNoSuchKey(error)) throw error;
        written = outcome;
      }
      if (!written) {
        if (attempt >= 2) {
          throw tfStateError(
            'EtagChanged',
            `the state at s3://${place.bucket}/${place.objectKey} changed between read and write twice (ETag ${object.etag} no longer current) although the lock was held: something writes it without locking; nothing was written (backup ${backupKey})`,
            { cause: failure },
          );
        }
        warnings.push(
          `the state changed between read and write (ETag ${object.etag}): read again and retried once`,
        );
        continue;
      }
      const digest = md5Hex(edited.bytes);
      await recordDigest(place, digest, warnings);
      return {
        ...base,
        outcome: 'written',
        backupKey,
        serialBefore,
        serialAfter: serialText(edited.state.serial),
        digest,
      };
    }
  } catch (error) {
    throw withRemoteContext(error, { ...(backupKey ? { backupKey } : {}), warnings });
  } finally {
    await locks?.release(warnings);
  }
}

/** The state as it is, digest-checked, without a lock: for dry runs and inspection. */
export async function readRemoteState(
  clients: RemoteClients,
  settings: S3BackendSettings,
): Promise<{ state: StateV4; text: string; etag: string }> {
  const object = await readChecked(placeOf(clients, settings), []);
  return { state: object.state, text: Buffer.from(object.bytes).toString('utf8'), etag: object.etag };
}
