import http from 'node:http';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { s3Client } from '../../../lambdas/shared/clients';
import { Sandbox } from '../../../sandbox/index';

const Bucket = 'understudy-sandbox-runs';
const Key = 'tls/run-1/0123abcd.tar.gz';
// What a careful presigner leaves out of the URL: the SDK would otherwise sign the CRC32 of the empty
// body it has at signing time.
const CHECKSUMS = new Set(['x-amz-checksum-crc32', 'x-amz-sdk-checksum-algorithm', 'x-amz-checksum-mode']);
const careful = { unhoistableHeaders: CHECKSUMS, unsignableHeaders: CHECKSUMS };

interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** Sends a request for a presigned S3 URL to the sandbox endpoint, as the boxes' curl does. */
const send = (
  endpoint: string,
  presigned: string,
  options: { method?: string; body?: Buffer; headers?: Record<string, string> } = {},
): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const url = new URL(presigned);
    const target = new URL(endpoint);
    const req = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: options.method ?? 'GET',
        path: `${url.pathname}${url.search}`,
        headers: { Host: url.host, ...options.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });

const codeOf = (answer: Answer): string | undefined =>
  /<Code>([^<]+)<\/Code>/.exec(answer.body.toString())?.[1];

describe('the sandbox S3 endpoint for presigned URLs', () => {
  let sandbox: Sandbox;
  beforeEach(async () => {
    sandbox = await Sandbox.start();
    sandbox.createBucket(Bucket);
  });
  afterEach(() => sandbox.stop());

  const presignPut = (expiresIn = 300) =>
    getSignedUrl(s3Client(), new PutObjectCommand({ Bucket, Key, ContentType: 'application/gzip' }), {
      expiresIn,
      ...careful,
      signableHeaders: new Set(['content-type']),
    });
  const presignGet = (expiresIn = 300) =>
    getSignedUrl(s3Client(), new GetObjectCommand({ Bucket, Key }), { expiresIn, ...careful });
  const payload = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 1, 2, 3, 4, 5, 250, 251]);

  it('stores a PUT through the S3 model with its ETag and type, and logs the call as presigned', async () => {
    const url = await presignPut();

    const put = await send(sandbox.s3Endpoint, url, {
      method: 'PUT',
      body: payload,
      headers: { 'Content-Type': 'application/gzip' },
    });

    expect(url).toMatch(/^https:\/\/understudy-sandbox-runs\.s3\.eu-west-1\.amazonaws\.com\/tls\/run-1\//);
    expect(put.status).toBe(200);
    const stored = sandbox.s3.details(Bucket, Key);
    expect(stored?.bytes.equals(payload)).toBe(true);
    expect(stored?.contentType).toBe('application/gzip');
    expect(put.headers.etag).toBe(stored?.etag);
    expect(sandbox.calls.at(-1)).toMatchObject({
      service: 's3',
      action: 'PutObject',
      via: 'presigned-url',
      mutating: true,
    });
  });

  it('answers a GET with the object bytes, and 404 NoSuchKey XML for a missing key', async () => {
    const missing = await send(sandbox.s3Endpoint, await presignGet());
    sandbox.s3.seedObject(Bucket, Key, payload, { contentType: 'application/gzip' });

    const found = await send(sandbox.s3Endpoint, await presignGet());

    expect(missing.status).toBe(404);
    expect(codeOf(missing)).toBe('NoSuchKey');
    expect(missing.headers['content-type']).toBe('application/xml');
    expect(found.status).toBe(200);
    expect(found.body.equals(payload)).toBe(true);
    expect(found.headers['content-type']).toBe('application/gzip');
  });

  it('accepts path-style URLs as well', async () => {
    sandbox.createBucket('b1');
    sandbox.s3.seedObject('b1', 'k', 'path style');
    const url = await getSignedUrl(s3Client(), new GetObjectCommand({ Bucket: 'b1', Key: 'k' }), careful);

    const answer = await send(sandbox.s3Endpoint, url);

    expect(new URL(url).host).toBe('s3.eu-west-1.amazonaws.com');
    expect(answer.status).toBe(200);
    expect(answer.body.toString()).toBe('path style');
  });

  it('refuses a URL once the virtual clock is past its expiry: 403 AccessDenied, Request has expired', async () => {
    sandbox.s3.seedObject(Bucket, Key, payload);
    const url = await presignGet(300);
    const early = await send(sandbox.s3Endpoint, url);

    await sandbox.clock.sleep(301_000);
    const late = await send(sandbox.s3Endpoint, url);

    expect(early.status).toBe(200);
    expect(late.status).toBe(403);
    expect(codeOf(late)).toBe('AccessDenied');
    expect(late.body.toString()).toContain('<Message>Request has expired</Message>');
    expect(late.body.toString()).toContain('<X-Amz-Expires>300</X-Amz-Expires>');
  });

  it('refuses a tampered signature with 403 SignatureDoesNotMatch', async () => {
    sandbox.s3.seedObject(Bucket, Key, payload);
    const url = new URL(await presignGet());
    const signature = url.searchParams.get('X-Amz-Signature') ?? '';
    url.searchParams.set(
      'X-Amz-Signature',
      `${signature.slice(0, -1)}${signature.endsWith('0') ? '1' : '0'}`,
    );

    const answer = await send(sandbox.s3Endpoint, url.toString());

    expect(answer.status).toBe(403);
    expect(codeOf(answer)).toBe('SignatureDoesNotMatch');
  });

  it('refuses a URL signed for another key, or a PUT URL used for a GET', async () => {
    sandbox.s3.seedObject(Bucket, Key, payload);
    sandbox.s3.seedObject(Bucket, 'tls/run-1/other.tar.gz', payload);
    const otherKey = new URL(await presignGet());
    otherKey.pathname = '/tls/run-1/other.tar.gz';

    const moved = await send(sandbox.s3Endpoint, otherKey.toString());
    const putAsGet = await send(sandbox.s3Endpoint, await presignPut(), {
      headers: { 'Content-Type': 'application/gzip' },
    });

    expect(moved.status).toBe(403);
    expect(codeOf(moved)).toBe('SignatureDoesNotMatch');
    expect(putAsGet.status).toBe(403);
    expect(codeOf(putAsGet)).toBe('SignatureDoesNotMatch');
  });

  it('refuses an upload that declares another Content-Type than the one signed', async () => {
    const answer = await send(sandbox.s3Endpoint, await presignPut(), {
      method: 'PUT',
      body: payload,
      headers: { 'Content-Type': 'text/plain' },
    });

    expect(answer.status).toBe(403);
    expect(codeOf(answer)).toBe('SignatureDoesNotMatch');
    expect(sandbox.s3.details(Bucket, Key)).toBeUndefined();
  });

  it('verifies a checksum the URL carries: the SDK default (CRC32 of an empty body) fails a real upload', async () => {
    const url = await getSignedUrl(
      s3Client(),
      new PutObjectCommand({ Bucket, Key, ContentType: 'application/gzip' }),
      { expiresIn: 300 },
    );

    const answer = await send(sandbox.s3Endpoint, url, { method: 'PUT', body: payload });

    expect(new URL(url).searchParams.get('x-amz-checksum-crc32')).toBe('AAAAAA==');
    expect(answer.status).toBe(400);
    expect(codeOf(answer)).toBe('BadDigest');
    expect(sandbox.s3.details(Bucket, Key)).toBeUndefined();
  });

  it('answers 403 AccessDenied to a request without a signature', async () => {
    sandbox.s3.seedObject(Bucket, Key, payload);

    const answer = await send(sandbox.s3Endpoint, `https://${Bucket}.s3.eu-west-1.amazonaws.com/${Key}`);

    expect(answer.status).toBe(403);
    expect(codeOf(answer)).toBe('AccessDenied');
  });
});
