import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateTagsCommand,
  DescribeAddressesCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeInstanceTypesCommand,
  DescribeRouteTablesCommand,
  DescribeVpcEndpointsCommand,
  EC2Client,
} from '@aws-sdk/client-ec2';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { DescribeInstanceInformationCommand, GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import {
  effectiveTlsMode,
  preflight,
  recentIssuances,
  servedCertificate,
} from '../../lambdas/preflight/preflight';
import { createClients } from '../../lambdas/shared/clients';
import type { TargetConfig } from '../../lambdas/shared/config';
import {
  addConnectHook,
  addTrustedCa,
  type ConnectHook,
  type ProbeResponse,
  removeConnectHook,
} from '../../lambdas/shared/http';
import { awsError, lambdaContext, s3Body } from '../fixtures/aws';
import {
  ALLOCATION_ID,
  ec2Fixtures,
  NEW_IMAGE_ID,
  OLD_IMAGE_ID,
  OLD_INSTANCE_ID,
  PUBLIC_IP,
  reservationOf,
} from '../fixtures/ec2';
import { lockBody, lockFree, lockHeldBy } from '../fixtures/lock';
import { type Site, startSite } from '../fixtures/site';
import { EXECUTION_ARN, EXECUTION_NAME, targetConfig } from '../fixtures/target';

const ec2 = mockClient(EC2Client);
const ssm = mockClient(SSMClient);
const s3 = mockClient(S3Client);
const sns = mockClient(SNSClient);

const env = {
  PARAMETER_PREFIX: '/understudy',
  RUNS_BUCKET: 'understudy-runs',
  TOPIC_ARN: 'arn:aws:sns:eu-west-1:123456789012:understudy',
};
const execution = {
  arn: EXECUTION_ARN,
  name: EXECUTION_NAME,
  redriveCount: 0,
  startTime: '2026-11-26T10:00:00.000Z',
};
const run = (input: unknown = { target: 'web' }) => {
  const clients = createClients();
  return preflight(
    { ...clients, stateClients: () => ({ s3: clients.s3, dynamodb: clients.dynamodb }) },
    env,
    { input, execution },
  );
};

const seed = (target: TargetConfig = targetConfig()) => {
  ssm
    .on(GetParameterCommand, { Name: '/understudy/targets/web' })
    .resolves({ Parameter: { Value: JSON.stringify(target) } });
  ssm.on(GetParameterCommand, { Name: '/golden/web/ami' }).resolves({ Parameter: { Value: NEW_IMAGE_ID } });
  ec2.on(DescribeImagesCommand).resolves(ec2Fixtures.images());
  ec2.on(DescribeAddressesCommand).resolves(ec2Fixtures.addresses());
  ec2.on(DescribeInstancesCommand).resolves(ec2Fixtures.instances());
  ec2.on(DescribeInstanceTypesCommand).resolves(ec2Fixtures.instanceTypes());
  ec2.on(DescribeRouteTablesCommand).resolves(ec2Fixtures.routeTablesNat());
  ec2.on(DescribeVpcEndpointsCommand).resolves(ec2Fixtures.vpcEndpoints());
  ec2.on(CreateTagsCommand).resolves({});
  // The old box's SSM agent (restore packs the certificate there through Run Command).
  ssm.on(DescribeInstanceInformationCommand).resolves({
    InstanceInformationList: [{ InstanceId: OLD_INSTANCE_ID, PingStatus: 'Online' }],
  });
  lockFree(s3);
  sns.on(PublishCommand).resolves({ MessageId: 'msg-1' });
};

const withOldInstance = (change: (instance: ReturnType<typeof ec2Fixtures.oldInstance>) => void) => {
  const instance = ec2Fixtures.oldInstance();
  change(instance);
  ec2.on(DescribeInstancesCommand).resolves(reservationOf(instance));
};

const expectNothingMutated = () => {
  expect(ec2).toHaveReceivedCommandTimes(CreateTagsCommand, 0);
  expect(s3).toHaveReceivedCommandTimes(PutObjectCommand, 0);
  expect(sns).toHaveReceivedCommandTimes(PublishCommand, 0);
};

const refusal = (text: string) => ({ name: 'PreflightRefused', message: expect.stringContaining(text) });

let site: Site;
beforeEach(async () => {
  ec2.reset();
  ssm.reset();
  s3.reset();
  sns.reset();
  seed();
  site = await startSite(PUBLIC_IP);
});
afterEach(async () => {
  await site.close();
});

describe('preflight input', () => {
  it('refuses an unknown field, naming it, before any AWS call', async () => {
    await expect(run({ target: 'web', colour: 'blue' })).rejects.toMatchObject({
      name: 'InvalidInput',
      message: expect.stringContaining('"colour"'),
    });
    expect(ec2.calls()).toHaveLength(0);
    expect(ssm.calls()).toHaveLength(0);
  });

  it('refuses a mistyped field with its path (input.dryRun)', async () => {
    await expect(run({ target: 'web', dryRun: 'yes' })).rejects.toMatchObject({
      name: 'InvalidInput',
      field: 'input.dryRun',
      message: expect.stringMatching(/^input\.dryRun: /),
    });
    expect(ssm.calls()).toHaveLength(0);
  });

  it('refuses a target name that could escape its parameter path, before any AWS call', async () => {
    await expect(run({ target: '../other' })).rejects.toMatchObject({
      name: 'InvalidInput',
      field: 'input.target',
    });
    expect(ssm.calls()).toHaveLength(0);
  });

  it('refuses an unknown target and says where targets are configured', async () => {
    ssm
      .on(GetParameterCommand, { Name: '/understudy/targets/shop' })
      .rejects(awsError('ParameterNotFound', 'not found'));
    await expect(run({ target: 'shop' })).rejects.toMatchObject({
      name: 'InvalidInput',
      message:
        'input.target: unknown target shop (no /understudy/targets/shop); configured targets are listed in understudy.config.json: add it there and redeploy the stack',
    });
    expectNothingMutated();
  });

  it('refuses a rollback that names an image: the retired box comes back as it was', async () => {
    await expect(
      run({ target: 'web', action: 'rollback', imageId: 'ami-0123456789abcdef0' }),
    ).rejects.toMatchObject({
      name: 'PreflightRefused',
      message: expect.stringMatching(/^input\.imageId: a rollback brings back the retired server/),
    });
    expect(ec2.calls()).toHaveLength(0);
  });
});

describe('preflight checks', () => {
  it('plans a replacement, takes the lock and adopts the box once every check passed', async () => {
    const plan = await run();

    expect(plan).toMatchObject({
      action: 'replace',
      image: { imageId: NEW_IMAGE_ID, architecture: 'x86_64', rootDeviceName: '/dev/sda1' },
      old: {
        instanceId: OLD_INSTANCE_ID,
        imageId: OLD_IMAGE_ID,
        instanceType: 't3.small',
        subnetId: 'subnet-0aa11bb22cc33dd44',
      },
      eip: { allocationId: ALLOCATION_ID, publicIp: PUBLIC_IP, associationId: 'eipassoc-0aaaa1111bbbb2222' },
      baseline: { healthy: true, status: 200 },
      needsPublicIp: false,
      lock: { bucket: 'understudy-runs', key: 'locks/web.json', owner: EXECUTION_ARN },
    });
    expect(site.requests).toEqual([{ host: 'www.example.com', path: '/healthz' }]);
    expect(s3).toHaveReceivedCommandWith(PutObjectCommand, {
      Bucket: 'understudy-runs',
      Key: 'locks/web.json',
      IfNoneMatch: '*',
    });
    expect(ec2).toHaveReceivedCommandWith(CreateTagsCommand, {
      Resources: [OLD_INSTANCE_ID],
      Tags: [{ Key: 'understudy:target', Value: 'web' }],
    });
    expect(sns).toHaveReceivedCommandTimes(PublishCommand, 1);
    expect(sns).toHaveReceivedCommandWith(PublishCommand, {
      MessageAttributes: expect.objectContaining({ event: { DataType: 'String', StringValue: 'started' } }),
    });
  });

  it('prefers input.imageId over the configured SSM parameter', async () => {
    await run({ target: 'web', imageId: NEW_IMAGE_ID });
    expect(ssm).toHaveReceivedCommandTimes(GetParameterCommand, 1);
    expect(ec2).toHaveReceivedCommandWith(DescribeImagesCommand, { ImageIds: [NEW_IMAGE_ID] });
  });

  it('refuses an AMI that does not exist, naming it', async () => {
    ec2
      .on(DescribeImagesCommand)
      .rejects(awsError('InvalidAMIID.NotFound', `The image id '[${NEW_IMAGE_ID}]' does not exist`));
    await expect(run()).rejects.toMatchObject(refusal(`image ${NEW_IMAGE_ID} does not exist`));
    expectNothingMutated();
  });

  it('refuses an AMI that is not available yet', async () => {
    const images = ec2Fixtures.images();
    const image = images.Images?.[0];
    if (image) image.State = 'pending';
    ec2.on(DescribeImagesCommand).resolves(images);
    await expect(run()).rejects.toMatchObject(refusal(`image ${NEW_IMAGE_ID} is pending, not available`));
    expectNothingMutated();
  });

  it('refuses an AMI whose architecture the instance type cannot run, naming both', async () => {
    const images = ec2Fixtures.images();
    const image = images.Images?.[0];
    if (image) image.Architecture = 'arm64';
    ec2.on(DescribeImagesCommand).resolves(images);
    await expect(run()).rejects.toMatchObject(
      refusal('built for arm64, but instance type t3.small supports x86_64'),
    );
    expectNothingMutated();
  });

  it('refuses when the Elastic IP is not associated with an instance', async () => {
    const addresses = ec2Fixtures.addresses();
    const address = addresses.Addresses?.[0];
    if (address) {
      delete address.InstanceId;
      delete address.AssociationId;
      delete address.NetworkInterfaceId;
    }
    ec2.on(DescribeAddressesCommand).resolves(addresses);
    await expect(run()).rejects.toMatchObject(refusal('EIP not associated'));
    expectNothingMutated();
  });

  it('refuses when the old box is not running', async () => {
    withOldInstance((i) => {
      i.State = { Code: 80, Name: 'stopped' };
    });
    await expect(run()).rejects.toMatchObject(
      refusal(`instance ${OLD_INSTANCE_ID} behind Elastic IP ${ALLOCATION_ID} is stopped`),
    );
    expectNothingMutated();
  });

  it('refuses an extra data volume and names the setting that allows it', async () => {
    withOldInstance((i) => {
      i.BlockDeviceMappings?.push({
        DeviceName: '/dev/sdf',
        Ebs: { VolumeId: 'vol-0da7a000000000001', DeleteOnTermination: false },
      });
    });
    await expect(run()).rejects.toMatchObject({
      ...refusal('/dev/sdf vol-0da7a000000000001'),
      field: 'dataVolumes',
      message: expect.stringContaining('"dataVolumes": "fresh"'),
    });
    expectNothingMutated();
  });

  it('accepts an extra data volume when the target declares dataVolumes fresh', async () => {
    seed(targetConfig({ dataVolumes: 'fresh' }));
    withOldInstance((i) => {
      i.BlockDeviceMappings?.push({
        DeviceName: '/dev/sdf',
        Ebs: { VolumeId: 'vol-0da7a000000000001', DeleteOnTermination: false },
      });
    });
    await expect(run()).resolves.toMatchObject({ action: 'replace' });
  });

  it('refuses an instance type with instance store unless dataVolumes is fresh', async () => {
    const types = ec2Fixtures.instanceTypes();
    const type = types.InstanceTypes?.[0];
    if (type) type.InstanceStorageSupported = true;
    ec2.on(DescribeInstanceTypesCommand).resolves(types);
    await expect(run()).rejects.toMatchObject(refusal('instance-store volumes'));
    expectNothingMutated();
  });

  it('refuses a box with several network interfaces', async () => {
    withOldInstance((i) => {
      const eth0 = i.NetworkInterfaces?.[0];
      if (eth0)
        i.NetworkInterfaces?.push({ ...structuredClone(eth0), NetworkInterfaceId: 'eni-05ec0dd000000001' });
    });
    await expect(run()).rejects.toMatchObject(
      refusal('2 network interfaces (eni-0123456789abcdef0, eni-05ec0dd000000001)'),
    );
    expectNothingMutated();
  });

  it('refuses a box with IPv6 addresses', async () => {
    withOldInstance((i) => {
      const eth0 = i.NetworkInterfaces?.[0];
      if (eth0) eth0.Ipv6Addresses = [{ Ipv6Address: '2a05:d018:1:2::10', IsPrimaryIpv6: false }];
    });
    await expect(run()).rejects.toMatchObject(refusal('IPv6 addresses (2a05:d018:1:2::10)'));
    expectNothingMutated();
  });

  it('refuses a box that another target already adopted', async () => {
    withOldInstance((i) => {
      i.Tags?.push({ Key: 'understudy:target', Value: 'shop' });
    });
    await expect(run()).rejects.toMatchObject(refusal('understudy:target=shop'));
    expectNothingMutated();
  });

  it('does not tag a box that already carries its target tag', async () => {
    withOldInstance((i) => {
      i.Tags?.push({ Key: 'understudy:target', Value: 'web' });
    });
    await expect(run()).resolves.toMatchObject({ action: 'replace' });
    expect(ec2).toHaveReceivedCommandTimes(CreateTagsCommand, 0);
  });

  it('records an unhealthy baseline instead of refusing (self-healing runs)', async () => {
    site.status = 503;
    const plan = await run();
    expect(plan.action).toBe('replace');
    expect(plan.baseline).toEqual({ healthy: false, status: 503, detail: 'status 503, expected 200' });
  });

  it('surfaces a throttled describe as Transient for the state machine to retry', async () => {
    ec2
      .on(DescribeInstancesCommand)
      .rejects(awsError('RequestLimitExceeded', 'Request limit exceeded.', 503));
    await expect(run()).rejects.toMatchObject({ name: 'Transient' });
    expectNothingMutated();
  });

  it('turns an unexpected SDK error into a named refusal', async () => {
    ec2.on(DescribeInstanceTypesCommand).rejects(awsError('UnauthorizedOperation', 'You are not authorized'));
    await expect(run()).rejects.toMatchObject(refusal('UnauthorizedOperation'));
    expectNothingMutated();
  });
});

describe('preflight egress (design §2.2)', () => {
  const onlyLocalRoute = () => {
    const tables = ec2Fixtures.routeTablesNat();
    const table = tables.RouteTables?.[0];
    if (table) table.Routes = table.Routes?.filter((r) => r.DestinationCidrBlock !== '0.0.0.0/0');
    ec2.on(DescribeRouteTablesCommand).resolves(tables);
  };

  it('launches with a public IP when the subnet routes out through an internet gateway', async () => {
    const tables = ec2Fixtures.routeTablesNat();
    const route = tables.RouteTables?.[0]?.Routes?.find((r) => r.DestinationCidrBlock === '0.0.0.0/0');
    if (route) {
      delete route.NatGatewayId;
      route.GatewayId = 'igw-0a1b2c3d4e5f67890';
    }
    ec2.on(DescribeRouteTablesCommand).resolves(tables);
    await expect(run()).resolves.toMatchObject({ needsPublicIp: true });
    expect(ec2).toHaveReceivedCommandTimes(DescribeVpcEndpointsCommand, 0);
  });

  it('refuses a subnet with no NAT, no internet gateway and missing endpoints, listing them', async () => {
    onlyLocalRoute();
    await expect(run()).rejects.toMatchObject(
      refusal(
        'has no route to EventBridge/SSM/S3 (no NAT, no internet gateway, missing endpoints: com.amazonaws.eu-west-1.events)',
      ),
    );
    expectNothingMutated();
  });

  it('accepts a private subnet whose VPC endpoints cover every service', async () => {
    onlyLocalRoute();
    const endpoints = ec2Fixtures.vpcEndpoints();
    endpoints.VpcEndpoints?.push({
      VpcEndpointId: 'vpce-0e0e07500000001',
      VpcEndpointType: 'Interface',
      ServiceName: 'com.amazonaws.eu-west-1.events',
      // The wire value is lowercase although the SDK enum says "Available".
      State: 'available' as never,
      PrivateDnsEnabled: true,
    });
    ec2.on(DescribeVpcEndpointsCommand).resolves(endpoints);
    await expect(run()).resolves.toMatchObject({ action: 'replace', needsPublicIp: false });
  });

  it("falls back to the VPC's main route table for a subnet without its own", async () => {
    ec2.on(DescribeRouteTablesCommand).resolves({ RouteTables: [] });
    ec2
      .on(DescribeRouteTablesCommand, {
        Filters: [
          { Name: 'vpc-id', Values: ['vpc-0123abcd4567ef890'] },
          { Name: 'association.main', Values: ['true'] },
        ],
      })
      .resolves(ec2Fixtures.routeTablesNat());
    await expect(run()).resolves.toMatchObject({ needsPublicIp: false });
    expect(ec2).toHaveReceivedCommandTimes(DescribeRouteTablesCommand, 2);
  });
});

describe('preflight outcomes without a replacement', () => {
  it('finishes as a no-op, without lock or tags, when the box already runs the image', async () => {
    ssm.on(GetParameterCommand, { Name: '/golden/web/ami' }).resolves({ Parameter: { Value: OLD_IMAGE_ID } });
    const images = ec2Fixtures.images();
    const image = images.Images?.[0];
    if (image) image.ImageId = OLD_IMAGE_ID;
    ec2.on(DescribeImagesCommand).resolves(images);

    const plan = await run();
    expect(plan.action).toBe('no-op');
    expect(plan.lock).toBeUndefined();
    expectNothingMutated();
  });

  it('dry run reports who holds the lock and mutates nothing', async () => {
    lockHeldBy(
      s3,
      'arn:aws:states:eu-west-1:123456789012:execution:understudy-replace:web-other',
      'web-other',
    );
    const plan = await run({ target: 'web', dryRun: true });
    expect(plan.action).toBe('dry-run');
    expect(plan.lock).toBeUndefined();
    expect(plan.lockHeldBy).toMatchObject({ executionName: 'web-other' });
    expectNothingMutated();
  });

  it('refuses with LockHeld naming the execution that holds the lock, and adopts nothing', async () => {
    lockHeldBy(
      s3,
      'arn:aws:states:eu-west-1:123456789012:execution:understudy-replace:web-other',
      'web-other',
    );
    await expect(run()).rejects.toMatchObject({
      name: 'LockHeld',
      message: expect.stringContaining('web-other'),
    });
    expect(ec2).toHaveReceivedCommandTimes(CreateTagsCommand, 0);
    expect(sns).toHaveReceivedCommandTimes(PublishCommand, 0);
  });

  it('gives the lock back when adopting the box fails', async () => {
    ec2
      .on(CreateTagsCommand)
      .rejects(awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.', 403));
    lockFree(s3);
    s3.on(GetObjectCommand).callsFake(async () => ({ Body: s3Body(lockBody()), ETag: '"etag-1"' }));
    s3.on(DeleteObjectCommand).resolves({});
    await expect(run()).rejects.toMatchObject({
      name: 'PreflightRefused',
      message: expect.stringContaining('UnauthorizedOperation'),
    });
    expect(s3).toHaveReceivedCommandWith(DeleteObjectCommand, { Key: 'locks/web.json', IfMatch: '"etag-1"' });
  });
});

describe('preflight handler', () => {
  it('wires the domain function with the environment and real client factory', async () => {
    process.env.PARAMETER_PREFIX = env.PARAMETER_PREFIX;
    process.env.RUNS_BUCKET = env.RUNS_BUCKET;
    process.env.TOPIC_ARN = env.TOPIC_ARN;
    const { handler } = await import('../../lambdas/preflight/handler');
    const plan = await handler({ input: { target: 'web' }, execution }, lambdaContext('preflight'));
    expect(plan).toMatchObject({ action: 'replace', lock: { owner: EXECUTION_ARN } });
  });
});

// TLS continuity (issue 4): the effective mode and the Let's Encrypt rate-limit guard.

/** A self-signed certificate for `name`, trusted by the probe like a real CA's. */
const certificateFor = (name: string, days: number) => {
  const dir = mkdtempSync(join(tmpdir(), 'preflight-tls-'));
  const [key, cert] = [join(dir, 'key.pem'), join(dir, 'cert.pem')];
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
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      String(days),
      '-subj',
      `/CN=${name}`,
      '-addext',
      `subjectAltName=DNS:${name}`,
    ],
    { stdio: 'ignore' },
  );
  const pems = { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') };
  addTrustedCa(pems.cert);
  return pems;
};

/** The old box serving HTTPS with `pems` on the EIP, in place of the plain-HTTP site. */
const serveHttps = async (pems: { key: string; cert: string }, status = 200): Promise<Site> => {
  await site.close();
  const requests: { host?: string; path?: string }[] = [];
  const server = https.createServer(pems, (req, res) => {
    requests.push({ ...(req.headers.host ? { host: req.headers.host } : {}), path: req.url ?? '' });
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const hook: ConnectHook = (host) => (host === PUBLIC_IP ? { host: '127.0.0.1', port } : undefined);
  addConnectHook(hook);
  return {
    status,
    statuses: [],
    requests,
    close: async () => {
      removeConnectHook(hook);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
};

describe('preflight TLS mode', () => {
  const withTls = (tls: Record<string, unknown>, health: Record<string, unknown> = {}) =>
    seed(
      targetConfig({
        tls,
        health: { path: '/healthz', intervalSeconds: 1, requestTimeoutSeconds: 2, ...health },
      }),
    );

  it('defaults to restore when the old box serves a valid certificate for the domain', async () => {
    site = await serveHttps(certificateFor('www.example.com', 90));
    withTls({});

    const plan = await run();

    expect(plan.target.tls.mode).toBe('restore');
    expect(plan.baseline).toMatchObject({ healthy: true, status: 200 });
    expect(site.requests).toEqual([{ host: 'www.example.com', path: '/healthz' }]);
  });

  it("refuses restore, before anything is launched, when the old box's SSM agent is not Online", async () => {
    site = await serveHttps(certificateFor('www.example.com', 90));
    withTls({});
    ssm.on(DescribeInstanceInformationCommand).resolves({ InstanceInformationList: [] });

    const refusal = (await run().then(
      () => new Error('expected preflight to refuse'),
      (error: unknown) => error,
    )) as Error & { field?: string };

    expect(refusal).toMatchObject({ name: 'PreflightRefused', field: 'tls.mode' });
    expect(refusal.message).toContain('AmazonSSMManagedInstanceCore');
    expect(ec2).not.toHaveReceivedCommand(CreateTagsCommand);
  });

  it('still restores the certificate of a box whose app is down (the certificate is what moves)', async () => {
    site = await serveHttps(certificateFor('www.example.com', 90), 503);
    withTls({});

    const plan = await run();

    expect(plan.target.tls.mode).toBe('restore');
    expect(plan.baseline.healthy).toBe(false);
  });

  it('refuses an unset mode when the old box serves no HTTPS, naming tls.mode and the fix', async () => {
    withTls({});

    await expect(run()).rejects.toMatchObject({
      name: 'PreflightRefused',
      field: 'tls.mode',
      message: expect.stringMatching(
        /^tls\.mode is not set and the old box i-\w+ does not serve a valid certificate for www\.example\.com \(.+\), so there is nothing to restore: set tls\.mode to "dns-01" .*"http-01" .*"none"/,
      ),
    });
    expectNothingMutated();
  });

  it('refuses an unset mode when the served certificate is for another name', async () => {
    site = await serveHttps(certificateFor('other.example.com', 90));
    withTls({});

    await expect(run()).rejects.toMatchObject({
      field: 'tls.mode',
      message: expect.stringContaining("does not match certificate's altnames"),
    });
    expectNothingMutated();
  });

  it('refuses restore when the certificate expires within certificateMinDaysLeft, saying how to renew it', async () => {
    site = await serveHttps(certificateFor('www.example.com', 5));
    withTls({ mode: 'restore' }, { certificateMinDaysLeft: 14 });

    await expect(run()).rejects.toMatchObject({
      name: 'PreflightRefused',
      field: 'tls.mode',
      message: expect.stringMatching(
        /^tls\.mode is "restore" but .*its certificate expires in [45]\.\d days, within health\.certificateMinDaysLeft \(14\)\): renew it on the old box \(certbot renew\)/,
      ),
    });
    expectNothingMutated();
  });

  it('keeps an explicit restore when the certificate is valid', async () => {
    site = await serveHttps(certificateFor('www.example.com', 90));
    withTls({ mode: 'restore' });

    await expect(run()).resolves.toMatchObject({ target: { tls: { mode: 'restore' } } });
  });

  it('keeps none, http-01 and dns-01 as configured, whatever the old box serves', () => {
    const down: ProbeResponse = { ok: false, error: 'connect ECONNREFUSED' };
    for (const tls of [
      { mode: 'none' },
      { mode: 'http-01', email: 'ops@example.com' },
      { mode: 'dns-01', email: 'ops@example.com', hostedZoneId: 'Z0123456789ABC' },
    ]) {
      expect(effectiveTlsMode(targetConfig({ tls }), OLD_INSTANCE_ID, down)).toBe(tls.mode);
    }
  });

  it('judges the served certificate by the handshake and the days left, not by the app status', () => {
    const target = targetConfig({ tls: {}, health: { certificateMinDaysLeft: 14 } });
    expect(servedCertificate(target, { ok: true, status: 500, certificateDaysLeft: 30 })).toMatchObject({
      valid: true,
    });
    expect(servedCertificate(target, { ok: true, status: 200, certificateDaysLeft: 13.9 })).toMatchObject({
      valid: false,
    });
    expect(servedCertificate(target, { ok: true, status: 200 })).toMatchObject({ valid: false });
    expect(servedCertificate(target, { ok: false, error: 'self-signed certificate' })).toEqual({
      valid: false,
      detail: 'self-signed certificate',
    });
  });
});

describe("preflight Let's Encrypt rate-limit guard", () => {
  const refusalOf = async (): Promise<Error & { field?: string }> => {
    try {
      await run();
    } catch (error) {
      return error as Error;
    }
    throw new Error('expected preflight to refuse');
  };
  const DAY = 86_400_000;
  const http01 = () =>
    seed(targetConfig({ tls: { mode: 'http-01', email: 'ops@example.com' }, health: { path: '/healthz' } }));
  /** Run records of the web target: `at` days ago, written `written` days ago, for `names`. */
  const records = (
    list: { at: number; written?: number; names?: string[]; requested?: boolean; legacy?: boolean }[],
    extra: { Key: string; LastModified: Date; body: string }[] = [],
  ) => {
    const now = Date.now();
    const objects = [
      ...list.map((r, i) => ({
        Key: `runs/web/web-run-${i}.json`,
        LastModified: new Date(now - (r.written ?? r.at) * DAY),
        body: JSON.stringify({
          outcome: 'replaced',
          certificate: {
            [r.legacy ? 'issued' : 'requested']: r.requested ?? true,
            names: r.names ?? ['www.example.com'],
            at: new Date(now - r.at * DAY).toISOString(),
          },
        }),
      })),
      ...extra,
    ];
    s3.on(ListObjectsV2Command, { Prefix: 'runs/web/' }).resolves({
      Contents: objects.map(({ Key, LastModified }) => ({ Key, LastModified })),
    });
    for (const o of objects) s3.on(GetObjectCommand, { Key: o.Key }).resolves({ Body: s3Body(o.body) });
    return objects;
  };

  it('refuses the sixth issuance for the same name within 7 days, naming when the window frees up', async () => {
    http01();
    const now = Date.now();
    // The oldest record is from an earlier release, which wrote `issued`: it counts the same.
    records([{ at: 6, legacy: true }, { at: 5 }, { at: 3 }, { at: 2 }, { at: 1 }]);

    const refusal = await refusalOf();

    expect(refusal).toMatchObject({ name: 'PreflightRefused', field: 'tls.mode' });
    const frees = /window frees up at (\S+):/.exec(refusal.message)?.[1] ?? '';
    // The oldest of the five leaves the window 7 days after it was issued, i.e. in about a day.
    expect(Math.abs(Date.parse(frees) - (now + DAY))).toBeLessThan(60_000);
    expect(refusal.message).toContain(
      'show 5 certificates requested for exactly these names in the last 7 days',
    );
    expect(refusal.message).toContain('tls.mode to "restore"');
    expectNothingMutated();
  });

  it('with more than five, names when enough have left for one more to fit', async () => {
    http01();
    const now = Date.now();
    records([{ at: 6.5 }, { at: 6 }, { at: 5 }, { at: 4 }, { at: 2 }, { at: 1 }]);

    const refusal = await refusalOf();

    const frees = /window frees up at (\S+):/.exec(refusal.message)?.[1] ?? '';
    // 6 in the window: the two oldest must leave; the second one does 7 days after 6 days ago.
    expect(Math.abs(Date.parse(frees) - (now + DAY))).toBeLessThan(60_000);
  });

  it('lets the fifth through, and does not count older issuances, other name sets or runs that issued nothing', async () => {
    http01();
    const objects = records(
      [
        { at: 6 },
        { at: 3 },
        { at: 2 },
        { at: 1 },
        { at: 8, written: 8 },
        { at: 2, names: ['www.example.com', 'example.com'] },
        { at: 1, requested: false },
      ],
      [{ Key: 'runs/web/garbled.json', LastModified: new Date(), body: '{not json' }],
    );

    await expect(run()).resolves.toMatchObject({ action: 'replace', target: { tls: { mode: 'http-01' } } });
    // A record written before the window cannot report an issuance inside it: it is not even read.
    expect(s3).not.toHaveReceivedCommandWith(GetObjectCommand, { Key: objects[4]?.Key });
    expect(s3).toHaveReceivedCommandWith(GetObjectCommand, { Key: objects[5]?.Key });
  });

  it('guards dns-01 too, and checks a dry run the same way without mutating anything', async () => {
    seed(
      targetConfig({
        tls: { mode: 'dns-01', email: 'ops@example.com', hostedZoneId: 'Z0123456789ABC' },
        health: { path: '/healthz' },
      }),
    );
    records([{ at: 6 }, { at: 5 }, { at: 3 }, { at: 2 }, { at: 1 }]);

    await expect(run({ target: 'web', dryRun: true })).rejects.toMatchObject({
      name: 'PreflightRefused',
      field: 'tls.mode',
      message: expect.stringContaining('tls.mode "dns-01" would request a certificate for www.example.com'),
    });
    expectNothingMutated();
  });

  it('never reads the run records in restore or none mode: no certificate is requested there', async () => {
    records([{ at: 6 }, { at: 5 }, { at: 3 }, { at: 2 }, { at: 1 }]);
    await expect(run()).resolves.toMatchObject({ target: { tls: { mode: 'none' } } });

    site = await serveHttps(certificateFor('www.example.com', 90));
    seed(targetConfig({ tls: { mode: 'restore' }, health: { path: '/healthz' } }));
    await expect(run()).resolves.toMatchObject({ target: { tls: { mode: 'restore' } } });

    expect(s3).toHaveReceivedCommandTimes(ListObjectsV2Command, 0);
  });

  it('does not guard a no-op: nothing will be issued', async () => {
    http01();
    records([{ at: 6 }, { at: 5 }, { at: 3 }, { at: 2 }, { at: 1 }]);
    ssm.on(GetParameterCommand, { Name: '/golden/web/ami' }).resolves({ Parameter: { Value: OLD_IMAGE_ID } });
    const images = ec2Fixtures.images();
    const image = images.Images?.[0];
    if (image) image.ImageId = OLD_IMAGE_ID;
    ec2.on(DescribeImagesCommand).resolves(images);

    await expect(run()).resolves.toMatchObject({ action: 'no-op' });
  });

  it('pages through the listing and retries throttling as Transient', async () => {
    http01();
    s3.on(ListObjectsV2Command)
      .resolvesOnce({ Contents: [], IsTruncated: true, NextContinuationToken: 'page-2' })
      .rejectsOnce(awsError('SlowDown', 'Please reduce your request rate.', 503));

    await expect(run()).rejects.toMatchObject({ name: 'Transient' });
    expect(s3).toHaveReceivedCommandWith(ListObjectsV2Command, { ContinuationToken: 'page-2' });
    expectNothingMutated();
  });

  it('counts from the records alone (recentIssuances), regardless of listing order', async () => {
    const now = Date.now();
    records([{ at: 1 }, { at: 5 }, { at: 3 }]);
    const times = await recentIssuances(
      createClients().s3,
      'understudy-runs',
      'web',
      ['www.example.com'],
      now,
    );
    expect(times.map((t) => Math.round((now - t) / DAY))).toEqual([5, 3, 1]);
  });
});
