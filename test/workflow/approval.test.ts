import { SendTaskFailureCommand, SendTaskSuccessCommand } from '@aws-sdk/client-sfn';
import { GetParameterCommand } from '@aws-sdk/client-ssm';
import { ApprovalRecordSchema } from '../../lambdas/shared/approval';
import { clients } from '../../lambdas/shared/clients';
import type { TargetConfig } from '../../lambdas/shared/config';
import type { HandlerSet, LambdaHandler } from '../../sandbox/workflow';
import { startWorld, type World } from './helpers';

const APPROVAL = '/understudy/sandbox/approvals/web';

const gated =
  (timeoutSeconds = 600) =>
  (t: TargetConfig): TargetConfig => ({ ...t, approval: { required: true, timeoutSeconds } });

/** The operator's answer, given as soon as the run has parked its token (as `understudy approve` would). */
type OperatorAnswer = (token: string) => Promise<unknown>;
/** The approval parameter as the operator found it while the run waited. */
let parked: { token: string; type: string | undefined } | undefined;
const answeredBy =
  (answer: OperatorAnswer) =>
  (handlers: HandlerSet): HandlerSet => ({
    ...handlers,
    'request-approval': (async (event, context) => {
      const result = await (handlers['request-approval'] as LambdaHandler)(event, context);
      const out = await clients().ssm.send(new GetParameterCommand({ Name: APPROVAL, WithDecryption: true }));
      const record = ApprovalRecordSchema.parse(JSON.parse(out.Parameter?.Value ?? ''));
      parked = { token: record.token, type: out.Parameter?.Type };
      await answer(record.token);
      return result;
    }) as LambdaHandler,
  });

const approve: OperatorAnswer = (token) =>
  clients().sfn.send(
    new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify({ approved: true }) }),
  );
const reject =
  (reason: string): OperatorAnswer =>
  (token) =>
    clients().sfn.send(
      new SendTaskFailureCommand({ taskToken: token, error: 'ApprovalRejected', cause: reason }),
    );

const rollbackError = (run: { inputs: Record<string, unknown> }) =>
  (run.inputs.Rollback as { error?: { Error?: string; Cause?: string } } | undefined)?.error;

describe('the approval gate on the sandbox account', () => {
  let world: World | undefined;
  afterEach(async () => {
    await world?.stop();
    world = undefined;
    parked = undefined;
  });

  it('announces the request on SNS with the target, the candidate and the commands, and switches once approved', async () => {
    world = await startWorld({ target: gated(), wrap: answeredBy(approve) });
    const run = await world.run();

    expect(run.outcome).toBe('replaced');
    const candidate = world.sandbox.eipInstance(world.seeded.allocationId) ?? '';
    expect(candidate).not.toBe(world.seeded.oldInstanceId);
    const asked = world.sandbox.messages.filter(
      (m) => m.attributes.kind === 'progress' && /approval/.test(m.message),
    );
    expect(asked).toHaveLength(1);
    const text = asked[0]?.message ?? '';
    expect(text).toContain('web');
    expect(text).toContain(candidate);
    expect(text).toContain('npx understudy approve web');
    expect(text).toContain('npx understudy reject web');
    // The request names the candidate but never carries the token, which waited as a SecureString.
    expect(parked?.type).toBe('SecureString');
    expect(text).not.toContain(parked?.token ?? 'no token was parked');
    // Finish deletes it with the run's other task tokens.
    await expect(
      clients().ssm.send(new GetParameterCommand({ Name: APPROVAL, WithDecryption: true })),
    ).rejects.toMatchObject({ name: 'ParameterNotFound' });
    const order = run.timeline.map((e) => e.state);
    expect(order.indexOf('AwaitApproval')).toBeLessThan(order.indexOf('Switch'));
  });

  it('rolls back with nothing switched when the operator rejects, and the reason reaches the rollback', async () => {
    world = await startWorld({
      target: gated(),
      wrap: answeredBy(reject('rejected by the operator: db migration running')),
    });
    const run = await world.run();

    expect(run.outcome).toBe('rolled-back');
    expect(rollbackError(run)).toEqual({
      Error: 'ApprovalRejected',
      Cause: 'rejected by the operator: db migration running',
    });
    expect(world.mutatingCalls((c) => c.action === 'AssociateAddress')).toHaveLength(0);
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(world.seeded.oldInstanceId);
    const outcome = world.sandbox.messages.find((m) => m.attributes.kind === 'outcome');
    expect(outcome?.message).toContain('db migration running');
  });

  it('rolls back with nothing switched when nobody answers before the timeout', async () => {
    world = await startWorld({ target: gated(300) });
    const run = await world.run();

    expect(run.outcome).toBe('rolled-back');
    expect(rollbackError(run)?.Error).toBe('States.Timeout');
    const outcome = world.sandbox.messages.find((m) => m.attributes.kind === 'outcome');
    expect(outcome?.message).toContain('nobody approved or rejected the switch');
    expect(world.mutatingCalls((c) => c.action === 'AssociateAddress')).toHaveLength(0);
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(world.seeded.oldInstanceId);
  });
});
