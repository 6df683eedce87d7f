import 'aws-sdk-client-mock-jest';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';
import { handler } from '../../lambdas/probe/handler';
import { type ProbeState, probe } from '../../lambdas/probe/probe';
import { createClients } from '../../lambdas/shared/clients';
import { awsError } from '../fixtures/aws';
import { type Site, startSite } from '../fixtures/site';
import { fakeS3, lambdaContext, makeState, makeTarget, TOPIC } from './ssm-steps.fixture';

const sns = mockClient(SNSClient);
const PUBLIC_IP = '203.0.113.10';

/** The site behind the EIP. */
let site: Site;

beforeEach(async () => {
  sns.reset();
  fakeS3().seedLock();
  site = await startSite(PUBLIC_IP, 200, 'service is up');
});

afterEach(async () => {
  await site.close();
});

const health = (overrides: Record<string, unknown> = {}) => ({
  path: '/healthz',
  intervalSeconds: 1,
  consecutiveSuccesses: 2,
  deadlineSeconds: 30,
  bakeSeconds: 0,
  bakeFailureThreshold: 2,
  ...overrides,
});
const stateWith = (h: Record<string, unknown>, previous?: ProbeState) => ({
  ...makeState(makeTarget({ tls: { mode: 'none' }, health: health(h) })),
  ...(previous ? { probe: previous } : {}),
});
const iso = (msAgo: number) => new Date(Date.now() - msAgo).toISOString();
const baking = (phaseMsAgo: number): ProbeState => ({
  phase: 'bake',
  startedAt: iso(phaseMsAgo + 5_000),
  phaseStartedAt: iso(phaseMsAgo),
  consecutiveSuccesses: 0,
  consecutiveFailures: 0,
  requests: 2,
  failures: 0,
  done: false,
});
const run = (state: ReturnType<typeof stateWith>, budgetMs = 10_000) =>
  probe(createClients(), { topicArn: TOPIC, budgetMs }, state);

describe('probe', () => {
  it('verifies after the consecutive successes through the EIP, with the domain as Host, and reports it', async () => {
    const result = await run(stateWith({}));

    expect(result).toMatchObject({ phase: 'bake', done: true, requests: 2, failures: 0 });
    expect(site.requests).toEqual([
      { host: 'www.example.com', path: '/healthz' },
      { host: 'www.example.com', path: '/healthz' },
    ]);
    expect(sns).toHaveReceivedCommandTimes(PublishCommand, 1);
    expect(sns).toHaveReceivedCommandWith(PublishCommand, {
      TopicArn: TOPIC,
      MessageAttributes: expect.objectContaining({ event: { DataType: 'String', StringValue: 'verified' } }),
    });
  });

  it('keeps a verified switch when the verified message cannot be published', async () => {
    sns.on(PublishCommand).rejects(awsError('AuthorizationError', 'not allowed', 403));

    const result = await run(stateWith({}));

    expect(result).toMatchObject({ phase: 'bake', done: true, requests: 2, failures: 0 });
    expect(sns).toHaveReceivedCommandTimes(PublishCommand, 1);
  });

  it('starts the streak again after a failed answer', async () => {
    site.statuses.push(200, 503);

    const result = await run(stateWith({}));

    expect(result).toMatchObject({ phase: 'bake', done: true, requests: 4, failures: 1 });
  });

  it('fails with the last verdict once the deadline has passed without the streak', async () => {
    site.status = 502;
    const previous: ProbeState = {
      ...baking(0),
      phase: 'verify',
      startedAt: iso(31_000),
      phaseStartedAt: iso(31_000),
    };

    await expect(run(stateWith({}, previous))).rejects.toMatchObject({
      name: 'ProbeFailed',
      message: expect.stringContaining('status 502, expected 200'),
    });
    expect(sns).toHaveReceivedCommandTimes(PublishCommand, 0);
  });

  it('fails the bake after N consecutive failures', async () => {
    site.status = 500;

    await expect(run(stateWith({ bakeSeconds: 300 }, baking(0)))).rejects.toMatchObject({
      name: 'BakeFailed',
      message: expect.stringMatching(/failed 2 times in a row.*bakeFailureThreshold 2/),
    });
    expect(site.requests).toHaveLength(2);
  });

  it('tolerates failures below the threshold and ends the bake clean when bakeSeconds have passed', async () => {
    site.statuses.push(500);

    const result = await run(stateWith({ bakeSeconds: 10, bakeFailureThreshold: 2 }, baking(8_500)));

    expect(result).toMatchObject({ phase: 'bake', done: true, failures: 1 });
    expect(result.requests).toBeGreaterThanOrEqual(4);
  });

  it("hands its state back when the invocation's time is up, to be called again", async () => {
    const result = await run(stateWith({ consecutiveSuccesses: 10 }), 2_500);

    expect(result).toMatchObject({ phase: 'verify', done: false, failures: 0 });
    expect(result.requests).toBeGreaterThanOrEqual(2);
    expect(result.requests).toBeLessThanOrEqual(3);
    expect(result.consecutiveSuccesses).toBe(result.requests);
  });

  it('carries the streak over from the previous invocation', async () => {
    const previous: ProbeState = {
      ...baking(0),
      phase: 'verify',
      startedAt: iso(1_000),
      phaseStartedAt: iso(1_000),
      consecutiveSuccesses: 1,
    };

    const result = await run(stateWith({}, previous));

    expect(result).toMatchObject({ phase: 'bake', done: true, requests: 3 });
  });

  it('runs end to end through the Lambda handler', async () => {
    process.env.TOPIC_ARN = TOPIC;

    await expect(handler(stateWith({ consecutiveSuccesses: 1 }), lambdaContext())).resolves.toMatchObject({
      done: true,
      requests: 1,
    });
  });
});
