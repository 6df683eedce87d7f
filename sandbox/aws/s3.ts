import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type {
  DeleteObjectCommandInput,
  GetObjectCommandInput,
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
 * NoSuchKey.
 */
export class S3Model {
  private readonly buckets = new Map<string, Map<string, StoredObject>>();

  constructor(private readonly ctx: ModelContext) {}

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
  keys(bucket: string): string[] {
    return [...(this.buckets.get(bucket)?.keys() ?? [])].sort();
  }

  private store(bucket: Map<string, StoredObject>, key: string, body: Buffer, input: PutObjectCommandInput) {
    const object: StoredObject = {
      body,
      etag: `"${createHash('md5').update(body).digest('hex')}"`,
      lastModified: new Date(Math.floor(this.ctx.clock.now() / 1000) * 1000),
      contentType: input.ContentType ?? 'binary/octet-stream',
      metadata: input.Metadata ?? {},
      serverSideEncryption: input.ServerSideEncryption ?? 'AES256',
      ...(input.SSEKMSKeyId ? { kmsKeyId: input.SSEKMSKeyId } : {}),
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

  private describe(object: StoredObject) {
    return {
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
      return { ...this.describe(object), Body: sdkStreamMixin(Readable.from([Buffer.from(object.body)])) };
    },
    DeleteObject: (input: DeleteObjectCommandInput) => {
      const bucket = this.bucket(input.Bucket);
      const key = input.Key ?? '';
      this.checkWrite(bucket.get(key), input.IfMatch);
      bucket.delete(key);
      return {};
    },
  };
}
