import {
  DescribeInstancesCommand,
  RunInstancesCommand,
  type RunInstancesCommandInput,
} from '@aws-sdk/client-ec2';
import { type Clients, createClients } from '../../../lambdas/shared/clients';
import { Sandbox, type SeededTarget } from '../../../sandbox/index';

export interface World {
  readonly sandbox: Sandbox;
  readonly aws: Clients;
  readonly target: SeededTarget;
}

/** A fresh account with the seeded `web` service, and clients built after the plugin is in place. */
const startWorld = async (): Promise<World> => {
  const sandbox = await Sandbox.start();
  const target = await sandbox.seedTarget({ name: 'web', domain: 'web.example.test' });
  return { sandbox, aws: createClients(), target };
};

/** A fresh world for each test of the file, stopped after it. */
export const useWorld = (): World => {
  let current: World | undefined;
  beforeEach(async () => {
    current = await startWorld();
  });
  afterEach(async () => {
    await current?.sandbox.stop();
    current = undefined;
  });
  const world = (): World => {
    if (!current) throw new Error('the world exists only inside a test');
    return current;
  };
  return {
    get sandbox() {
      return world().sandbox;
    },
    get aws() {
      return world().aws;
    },
    get target() {
      return world().target;
    },
  };
};

/** The RunInstances request a launcher would build for a clone of the old box on `imageId`. */
export const cloneRequest = async (
  world: World,
  imageId: string,
  overrides: Partial<RunInstancesCommandInput> = {},
) => {
  const described = await world.aws.ec2.send(
    new DescribeInstancesCommand({ InstanceIds: [world.target.oldInstanceId] }),
  );
  const old = described.Reservations?.[0]?.Instances?.[0];
  return {
    ImageId: imageId,
    InstanceType: old?.InstanceType,
    MinCount: 1,
    MaxCount: 1,
    SubnetId: old?.SubnetId,
    SecurityGroupIds: old?.SecurityGroups?.map((g) => g.GroupId ?? ''),
    TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'understudy:target', Value: 'web' }] }],
    ...overrides,
  } satisfies RunInstancesCommandInput;
};

export const launch = async (world: World, input: RunInstancesCommandInput): Promise<string> => {
  const out = await world.aws.ec2.send(new RunInstancesCommand(input));
  return out.Instances?.[0]?.InstanceId ?? '';
};

/** Awaits a rejection and returns it, failing the test when the promise resolves. */
export const rejectionOf = async (promise: Promise<unknown>): Promise<Error & Record<string, unknown>> => {
  try {
    await promise;
  } catch (error) {
    return error as Error & Record<string, unknown>;
  }
  throw new Error('expected the call to fail, it succeeded');
};
