import 'aws-sdk-client-mock-jest';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { requestApproval } from '../../lambdas/request-approval/request-approval';
import { ApprovalRecordSchema } from '../../lambdas/shared/approval';
import { createClients } from '../../lambdas/shared/clients';
import { logger } from '../../lambdas/shared/logger';
import {
  CANDIDATE_ID,
  EXECUTION_NAME,
  fakeS3,
  makeState,
  makeTarget,
  OLD_ID,
  PREFIX,
  TOPIC,
} from './ssm-steps.fixture';

const ssm = mockClient(SSMClient);
const sns = mockClient(SNSClient);
const TOKEN = 'AQB8AAAAKgAAAAMAAAAAAAAAAe0secret-task-token';
const env = { parameterPrefix: PREFIX, topicArn: TOPIC };
const gatedState = () => makeState(makeTarget({ approval: { required: true, timeoutSeconds: 1_800 } }));

beforeEach(() => {
  ssm.reset();
  sns.reset();
  fakeS3().seedLock();
  ssm.on(PutParameterCommand).resolves({ Version: 1 });
  sns.on(PublishCommand).resolves({ MessageId: 'm-1' });
});

describe('request-approval', () => {
  it("parks the token in the target's SecureString parameter with the run and the candidate", async () => {
    await requestApproval(createClients(), env, { taskToken: TOKEN, state: gatedState() });

    expect(ssm).toHaveReceivedCommandWith(PutParameterCommand, {
      Name: `${PREFIX}/approvals/web`,
      Type: 'SecureString',
      Overwrite: true,
    });
    const value = ssm.commandCalls(PutParameterCommand)[0]?.args[0].input.Value ?? '';
    expect(ApprovalRecordSchema.parse(JSON.parse(value))).toMatchObject({
      token: TOKEN,
      target: 'web',
      execution: EXECUTION_NAME,
      candidate: CANDIDATE_ID,
    });
  });

  it('announces on the topic what waits, both commands and the timeout, without the token', async () => {
    await requestApproval(createClients(), env, { taskToken: TOKEN, state: gatedState() });

    const published = sns.commandCalls(PublishCommand)[0]?.args[0].input;
    expect(published?.TopicArn).toBe(TOPIC);
    expect(published?.Subject).toMatch(/web/);
    expect(published?.Message).toContain(CANDIDATE_ID);
    expect(published?.Message).toContain(OLD_ID);
    expect(published?.Message).toContain('npx understudy approve web');
    expect(published?.Message).toContain('npx understudy reject web');
    expect(published?.Message).toContain('30 minutes');
    expect(published?.Message).not.toContain(TOKEN);
  });

  it('never logs the token', async () => {
    const lines: string[] = [];
    const spies = (['debug', 'info', 'warn', 'error'] as const).map((level) =>
      jest.spyOn(logger, level).mockImplementation((...args: unknown[]) => {
        lines.push(JSON.stringify(args));
      }),
    );
    try {
      await requestApproval(createClients(), env, { taskToken: TOKEN, state: gatedState() });
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.join('\n')).not.toContain(TOKEN);
  });

  it('fails the step when the announcement cannot be published, so the gate is not left waiting unheard', async () => {
    sns
      .on(PublishCommand)
      .rejects(Object.assign(new Error('denied'), { name: 'AuthorizationErrorException' }));

    await expect(
      requestApproval(createClients(), env, { taskToken: TOKEN, state: gatedState() }),
    ).rejects.toThrow();
  });
});
