import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DescribeAddressesCommand,
  DescribeVolumesCommand,
  type EC2Client,
  type Volume,
} from '@aws-sdk/client-ec2';
import type { S3Client } from '@aws-sdk/client-s3';
import { awsCall, describeAwsError } from '../shared/aws-errors';
import { UNDERSTUDY_VERSION } from '../shared/constants';
import { describeInstanceById } from '../shared/ec2';
import { renewHeldLock } from '../shared/lock';
import { correlate, logger } from '../shared/logger';
import type { RunState } from '../shared/schemas';
import { remoteContextOf, TfStateError } from '../shared/tfstate/errors';
import { manualReconcileCommand } from '../shared/tfstate/manual';
import { type ReconcileReport, reconcileState } from '../shared/tfstate/reconcile';
import { parseS3StateUrl, updateRemoteState } from '../shared/tfstate/s3-backend';

/** Refusals about the configured `terraform.instanceAddress`, named in the reason the operator reads. */
const ADDRESS_REFUSALS: ReadonlySet<string> = new Set(['InvalidAddress', 'AddressNotFound']);

/**
 * Reconcile: after the probe passed, the Terraform state in S3 is made to describe the new server
 * (design §4), under the backend's own locks and with a verified backup. The server is healthy at this
 * point, so nothing here may roll it back: every failure is returned as `not-reconciled` with the reason,
 * the backup and the commands that finish the job by hand, and Finish turns that into a warning.
 */

export interface StateClients {
  readonly s3: S3Client;
  readonly dynamodb: DynamoDBClient;
}

export interface ReconcileClients {
  readonly ec2: EC2Client;
  /** The runs bucket (target lock) lives in the stack's region. */
  readonly s3: S3Client;
  /** Clients for the Terraform backend: the stack's region, or the backend's own `region`. */
  stateClients(region: string | undefined): StateClients;
}

/** Longest a reconcile can take besides waiting for a lock; the lock lease covers both. */
const WORK_SECONDS = 600;

export type ReconcileSummary =
  | { readonly status: 'not-configured' }
  | {
      readonly status: 'reconciled' | 'already-reconciled';
      readonly state: string;
      readonly serialBefore: string;
      readonly serialAfter: string;
      readonly backupKey?: string;
      /** Other resources that still name the old instance; the next `terraform apply` updates them. */
      readonly stillMentioning: readonly string[];
      readonly warnings: readonly string[];
    }
  | {
      readonly status: 'not-reconciled';
      readonly state: string;
      readonly reason: string;
      readonly backupKey?: string;
      readonly command: string;
    };

export const reconcile = async (clients: ReconcileClients, state: RunState): Promise<ReconcileSummary> => {
  const plan = state.run;
  const terraform = plan.target.terraform;
  const candidate = state.launch?.instanceId;
  correlate({ target: plan.target.name, execution: state.execution.name, instance: candidate });
  if (!terraform) return { status: 'not-configured' };
  await renewHeldLock(clients.s3, plan.lock);
  if (!candidate)
    throw new Error('reconcile reached without a launched instance: the state machine is miswired');

  const region = await clients.ec2.config.region();
  const manual = manualReconcileCommand({
    terraform,
    region,
    newInstanceId: candidate,
    oldInstanceId: plan.old.instanceId,
    allocationId: plan.eip.allocationId,
    runId: state.execution.arn,
  });
  try {
    const [instance, addresses, volumes] = await Promise.all([
      describeInstanceById(clients.ec2, candidate),
      awsCall('DescribeAddresses', () =>
        clients.ec2.send(new DescribeAddressesCommand({ AllocationIds: [plan.eip.allocationId] })),
      ),
      describeAttachedVolumes(clients.ec2, candidate),
    ]);
    if (!instance) throw new Error(`DescribeInstances does not know ${candidate}`);

    // The literal key, as IAM and the CLI see it (a URL parser would resolve `.` and `..` segments).
    const { bucket, key } = parseS3StateUrl(terraform.state);
    let report: ReconcileReport | undefined;
    const backend = clients.stateClients(terraform.region);
    const result = await updateRemoteState(
      { s3: backend.s3, ...(terraform.dynamodbTable ? { dynamodb: backend.dynamodb } : {}) },
      {
        bucket,
        key,
        workspace: terraform.workspace,
        workspaceKeyPrefix: terraform.workspaceKeyPrefix,
        useLockfile: terraform.useLockfile,
        ...(terraform.dynamodbTable ? { dynamodbTable: terraform.dynamodbTable } : {}),
        lockTimeoutSeconds: terraform.lockTimeoutSeconds,
      },
      {
        // The execution ARN makes a retried or redriven attempt of this run recognise its own lock.
        runId: state.execution.arn,
        operation: 'understudy-reconcile',
        who: `understudy@${state.execution.name}`,
        version: UNDERSTUDY_VERSION,
        leaseSeconds: terraform.lockTimeoutSeconds + WORK_SECONDS,
      },
      (current) => {
        const reconciled = reconcileState(current, {
          instanceAddress: terraform.instanceAddress,
          instance,
          addresses: addresses.Addresses ?? [],
          volumes,
          expectInstanceId: plan.old.instanceId,
        });
        report = reconciled.report;
        return reconciled.changed ? reconciled.state : undefined;
      },
    );
    const stillMentioning = report?.stillMentioning.map((m) => m.address) ?? [];
    logger.info('terraform state reconciled', {
      outcome: result.outcome,
      serialBefore: result.serialBefore,
      serialAfter: result.serialAfter,
    });
    return {
      status: result.outcome === 'written' ? 'reconciled' : 'already-reconciled',
      state: `s3://${result.bucket}/${result.objectKey}`,
      serialBefore: result.serialBefore,
      serialAfter: result.serialAfter,
      ...(result.backupKey ? { backupKey: result.backupKey } : {}),
      stillMentioning,
      warnings: result.warnings,
    };
  } catch (error) {
    const context = remoteContextOf(error);
    const reason = [
      // The shared message is the CLI's too; here the setting to fix is the target's.
      error instanceof TfStateError
        ? `${ADDRESS_REFUSALS.has(error.reason) ? 'terraform.instanceAddress: ' : ''}${error.message}`
        : describeAwsError(error).slice(0, 1_000),
      ...(context?.warnings ?? []),
    ].join('; ');
    logger.warn('terraform state not reconciled', {
      reason: error instanceof TfStateError ? error.reason : 'error',
      detail: reason,
    });
    return {
      status: 'not-reconciled',
      state: terraform.state,
      reason,
      ...(context?.backupKey ? { backupKey: context.backupKey } : {}),
      command: manual,
    };
  }
};

const describeAttachedVolumes = async (ec2: EC2Client, instanceId: string): Promise<Volume[]> => {
  const out = await awsCall('DescribeVolumes', () =>
    ec2.send(
      new DescribeVolumesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [instanceId] }] }),
    ),
  );
  return out.Volumes ?? [];
};
