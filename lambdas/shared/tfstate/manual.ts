import type { TerraformConfig } from '../config';
import { shellQuote } from '../shell';

export interface ManualReconcile {
  readonly terraform: TerraformConfig;
  readonly region: string;
  readonly newInstanceId: string;
  readonly oldInstanceId: string;
  readonly allocationId: string;
  /** The execution ARN: the CLI then continues this run (its lock, its own write) instead of a new one. */
  readonly runId: string;
}

/**
 * The commands an operator runs to finish a reconcile the workflow could not do: fetch the same three
 * describe outputs the step uses, then run the CLI with the target's backend settings. Every value is
 * shell-quoted although config validation already restricts them, because this text is meant to be
 * pasted into a shell.
 */
export const manualReconcileCommand = (m: ManualReconcile): string => {
  const t = m.terraform;
  const region = `--region ${shellQuote(m.region)}`;
  // The CLI takes its region from the environment, like Terraform; the backend's own region wins.
  const cliRegion = shellQuote(t.region ?? m.region);
  const flags = [
    `--state ${shellQuote(t.state)}`,
    ...(t.workspace === 'default' ? [] : [`--workspace ${shellQuote(t.workspace)}`]),
    ...(t.workspaceKeyPrefix === 'env:'
      ? []
      : [`--workspace-key-prefix ${shellQuote(t.workspaceKeyPrefix)}`]),
    ...(t.dynamodbTable ? [`--dynamodb-table ${shellQuote(t.dynamodbTable)}`] : []),
    ...(t.useLockfile ? [] : ['--no-lockfile']),
    '--instance new-instance.json',
    '--address eip.json',
    '--volumes volumes.json',
    `--instance-address ${shellQuote(t.instanceAddress)}`,
    `--expect-instance ${shellQuote(m.oldInstanceId)}`,
    `--run-id ${shellQuote(m.runId)}`,
  ];
  return [
    `aws ec2 describe-instances ${region} --instance-ids ${shellQuote(m.newInstanceId)} > new-instance.json`,
    `aws ec2 describe-addresses ${region} --allocation-ids ${shellQuote(m.allocationId)} > eip.json`,
    `aws ec2 describe-volumes ${region} --filters Name=attachment.instance-id,Values=${shellQuote(m.newInstanceId)} > volumes.json`,
    `AWS_REGION=${cliRegion} npx understudy tfstate reconcile ${flags.join(' ')}`,
  ].join(' && ');
};
