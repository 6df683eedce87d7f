import { DescribeInstancesCommand } from '@aws-sdk/client-ec2';
import { PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { GetParameterCommand } from '@aws-sdk/client-ssm';
import type { IdentitySigner } from '../../sandbox/identity';
import type { World } from './helpers';

/**
 * A readiness report must come from the box it names: the signal function checks the instance identity
 * document and its signature (the sandbox signs as EC2 would, with a key its config trusts), so a forged
 * "Instance Ready" cannot send a broken candidate live, and a report from an instance that is not a
 * candidate leaves nothing behind.
 */

// The logger takes its level from the environment when first loaded (and each invocation resets it to
// that level), so it is set before anything that loads it: the modules below are imported after this.
const previousLevel = process.env.POWERTOOLS_LOG_LEVEL;
process.env.POWERTOOLS_LOG_LEVEL = 'WARN';

let helpers: typeof import('./helpers');
let shared: {
  clients: typeof import('../../lambdas/shared/clients')['clients'];
  constants: typeof import('../../lambdas/shared/constants');
  SANDBOX_ENV: typeof import('../../sandbox/demo')['SANDBOX_ENV'];
  identity: typeof import('../../sandbox/identity');
};
let world: World | undefined;
let forger: IdentitySigner;
/** What every function printed (WARN and above) during the test. */
let printed: string[];
let spies: jest.SpyInstance[] = [];

beforeAll(async () => {
  helpers = await import('./helpers');
  shared = {
    clients: (await import('../../lambdas/shared/clients')).clients,
    constants: await import('../../lambdas/shared/constants'),
    SANDBOX_ENV: (await import('../../sandbox/demo')).SANDBOX_ENV,
    identity: await import('../../sandbox/identity'),
  };
  forger = shared.identity.createIdentitySigner();
});
beforeEach(() => {
  printed = [];
  // WARN and ERROR go to stderr, the rest to stdout.
  spies = [process.stdout, process.stderr].map((stream) =>
    jest.spyOn(stream, 'write').mockImplementation((chunk: unknown) => {
      printed.push(String(chunk));
      return true;
    }),
  );
});
afterEach(async () => {
  for (const spy of spies) spy.mockRestore();
  await world?.stop();
  world = undefined;
});
afterAll(() => {
  if (previousLevel === undefined) delete process.env.POWERTOOLS_LOG_LEVEL;
  else process.env.POWERTOOLS_LOG_LEVEL = previousLevel;
});

const REJECTED = 'rejected a readiness event whose instance identity does not check out';
const logEntries = () =>
  printed
    .join('')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);

const putAgentEvent = async (detailType: string, detail: Record<string, unknown>) => {
  const out = await shared.clients().events.send(
    new PutEventsCommand({
      Entries: [
        {
          EventBusName: shared.SANDBOX_ENV.EVENT_BUS_NAME,
          Source: 'understudy.agent',
          DetailType: detailType,
          Detail: JSON.stringify(detail),
        },
      ],
    }),
  );
  expect(out.FailedEntryCount).toBe(0);
};

const candidateId = async (): Promise<string> => {
  const out = await shared.clients().ec2.send(
    new DescribeInstancesCommand({
      Filters: [{ Name: `tag:${shared.constants.Tags.role}`, Values: ['candidate'] }],
    }),
  );
  const id = out.Reservations?.[0]?.Instances?.[0]?.InstanceId;
  if (!id) throw new Error('no candidate yet');
  return id;
};

/** The identity document IMDS serves on `instanceId` in the sandbox's account and region. */
const identityFields = (current: World, instanceId: string) => ({
  accountId: current.sandbox.accountId,
  region: current.sandbox.region,
  instanceId,
  imageId: 'ami-0123456789abcdef0',
  instanceType: 't3.small',
  availabilityZone: `${current.sandbox.region}a`,
  privateIp: '10.0.1.99',
  pendingTime: Date.now(),
});

const FORGERIES = {
  'signed with another key': (current: World, instanceId: string) => ({
    identity: forger.identityOf(identityFields(current, instanceId)),
  }),
  'without an identity document': () => ({}),
} as const;

/** Runs the workflow and, 5 s (virtual) into AwaitReadiness, puts a forged Instance Ready for the candidate. */
const runWithForgedReady = async (current: World, forgery: keyof typeof FORGERIES) => {
  let forged: Promise<string> | undefined;
  const run = await current.run(undefined, {
    onStateEntered: (state) => {
      if (state !== 'AwaitReadiness' || forged) return;
      forged = new Promise<void>((resolve) => setTimeout(resolve, 5_000)).then(async () => {
        const instanceId = await candidateId();
        await putAgentEvent('Instance Ready', {
          instanceId,
          status: 'done',
          exitCode: 0,
          errors: [],
          ...FORGERIES[forgery](current, instanceId),
        });
        return instanceId;
      });
    },
  });
  if (!forged) throw new Error('the run never reached AwaitReadiness');
  return { run, candidate: await forged };
};

describe('a forged Instance Ready for the candidate while it boots', () => {
  it.each(Object.keys(FORGERIES) as (keyof typeof FORGERIES)[])(
    'is rejected when %s, and a box whose cloud-init fails is still rolled back',
    async (forgery) => {
      world = await helpers.startWorld({ newImage: { cloudInit: 'error', app: 'broken' } });
      const { run, candidate } = await runWithForgedReady(world, forgery);

      expect(run.outcome).toBe('rolled-back');
      expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(world.seeded.oldInstanceId);
      expect(
        world.mutatingCalls(
          (c) => c.action === 'AssociateAddress' && JSON.stringify(c.input).includes(candidate),
        ),
      ).toEqual([]);
      expect(helpers.outcomeMessages(world)).toHaveLength(1);
      expect(logEntries()).toContainEqual(
        expect.objectContaining({ level: 'WARN', message: REJECTED, instance: candidate }),
      );
    },
  );

  it("leaves the task to the box's own report: a healthy box is replaced only once it is ready", async () => {
    world = await helpers.startWorld();
    const { run, candidate } = await runWithForgedReady(world, 'signed with another key');

    expect(run.outcome).toBe('replaced');
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(candidate);
    // The box boots for 60 s (virtual); the forgery came 5 s into the wait and completed nothing.
    const awaited = run.timeline.find((entry) => entry.state === 'AwaitReadiness');
    expect(awaited?.durationMs).toBeGreaterThan(30_000);
    expect(logEntries().filter((entry) => entry.message === REJECTED)).toEqual([
      expect.objectContaining({
        level: 'WARN',
        instance: candidate,
        reason: expect.stringMatching(/^the identity signature does not verify/),
      }),
    ]);
    // The reason names the instance and the check, never the document or the signature.
    expect(printed.join('')).not.toContain('"pendingTime"');
  });
});

describe('a final event from an instance that is not a candidate', () => {
  const expectNoEarlyEvent = async (instanceId: string) => {
    // The signal function judged the event: it asked EC2 whether the instance is a candidate.
    expect(
      world?.sandbox.calls.some(
        (c) => c.action === 'DescribeInstances' && JSON.stringify(c.input).includes(instanceId),
      ),
    ).toBe(true);
    await expect(
      shared.clients().ssm.send(
        new GetParameterCommand({
          Name: shared.constants.parameterNames(shared.SANDBOX_ENV.PARAMETER_PREFIX).earlyEvent(instanceId),
        }),
      ),
    ).rejects.toMatchObject({ name: 'ParameterNotFound' });
    expect(
      world?.mutatingCalls(
        (c) => c.action === 'PutParameter' && JSON.stringify(c.input).includes('/events/'),
      ),
    ).toEqual([]);
  };

  it('leaves no parameter behind for the serving box, even with its genuine identity', async () => {
    world = await helpers.startWorld();
    const old = world.seeded.oldInstanceId;

    await putAgentEvent('Instance Ready', {
      instanceId: old,
      status: 'done',
      exitCode: 0,
      errors: [],
      identity: shared.identity.sandboxIdentitySigner().identityOf(identityFields(world, old)),
    });
    await world.sandbox.clock.sleep(1_000);

    await expectNoEarlyEvent(old);
  });

  it('leaves no parameter behind for an instance the account does not have', async () => {
    world = await helpers.startWorld();
    const unknown = 'i-0fedcba9876543210';

    await putAgentEvent('Instance Failed', {
      instanceId: unknown,
      status: 'error',
      exitCode: 1,
      errors: [],
      identity: shared.identity.sandboxIdentitySigner().identityOf(identityFields(world, unknown)),
    });
    await world.sandbox.clock.sleep(1_000);

    await expectNoEarlyEvent(unknown);
  });
});
