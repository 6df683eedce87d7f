import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import type {
  DeleteObjectCommandInput,
  GetObjectCommandInput,
  HeadObjectCommandInput,
  ListObjectsV2CommandInput,
  ListObjectVersionsCommandInput,
  PutObjectCommandInput,
} from '@aws-sdk/client-s3';
import { sdkStreamMixin } from '@smithy/util-stream';
import type { ModelContext } from './context';
import { errorsFor } from './errors';

const fail = errorsFor('s3');

interface StoredObject {
  readonly body: Buffer;
  readonly etag: string;
  readonly lastModified: Date;
  readonly contentType: string;
  readonly metadata: Record<string, string>;
  readonly serverSideEncryption: string;
  readonly kmsKeyId?: string;
  /** Base64 checksums S3 keeps for the object (those the writer sent or asked for). */
  readonly checksums: Readonly<Partial<Record<ChecksumName, string>>>;
}

type ChecksumName = 'ChecksumSHA256' | 'ChecksumCRC32';

const sha256 = (body: Buffer) => createHash('sha256').update(body).digest('base64');
const crc32Base64 = (body: Buffer) => {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(crc32(body));
  return bytes.toString('base64');
};
const CHECKSUMS: Readonly<Record<ChecksumName, { algorithm: string; compute: (body: Buffer) => string }>> = {
  ChecksumSHA256: { algorithm: 'SHA256', compute: sha256 },
  ChecksumCRC32: { algorithm: 'CRC32', compute: crc32Base64 },
};

/** What a harness may set on a seeded object (as if written long ago by Terraform or a person). */
export interface SeedObjectOptions {
  readonly contentType?: string;
  readonly serverSideEncryption?: string;
  readonly kmsKeyId?: string;
  /** Store a SHA-256 checksum, as an object written with `ChecksumAlgorithm: SHA256` has. */
  readonly checksumSha256?: boolean;
}

/** A stored object as a harness sees it. */
export interface ObjectDetails {
  readonly bytes: Buffer;
  readonly body: string;
  readonly etag: string;
  readonly contentType: string;
  readonly serverSideEncryption: string;
  readonly kmsKeyId?: string;
  readonly checksumSha256?: string;
}

/** Reads whatever the SDK accepts as a Body: string, bytes, Blob, or a Node stream. */
const readBody = async (body: unknown): Promise<Buffer> => {
  if (body === undefined || body === null) return Buffer.alloc(0);
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof Uint8Array) return Buffer.from(body);
  if (typeof Blob !== 'undefined' && body instanceof Blob) return Buffer.from(await body.arrayBuffer());
  if (body instanceof Readable || (typeof body === 'object' && Symbol.asyncIterator in body)) {
    const chunks: Buffer[] = [];
    for await (const chunk of body as AsyncIterable<Uint8Array | string>) {
      chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk));
    }
    return Buffer.concat(chunks);
  }
  throw fail('InvalidRequest', 'Unsupported body type');
};

const preconditionFailed = () =>
  fail('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', 412);
const noSuchKey = () => fail('NoSuchKey', 'The specified key does not exist.', 404);

/** ETags compare with or without their quotes, as S3 accepts both in If-Match. */
const sameEtag = (a: string, b: string) => a.replace(/"/g, '') === b.replace(/"/g, '');

/**
 * S3 objects with ETags and conditional writes, in the buckets the account was seeded with (any other
 * answers 404 NoSuchBucket); there is no versioning. Conditional requests follow S3: If-None-Match "*" on an existing key and
 * If-Match on a different ETag answer 412 PreconditionFailed; If-Match on a missing key answers 404
 * NoSuchKey. Checksums follow S3's flexible checksums: a checksum the writer sends is verified
 * (400 BadDigest when the body differs) and kept, one it only names (`ChecksumAlgorithm`) is computed,
 * and GetObject/HeadObject return them only with `ChecksumMode: ENABLED`. Encryption settings
 * (SSE-S3 by default, SSE-KMS with the key named or the account's `aws/s3` key) stay with the object.
 */
export class S3Model {
  private readonly buckets = new Map<string, Map<string, StoredObject>>();

  private managedKey: string | undefined;

  constructor(private readonly ctx: ModelContext) {}

  /** The account's `aws/s3` key, which S3 uses (and names by its ARN) when SSE-KMS names no key. */
  private awsManagedKey(): string {
    this.managedKey ??= `arn:aws:kms:${this.ctx.region}:${this.ctx.accountId}:key/${this.ctx.ids.uuid('kms-key')}`;
    return this.managedKey;
  }

  /** Seeding (what the stack deploys), not an API call. */
  createBucket(name: string): void {
    if (!this.buckets.has(name)) this.buckets.set(name, new Map());
  }

  private bucket(name: string | undefined): Map<string, StoredObject> {
    if (!name) throw fail('InvalidBucketName', 'The specified bucket is not valid.');
    const bucket = this.buckets.get(name);
    if (!bucket) throw fail('NoSuchBucket', 'The specified bucket does not exist', 404);
    return bucket;
  }

  /** Direct read for harness assertions (no call record). */
  object(bucket: string, key: string): { body: string; etag: string } | undefined {
    const found = this.buckets.get(bucket)?.get(key);
    return found && { body: found.body.toString('utf8'), etag: found.etag };
  }
  /** Everything S3 keeps about an object, for harness assertions (no call record). */
  details(bucket: string, key: string): ObjectDetails | undefined {
    const found = this.buckets.get(bucket)?.get(key);
    if (!found) return undefined;
    return {
      bytes: Buffer.from(found.body),
      body: found.body.toString('utf8'),
      etag: found.etag,
      contentType: found.contentType,
      serverSideEncryption: found.serverSideEncryption,
      ...(found.kmsKeyId ? { kmsKeyId: found.kmsKeyId } : {}),
      ...(found.checksums.ChecksumSHA256 ? { checksumSha256: found.checksums.ChecksumSHA256 } : {}),
    };
  }
  /**
   * Writes an object directly (no call record, no fault, no condition): an object that was already
   * there, or a concurrent writer the code under test cannot see coming. Returns the new ETag.
   */
  seedObject(
    bucket: string,
    key: string,
    body: string | Uint8Array,
    options: SeedObjectOptions = {},
  ): string {
    const bytes = Buffer.from(typeof body === 'string' ? Buffer.from(body, 'utf8') : body);
    return this.store(this.bucket(bucket), key, bytes, {
      Bucket: bucket,
      Key: key,
      ContentType: options.contentType,
      ServerSideEncryption: options.serverSideEncryption as PutObjectCommandInput['ServerSideEncryption'],
      SSEKMSKeyId: options.kmsKeyId,
      ...(options.checksumSha256 ? { ChecksumAlgorithm: 'SHA256' as const } : {}),
    }).etag;
  }
  /** Removes an object directly (no call record): a holder releasing its lock, an operator's cleanup. */
  removeObject(bucket: string, key: string): void {
    this.buckets.get(bucket)?.delete(key);
  }
  keys(bucket: string): string[] {
    return [...(this.buckets.get(bucket)?.keys() ?? [])].sort();
  }

  /** Verifies the checksums the writer sent and computes the one it only named. */
  private checksumsFor(body: Buffer, input: PutObjectCommandInput): StoredObject['checksums'] {
    const checksums: Partial<Record<ChecksumName, string>> = {};
    for (const [name, { algorithm, compute }] of Object.entries(CHECKSUMS) as [
      ChecksumName,
      (typeof CHECKSUMS)[ChecksumName],
    ][]) {
      const sent = input[name];
      const actual = compute(body);
      if (sent !== undefined) {
        if (Buffer.from(sent, 'base64').toString('base64') !== sent || sent.length !== actual.length) {
          throw fail(
            'InvalidRequest',
            `Value for x-amz-checksum-${algorithm.toLowerCase()} header is invalid.`,
          );
        }
        if (sent !== actual) {
          throw fail(
            'BadDigest',
            `The ${algorithm.toLowerCase()} you specified did not match the calculated checksum.`,
            400,
          );
        }
        checksums[name] = actual;
      } else if (input.ChecksumAlgorithm === algorithm) {
        checksums[name] = actual;
      }
    }
    return checksums;
  }

  private store(bucket: Map<string, StoredObject>, key: string, body: Buffer, input: PutObjectCommandInput) {
    const sse = input.ServerSideEncryption ?? (input.SSEKMSKeyId ? 'aws:kms' : 'AES256');
    const kmsKeyId = sse.startsWith('aws:kms') ? (input.SSEKMSKeyId ?? this.awsManagedKey()) : undefined;
    const object: StoredObject = {
      body,
      etag: `"${createHash('md5').update(body).digest('hex')}"`,
      lastModified: new Date(Math.floor(this.ctx.clock.now() / 1000) * 1000),
      contentType: input.ContentType ?? 'binary/octet-stream',
      metadata: input.Metadata ?? {},
      serverSideEncryption: sse,
      ...(kmsKeyId ? { kmsKeyId } : {}),
      checksums: this.checksumsFor(body, input),
    };
    bucket.set(key, object);
    return object;
  }

  private checkWrite(existing: StoredObject | undefined, ifMatch?: string, ifNoneMatch?: string) {
    if (ifNoneMatch !== undefined) {
      if (ifNoneMatch !== '*')
        throw fail(
          'NotImplemented',
          'A header you provided implies functionality that is not implemented',
          501,
        );
      if (existing) throw preconditionFailed();
    }
    if (ifMatch !== undefined) {
      if (!existing) throw noSuchKey();
      if (!sameEtag(existing.etag, ifMatch)) throw preconditionFailed();
    }
  }

  private readonly put = async (input: PutObjectCommandInput) => {
    const bucket = this.bucket(input.Bucket);
    const key = input.Key ?? '';
    const body = await readBody(input.Body);
    this.checkWrite(bucket.get(key), input.IfMatch, input.IfNoneMatch);
    const stored = this.store(bucket, key, body, input);
    return {
      ETag: stored.etag,
      ServerSideEncryption: stored.serverSideEncryption,
      ...(stored.kmsKeyId ? { SSEKMSKeyId: stored.kmsKeyId } : {}),
      ...stored.checksums,
    };
  };

  private found(input: { Bucket?: string; Key?: string; IfMatch?: string; IfNoneMatch?: string }) {
    const object = this.bucket(input.Bucket).get(input.Key ?? '');
    if (!object) throw noSuchKey();
    if (input.IfMatch !== undefined && !sameEtag(object.etag, input.IfMatch)) throw preconditionFailed();
    if (
      input.IfNoneMatch !== undefined &&
      (input.IfNoneMatch === '*' || sameEtag(object.etag, input.IfNoneMatch))
    ) {
      throw fail('NotModified', 'Not Modified', 304);
    }
    return object;
  }

  private describe(object: StoredObject, checksumMode?: string) {
    return {
      ...(checksumMode === 'ENABLED' && Object.keys(object.checksums).length > 0
        ? { ...object.checksums, ChecksumType: 'FULL_OBJECT' }
        : {}),
      ETag: object.etag,
      ContentLength: object.body.length,
      ContentType: object.contentType,
      LastModified: object.lastModified,
      Metadata: object.metadata,
      ServerSideEncryption: object.serverSideEncryption,
      AcceptRanges: 'bytes',
      ...(object.kmsKeyId ? { SSEKMSKeyId: object.kmsKeyId } : {}),
    };
  }

  readonly actions = {
    PutObject: this.put,
    GetObject: (input: GetObjectCommandInput) => {
      const object = this.found(input);
      return {
        ...this.describe(object, input.ChecksumMode),
        Body: sdkStreamMixin(Readable.from([Buffer.from(object.body)])),
      };
    },
    HeadObject: (input: HeadObjectCommandInput) => {
      try {
        return this.describe(this.found(input), input.ChecksumMode);
      } catch (error) {
        // A HEAD response has no body, so the SDK can only name the error after its status code.
        if ((error as Error).name === 'NoSuchKey') throw fail('NotFound', 'Not Found', 404);
        if ((error as Error).name === 'PreconditionFailed')
          throw fail('PreconditionFailed', 'Precondition Failed', 412);
        throw error;
      }
    },
    /**
     * Keys in UTF-8 binary order, at most MaxKeys (default and ceiling 1000) per page; the continuation
     * token is opaque to the caller (here: the last key returned, base64). Delimiter rolls keys up into
     * CommonPrefixes, as S3 does.
     */
    ListObjectsV2: (input: ListObjectsV2CommandInput) => {
      const bucket = this.bucket(input.Bucket);
      const prefix = input.Prefix ?? '';
      const maxKeys = Math.min(Math.max(input.MaxKeys ?? 1000, 0), 1000);
      let after = input.StartAfter ?? '';
      if (input.ContinuationToken !== undefined) {
        const decoded = Buffer.from(input.ContinuationToken, 'base64').toString('utf8');
        if (!decoded.startsWith('sandbox:')) {
          throw fail('InvalidArgument', 'The continuation token provided is incorrect', 400);
        }
        after = decoded.slice('sandbox:'.length);
      }
      const keys = [...bucket.keys()]
        .filter((key) => key.startsWith(prefix) && key > after)
        .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      const contents: { Key: string; object: StoredObject }[] = [];
      const commonPrefixes: string[] = [];
      let last: string | undefined;
      let truncated = false;
      for (const key of keys) {
        const delimited = input.Delimiter ? key.indexOf(input.Delimiter, prefix.length) : -1;
        const rolled = delimited >= 0 ? key.slice(0, delimited + (input.Delimiter?.length ?? 0)) : undefined;
        if (rolled !== undefined && commonPrefixes.includes(rolled)) continue;
        if (contents.length + commonPrefixes.length >= maxKeys) {
          truncated = true;
          break;
        }
        if (rolled !== undefined) commonPrefixes.push(rolled);
        else contents.push({ Key: key, object: bucket.get(key) as StoredObject });
        last = key;
      }
      return {
        Name: input.Bucket,
        Prefix: prefix,
        MaxKeys: maxKeys,
        KeyCount: contents.length + commonPrefixes.length,
        IsTruncated: truncated,
        ...(input.Delimiter ? { Delimiter: input.Delimiter } : {}),
        ...(input.ContinuationToken ? { ContinuationToken: input.ContinuationToken } : {}),
        ...(input.StartAfter ? { StartAfter: input.StartAfter } : {}),
        ...(truncated && last !== undefined
          ? { NextContinuationToken: Buffer.from(`sandbox:${last}`).toString('base64') }
          : {}),
        Contents: contents.map(({ Key, object }) => ({
          Key,
          LastModified: object.lastModified,
          ETag: object.etag,
          Size: object.body.length,
          StorageClass: 'STANDARD',
        })),
        ...(commonPrefixes.length > 0
          ? { CommonPrefixes: commonPrefixes.map((Prefix) => ({ Prefix })) }
          : {}),
      };
    },
    DeleteObject: (input: DeleteObjectCommandInput) => {
      const bucket = this.bucket(input.Bucket);
      const key = input.Key ?? '';
      // Sandbox buckets keep no versions: as in an unversioned bucket, each object's only version is
      // "null", and any other version id is refused.
      if (input.VersionId !== undefined && input.VersionId !== 'null') {
        throw fail('InvalidArgument', 'Invalid version id specified', 400);
      }
      this.checkWrite(bucket.get(key), input.IfMatch);
      bucket.delete(key);
      return {};
    },
    /** One page holds everything (the sandbox's buckets are small); each object is its "null" version. */
    ListObjectVersions: (input: ListObjectVersionsCommandInput) => {
      const bucket = this.bucket(input.Bucket);
      const prefix = input.Prefix ?? '';
      const versions = [...bucket.entries()]
        .filter(([key]) => key.startsWith(prefix))
        .sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
        .map(([key, object]) => ({
          Key: key,
          VersionId: 'null',
          IsLatest: true,
          ETag: object.etag,
          Size: object.body.length,
          LastModified: object.lastModified,
        }));
      return {
        Name: input.Bucket,
        Prefix: prefix,
        IsTruncated: false,
        Versions: versions,
        DeleteMarkers: [],
      };
    },
  };
}
