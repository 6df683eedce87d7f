import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { useWorld } from './helpers';

const world = useWorld();
const Bucket = 'runs';

describe('S3 ListObjectsV2', () => {
  beforeEach(() => {
    world.sandbox.createBucket(Bucket);
    for (const key of ['runs/web/b.json', 'runs/web/a.json', 'runs/api/c.json', 'tls/x/1.tar.gz']) {
      world.sandbox.s3.seedObject(Bucket, key, key);
    }
  });

  it('lists the keys under a prefix in order, a page at a time with a continuation token', async () => {
    const first = await world.aws.s3.send(new ListObjectsV2Command({ Bucket, Prefix: 'runs/', MaxKeys: 2 }));
    const second = await world.aws.s3.send(
      new ListObjectsV2Command({ Bucket, Prefix: 'runs/', ContinuationToken: first.NextContinuationToken }),
    );

    expect(first.Contents?.map((o) => o.Key)).toEqual(['runs/api/c.json', 'runs/web/a.json']);
    expect(first.IsTruncated).toBe(true);
    expect(second.Contents?.map((o) => o.Key)).toEqual(['runs/web/b.json']);
    expect(second.IsTruncated).toBe(false);
    expect(second.Contents?.[0]?.Size).toBe('runs/web/b.json'.length);
    expect(second.Contents?.[0]?.LastModified).toBeInstanceOf(Date);
  });

  it('rolls keys up into common prefixes with a delimiter', async () => {
    const out = await world.aws.s3.send(
      new ListObjectsV2Command({ Bucket, Prefix: 'runs/', Delimiter: '/' }),
    );

    expect(out.CommonPrefixes?.map((p) => p.Prefix)).toEqual(['runs/api/', 'runs/web/']);
    expect(out.Contents ?? []).toEqual([]);
  });
});
