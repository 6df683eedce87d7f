import {
  DeleteObjectCommand,
  GetObjectCommand,
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
