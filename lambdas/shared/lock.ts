import {
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { z } from 'zod';
import { isNotFound, rethrowIfTransient } from './aws-errors';
import { ErrorNames, UnderstudyError } from './errors';
import type { Lock } from './schemas';

/**
 * The per-target lock: one S3 object created with If-None-Match, so two runs can never both hold it.
 * It carries a lease (longer than any execution can live); a lease that ran out belongs to a run that
 * died, so it may be taken over (compare-and-swap on its ETag) and the takeover is reported.
 * Renewals and the release check the owner and swap on the ETag, so a run never touches a lock it lost.
 * A throttled or failing S3 surfaces as `Transient` from here, so every step retries it the same way
 * instead of mistaking a busy S3 for its own failure.
 */

const LockBodySchema = z.object({
  owner: z.string(),
  executionName: z.string(),
  target: z.string(),
  acquiredAt: z.string(),
  expiresAt: z.string(),
});
export type LockBody = z.infer<typeof LockBodySchema>;

export interface LockRequest {
  readonly bucket: string;
  readonly key: string;
  readonly owner: string;
  readonly executionName: string;
  readonly target: string;
  readonly leaseSeconds: number;
}

const statusOf = (error: unknown): number | undefined =>
  (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
const isPreconditionFailed = (error: unknown) =>
  (error as Error)?.name === 'PreconditionFailed' || statusOf(error) === 412;
const isConflict = (error: unknown) =>
  (error as Error)?.name === 'ConditionalRequestConflict' || statusOf(error) === 409;

const transient = (what: string, cause: unknown) =>
  new UnderstudyError(ErrorNames.Transient, `${what}: concurrent write on the lock object, retrying`, {
    cause,
  });

const bodyFor = (request: LockRequest, acquiredAt: string): string =>
  JSON.stringify({
    owner: request.owner,
    executionName: request.executionName,
    target: request.target,
    acquiredAt,
    expiresAt: new Date(Date.now() + request.leaseSeconds * 1000).toISOString(),
  } satisfies LockBody);

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};

/** Reads the lock, or undefined when nobody holds it. */
export const readLock = async (
  s3: S3Client,
  bucket: string,
  key: string,
): Promise<{ body: LockBody; etag: string } | undefined> => {
  let out: GetObjectCommandOutput;
  let text: string;
  try {
    out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    text = (await out.Body?.transformToString()) ?? '';
  } catch (error) {
    if (isNotFound(error)) return undefined;
    rethrowIfTransient(error, `GetObject s3://${bucket}/${key}`);
    throw error;
  }
  // Neither run can tell whose a garbled lock is, so neither may take or delete it.
  const parsed = LockBodySchema.safeParse(parseJson(text));
  if (!parsed.success || out.ETag === undefined) {
    throw new UnderstudyError(
      ErrorNames.LockHeld,
      `lock s3://${bucket}/${key} is unreadable; inspect and delete it by hand`,
    );
  }
  return { body: parsed.data, etag: out.ETag };
};

const put = async (
  s3: S3Client,
  request: LockRequest,
  body: string,
  condition: { IfNoneMatch: '*' } | { IfMatch: string },
): Promise<void> => {
  try {
    await s3.send(
      new PutObjectCommand({
        Bucket: request.bucket,
        Key: request.key,
        Body: body,
        ContentType: 'application/json',
        ...condition,
      }),
    );
  } catch (error) {
    rethrowIfTransient(error, `PutObject s3://${request.bucket}/${request.key}`);
    throw error;
  }
};

/** Who holds the lock now, as a dry run reports it; undefined when nobody does. */
export const lockHolder = async (
  s3: S3Client,
  bucket: string,
  key: string,
): Promise<{ executionName: string; owner: string; expiresAt: string } | undefined> => {
  const held = await readLock(s3, bucket, key);
  return held
    ? { executionName: held.body.executionName, owner: held.body.owner, expiresAt: held.body.expiresAt }
    : undefined;
};

/** Takes the lock (or confirms this execution already holds it: a retried preflight). */
export const acquireLock = async (s3: S3Client, request: LockRequest): Promise<Lock> => {
  const lock: Lock = {
    bucket: request.bucket,
    key: request.key,
    owner: request.owner,
    leaseSeconds: request.leaseSeconds,
  };
  const now = new Date().toISOString();
  try {
    await put(s3, request, bodyFor(request, now), { IfNoneMatch: '*' });
    return lock;
  } catch (error) {
    if (isConflict(error)) throw transient('acquire', error);
    if (!isPreconditionFailed(error)) throw error;
  }
  const current = await readLock(s3, request.bucket, request.key);
  if (current === undefined) throw transient('acquire', new Error('lock vanished between write and read'));
  if (current.body.owner === request.owner) {
    await renewLock(s3, lock);
    return lock;
  }
  if (Date.parse(current.body.expiresAt) > Date.now()) {
    throw new UnderstudyError(
      ErrorNames.LockHeld,
      `target ${request.target} is locked by execution ${current.body.executionName} (${current.body.owner}) until ${current.body.expiresAt}; wait for it to finish or stop it`,
    );
  }
  try {
    await put(s3, request, bodyFor(request, now), { IfMatch: current.etag });
  } catch (error) {
    if (isPreconditionFailed(error) || isConflict(error)) {
      throw new UnderstudyError(
        ErrorNames.LockHeld,
        `target ${request.target}: another run took the expired lock first`,
        {
          cause: error,
        },
      );
    }
    throw error;
  }
  return { ...lock, tookOverFrom: current.body.owner };
};

/** Extends the lease; fails with LockLost if another execution now owns the lock. */
export const renewLock = async (s3: S3Client, lock: Lock): Promise<void> => {
  const current = await readLock(s3, lock.bucket, lock.key);
  if (current === undefined || current.body.owner !== lock.owner) {
    throw new UnderstudyError(
      ErrorNames.LockLost,
      `lock s3://${lock.bucket}/${lock.key} is no longer held by this execution${current ? ` (held by ${current.body.executionName})` : ''}`,
    );
  }
  const request: LockRequest = {
    bucket: lock.bucket,
    key: lock.key,
    owner: lock.owner,
    executionName: current.body.executionName,
    target: current.body.target,
    leaseSeconds: lock.leaseSeconds,
  };
  try {
    await put(s3, request, bodyFor(request, current.body.acquiredAt), { IfMatch: current.etag });
  } catch (error) {
    if (isPreconditionFailed(error) || isConflict(error)) throw transient('renew', error);
    throw error;
  }
};

/** Renews the run's lock when it holds one (a dry run or a no-op holds none). */
export const renewHeldLock = async (s3: S3Client, lock: Lock | undefined): Promise<void> => {
  if (lock) await renewLock(s3, lock);
};

/** Deletes the lock only if this execution holds it; returns what it found. */
export const releaseLock = async (s3: S3Client, lock: Lock): Promise<'released' | 'absent' | 'not-ours'> => {
  const current = await readLock(s3, lock.bucket, lock.key);
  if (current === undefined) return 'absent';
  if (current.body.owner !== lock.owner) return 'not-ours';
  try {
    await s3.send(new DeleteObjectCommand({ Bucket: lock.bucket, Key: lock.key, IfMatch: current.etag }));
  } catch (error) {
    if (isNotFound(error)) return 'absent';
    if (isPreconditionFailed(error) || isConflict(error)) throw transient('release', error);
    rethrowIfTransient(error, `DeleteObject s3://${lock.bucket}/${lock.key}`);
    throw error;
  }
  return 'released';
};
