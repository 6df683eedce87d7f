import { type _Object, GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { runKeys } from '../lambdas/shared/constants';
import { awsFailure, type OperatorClients } from './account';

/**
 * The runs bucket as the operator reads it: each run's record (written by Finish), newest first, and
 * each target's lock object.
 */

/** One run, as `history` and `status` print it (also their `--json` shape). */
export interface RunSummary {
  readonly executionName: string | null;
  readonly finishedAt: string | null;
  readonly outcome: string | null;
  readonly oldInstanceId: string | null;
  /** The candidate the run launched (the serving box when the outcome is `replaced`). */
  readonly newInstanceId: string | null;
  readonly error: string | null;
  readonly cause: string | null;
  readonly warnings: number;
  readonly terraform: {
    readonly status: string | null;
    /** Terraform serials are 64-bit: kept as the decimal text the record holds. */
    readonly serialBefore: string | null;
    readonly serialAfter: string | null;
    readonly backupKey: string | null;
  } | null;
  readonly probe: { readonly requests: number | null; readonly failures: number | null } | null;
  /** `s3://bucket/runs/<target>/<execution>.json` */
  readonly record: string;
}

export interface LockView {
  readonly executionName: string | null;
  readonly owner: string | null;
  readonly acquiredAt: string | null;
  readonly expiresAt: string | null;
  /** A lease that ran out: the next run may take the lock over. */
  readonly expired: boolean;
}

type Json = Record<string, unknown>;
const obj = (value: unknown): Json | undefined =>
  value && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : undefined;
const str = (value: unknown): string | null => (typeof value === 'string' ? value : null);
const num = (value: unknown): number | null => (typeof value === 'number' ? value : null);
const serial = (value: unknown): string | null =>
  typeof value === 'string' || typeof value === 'number' ? String(value) : null;

const isMissing = (error: unknown) => {
  const name = (error as Error)?.name;
  return name === 'NoSuchKey' || name === 'NotFound';
};

export const readJson = async (
  clients: OperatorClients,
  bucket: string,
  key: string,
): Promise<Json | undefined> => {
  try {
    const answer = await clients.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const text = (await answer.Body?.transformToString()) ?? '';
    return obj(JSON.parse(text));
  } catch (error) {
    if (isMissing(error)) return undefined;
    if (error instanceof SyntaxError) return undefined;
    throw awsFailure(`reading s3://${bucket}/${key}`, error);
  }
};

export const summarizeRecord = (record: Json, bucket: string, key: string): RunSummary => {
  const execution = obj(record.execution);
  const plan = obj(record.plan);
  const terraform = obj(record.terraform);
  const probe = obj(record.probe);
  return {
    executionName: str(execution?.name),
    finishedAt: str(record.finishedAt),
    outcome: str(record.outcome),
    oldInstanceId: str(plan?.oldInstanceId),
    newInstanceId: str(record.candidateInstanceId),
    error: str(record.error),
    cause: str(record.cause),
    warnings: Array.isArray(record.warnings) ? record.warnings.length : 0,
    terraform: terraform
      ? {
          status: str(terraform.status),
          serialBefore: serial(terraform.serialBefore),
          serialAfter: serial(terraform.serialAfter),
          backupKey: str(terraform.backupKey),
        }
      : null,
    probe: probe ? { requests: num(probe.requests), failures: num(probe.failures) } : null,
    record: `s3://${bucket}/${key}`,
  };
};

const listAll = async (
  clients: OperatorClients,
  bucket: string,
  prefix: string,
  delimiter?: string,
): Promise<{ objects: _Object[]; prefixes: string[] }> => {
  const objects: _Object[] = [];
  const prefixes: string[] = [];
  let token: string | undefined;
  try {
    do {
      const page = await clients.s3.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          Prefix: prefix,
          ...(delimiter ? { Delimiter: delimiter } : {}),
          ...(token ? { ContinuationToken: token } : {}),
        }),
      );
      objects.push(...(page.Contents ?? []));
      prefixes.push(...(page.CommonPrefixes ?? []).flatMap((p) => (p.Prefix ? [p.Prefix] : [])));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  } catch (error) {
    throw awsFailure(`listing s3://${bucket}/${prefix}`, error);
  }
  return { objects, prefixes };
};

const runsPrefix = (target: string) => runKeys.record(target, '').replace(/\.json$/, '');
/** `runs/`: one folder per target under it. */
const RUNS_ROOT = `${runKeys.record('t', 'e').split('/')[0]}/`;
/** `locks/`: one object per target under it. */
const LOCKS_ROOT = runKeys.lock('').replace(/\.json$/, '');

/** The target's run records, newest first (by the time S3 stored them), at most `limit`. */
export const runHistory = async (
  clients: OperatorClients,
  bucket: string,
  target: string,
  limit: number,
): Promise<RunSummary[]> => {
  const { objects } = await listAll(clients, bucket, runsPrefix(target));
  const newest = objects
    .filter((o) => o.Key?.endsWith('.json'))
    .sort(
      (a, b) =>
        (b.LastModified?.getTime() ?? 0) - (a.LastModified?.getTime() ?? 0) ||
        (b.Key ?? '').localeCompare(a.Key ?? ''),
    )
    .slice(0, limit);
  const runs: RunSummary[] = [];
  for (const object of newest) {
    const key = object.Key ?? '';
    const record = await readJson(clients, bucket, key);
    if (record) runs.push(summarizeRecord(record, bucket, key));
  }
  return runs;
};

export const readLock = async (
  clients: OperatorClients,
  bucket: string,
  target: string,
): Promise<LockView | null> => {
  const body = await readJson(clients, bucket, runKeys.lock(target));
  if (!body) return null;
  const expiresAt = str(body.expiresAt);
  return {
    executionName: str(body.executionName),
    owner: str(body.owner),
    acquiredAt: str(body.acquiredAt),
    expiresAt,
    expired: expiresAt !== null && Date.parse(expiresAt) <= Date.now(),
  };
};

/** Targets the bucket knows: those with a run record or a lock. */
export const knownTargets = async (clients: OperatorClients, bucket: string): Promise<string[]> => {
  const runs = await listAll(clients, bucket, RUNS_ROOT, '/');
  const locks = await listAll(clients, bucket, LOCKS_ROOT);
  const names = new Set<string>();
  for (const prefix of runs.prefixes) names.add(prefix.slice(RUNS_ROOT.length).replace(/\/$/, ''));
  for (const object of locks.objects) {
    const key = object.Key ?? '';
    if (key.endsWith('.json')) names.add(key.slice(LOCKS_ROOT.length, -'.json'.length));
  }
  return [...names].filter(Boolean).sort();
};
