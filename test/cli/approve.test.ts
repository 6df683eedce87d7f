import { GetParameterCommand, PutParameterCommand } from '@aws-sdk/client-ssm';
import type { ApproveDocument } from '../../bin/approve';
import type { ReplaceDocument } from '../../bin/replace';
import { ApprovalRecordSchema } from '../../lambdas/shared/approval';
import { ssmClient } from '../../lambdas/shared/clients';
import { settled, until, useAccount } from './operator-world';

const world = useAccount();
const TARGET_PARAMETER = '/understudy/sandbox/targets/web';
const APPROVAL = '/understudy/sandbox/approvals/web';

/** Redeploys the `web` target with the approval gate on, as `cdk deploy` would after a config change. */
const requireApproval = async () => {
  const out = await ssmClient().send(new GetParameterCommand({ Name: TARGET_PARAMETER }));
  const target = JSON.parse(out.Parameter?.Value ?? '{}') as Record<string, unknown>;
  await ssmClient().send(
    new PutParameterCommand({
      Name: TARGET_PARAMETER,
      Type: 'String',
      Overwrite: true,
      Value: JSON.stringify({ ...target, approval: { required: true, timeoutSeconds: 21_600 } }),
    }),
  );
};

const pendingRecord = async (executionName: string) => {
  let token = '';
  await until(async () => {
    try {
      const out = await ssmClient().send(new GetParameterCommand({ Name: APPROVAL, WithDecryption: true }));
      const record = ApprovalRecordSchema.parse(JSON.parse(out.Parameter?.Value ?? ''));
      token = record.token;
      return record.execution === executionName;
    } catch {
      return false;
    }
  });
  return token;
};

const startWaitingRun = async () => {
  const started = await world.cli(['replace', 'web', '--no-watch', '--json']);
  expect(started.code).toBe(0);
  const { execution } = JSON.parse(started.stdout) as ReplaceDocument;
  const token = await pendingRecord(execution.name);
  return { execution, token };
};

describe('understudy approve | reject', () => {
  it('refuses a target name that cannot be configured, naming the field, before any AWS call (exit 1)', async () => {
    const before = world.account.sandbox.calls.length;
    const run = await world.cli(['approve', 'Web Server!', '--json']);

    expect(run.code).toBe(1);
    expect(JSON.parse(run.stdout)).toMatchObject({
      command: 'approve',
      error: { exitCode: 1, field: 'target' },
    });
    expect(world.account.sandbox.calls.slice(before).some((c) => c.service === 'ssm')).toBe(false);
  });

  it('says no approval is pending when no run asked (exit 1)', async () => {
    const run = await world.cli(['approve', 'web']);

    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/no approval is pending for web/);
  });

  it('reject: the waiting run rolls back with nothing switched and the reason in its outcome; the token is never printed', async () => {
    await requireApproval();
    const { seeded } = world.account.deployment;
    const { execution, token } = await startWaitingRun();

    const run = await world.cli(['reject', 'web', '--reason', 'release freeze until Monday', '--json']);
    const doc = JSON.parse(run.stdout) as ApproveDocument;
    const done = await settled(execution.arn);

    expect(run.code).toBe(0);
    expect(doc).toMatchObject({
      command: 'reject',
      target: 'web',
      answer: 'rejected',
      execution: execution.name,
    });
    expect(doc.candidate).toMatch(/^i-/);
    expect(run.stdout + run.stderr).not.toContain(token);
    expect(done.status).toBe('FAILED');
    expect(world.account.sandbox.eipInstance(seeded.allocationId)).toBe(seeded.oldInstanceId);
    const outcome = world.account.sandbox.messages.filter((m) => m.attributes.kind === 'outcome').at(-1);
    expect(outcome?.message).toContain('release freeze until Monday');
  });

  it('answering again after the run ended says the request is no longer pending (exit 1)', async () => {
    const run = await world.cli(['approve', 'web']);

    expect(run.code).toBe(1);
    // Finish deleted the request with the run's other tokens.
    expect(run.stderr).toMatch(
      /no approval is pending for web \(no run is waiting: none asked, or its run ended\)/,
    );
  });

  it('approve: the waiting run switches to its candidate and succeeds; the text names the run and the candidate', async () => {
    const { seeded } = world.account.deployment;
    const { execution, token } = await startWaitingRun();

    const run = await world.cli(['approve', 'web']);
    const done = await settled(execution.arn);

    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(
      new RegExp(`^approved: web \\(run ${execution.name}, candidate i-[0-9a-f]+\\)`),
    );
    expect(run.stdout).not.toContain(token);
    expect(done.status).toBe('SUCCEEDED');
    expect(world.account.sandbox.eipInstance(seeded.allocationId)).not.toBe(seeded.oldInstanceId);
  });
});
