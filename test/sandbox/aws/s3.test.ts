import { createHash } from 'node:crypto';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  NoSuchBucket,
  NoSuchKey,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { rejectionOf, useWorld } from './helpers';

const world = useWorld();
const Bucket = 'runs';
beforeEach(() => world.sandbox.createBucket(Bucket));

const Key = 'locks/web.json';
const put = (Body: string, condition: { IfNoneMatch?: string; IfMatch?: string } = {}) =>
  world.aws.s3.send(new PutObjectCommand({ Bucket, Key, Body, ...condition }));

describe('S3 conditional writes', () => {
  it('answers 412 PreconditionFailed to If-None-Match "*" when the key exists', async () => {
    const first = await put('{"owner":"a"}', { IfNoneMatch: '*' });

    const error = await rejectionOf(put('{"owner":"b"}', { IfNoneMatch: '*' }));

    expect(first.ETag).toMatch(/^"[0-9a-f]{32}"$/);
    expect(error.name).toBe('PreconditionFailed');
    expect(error.$metadata).toMatchObject({ httpStatusCode: 412 });
  });

  it('answers 412 to If-Match with a stale ETag and accepts the current one', async () => {
    const first = await put('v1');
    const second = await put('v2', { IfMatch: first.ETag });

    const stale = await rejectionOf(put('v3', { IfMatch: first.ETag }));
    const staleDelete = await rejectionOf(
      world.aws.s3.send(new DeleteObjectCommand({ Bucket, Key, IfMatch: first.ETag })),
    );

    expect(second.ETag).not.toBe(first.ETag);
    expect(stale.$metadata).toMatchObject({ httpStatusCode: 412 });
    expect(staleDelete.name).toBe('PreconditionFailed');
    const read = await world.aws.s3.send(new GetObjectCommand({ Bucket, Key }));
    expect(await read.Body?.transformToString()).toBe('v2');
    expect(read.ETag).toBe(second.ETag);
  });

  it('answers NoSuchKey (404) for a missing key, also to an If-Match write', async () => {
    const read = await rejectionOf(
      world.aws.s3.send(new GetObjectCommand({ Bucket, Key: 'locks/none.json' })),
    );
    const write = await rejectionOf(
      world.aws.s3.send(
        new PutObjectCommand({ Bucket, Key: 'locks/none.json', Body: 'x', IfMatch: '"abc"' }),
      ),
    );

    expect(read).toBeInstanceOf(NoSuchKey);
    expect(read.$metadata).toMatchObject({ httpStatusCode: 404 });
    expect(write.name).toBe('NoSuchKey');
  });

  it('answers NoSuchBucket (404) for a bucket the account does not own', async () => {
    const error = await rejectionOf(
      world.aws.s3.send(new PutObjectCommand({ Bucket: 'someone-elses-bucket', Key, Body: 'x' })),
    );

    expect(error).toBeInstanceOf(NoSuchBucket);
    expect(error.$metadata).toMatchObject({ httpStatusCode: 404 });
  });
});

describe('S3 checksums, encryption and metadata', () => {
  const sha256 = (text: string) => createHash('sha256').update(text).digest('base64');
  const stateKey = 'app/terraform.tfstate';

  it('keeps a SHA-256 checksum the writer sent and returns it on GetObject and HeadObject with ChecksumMode ENABLED', async () => {
    const body = '{"version": 4}\n';
    const written = await world.aws.s3.send(
      new PutObjectCommand({
        Bucket,
        Key: stateKey,
        Body: body,
        ChecksumAlgorithm: 'SHA256',
        ChecksumSHA256: sha256(body),
        ContentType: 'application/json',
      }),
    );

    const read = await world.aws.s3.send(
      new GetObjectCommand({ Bucket, Key: stateKey, ChecksumMode: 'ENABLED' }),
    );
    const head = await world.aws.s3.send(
      new HeadObjectCommand({ Bucket, Key: stateKey, ChecksumMode: 'ENABLED' }),
    );
    const plainHead = await world.aws.s3.send(new HeadObjectCommand({ Bucket, Key: stateKey }));

    expect(written.ChecksumSHA256).toBe(sha256(body));
    expect(read.ChecksumSHA256).toBe(sha256(body));
    expect(await read.Body?.transformToString()).toBe(body);
    expect(head).toMatchObject({
      ChecksumSHA256: sha256(body),
      ContentLength: body.length,
      ContentType: 'application/json',
    });
    expect(plainHead.ChecksumSHA256).toBeUndefined();
  });

  it('refuses a body that does not match the SHA-256 sent with 400 BadDigest and stores nothing', async () => {
    const error = await rejectionOf(
      world.aws.s3.send(
        new PutObjectCommand({ Bucket, Key: stateKey, Body: 'actual', ChecksumSHA256: sha256('intended') }),
      ),
    );

    expect(error.name).toBe('BadDigest');
    expect(error.$metadata).toMatchObject({ httpStatusCode: 400 });
    expect(world.sandbox.s3.object(Bucket, stateKey)).toBeUndefined();
  });

  it('answers HeadObject on a missing key with 404 NotFound, as the SDK names a bodiless 404', async () => {
    const error = await rejectionOf(world.aws.s3.send(new HeadObjectCommand({ Bucket, Key: 'missing' })));

    expect(error.name).toBe('NotFound');
    expect(error.$metadata).toMatchObject({ httpStatusCode: 404 });
  });

  it('keeps the SSE-KMS key an object was written with, and names the aws/s3 key when none was given', async () => {
    const keyArn = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
    await world.aws.s3.send(
      new PutObjectCommand({
        Bucket,
        Key: 'a',
        Body: 'x',
        ServerSideEncryption: 'aws:kms',
        SSEKMSKeyId: keyArn,
      }),
    );
    await world.aws.s3.send(
      new PutObjectCommand({ Bucket, Key: 'b', Body: 'x', ServerSideEncryption: 'aws:kms' }),
    );
    await world.aws.s3.send(new PutObjectCommand({ Bucket, Key: 'c', Body: 'x' }));

    const [a, b, c] = await Promise.all(
      ['a', 'b', 'c'].map((k) => world.aws.s3.send(new HeadObjectCommand({ Bucket, Key: k }))),
    );

    expect(a).toMatchObject({ ServerSideEncryption: 'aws:kms', SSEKMSKeyId: keyArn });
    expect(b?.ServerSideEncryption).toBe('aws:kms');
    expect(b?.SSEKMSKeyId).toMatch(/^arn:aws:kms:[a-z0-9-]+:123456789012:key\/[0-9a-f-]{36}$/);
    expect(c).toMatchObject({ ServerSideEncryption: 'AES256' });
    expect(c?.SSEKMSKeyId).toBeUndefined();
  });

  it('seeds an object for a harness with the ETag, encryption and checksum that reads report', async () => {
    const etag = world.sandbox.s3.seedObject(Bucket, stateKey, 'seeded', {
      contentType: 'application/json',
      serverSideEncryption: 'aws:kms',
      kmsKeyId: 'arn:aws:kms:eu-west-1:123456789012:key/k',
      checksumSha256: true,
    });

    const head = await world.aws.s3.send(
      new HeadObjectCommand({ Bucket, Key: stateKey, ChecksumMode: 'ENABLED' }),
    );

    expect(head).toMatchObject({
      ETag: etag,
      ContentType: 'application/json',
      ServerSideEncryption: 'aws:kms',
      SSEKMSKeyId: 'arn:aws:kms:eu-west-1:123456789012:key/k',
      ChecksumSHA256: sha256('seeded'),
    });
    expect(world.sandbox.calls.filter((c) => c.action === 'PutObject')).toEqual([]);
  });
});
