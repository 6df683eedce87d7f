import { tfStateError } from './errors';

/**
 * Where the S3 backend keeps a workspace's state (terraform-state.md §3.1), apart from the code that
 * reads and writes it: the CDK app and read-only callers need the keys, not the SDK.
 */

export interface S3BackendSettings {
  readonly bucket: string;
  readonly key: string;
  readonly workspace?: string;
  /** Default `env:`. */
  readonly workspaceKeyPrefix?: string;
  readonly useLockfile: boolean;
  readonly dynamodbTable?: string;
  readonly lockTimeoutSeconds: number;
  readonly skipS3Checksum?: boolean;
}

const DEFAULT_WORKSPACE_KEY_PREFIX = 'env:';

// ---------------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------------

/** `validateStringS3Path`: what Terraform accepts as `key` (and, minus emptiness, as a prefix). */
const keyProblem = (key: string): string | undefined => {
  if (key === '') return 'is empty';
  if (key.startsWith('/')) return 'starts with "/"';
  if (key.endsWith('/')) return 'ends with "/"';
  if (key.includes('//')) return 'contains "//"';
  return undefined;
};

export const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** `s3://bucket/key` as the backend's `bucket` and `key` settings. */
export function parseS3StateUrl(url: string): { bucket: string; key: string } {
  const match = /^s3:\/\/([^/]*)\/(.*)$/s.exec(url);
  if (!match) {
    throw tfStateError(
      'InvalidBackend',
      `${JSON.stringify(url)} is not an S3 state URL: use s3://<bucket>/<key>, with the backend's bucket and key`,
    );
  }
  const bucket = match[1] ?? '';
  const key = match[2] ?? '';
  if (!BUCKET_NAME.test(bucket)) {
    throw tfStateError(
      'InvalidBackend',
      `${JSON.stringify(bucket)} in ${url} is not an S3 bucket name: use the backend's bucket (3-63 lowercase letters, digits, "." or "-")`,
    );
  }
  const problem = keyProblem(key);
  if (problem) {
    throw tfStateError(
      'InvalidBackend',
      `the key in ${url} ${problem}: use the backend's key exactly (not empty, no leading or trailing "/", no "//"); for a workspace give the key and the workspace, not the env:/ path`,
    );
  }
  return { bucket, key };
}

/** The object key of a workspace's state (`backend_state.go`): `key`, or `<prefix>/<workspace>/<key>`. */
export function stateObjectKey(settings: S3BackendSettings): string {
  const problem = keyProblem(settings.key);
  if (problem) {
    throw tfStateError(
      'InvalidBackend',
      `the backend key ${JSON.stringify(settings.key)} ${problem}: use the key exactly as in the backend configuration`,
    );
  }
  const workspace = settings.workspace ?? 'default';
  if (workspace === 'default') return settings.key;
  if (workspace === '' || workspace.includes('/')) {
    throw tfStateError(
      'InvalidBackend',
      `${JSON.stringify(workspace)} is not a workspace name: use the name terraform workspace show prints`,
    );
  }
  const prefix = settings.workspaceKeyPrefix ?? DEFAULT_WORKSPACE_KEY_PREFIX;
  if (prefix.startsWith('/') || prefix.endsWith('/')) {
    throw tfStateError(
      'InvalidBackend',
      `the workspace key prefix ${JSON.stringify(prefix)} starts or ends with "/": use the backend's workspace_key_prefix without them`,
    );
  }
  return prefix === '' ? `${workspace}/${settings.key}` : `${prefix}/${workspace}/${settings.key}`;
}
