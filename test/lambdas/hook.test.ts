import 'aws-sdk-client-mock-jest';
import {
  DescribeInstanceInformationCommand,
  ListCommandsCommand,
  SendCommandCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { runHook } from '../../lambdas/hook/hook';
import { createClients } from '../../lambdas/shared/clients';
import { SCRIPT_PREAMBLE } from '../../lambdas/shared/commands';
import { CANDIDATE_ID, EXECUTION_NAME, fakeS3, makeState, makeTarget, OLD_ID } from './ssm-steps.fixture';

const ssm = mockClient(SSMClient);

const HOOKS = {
  beforeSwitch: { newBox: ['systemctl start warmup'] },
  afterSwitch: { oldBox: ["systemctl stop 'worker@*'"], newBox: ['systemctl start worker@1'] },
};

beforeEach(() => {
  ssm.reset();
  fakeS3().seedLock();
  ssm.on(DescribeInstanceInformationCommand).callsFake((input: { Filters: { Values: string[] }[] }) => ({
    InstanceInformationList: (input.Filters[0]?.Values ?? []).map((id) => ({
      InstanceId: id,
      PingStatus: 'Online',
    })),
  }));
  ssm.on(ListCommandsCommand).resolves({ Commands: [] });
  ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-hook' } });
});

describe('hook', () => {
  it.each([
    ['beforeSwitch.newBox', CANDIDATE_ID, 'hook-before-new', 'systemctl start warmup'],
    ['afterSwitch.oldBox', OLD_ID, 'hook-after-old', "systemctl stop 'worker@*'"],
    ['afterSwitch.newBox', CANDIDATE_ID, 'hook-after-new', 'systemctl start worker@1'],
  ] as const)(
    '%s: sends the configured lines as given, after the preamble, to %s',
    async (hook, instanceId, purpose, line) => {
      const result = await runHook(createClients(), { hook, state: makeState(makeTarget({ hooks: HOOKS })) });

      expect(result).toEqual({ command: { commandId: 'cmd-hook', instanceId }, hook });
      expect(ssm).toHaveReceivedCommandWith(SendCommandCommand, {
        InstanceIds: [instanceId],
        DocumentName: 'AWS-RunShellScript',
        Comment: `understudy:${EXECUTION_NAME}:${purpose}`,
        Parameters: expect.objectContaining({ commands: [...SCRIPT_PREAMBLE, line] }),
      });
    },
  );

  it('reuses the command an earlier attempt sent for the same hook point instead of running the lines twice', async () => {
    ssm.on(ListCommandsCommand).resolves({
      Commands: [{ CommandId: 'cmd-earlier', Comment: `understudy:${EXECUTION_NAME}:hook-after-old` }],
    });

    const result = await runHook(createClients(), {
      hook: 'afterSwitch.oldBox',
      state: makeState(makeTarget({ hooks: HOOKS })),
    });

    expect(result.command.commandId).toBe('cmd-earlier');
    expect(ssm).not.toHaveReceivedCommand(SendCommandCommand);
  });

  it('refuses, naming the field, a hook point the target has no lines for, and sends nothing', async () => {
    await expect(
      runHook(createClients(), {
        hook: 'afterSwitch.newBox',
        state: makeState(makeTarget({ hooks: { beforeSwitch: HOOKS.beforeSwitch } })),
      }),
    ).rejects.toMatchObject({ name: 'InvalidInput', field: 'run.target.hooks.afterSwitch.newBox' });
    expect(ssm).not.toHaveReceivedCommand(SendCommandCommand);
  });
});
