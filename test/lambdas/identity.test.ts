import { execFileSync } from 'node:child_process';
import { createVerify, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReadinessAgentSchema } from '../../lambdas/shared/config';
import { AWS_IDENTITY_CERTIFICATES } from '../../lambdas/signal/aws-identity-certificates';
import {
  buildTrust,
  type ExpectedIdentity,
  identityKeysVariable,
  keysOfCertificates,
  parseIdentityKeysVariable,
  verifyIdentity,
} from '../../lambdas/signal/identity';
import { createIdentitySigner, type IdentitySigner, identityDocument } from '../../sandbox/identity';

const ACCOUNT = '123456789012';
const REGION = 'eu-west-1';
const INSTANCE = 'i-0bbbbbbbbbbbbbbb2';

let signer: IdentitySigner;
let other: IdentitySigner;
beforeAll(() => {
  signer = createIdentitySigner();
  other = createIdentitySigner();
});

const fields = (overrides: Record<string, unknown> = {}) => ({
  accountId: ACCOUNT,
  region: REGION,
  instanceId: INSTANCE,
  imageId: 'ami-0123456789abcdef0',
  instanceType: 't3.small',
  availabilityZone: 'eu-west-1b',
  privateIp: '10.0.1.23',
  pendingTime: Date.parse('2026-05-01T10:00:00Z'),
  ...overrides,
});
const expected: ExpectedIdentity = { instanceId: INSTANCE, accountId: ACCOUNT, region: REGION };
const trust = () => buildTrust(keysOfCertificates({ [REGION]: signer.certificatePem }));
const reasonOf = (verdict: ReturnType<typeof verifyIdentity>) => (verdict.ok ? 'accepted' : verdict.reason);

describe('verifyIdentity', () => {
  it('accepts a document signed with the key trusted for its region that names the event’s instance, account and region', () => {
    const verdict = verifyIdentity(signer.identityOf(fields()), expected, trust());

    expect(verdict).toEqual({
      ok: true,
      document: { instanceId: INSTANCE, accountId: ACCOUNT, region: REGION },
    });
  });

  it('rejects a document with one byte changed after signing', () => {
    const { document, signature } = signer.identityOf(fields());
    const tampered = document.replace('"t3.small"', '"t3.smalm"');

    expect(reasonOf(verifyIdentity({ document: tampered, signature }, expected, trust()))).toMatch(
      /signature does not verify with the certificate trusted for eu-west-1/,
    );
  });

  it('rejects a document signed with another key than the one trusted for its region', () => {
    expect(reasonOf(verifyIdentity(other.identityOf(fields()), expected, trust()))).toMatch(
      /does not verify/,
    );
  });

  it('accepts a document signed with any of the keys trusted for its region (an AWS key rotation)', () => {
    const both = buildTrust(
      keysOfCertificates({ [REGION]: signer.certificatePem }),
      keysOfCertificates({ [REGION]: other.certificatePem }),
    );

    expect(verifyIdentity(other.identityOf(fields()), expected, both).ok).toBe(true);
  });

  it("rejects another instance's genuine document", () => {
    const verdict = verifyIdentity(
      signer.identityOf(fields({ instanceId: 'i-0aaaaaaaaaaaaaaa1' })),
      expected,
      trust(),
    );

    expect(reasonOf(verdict)).toBe(
      "the identity document is instance i-0aaaaaaaaaaaaaaa1's, not i-0bbbbbbbbbbbbbbb2's",
    );
  });

  it('rejects a genuine document from another account', () => {
    const verdict = verifyIdentity(
      signer.identityOf(fields({ accountId: '999999999999' })),
      expected,
      trust(),
    );

    expect(reasonOf(verdict)).toBe(
      'the identity document is from account 999999999999, the event from 123456789012',
    );
  });

  it('rejects a genuine document from another region than the event’s', () => {
    const twoRegions = buildTrust(
      keysOfCertificates({ [REGION]: signer.certificatePem, 'eu-central-1': signer.certificatePem }),
    );
    const verdict = verifyIdentity(
      signer.identityOf(fields({ region: 'eu-central-1' })),
      expected,
      twoRegions,
    );

    expect(reasonOf(verdict)).toBe(
      'the identity document is from region eu-central-1, the event from eu-west-1',
    );
  });

  it('rejects a document from a region no certificate is trusted for, and says how to trust one', () => {
    const verdict = verifyIdentity(
      signer.identityOf(fields({ region: 'ap-south-9' })),
      { ...expected, region: 'ap-south-9' },
      trust(),
    );

    expect(reasonOf(verdict)).toBe(
      'no identity certificate is trusted for region ap-south-9 (add it under readinessAgent.identityCertificates)',
    );
  });

  it.each([
    ['characters outside base64', 'not*base64!'],
    ['a truncated group', 'QUJD\nRA'],
    ['padding in the middle', 'QQ==QUJD'],
    ['nothing but whitespace', ' \n '],
  ])('rejects a signature with %s', (_label, signature) => {
    const { document } = signer.identityOf(fields());

    expect(reasonOf(verifyIdentity({ document, signature }, expected, trust()))).toBe(
      'the identity signature is not base64',
    );
  });

  it.each([
    ['not JSON', 'instanceId=i-0bbbbbbbbbbbbbbb2'],
    ['JSON without an account', JSON.stringify({ instanceId: INSTANCE, region: REGION })],
    [
      'JSON with a malformed region',
      JSON.stringify({ instanceId: INSTANCE, accountId: ACCOUNT, region: '../x' }),
    ],
  ])('rejects a document that is %s', (_label, document) => {
    expect(
      reasonOf(verifyIdentity({ document, signature: signer.sign(document) }, expected, trust())),
    ).toMatch(/^the identity document is not an instance identity document/);
  });

  it('rejects an event that carries no identity at all', () => {
    expect(reasonOf(verifyIdentity(undefined, expected, trust()))).toBe(
      'the event carries no instance identity document',
    );
  });

  it('wraps the signature in lines and lays the document out as IMDS does, and still verifies', () => {
    const { document, signature } = signer.identityOf(fields());

    expect(signature.split('\n').every((line) => line.length <= 76)).toBe(true);
    expect(signature).toContain('\n');
    expect(document).toBe(identityDocument(fields()));
    expect(document).toMatch(/^\{\n {2}"accountId" : "123456789012",\n/);
    expect(verifyIdentity({ document, signature }, expected, trust()).ok).toBe(true);
  });
});

/**
 * Instance identity documents and their `/signature` as EC2 served them in us-east-1, published with
 * their signatures as test data by the rspamd/awsregioncertificates project.
 */
const AWS_SAMPLES = [
  {
    document: `{
  "accountId" : "975050371289",
  "architecture" : "x86_64",
  "availabilityZone" : "us-east-1b",
  "billingProducts" : null,
  "devpayProductCodes" : null,
  "marketplaceProductCodes" : null,
  "imageId" : "ami-0c7217cdde317cfec",
  "instanceId" : "i-0b02d936754a6d637",
  "instanceType" : "t2.micro",
  "kernelId" : null,
  "pendingTime" : "2024-02-15T14:12:11Z",
  "privateIp" : "172.31.17.154",
  "ramdiskId" : null,
  "region" : "us-east-1",
  "version" : "2017-09-30"
}`,
    signature: `OQTgfPTsc7hXR+3OWP7dk7qY1S1RNGvVvoVPzn/WogAqJpGBtei2pSx3OfZ7F1PDMpClQswDcF9N
iZmPD09xyJSrSRwYvx8SFoBWzUXS1hd9T1ZxpqWtloe/k//YmK7h9f7rjuT3/CxDDCWrbsKp8F0N
ck+YPKGzD+dtxEm6g1g=`,
    instanceId: 'i-0b02d936754a6d637',
  },
  {
    document: `{
  "accountId" : "975050371289",
  "architecture" : "x86_64",
  "availabilityZone" : "us-east-1c",
  "billingProducts" : null,
  "devpayProductCodes" : null,
  "marketplaceProductCodes" : [ "4i20ezfza3p7xx2kt2g8weu2u" ],
  "imageId" : "ami-0b76fe9a9986f66a7",
  "instanceId" : "i-0ce4441c840a0a941",
  "instanceType" : "t2.micro",
  "kernelId" : null,
  "pendingTime" : "2024-04-12T13:56:49Z",
  "privateIp" : "172.31.43.11",
  "ramdiskId" : null,
  "region" : "us-east-1",
  "version" : "2017-09-30"
}`,
    signature: `SAzcO69oS4Cc2Zcs28rOpodVxTyjRyfVswe7GgCOTTeo+GC14MHdTQA0YEV97JNAXMorb719EyFu
C2thke+aLzXbeTYBRz2isKIKfazQE8f0221OBpdwENX5I/HVUlhQW8Yi1s234IV42ydnDNJtj12T
zwVN+SrhVyvndrWv/t8=`,
    instanceId: 'i-0ce4441c840a0a941',
  },
];

describe("AWS's certificates", () => {
  const awsTrust = () => buildTrust(keysOfCertificates(AWS_IDENTITY_CERTIFICATES));
  const awsExpected = (instanceId: string): ExpectedIdentity => ({
    instanceId,
    accountId: '975050371289',
    region: 'us-east-1',
  });

  it.each(AWS_SAMPLES.map((sample) => [sample.instanceId, sample]))(
    "accepts %s's document as EC2 signed it, with the us-east-1 certificate",
    (_id, sample) => {
      expect(verifyIdentity(sample, awsExpected(sample.instanceId), awsTrust()).ok).toBe(true);
    },
  );

  it('rejects a real document with one byte changed', () => {
    const [sample] = AWS_SAMPLES;
    if (!sample) throw new Error('no sample');
    const document = sample.document.replace('"t2.micro"', '"t2.large"');

    expect(
      reasonOf(verifyIdentity({ ...sample, document }, awsExpected(sample.instanceId), awsTrust())),
    ).toMatch(/does not verify/);
  });

  it('is SHA-256 with RSA that AWS signs the /signature with, not SHA-1', () => {
    const [sample] = AWS_SAMPLES;
    if (!sample) throw new Error('no sample');
    const key = new X509Certificate(AWS_IDENTITY_CERTIFICATES['us-east-1'] ?? '').publicKey;
    const signature = Buffer.from(sample.signature, 'base64');

    expect(createVerify('sha256').update(sample.document).verify(key, signature)).toBe(true);
    expect(createVerify('sha1').update(sample.document).verify(key, signature)).toBe(false);
  });

  it.each(Object.entries(AWS_IDENTITY_CERTIFICATES))(
    '%s: the certificate is RSA and its self-signature verifies (the text was copied intact)',
    (_region, pem) => {
      const certificate = new X509Certificate(pem);

      expect(certificate.publicKey.asymmetricKeyType).toBe('rsa');
      expect(certificate.verify(certificate.publicKey)).toBe(true);
    },
  );

  it('covers the commercial, China and GovCloud regions, and many of them share one key', () => {
    const keys = keysOfCertificates(AWS_IDENTITY_CERTIFICATES);
    const spki = (region: string) =>
      keys[region]?.[0]?.export({ type: 'spki', format: 'der' }).toString('base64');

    expect(Object.keys(AWS_IDENTITY_CERTIFICATES)).toEqual(
      expect.arrayContaining(['us-east-1', 'eu-west-1', 'ap-east-1', 'cn-north-1', 'us-gov-west-1']),
    );
    expect(spki('eu-west-1')).toBe(spki('us-east-1'));
    expect(spki('ap-east-1')).not.toBe(spki('us-east-1'));
  });
});

describe('the identity keys variable the stack gives the signal function', () => {
  it('carries each certificate’s public key, which verifies what the certificate’s key signed', () => {
    const value = identityKeysVariable({ [REGION]: signer.certificatePem });
    const fromVariable = buildTrust(parseIdentityKeysVariable(value));

    expect(verifyIdentity(signer.identityOf(fields()), expected, fromVariable).ok).toBe(true);
    expect(verifyIdentity(other.identityOf(fields()), expected, fromVariable).ok).toBe(false);
  });

  it('fits four 4096-bit keys and the other variables in Lambda’s 4 KB environment', () => {
    const dir = mkdtempSync(join(tmpdir(), 'identity-test-'));
    try {
      const path = join(dir, 'large.crt');
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:4096',
          '-nodes',
          '-days',
          '1',
          '-subj',
          '/CN=identity test',
          '-keyout',
          join(dir, 'large.key'),
          '-out',
          path,
        ],
        { stdio: 'ignore' },
      );
      // One key's size stands for four: only the length of the value matters here.
      const large = readFileSync(path, 'utf8');
      const certificates = Object.fromEntries(
        ['eu-west-1', 'eu-west-2', 'eu-west-3', 'eu-north-1'].map((region) => [region, large]),
      );

      expect(ReadinessAgentSchema.safeParse({ identityCertificates: certificates }).success).toBe(true);
      // The shared variables take about 400 bytes (lib/step-lambdas.ts).
      expect(identityKeysVariable(certificates).length).toBeLessThan(3_500);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ['not JSON', 'MIIB'],
    ['no keys for a region', '{"eu-west-1":[]}'],
    ['a key that is not a key', '{"eu-west-1":["bm90IGEga2V5"]}'],
  ])('refuses a value that is %s', (_label, value) => {
    expect(() => parseIdentityKeysVariable(value)).toThrow();
  });
});

describe('readinessAgent.identityCertificates in the config', () => {
  const problems = (identityCertificates: unknown) => {
    const result = ReadinessAgentSchema.safeParse({ identityCertificates });
    return result.success ? [] : result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it('accepts AWS’s published certificate for a region and defaults to none', () => {
    expect(problems({ 'us-east-1': AWS_IDENTITY_CERTIFICATES['us-east-1'] })).toEqual([]);
    expect(ReadinessAgentSchema.parse({})).toEqual({ identityCertificates: {} });
  });

  it('refuses text that is not a certificate, naming the region', () => {
    expect(problems({ 'eu-west-1': 'MIIDITCCAoqgAwIBAgIU' })).toEqual([
      expect.stringMatching(/^identityCertificates\.eu-west-1: use the Region's RSA certificate/),
    ]);
  });

  it('refuses a certificate whose key is not RSA', () => {
    const dir = mkdtempSync(join(tmpdir(), 'identity-test-'));
    try {
      const path = join(dir, 'ec.crt');
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-days',
          '1',
          '-subj',
          '/CN=identity test',
          '-keyout',
          join(dir, 'ec.key'),
          '-out',
          path,
        ],
        { stdio: 'ignore' },
      );

      expect(problems({ 'eu-west-1': readFileSync(path, 'utf8') })).toHaveLength(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a key that is not a region name', () => {
    expect(problems({ Ireland: signer.certificatePem })).toEqual([
      'identityCertificates.Ireland: use an AWS region name such as eu-west-1',
    ]);
  });

  it('refuses more than four regions, whose keys would not fit the function’s environment', () => {
    const five = Object.fromEntries(
      ['eu-west-1', 'eu-west-2', 'eu-west-3', 'eu-north-1', 'eu-south-1'].map((r) => [
        r,
        signer.certificatePem,
      ]),
    );

    expect(problems(five)).toEqual([expect.stringContaining('name at most 4 regions')]);
  });
});
