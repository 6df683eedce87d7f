import type {
  DeleteParametersCommandInput,
  DescribeInstanceInformationCommandInput,
  GetCommandInvocationCommandInput,
  GetParameterCommandInput,
  ListCommandsCommandInput,
  PutParameterCommandInput,
  SendCommandCommandInput,
} from '@aws-sdk/client-ssm';
import type { ShellResult } from '../contracts';
import { iso, type ModelContext } from './context';
import type { Ec2Model } from './ec2';
import { errorsFor } from './errors';

const fail = errorsFor('ssm');

export const SsmTiming = {
  /** GetCommandInvocation answers InvocationDoesNotExist this long after SendCommand. */
  invocationVisibleMs: 1_000,
  /** The agent picks the command up (Pending → InProgress) this long after SendCommand. */
  deliveryMs: 1_500,
  /** Added to the script's own virtual duration before the terminal status shows. */
  reportMs: 2_000,
} as const;

type InvocationStatus = 'Pending' | 'InProgress' | 'Success' | 'Failed' | 'TimedOut';
/** StatusDetails spells some statuses differently (`In Progress`, `Execution Timed Out`). */
const STATUS_DETAILS: Record<InvocationStatus, string> = {
  Pending: 'Pending',
  InProgress: 'In Progress',
  Success: 'Success',
  Failed: 'Failed',
  TimedOut: 'Execution Timed Out',
};

const STDOUT_LIMIT = 24_000;
const STDERR_LIMIT = 8_000;

interface ParameterRecord {
  readonly name: string;
  readonly type: string;
  readonly value: string;
  readonly version: number;
  readonly lastModified: number;
  readonly keyId?: string;
}

interface Invocation {
  readonly instanceId: string;
  readonly sentAt: number;
  result?: ShellResult;
  /** When the agent would report the outcome (sentAt + delivery + script time + report delay). */
  doneAt?: number;
  timedOut?: boolean;
}
interface CommandRecord {
  readonly commandId: string;
  readonly comment: string;
  readonly documentName: string;
  readonly parameters: Record<string, string[]>;
  readonly requestedAt: number;
  readonly executionTimeoutMs: number;
  readonly invocations: Map<string, Invocation>;
}

export interface SsmBoxes {
  /** The SSM agent as the service sees it; undefined when not registered (not started, stopped). */
  agent(instanceId: string): { status: 'Online' | 'ConnectionLost'; lastPing: number } | undefined;
  run(instanceId: string, commands: readonly string[]): Promise<ShellResult>;
  /** Parameter Store's "Parameter Store Change" event on the default bus, as AWS sends it. */
  changed?(change: {
    name: string;
    arn: string;
    type: string;
    operation: 'Create' | 'Update' | 'Delete';
  }): void;
}

/**
 * Systems Manager: Parameter Store, agent registration (DescribeInstanceInformation) and Run Command
 * with AWS-RunShellScript, whose script really runs (bash, in the box's directory). Invocations follow
 * AWS's timing: absent right after SendCommand, Pending, InProgress, then a terminal status only once
 * the virtual clock has covered the script's own duration.
 */
export class SsmModel {
  private readonly parameters = new Map<string, ParameterRecord>();
  private readonly commands: CommandRecord[] = [];

  constructor(
    private readonly ctx: ModelContext,
    private readonly ec2: Ec2Model,
    private readonly boxes: SsmBoxes,
  ) {}

  /** Direct read for harness assertions (no call record). */
  parameter(name: string): string | undefined {
    return this.parameters.get(name)?.value;
  }

  private arn(name: string) {
    return `arn:aws:ssm:${this.ctx.region}:${this.ctx.accountId}:parameter/${name.replace(/^\//, '')}`;
  }

  private describeParameter(p: ParameterRecord, decrypt: boolean) {
    const value =
      p.type === 'SecureString' && !decrypt
        ? // Without WithDecryption AWS returns the ciphertext, not the value.
          Buffer.from(`sandbox-kms-ciphertext:${p.name}:${p.version}`).toString('base64')
        : p.value;
    return {
      Name: p.name,
      Type: p.type,
      Value: value,
      Version: p.version,
      LastModifiedDate: new Date(p.lastModified),
      ARN: this.arn(p.name),
      DataType: 'text',
    };
  }

  private status(invocation: Invocation): InvocationStatus {
    const now = this.ctx.clock.now();
    if (invocation.doneAt !== undefined && now >= invocation.doneAt && invocation.result) {
      if (invocation.timedOut) return 'TimedOut';
      return invocation.result.exitCode === 0 ? 'Success' : 'Failed';
    }
    return now < invocation.sentAt + SsmTiming.deliveryMs ? 'Pending' : 'InProgress';
  }

  /** Runs the script on the box once the agent picked the command up, as SSM's agent does. */
  private start(command: CommandRecord, invocation: Invocation, commands: readonly string[]): void {
    this.ctx.after(SsmTiming.deliveryMs, () => this.run(command, invocation, commands));
  }

  private run(command: CommandRecord, invocation: Invocation, commands: readonly string[]): void {
    this.ctx.background(
      this.boxes
        .run(invocation.instanceId, commands)
        .catch(
          (error: unknown): ShellResult => ({
            exitCode: 1,
            stdout: '',
            stderr: `failed to run commands: ${(error as Error)?.message ?? String(error)}`,
            virtualMs: 0,
          }),
        )
        .then((result) => {
          invocation.result = result;
          const timedOut = result.virtualMs > command.executionTimeoutMs;
          invocation.timedOut = timedOut;
          const scriptMs = Math.min(result.virtualMs, command.executionTimeoutMs);
          invocation.doneAt = invocation.sentAt + SsmTiming.deliveryMs + scriptMs + SsmTiming.reportMs;
        }),
    );
  }

  readonly actions = {
    PutParameter: (input: PutParameterCommandInput) => {
      const name = input.Name ?? '';
      if (!name)
        throw fail(
          'ValidationException',
          "1 validation error detected: Value null at 'name' failed to satisfy constraint: Member must not be null",
        );
      if (input.Value === undefined)
        throw fail(
          'ValidationException',
          "1 validation error detected: Value null at 'value' failed to satisfy constraint: Member must not be null",
        );
      const existing = this.parameters.get(name);
      if (existing && !input.Overwrite) {
        throw fail(
          'ParameterAlreadyExists',
          'The parameter already exists. To overwrite this request, set the overwrite option in the request to true.',
        );
      }
      const type = input.Type ?? existing?.type;
      if (!type)
        throw fail('ValidationException', 'A parameter type is required when you create a parameter.');
      const limit = input.Tier === 'Advanced' ? 8192 : 4096;
      if (Buffer.byteLength(input.Value) > limit) {
        throw fail(
          'ValidationException',
          `Standard tier parameters support a maximum parameter value of ${limit} characters.`,
        );
      }
      const version = (existing?.version ?? 0) + 1;
      this.parameters.set(name, {
        name,
        type,
        value: input.Value,
        version,
        lastModified: this.ctx.clock.now(),
        ...(type === 'SecureString' ? { keyId: input.KeyId ?? 'alias/aws/ssm' } : {}),
      });
      this.boxes.changed?.({ name, arn: this.arn(name), type, operation: existing ? 'Update' : 'Create' });
      return { Version: version, Tier: input.Tier ?? 'Standard' };
    },
    GetParameter: (input: GetParameterCommandInput) => {
      const found = this.parameters.get(input.Name ?? '');
      if (!found) throw fail('ParameterNotFound', `Parameter ${input.Name ?? ''} not found.`);
      return { Parameter: this.describeParameter(found, input.WithDecryption ?? false) };
    },
    DeleteParameters: (input: DeleteParametersCommandInput) => {
      const names = input.Names ?? [];
      const types = new Map(names.map((n) => [n, this.parameters.get(n)?.type ?? 'String']));
      const deleted = names.filter((n) => this.parameters.delete(n));
      for (const name of deleted) {
        this.boxes.changed?.({
          name,
          arn: this.arn(name),
          type: types.get(name) ?? 'String',
          operation: 'Delete',
        });
      }
      return { DeletedParameters: deleted, InvalidParameters: names.filter((n) => !deleted.includes(n)) };
    },

    DescribeInstanceInformation: (input: DescribeInstanceInformationCommandInput) => {
      const wanted = [
        ...(input.Filters ?? []).filter((f) => f.Key === 'InstanceIds').flatMap((f) => f.Values ?? []),
        ...(input.InstanceInformationFilterList ?? [])
          .filter((f) => f.key === 'InstanceIds')
          .flatMap((f) => f.valueSet ?? []),
      ];
      const list = [...this.ec2.instances.values()]
        .filter((i) => wanted.length === 0 || wanted.includes(i.instanceId))
        .flatMap((i) => {
          const agent = this.boxes.agent(i.instanceId);
          return agent ? [{ i, agent }] : [];
        })
        .map(({ i, agent }) => ({
          InstanceId: i.instanceId,
          PingStatus: agent.status,
          LastPingDateTime: new Date(agent.lastPing),
          AgentVersion: '3.3.1142.0',
          IsLatestVersion: false,
          PlatformType: 'Linux',
          PlatformName: 'Amazon Linux',
          PlatformVersion: '2023',
          ResourceType: 'EC2Instance',
          IPAddress: i.privateIp,
          ComputerName: `ip-${i.privateIp.replace(/\./g, '-')}.${this.ctx.region}.compute.internal`,
        }));
      return { InstanceInformationList: list };
    },

    SendCommand: (input: SendCommandCommandInput) => {
      if (input.DocumentName !== 'AWS-RunShellScript') {
        throw fail('InvalidDocument', `Document ${input.DocumentName ?? ''} does not exist in your account.`);
      }
      const commands = input.Parameters?.commands;
      if (!commands || commands.length === 0)
        throw fail('InvalidParameters', 'Parameter "commands" is required.');
      const parameters = input.Parameters ?? {};
      for (const [key, value] of Object.entries(parameters)) {
        if (!['commands', 'workingDirectory', 'executionTimeout'].includes(key) || !Array.isArray(value)) {
          throw fail('InvalidParameters', `Parameter "${key}" is not valid for document AWS-RunShellScript.`);
        }
      }
      if ((input.Comment ?? '').length > 100) {
        throw fail(
          'ValidationException',
          "1 validation error detected: Value at 'comment' failed to satisfy constraint: Member must have length less than or equal to 100",
        );
      }
      const ids = input.InstanceIds ?? [];
      if (ids.length === 0)
        throw fail('InvalidInstanceId', 'Instances [[]] not in a valid state for account');
      for (const id of ids) {
        if (this.boxes.agent(id)?.status !== 'Online') {
          throw fail(
            'InvalidInstanceId',
            `Instances [[${id}]] not in a valid state for account ${this.ctx.accountId}`,
          );
        }
      }
      const timeoutSeconds = Number(parameters.executionTimeout?.[0] ?? '3600');
      const now = this.ctx.clock.now();
      const command: CommandRecord = {
        commandId: this.ctx.ids.uuid('command'),
        comment: input.Comment ?? '',
        documentName: input.DocumentName,
        parameters: Object.fromEntries(Object.entries(parameters).map(([k, v]) => [k, [...v]])),
        requestedAt: now,
        executionTimeoutMs: (Number.isFinite(timeoutSeconds) ? timeoutSeconds : 3600) * 1000,
        invocations: new Map(ids.map((id) => [id, { instanceId: id, sentAt: now }])),
      };
      this.commands.push(command);
      for (const invocation of command.invocations.values()) this.start(command, invocation, commands);
      return { Command: this.describeCommand(command) };
    },

    ListCommands: (input: ListCommandsCommandInput) => ({
      Commands: this.commands
        .filter(
          (c) =>
            (!input.CommandId || c.commandId === input.CommandId) &&
            (!input.InstanceId || c.invocations.has(input.InstanceId)),
        )
        .map((c) => this.describeCommand(c))
        .reverse(),
    }),

    GetCommandInvocation: (input: GetCommandInvocationCommandInput) => {
      const command = this.commands.find((c) => c.commandId === input.CommandId);
      const invocation = command?.invocations.get(input.InstanceId ?? '');
      if (
        !command ||
        !invocation ||
        this.ctx.clock.now() < invocation.sentAt + SsmTiming.invocationVisibleMs
      ) {
        throw fail('InvocationDoesNotExist', '');
      }
      if (input.PluginName !== undefined && input.PluginName !== 'aws:runShellScript') {
        throw fail('InvalidPluginName', '');
      }
      const Status = this.status(invocation);
      const terminal = Status !== 'Pending' && Status !== 'InProgress';
      const result = terminal ? invocation.result : undefined;
      const started = invocation.sentAt + SsmTiming.deliveryMs;
      return {
        CommandId: command.commandId,
        InstanceId: invocation.instanceId,
        Comment: command.comment,
        DocumentName: command.documentName,
        DocumentVersion: '$DEFAULT',
        PluginName: 'aws:runShellScript',
        ResponseCode: result ? (invocation.timedOut ? -1 : result.exitCode) : -1,
        ExecutionStartDateTime: Status === 'Pending' ? '' : iso(started),
        ExecutionElapsedTime:
          terminal && invocation.doneAt ? `PT${((invocation.doneAt - started) / 1000).toFixed(3)}S` : '',
        ExecutionEndDateTime: terminal && invocation.doneAt ? iso(invocation.doneAt) : '',
        Status,
        StatusDetails: STATUS_DETAILS[Status],
        StandardOutputContent: result ? result.stdout.slice(0, STDOUT_LIMIT) : '',
        StandardOutputUrl: '',
        StandardErrorContent: result ? result.stderr.slice(0, STDERR_LIMIT) : '',
        StandardErrorUrl: '',
        CloudWatchOutputConfig: { CloudWatchLogGroupName: '', CloudWatchOutputEnabled: false },
      };
    },
  };

  private describeCommand(command: CommandRecord) {
    const statuses = [...command.invocations.values()].map((i) => this.status(i));
    const done = statuses.filter((s) => s !== 'Pending' && s !== 'InProgress');
    const failed = statuses.filter((s) => s === 'Failed' || s === 'TimedOut');
    const overall =
      done.length < statuses.length
        ? statuses.includes('InProgress')
          ? 'InProgress'
          : 'Pending'
        : failed.length > 0
          ? 'Failed'
          : 'Success';
    return {
      CommandId: command.commandId,
      DocumentName: command.documentName,
      DocumentVersion: '$DEFAULT',
      Comment: command.comment,
      Parameters: command.parameters,
      InstanceIds: [...command.invocations.keys()],
      Targets: [],
      RequestedDateTime: new Date(command.requestedAt),
      ExpiresAfter: new Date(command.requestedAt + 3_600_000 + command.executionTimeoutMs),
      Status: overall,
      StatusDetails: overall === 'InProgress' ? 'In Progress' : overall,
      TargetCount: statuses.length,
      CompletedCount: done.length,
      ErrorCount: failed.length,
      DeliveryTimedOutCount: 0,
      TimeoutSeconds: 3600,
      MaxConcurrency: '50',
      MaxErrors: '0',
      ServiceRole: '',
      NotificationConfig: { NotificationArn: '', NotificationEvents: [], NotificationType: '' },
      CloudWatchOutputConfig: { CloudWatchLogGroupName: '', CloudWatchOutputEnabled: false },
    };
  }
}
