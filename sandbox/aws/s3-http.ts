import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { HttpRequest } from '@smithy/core/protocols';
import { SignatureV4 } from '@smithy/signature-v4';
import type { Checksum, SourceData } from '@smithy/types';
import type { VirtualClock } from '../contracts';

/**
 * S3 as a box reaches it with a presigned URL: a real HTTP server on loopback that checks the SigV4
 * query signature, the way S3 does, before it reads or writes the object through the S3 model. A box's
 * curl (sandbox/standins/curl) sends requests for `*.amazonaws.com` S3 hosts here with the Host header
 * they were signed for, so both virtual-hosted (`<bucket>.s3.<region>.amazonaws.com/<key>`) and
 * path-style (`s3.<region>.amazonaws.com/<bucket>/<key>`) URLs arrive as they would at S3.
 *
 * Expiry is judged on the virtual clock (the presigner stamped X-Amz-Date from it), so a test can let a
 * URL expire by advancing time. Each connection holds the clock until it closes, and every answer
 * closes its connection, as in sandbox/net.ts.
 */

export interface PresignedCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

/** The S3 API behind the endpoint: the same model, call log and faults as the SDK's commands. */
export interface PresignedS3 {
  handle(
    action: 'GetObject' | 'PutObject' | 'HeadObject',
    input: Record<string, unknown>,
  ): Promise<Record<string, unknown>>;
}

export interface S3EndpointOptions {
  readonly region: string;
  readonly credentials: PresignedCredentials;
  readonly s3: PresignedS3;
}

export interface S3EndpointHandle {
  /** `http://127.0.0.1:<port>`: what scripts on the boxes get as SANDBOX_S3_ENDPOINT. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

const LOOPBACK = '127.0.0.1';
/** SigV4 presigned URLs live at most a week. */
const MAX_EXPIRES_SECONDS = 604_800;
const AUTH_PARAMS = [
  'X-Amz-Algorithm',
  'X-Amz-Credential',
  'X-Amz-Date',
  'X-Amz-Expires',
  'X-Amz-SignedHeaders',
  'X-Amz-Signature',
] as const;
const VIRTUAL_HOST = /^([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\.s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com$/;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

/** node:crypto behind the hash interface the signer expects (an HMAC when given a secret). */
class NodeSha256 implements Checksum {
  private hash: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;
  constructor(private readonly secret?: SourceData) {
    this.hash = this.fresh();
  }
  private fresh() {
    return this.secret === undefined ? createHash('sha256') : createHmac('sha256', toBuffer(this.secret));
  }
  update(data: Uint8Array): void {
    this.hash.update(data);
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
  reset(): void {
    this.hash = this.fresh();
  }
}
const toBuffer = (data: SourceData): Buffer =>
  typeof data === 'string'
    ? Buffer.from(data)
    : ArrayBuffer.isView(data)
      ? Buffer.from(data.buffer, data.byteOffset, data.byteLength)
      : Buffer.from(data);

class S3HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

const xmlEscape = (text: string): string => text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);

const errorXml = (error: S3HttpError, requestId: string, resource: string): string =>
  [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<Error><Code>${xmlEscape(error.code)}</Code><Message>${xmlEscape(error.message)}</Message>`,
    ...Object.entries(error.extra).map(([k, v]) => `<${k}>${xmlEscape(v)}</${k}>`),
    `<Resource>${xmlEscape(resource)}</Resource><RequestId>${requestId}</RequestId>`,
    `<HostId>${Buffer.from(requestId).toString('base64')}</HostId></Error>`,
  ].join('');

const parseAmzDate = (value: string): number | undefined => {
  const m = AMZ_DATE.exec(value);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  return Date.UTC(y, mo - 1, d, h, mi, s);
};

const firstValue = (value: string | string[] | undefined): string | undefined =>
  Array.isArray(value) ? value[0] : value;

interface Located {
  readonly bucket: string;
  readonly key: string;
  /** The path exactly as sent: SigV4 for S3 signs it without re-encoding. */
  readonly rawPath: string;
  readonly host: string;
}

const locate = (req: http.IncomingMessage): Located => {
  const hostHeader = firstValue(req.headers.host) ?? '';
  const host = hostHeader.replace(/:\d+$/, '').toLowerCase();
  const rawPath = (req.url ?? '/').split('?')[0] ?? '/';
  const virtual = VIRTUAL_HOST.exec(host);
  const decoded = rawPath
    .split('/')
    .map((segment) => {
      try {
        return decodeURIComponent(segment);
      } catch {
        throw new S3HttpError(400, 'InvalidURI', "Couldn't parse the specified URI.");
      }
    })
    .join('/');
  if (virtual?.[1]) return { bucket: virtual[1], key: decoded.replace(/^\//, ''), rawPath, host: hostHeader };
  const [, bucket = '', ...rest] = decoded.split('/');
  return { bucket, key: rest.join('/'), rawPath, host: hostHeader };
};

const readBody = (req: http.IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });

/** Query parameters as S3 reads them; a repeated one keeps every value, as SigV4 signs them. */
const queryOf = (url: string): Record<string, string | string[]> => {
  const query: Record<string, string | string[]> = {};
  const search = url.includes('?') ? url.slice(url.indexOf('?') + 1) : '';
  for (const [key, value] of new URLSearchParams(search)) {
    const existing = query[key];
    query[key] =
      existing === undefined ? value : [...(Array.isArray(existing) ? existing : [existing]), value];
  }
  return query;
};

const single = (
  query: Readonly<Record<string, string | string[] | null>> | undefined,
  name: string,
): string | undefined => {
  const value = query?.[name];
  return (Array.isArray(value) ? value[0] : value) ?? undefined;
};

/** Looks a parameter up without regard to case (the SDK hoists `x-amz-checksum-*` in lower case). */
const findParam = (
  query: Record<string, string | string[]>,
  name: string,
): { key: string; value: string } | undefined => {
  const key = Object.keys(query).find((k) => k.toLowerCase() === name);
  const value = key === undefined ? undefined : single(query, key);
  return key === undefined || value === undefined ? undefined : { key, value };
};

export async function startS3Endpoint(
  clock: VirtualClock,
  options: S3EndpointOptions,
): Promise<S3EndpointHandle> {
  const sockets = new Set<net.Socket>();
  const signer = new SignatureV4({
    credentials: options.credentials,
    region: options.region,
    service: 's3',
    sha256: NodeSha256,
    // S3 signs the path as sent, without the double encoding other services use.
    uriEscapePath: false,
    applyChecksum: false,
  });

  /** Checks the presigned query as S3 does: parameters, credential, expiry, then the signature. */
  const authorize = async (
    req: http.IncomingMessage,
    located: Located,
    query: Record<string, string | string[]>,
  ): Promise<void> => {
    const present = AUTH_PARAMS.filter((name) => single(query, name) !== undefined);
    if (present.length === 0) throw new S3HttpError(403, 'AccessDenied', 'Access Denied');
    if (present.length < AUTH_PARAMS.length) {
      throw new S3HttpError(
        400,
        'AuthorizationQueryParametersError',
        'Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.',
      );
    }
    const algorithm = single(query, 'X-Amz-Algorithm') ?? '';
    const credential = single(query, 'X-Amz-Credential') ?? '';
    const amzDate = single(query, 'X-Amz-Date') ?? '';
    const expires = Number(single(query, 'X-Amz-Expires'));
    const signedHeaders = single(query, 'X-Amz-SignedHeaders') ?? '';
    const signature = single(query, 'X-Amz-Signature') ?? '';
    if (algorithm !== 'AWS4-HMAC-SHA256') {
      throw new S3HttpError(
        400,
        'AuthorizationQueryParametersError',
        'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"',
      );
    }
    const [accessKeyId, , region] = credential.split('/');
    if (region !== options.region) {
      throw new S3HttpError(
        400,
        'AuthorizationQueryParametersError',
        `Error parsing the X-Amz-Credential parameter; the region '${region ?? ''}' is wrong; expecting '${options.region}'`,
      );
    }
    if (accessKeyId !== options.credentials.accessKeyId) {
      throw new S3HttpError(
        403,
        'InvalidAccessKeyId',
        'The AWS Access Key Id you provided does not exist in our records.',
        { AWSAccessKeyId: accessKeyId ?? '' },
      );
    }
    const signedAt = parseAmzDate(amzDate);
    if (signedAt === undefined) {
      throw new S3HttpError(
        400,
        'AuthorizationQueryParametersError',
        "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
      );
    }
    if (!Number.isInteger(expires) || expires < 0 || expires > MAX_EXPIRES_SECONDS) {
      throw new S3HttpError(
        400,
        'AuthorizationQueryParametersError',
        'X-Amz-Expires must be less than a week (in seconds) that is; 604800',
      );
    }
    const now = clock.now();
    if (now > signedAt + expires * 1000) {
      throw new S3HttpError(403, 'AccessDenied', 'Request has expired', {
        'X-Amz-Expires': String(expires),
        Expires: new Date(signedAt + expires * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
        ServerTime: new Date(now).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      });
    }
    const signed = signedHeaders.split(';').filter(Boolean);
    const unsigned = Object.keys(req.headers).filter((h) => h.startsWith('x-amz-') && !signed.includes(h));
    if (unsigned.length > 0) {
      throw new S3HttpError(
        403,
        'AccessDenied',
        'There were headers present in the request which were not signed',
        {
          HeadersNotSigned: unsigned.join(', '),
        },
      );
    }

    // Recompute: the same request, signed again with the account's secret at the stated time.
    const headers: Record<string, string> = {};
    for (const name of signed) {
      const value = firstValue(req.headers[name]);
      if (value !== undefined) headers[name] = value;
    }
    const toSign: Record<string, string | string[]> = { ...query };
    delete toSign['X-Amz-Signature'];
    // Presigned S3 requests sign an unsigned payload; the presigner names it in the query.
    const payload = findParam(toSign, 'x-amz-content-sha256');
    if (payload) delete toSign[payload.key];
    headers[payload?.key ?? 'x-amz-content-sha256'] = payload?.value ?? 'UNSIGNED-PAYLOAD';
    const request = new HttpRequest({
      method: req.method ?? 'GET',
      protocol: 'https:',
      hostname: located.host.replace(/:\d+$/, ''),
      path: located.rawPath,
      query: toSign,
      headers,
    });
    let expected: string | undefined;
    let expectedHeaders: string | undefined;
    try {
      const presigned = await signer.presign(request, {
        signingDate: new Date(signedAt),
        expiresIn: expires,
        // Exactly the headers the client signed (only those are in `headers`), even ones SigV4 skips.
        signableHeaders: new Set(signed),
      });
      expected = single(presigned.query, 'X-Amz-Signature');
      expectedHeaders = single(presigned.query, 'X-Amz-SignedHeaders');
    } catch {
      expected = undefined;
    }
    const matches =
      expected !== undefined &&
      expectedHeaders === signedHeaders &&
      expected.length === signature.length &&
      timingSafeEqual(Buffer.from(expected), Buffer.from(signature));
    if (!matches) {
      throw new S3HttpError(
        403,
        'SignatureDoesNotMatch',
        'The request signature we calculated does not match the signature you provided. Check your key and signing method.',
        { AWSAccessKeyId: accessKeyId, SignatureProvided: signature },
      );
    }
  };

  /** The S3 action for the request, with what S3 reads from its headers and query. */
  const act = async (
    req: http.IncomingMessage,
    located: Located,
    query: Record<string, string | string[]>,
  ): Promise<{ status: number; headers: Record<string, string>; body?: Buffer }> => {
    const method = req.method ?? 'GET';
    if (!located.bucket)
      throw new S3HttpError(
        405,
        'MethodNotAllowed',
        'The specified method is not allowed against this resource.',
      );
    const target = { Bucket: located.bucket, Key: located.key };
    const param = (name: string) => findParam(query, name)?.value ?? firstValue(req.headers[name]);
    if (method === 'PUT') {
      const body = await readBody(req);
      const md5 = firstValue(req.headers['content-md5']);
      if (md5 !== undefined && createHash('md5').update(body).digest('base64') !== md5) {
        throw new S3HttpError(
          400,
          'BadDigest',
          'The Content-MD5 you specified did not match what we received.',
        );
      }
      const crc32 = param('x-amz-checksum-crc32');
      const sha256 = param('x-amz-checksum-sha256');
      const algorithm = param('x-amz-sdk-checksum-algorithm');
      const contentType = firstValue(req.headers['content-type']);
      const sse = param('x-amz-server-side-encryption');
      const out = await options.s3.handle('PutObject', {
        ...target,
        Body: body,
        ...(contentType ? { ContentType: contentType } : {}),
        ...(crc32 !== undefined ? { ChecksumCRC32: crc32 } : {}),
        ...(sha256 !== undefined ? { ChecksumSHA256: sha256 } : {}),
        ...(algorithm !== undefined ? { ChecksumAlgorithm: algorithm.toUpperCase() } : {}),
        ...(sse !== undefined ? { ServerSideEncryption: sse } : {}),
      });
      return { status: 200, headers: responseHeaders(out) };
    }
    if (method === 'GET' || method === 'HEAD') {
      const checksumMode = param('x-amz-checksum-mode');
      const input = { ...target, ...(checksumMode ? { ChecksumMode: checksumMode } : {}) };
      const out = await options.s3.handle(method === 'GET' ? 'GetObject' : 'HeadObject', input);
      const body = method === 'GET' ? await bytesOf(out.Body) : undefined;
      return { status: 200, headers: responseHeaders(out), ...(body ? { body } : {}) };
    }
    throw new S3HttpError(
      405,
      'MethodNotAllowed',
      'The specified method is not allowed against this resource.',
    );
  };

  const server = http.createServer(
    { connectionsCheckingInterval: 1_000, headersTimeout: 5_000, requestTimeout: 30_000 },
    (req, res) => {
      const requestId = randomBytes(8).toString('hex').toUpperCase();
      let resource = req.url?.split('?')[0] ?? '/';
      const answer = async () => {
        const located = locate(req);
        resource = `/${located.bucket}/${located.key}`;
        const query = queryOf(req.url ?? '/');
        await authorize(req, located, query);
        return act(req, located, query);
      };
      answer()
        .catch((error: unknown) => {
          const failure = asS3HttpError(error);
          return {
            status: failure.status,
            headers: { 'Content-Type': 'application/xml' },
            body: req.method === 'HEAD' ? undefined : Buffer.from(errorXml(failure, requestId, resource)),
          };
        })
        .then(({ status, headers, body }) => {
          // Whatever the client still sends (an upload refused before it was read) is drained.
          req.resume();
          res.writeHead(status, {
            ...headers,
            'x-amz-request-id': requestId,
            Connection: 'close',
            ...(body ? { 'Content-Length': String(body.length) } : {}),
          });
          res.end(body);
        });
    },
  );
  server.on('connection', (socket: net.Socket) => {
    const release = clock.hold('s3 endpoint connection');
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      release();
    });
    socket.on('error', () => socket.destroy());
  });

  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => {
      server.off('error', reject);
      const address = server.address();
      if (address === null || typeof address === 'string') reject(new Error('no TCP address'));
      else resolve(address.port);
    });
  });

  return {
    url: `http://${LOOPBACK}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        if (!server.listening) resolve();
        else server.close(() => resolve());
      }),
  };
}

/** An error from the S3 model (the SDK's exception shape) or the endpoint itself, as S3 answers it. */
const asS3HttpError = (error: unknown): S3HttpError => {
  if (error instanceof S3HttpError) return error;
  const named = error as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  return new S3HttpError(
    named.$metadata?.httpStatusCode ?? 500,
    named.name ?? 'InternalError',
    named.message ?? 'We encountered an internal error. Please try again.',
  );
};

const bytesOf = async (body: unknown): Promise<Buffer> => {
  if (body === undefined || body === null) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  for await (const chunk of body as AsyncIterable<Uint8Array | string>) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
};

const CHECKSUM_HEADERS: Record<string, string> = {
  ChecksumCRC32: 'x-amz-checksum-crc32',
  ChecksumSHA256: 'x-amz-checksum-sha256',
};

const responseHeaders = (out: Record<string, unknown>): Record<string, string> => {
  const headers: Record<string, string> = {};
  const text = (name: string, value: unknown) => {
    if (typeof value === 'string' && value !== '') headers[name] = value;
  };
  text('ETag', out.ETag);
  text('Content-Type', out.ContentType);
  text('x-amz-server-side-encryption', out.ServerSideEncryption);
  if (out.LastModified instanceof Date) headers['Last-Modified'] = out.LastModified.toUTCString();
  for (const [member, header] of Object.entries(CHECKSUM_HEADERS)) text(header, out[member]);
  return headers;
};
