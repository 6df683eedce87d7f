import { createHash } from 'node:crypto';
import {
  ConditionalCheckFailedException,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  type PutObjectCommandInput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { tfStateError } from './errors';
import { escapeGo } from './json';

/**
 * The S3 backend's locks, taken exactly as Terraform takes them (terraform-state.md §3.4, §3.6, §3.7),
 * so a concurrent `terraform apply` is refused while Understudy writes and the other way round.
 * What Understudy adds, and only for its own locks: a lock ID derived from the run id (a retry of the
 * same run after a crash recognises its lock) and a lease in the lock's `Info` (a lock of a run that died
 * can be broken by a later run once the lease ran out). A lock without Understudy's mark, such as a
 * Terraform user's, is never broken.
 */

export const LOCK_FILE_SUFFIX = '.tflock';
export const DIGEST_SUFFIX = '-md5';

export interface LockOwner {
  /** Stable across retries of the same run (the execution ARN): the lock ID is derived from it. */
  readonly runId: string;
  /** Terraform's `Operation` field, e.g. `understudy-reconcile` or `state-mv`. */
  readonly operation: string;
  /** Terraform's `Who` field (`user@host` for Terraform itself). */
  readonly who: string;
  readonly version: string;
  /** After this long a crashed run's lock may be broken by another Understudy run. */
  readonly leaseSeconds: number;
}

/** A UUID-shaped lock ID (Terraform's are random UUIDs), derived from the run id with SHA-256. */
export function lockIdFor(runId: string): string {
  const h = createHash('sha256').update(`understudy-lock:${runId}`).digest('hex');
  // Version 8 (RFC 9562 "custom") and the RFC variant: a valid UUID that says it is not random.
  const variant = ((Number.parseInt(h.slice(16, 17), 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

// ---------------------------------------------------------------------------------------------------
// Small shared helpers (also used by s3-backend.ts)
// ---------------------------------------------------------------------------------------------------

const statusOf = (error: unknown): number | undefined =>
  (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
const nameOf = (error: unknown): string | undefined =>
  (error as { name?: unknown } | undefined)?.name as string;

/** 412 (the condition did not hold) or 409 (a concurrent conditional write: re-read and try again). */
export const isConditionFailed = (error: unknown): boolean =>
  nameOf(error) === 'PreconditionFailed' ||
  nameOf(error) === 'ConditionalRequestConflict' ||
  statusOf(error) === 412 ||
  statusOf(error) === 409;
export const isNoSuchKey = (error: unknown): boolean =>
  nameOf(error) === 'NoSuchKey' || nameOf(error) === 'NotFound' || statusOf(error) === 404;
export const isConditionalCheckFailed = (error: unknown): boolean =>
  error instanceof ConditionalCheckFailedException || nameOf(error) === 'ConditionalCheckFailedException';

/** Plain global setTimeout, so a virtual clock drives the waits. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** `json.Marshal`: compact, with Go's HTML-safe escaping. */
const goMarshal = (value: unknown): string => escapeGo(JSON.stringify(value));

/** Go's `time.RFC3339Nano` of a UTC time: the fraction without trailing zeros, none when zero. */
export const rfc3339Nano = (ms: number): string =>
  new Date(ms).toISOString().replace(/\.(\d*?)0*Z$/, (_, digits: string) => (digits ? `.${digits}Z` : 'Z'));

// ---------------------------------------------------------------------------------------------------
// Lock info
// ---------------------------------------------------------------------------------------------------

/** Terraform's `LockInfo` as found in a lock: any field may be missing from a lock someone else wrote. */
export interface FoundLockInfo {
  readonly ID?: string;
  readonly Operation?: string;
  readonly Info?: string;
  readonly Who?: string;
  readonly Version?: string;
  readonly Created?: string;
  readonly Path?: string;
}

interface UnderstudyMark {
  readonly understudy: { readonly runId: string; readonly leaseExpires: string };
}

const lockInfoText = (owner: LockOwner, path: string, now: number): string =>
  goMarshal({
    ID: lockIdFor(owner.runId),
    Operation: owner.operation,
    Info: JSON.stringify({
      understudy: {
        runId: owner.runId,
        leaseExpires: new Date(now + owner.leaseSeconds * 1000).toISOString(),
      },
    } satisfies UnderstudyMark),
    Who: owner.who,
    Version: owner.version,
    Created: rfc3339Nano(now),
    Path: path,
  });

const parseLockInfo = (text: string): FoundLockInfo => {
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {};
    const fields: Record<string, string> = {};
    for (const [key, value] of Object.entries(parsed)) if (typeof value === 'string') fields[key] = value;
    return fields;
  } catch {
    return {};
  }
};

/**
 * A lock may be broken only if Understudy wrote it (its Info carries the mark, and its ID is the one
 * derived from the run id in that mark, so a copied Info cannot make a foreign lock breakable) and its
 * lease ran out.
 */
const isExpiredUnderstudyLock = (info: FoundLockInfo, now: number): boolean => {
  if (!info.ID || !info.Info) return false;
  let mark: unknown;
  try {
    mark = JSON.parse(info.Info);
  } catch {
    return false;
  }
  const understudy = (mark as Partial<UnderstudyMark> | null)?.understudy;
  if (typeof understudy?.runId !== 'string' || typeof understudy.leaseExpires !== 'string') return false;
  const expires = Date.parse(understudy.leaseExpires);
  return info.ID === lockIdFor(understudy.runId) && Number.isFinite(expires) && expires < now;
};

const describeHolder = (holder: HeldBy): string => {
  const { info } = holder;
  if (!info.ID) {
    return `the ${holder.where} exists but does not hold Terraform lock info (${holder.raw.slice(0, 200)})`;
  }
  return `held by ${info.Who ?? 'an unknown holder'} (ID ${info.ID}, operation ${info.Operation ?? '?'}, created ${info.Created ?? '?'}, in the ${holder.where})`;
};

// ---------------------------------------------------------------------------------------------------
// Taking and releasing
// ---------------------------------------------------------------------------------------------------

export interface LockTarget {
  readonly s3: S3Client;
  readonly dynamodb?: DynamoDBClient;
  readonly bucket: string;
  readonly objectKey: string;
  readonly useLockfile: boolean;
  readonly dynamodbTable?: string;
  readonly lockTimeoutSeconds: number;
  readonly skipS3Checksum?: boolean;
  /** The state object's encryption: Terraform writes the lock file with the same settings. */
  readonly encryption?: Pick<
    PutObjectCommandInput,
    'ServerSideEncryption' | 'SSEKMSKeyId' | 'BucketKeyEnabled'
  >;
}

interface HeldBy {
  readonly where: 'lock file' | 'DynamoDB lock item';
  readonly info: FoundLockInfo;
  readonly raw: string;
}
type Attempt = { readonly taken: true } | { readonly taken: false; readonly holder?: HeldBy };

/** The locks this run holds; `release()` and `verify()` act only on locks whose ID is ours. */
export interface HeldLocks {
  readonly id: string;
  /** Fails with LockLost if a lock is no longer ours (broken after our lease ran out). */
  verify(): Promise<void>;
  /** Releases what is ours; problems become warnings (the state is already written or untouched). */
  release(warnings: string[]): Promise<void>;
}

const lockPathOf = (target: LockTarget) => `${target.bucket}/${target.objectKey}`;
const lockFileKey = (target: LockTarget) => `${target.objectKey}${LOCK_FILE_SUFFIX}`;

const sha256Base64 = (text: string) => createHash('sha256').update(text).digest('base64');

class LockSession {
  private readonly id: string;
  private readonly path: string;
  private readonly fileKey: string;
  constructor(
    private readonly target: LockTarget,
    private readonly owner: LockOwner,
    private readonly warnings: string[],
  ) {
    this.id = lockIdFor(owner.runId);
    this.path = lockPathOf(target);
    this.fileKey = lockFileKey(target);
  }

  /**
   * The exact lock texts this invocation wrote. Another invocation of the same run (Step Functions may
   * start one while this one still runs) derives the same ID; it re-enters by rewriting the text, and
   * from then on the lock is that invocation's: this one neither writes under it nor releases it.
   */
  private fileText: string | undefined;
  private itemText: string | undefined;

  private dynamo(): DynamoDBClient {
    if (!this.target.dynamodb) {
      throw tfStateError(
        'InvalidBackend',
        `the backend uses the DynamoDB table ${this.target.dynamodbTable ?? ''} but no DynamoDB client was given`,
      );
    }
    return this.target.dynamodb;
  }

  private putFile(body: string, condition: { IfNoneMatch: '*' } | { IfMatch: string }) {
    return this.target.s3.send(
      new PutObjectCommand({
        Bucket: this.target.bucket,
        Key: this.fileKey,
        Body: body,
        ContentType: 'application/json',
        ...(this.target.skipS3Checksum
          ? {}
          : { ChecksumAlgorithm: 'SHA256' as const, ChecksumSHA256: sha256Base64(body) }),
        ...this.target.encryption,
        ...condition,
      }),
    );
  }

  private async readFile(): Promise<{ text: string; etag: string; info: FoundLockInfo } | undefined> {
    try {
      const out = await this.target.s3.send(
        new GetObjectCommand({ Bucket: this.target.bucket, Key: this.fileKey }),
      );
      const text = (await out.Body?.transformToString('utf-8')) ?? '';
      return { text, etag: out.ETag ?? '', info: parseLockInfo(text) };
    } catch (error) {
      if (isNoSuchKey(error)) return undefined;
      throw error;
    }
  }

  private async readItem(): Promise<{ text: string; info: FoundLockInfo } | undefined> {
    const out = await this.dynamo().send(
      new GetItemCommand({
        TableName: this.target.dynamodbTable,
        Key: { LockID: { S: this.path } },
        ConsistentRead: true,
      }),
    );
    if (!out.Item) return undefined;
    const text = out.Item.Info?.S ?? '';
    return { text, info: parseLockInfo(text) };
  }

  /** A few rounds absorb a lock released or broken between our write and our read. */
  private static readonly ROUNDS = 3;

  async tryFile(): Promise<Attempt> {
    let holder: HeldBy | undefined;
    for (let round = 0; round < LockSession.ROUNDS; round++) {
      const body = lockInfoText(this.owner, this.path, Date.now());
      try {
        await this.putFile(body, { IfNoneMatch: '*' });
        this.fileText = body;
        return { taken: true };
      } catch (error) {
        if (!isConditionFailed(error)) throw error;
      }
      // A 412 may answer our own earlier write (an SDK retry, or this run before a crash): look first.
      const existing = await this.readFile();
      if (!existing) continue;
      holder = { where: 'lock file', info: existing.info, raw: existing.text };
      if (existing.info.ID === this.id) {
        try {
          await this.putFile(body, { IfMatch: existing.etag });
          this.fileText = body;
          this.warnings.push(`re-entered this run's own lock file ${this.fileKey} (ID ${this.id})`);
          return { taken: true };
        } catch (error) {
          if (isConditionFailed(error) || isNoSuchKey(error)) continue;
          throw error;
        }
      }
      if (!isExpiredUnderstudyLock(existing.info, Date.now())) return { taken: false, holder };
      try {
        await this.target.s3.send(
          new DeleteObjectCommand({ Bucket: this.target.bucket, Key: this.fileKey, IfMatch: existing.etag }),
        );
        this.warnings.push(
          `broke the expired lock file of an earlier Understudy run (${describeHolder(holder)})`,
        );
      } catch (error) {
        if (!isConditionFailed(error) && !isNoSuchKey(error)) throw error;
      }
    }
    return { taken: false, ...(holder ? { holder } : {}) };
  }

  async tryItem(): Promise<Attempt> {
    let holder: HeldBy | undefined;
    for (let round = 0; round < LockSession.ROUNDS; round++) {
      const info = lockInfoText(this.owner, this.path, Date.now());
      try {
        await this.dynamo().send(
          new PutItemCommand({
            TableName: this.target.dynamodbTable,
            Item: { LockID: { S: this.path }, Info: { S: info } },
            ConditionExpression: 'attribute_not_exists(LockID)',
          }),
        );
        this.itemText = info;
        return { taken: true };
      } catch (error) {
        if (!isConditionalCheckFailed(error)) throw error;
      }
      const existing = await this.readItem();
      if (!existing) continue;
      holder = { where: 'DynamoDB lock item', info: existing.info, raw: existing.text };
      const sameInfo = {
        ConditionExpression: '#info = :info',
        ExpressionAttributeNames: { '#info': 'Info' },
        ExpressionAttributeValues: { ':info': { S: existing.text } },
      };
      if (existing.info.ID === this.id) {
        try {
          await this.dynamo().send(
            new PutItemCommand({
              TableName: this.target.dynamodbTable,
              Item: { LockID: { S: this.path }, Info: { S: info } },
              ...sameInfo,
            }),
          );
          this.itemText = info;
          this.warnings.push(`re-entered this run's own DynamoDB lock ${this.path} (ID ${this.id})`);
          return { taken: true };
        } catch (error) {
          if (isConditionalCheckFailed(error)) continue;
          throw error;
        }
      }
      if (!isExpiredUnderstudyLock(existing.info, Date.now())) return { taken: false, holder };
      try {
        await this.dynamo().send(
          new DeleteItemCommand({
            TableName: this.target.dynamodbTable,
            Key: { LockID: { S: this.path } },
            ...sameInfo,
          }),
        );
        this.warnings.push(
          `broke the expired DynamoDB lock of an earlier Understudy run (${describeHolder(holder)})`,
        );
      } catch (error) {
        if (!isConditionalCheckFailed(error)) throw error;
      }
    }
    return { taken: false, ...(holder ? { holder } : {}) };
  }

  /** Terraform's order with both: the file first, then DynamoDB; the file goes back if DynamoDB refuses. */
  async tryAll(): Promise<Attempt> {
    if (this.target.useLockfile) {
      const file = await this.tryFile();
      if (!file.taken) return file;
    }
    if (this.target.dynamodbTable !== undefined) {
      let item: Attempt;
      try {
        item = await this.tryItem();
      } catch (error) {
        if (this.target.useLockfile) await this.releaseFile([]);
        throw error;
      }
      if (!item.taken) {
        if (this.target.useLockfile) await this.releaseFile([]);
        return item;
      }
    }
    return { taken: true };
  }

  /**
   * Whether a lock read back is still this attempt's to delete: Terraform's ID check, plus the exact text
   * this attempt wrote (another attempt of the same run re-enters with the same ID). Otherwise a warning
   * says why it stays.
   */
  private stillOurs(
    existing: { readonly text: string; readonly info: FoundLockInfo } | undefined,
    mine: string | undefined,
    where: string,
    warnings: string[],
  ): existing is { readonly text: string; readonly info: FoundLockInfo } {
    if (!existing) {
      warnings.push(`the ${where} was already gone when releasing it`);
      return false;
    }
    if (existing.info.ID !== this.id) {
      warnings.push(
        `lock ID '${this.id}' does not match the existing lock ID '${existing.info.ID ?? ''}': the ${where} was left in place`,
      );
      return false;
    }
    if (existing.text !== mine) {
      warnings.push(
        `the ${where} was re-entered by another attempt of this run: left for that attempt to release`,
      );
      return false;
    }
    return true;
  }

  async releaseFile(warnings: string[]): Promise<void> {
    try {
      const existing = await this.readFile();
      if (!this.stillOurs(existing, this.fileText, `lock file ${this.fileKey}`, warnings)) return;
      await this.target.s3.send(
        new DeleteObjectCommand({ Bucket: this.target.bucket, Key: this.fileKey, IfMatch: existing.etag }),
      );
    } catch (error) {
      warnings.push(
        `the lock file ${this.fileKey} could not be released (${(error as Error).name}: ${(error as Error).message}); once nothing runs, release it with: terraform force-unlock ${this.id}`,
      );
    }
  }

  async releaseItem(warnings: string[]): Promise<void> {
    try {
      const existing = await this.readItem();
      if (!this.stillOurs(existing, this.itemText, `DynamoDB lock ${this.path}`, warnings)) return;
      await this.dynamo().send(
        new DeleteItemCommand({
          TableName: this.target.dynamodbTable,
          Key: { LockID: { S: this.path } },
          ConditionExpression: '#info = :info',
          ExpressionAttributeNames: { '#info': 'Info' },
          ExpressionAttributeValues: { ':info': { S: existing.text } },
        }),
      );
    } catch (error) {
      warnings.push(
        `the DynamoDB lock ${this.path} could not be released (${(error as Error).name}: ${(error as Error).message}); once nothing runs, release it with: terraform force-unlock ${this.id}`,
      );
    }
  }

  async verify(): Promise<void> {
    const lost = (where: string, found: FoundLockInfo | undefined) =>
      tfStateError(
        'LockLost',
        `the ${where} for ${this.path} is no longer this run's (lock ID ${this.id}${found?.ID ? `, now ${found.ID} of ${found.Who ?? 'an unknown holder'}` : ', now gone'}): its lease ran out and another run took it; nothing was written to the state`,
      );
    const reentered = (where: string) =>
      tfStateError(
        'LockLost',
        `the ${where} for ${this.path} was re-entered by another attempt of this run (lock ID ${this.id}); this attempt writes nothing and leaves the state to it`,
      );
    if (this.target.useLockfile) {
      const file = await this.readFile();
      if (file?.info.ID !== this.id) throw lost('lock file', file?.info);
      if (file.text !== this.fileText) throw reentered('lock file');
    }
    if (this.target.dynamodbTable !== undefined) {
      const item = await this.readItem();
      if (item?.info.ID !== this.id) throw lost('DynamoDB lock', item?.info);
      if (item.text !== this.itemText) throw reentered('DynamoDB lock');
    }
  }
}

const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 16_000;

/**
 * Takes the lock(s) the backend uses, retrying like Terraform's `-lock-timeout` (1 s doubling to 16 s)
 * until `lockTimeoutSeconds`, then refuses with LockHeld naming the holder. Nothing is written on refusal.
 */
export async function acquireLocks(
  target: LockTarget,
  owner: LockOwner,
  warnings: string[],
): Promise<HeldLocks> {
  const session = new LockSession(target, owner, warnings);
  const id = lockIdFor(owner.runId);
  const started = Date.now();
  const deadline = started + target.lockTimeoutSeconds * 1000;
  let delay = FIRST_DELAY_MS;
  for (;;) {
    const attempt = await session.tryAll();
    if (attempt.taken) {
      return {
        id,
        verify: () => session.verify(),
        release: async (releaseWarnings) => {
          // The reverse of taking: DynamoDB first, the file last.
          if (target.dynamodbTable !== undefined) await session.releaseItem(releaseWarnings);
          if (target.useLockfile) await session.releaseFile(releaseWarnings);
        },
      };
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      const waited = Math.round((Date.now() - started) / 1000);
      const holder = attempt.holder;
      throw tfStateError(
        'LockHeld',
        `Error acquiring the state lock for ${lockPathOf(target)}: ${holder ? describeHolder(holder) : 'it kept changing hands'}; waited ${waited} s (lock timeout ${target.lockTimeoutSeconds} s). Nothing was written: retry once it is released${holder?.info.ID ? `, or if you are sure nothing runs, terraform force-unlock ${holder.info.ID}` : ''}`,
      );
    }
    await sleep(Math.min(delay, remaining));
    delay = Math.min(delay * 2, MAX_DELAY_MS);
  }
}
