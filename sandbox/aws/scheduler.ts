import type {
  CreateScheduleCommandInput,
  DeleteScheduleCommandInput,
  GetScheduleCommandInput,
} from '@aws-sdk/client-scheduler';
import type { ServiceName } from '../../lambdas/shared/clients';
import { iso, type ModelContext } from './context';
import { errorsFor } from './errors';

const fail = errorsFor('scheduler');

/**
 * EventBridge Scheduler, as far as Understudy uses it: one-time `at(...)` schedules in named groups whose
 * universal target (`arn:aws:scheduler:::aws-sdk:<service>:<apiAction>`) calls another service's API as
 * the schedule's execution role, or whose templated Lambda target (the function's ARN) invokes a function
 * a test registered (`registerFunction`) with the schedule's Input as its event. Rate and cron
 * expressions, other templated targets, flexible windows and retries are not modelled (CreateSchedule
 * refuses the first two).
 *
 * A schedule fires when the virtual clock has passed its time, at the account's next API call (or an
 * explicit `fireDue()`), instead of on a timer of its own: a pending timer would let the clock jump a
 * whole rollback window as soon as a test sat idle. Every observation of the account goes through a
 * call, so none can tell the difference.
 *
 * The execution role is evaluated for every resource the call touches: the sandbox has no IAM of its
 * own, so a test registers the role's decision (`registerRole`), typically the stack's own policy run
 * through an evaluator. An unregistered role is denied, as a role without permissions would be.
 */

export interface ScheduleRecord {
  readonly name: string;
  readonly group: string;
  readonly arn: string;
  readonly expression: string;
  readonly timezone: string;
  /** Virtual epoch ms of the `at(...)` time. */
  readonly at: number;
  readonly target: { readonly arn: string; readonly roleArn: string; readonly input: string };
  readonly actionAfterCompletion: 'NONE' | 'DELETE';
  readonly state: 'ENABLED' | 'DISABLED';
  readonly createdAt: number;
}

/** One authorization question the execution role must answer for a universal target's call. */
export interface RoleRequest {
  readonly action: string;
  readonly resource: string;
  readonly context: Readonly<Record<string, string>>;
}
export type RoleDecision = (request: RoleRequest) => boolean;

export interface Invocation {
  readonly schedule: string;
  readonly at: number;
  readonly service: string;
  readonly action: string;
  readonly input: unknown;
  /** The error name when the call was refused or failed. */
  readonly error?: string;
}

export interface SchedulerHooks {
  /** Runs a call on the account (recorded like any other call). */
  invoke(service: ServiceName, action: string, input: Record<string, unknown>): Promise<unknown>;
  /** The authorization requests a call makes (one per resource). */
  requestsFor(service: ServiceName, action: string, input: Record<string, unknown>): RoleRequest[];
}

const AT = /^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$/;
const UNIVERSAL = /^arn:aws[a-z-]*:scheduler:::aws-sdk:([a-z0-9-]+):([a-zA-Z0-9]+)$/;
const NAME = /^[0-9a-zA-Z-_.]{1,64}$/;
/** The Lambda templated target: Scheduler calls Invoke on the function, asynchronously. */
const FUNCTION = /^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[a-zA-Z0-9-_]+$/;
export type ScheduledFunction = (event: unknown) => Promise<unknown>;

export class SchedulerModel {
  readonly schedules = new Map<string, ScheduleRecord>();
  readonly invocations: Invocation[] = [];
  private readonly groups = new Set(['default']);
  private readonly roles = new Map<string, RoleDecision>();
  private readonly functions = new Map<string, ScheduledFunction>();
  private firing = false;

  constructor(
    private readonly ctx: ModelContext,
    private readonly hooks: SchedulerHooks,
  ) {}

  /** What `AWS::Scheduler::ScheduleGroup` leaves in the account. */
  createGroup(name: string): void {
    this.groups.add(name);
  }

  registerRole(roleArn: string, decide: RoleDecision): void {
    this.roles.set(roleArn, decide);
  }

  /** A Lambda function a schedule may target by its ARN (what the stack deploys behind that ARN). */
  registerFunction(functionArn: string, run: ScheduledFunction): void {
    this.functions.set(functionArn, run);
  }

  private key(group: string | undefined, name: string | undefined): string {
    return `${group ?? 'default'}/${name ?? ''}`;
  }

  hasDue(): boolean {
    if (this.firing) return false;
    const now = this.ctx.clock.now();
    return [...this.schedules.values()].some((s) => s.state === 'ENABLED' && s.at <= now);
  }

  /** Fires every enabled schedule whose time has come (one attempt each), oldest first. */
  async fireDue(): Promise<void> {
    if (this.firing) return;
    this.firing = true;
    try {
      const now = this.ctx.clock.now();
      const due = [...this.schedules.values()]
        .filter((s) => s.state === 'ENABLED' && s.at <= now)
        .sort((a, b) => a.at - b.at);
      for (const schedule of due) await this.fire(schedule);
    } finally {
      this.firing = false;
    }
  }

  private async fire(schedule: ScheduleRecord): Promise<void> {
    if (FUNCTION.test(schedule.target.arn)) {
      this.invokeFunction(schedule);
      return;
    }
    const [, service, apiAction] = UNIVERSAL.exec(schedule.target.arn) ?? [];
    const action = `${(apiAction ?? '').charAt(0).toUpperCase()}${(apiAction ?? '').slice(1)}`;
    const input = JSON.parse(schedule.target.input) as Record<string, unknown>;
    const base = { schedule: schedule.name, at: this.ctx.clock.now(), service: service ?? '', action, input };
    const decide = this.roles.get(schedule.target.roleArn);
    const requests = this.hooks.requestsFor(service as ServiceName, action, input);
    const denied = requests.find((r) => !decide?.(r));
    if (denied) {
      this.invocations.push({ ...base, error: 'AccessDenied' });
    } else {
      try {
        await this.hooks.invoke(service as ServiceName, action, input);
        this.invocations.push(base);
      } catch (error) {
        this.invocations.push({ ...base, error: (error as Error)?.name ?? 'Error' });
      }
    }
    // One-time schedules complete after their invocation, refused or not (retries are not modelled).
    if (schedule.actionAfterCompletion === 'DELETE')
      this.schedules.delete(this.key(schedule.group, schedule.name));
  }

  /**
   * Invoke with the Event invocation type: the schedule completes once Lambda has accepted the event, and
   * the function runs on its own afterwards (its failure is recorded, as its log would show it).
   */
  private invokeFunction(schedule: ScheduleRecord): void {
    const input: unknown = JSON.parse(schedule.target.input);
    const base = {
      schedule: schedule.name,
      at: this.ctx.clock.now(),
      service: 'lambda',
      action: 'Invoke',
      input,
    };
    const decide = this.roles.get(schedule.target.roleArn);
    const run = this.functions.get(schedule.target.arn);
    const request = { action: 'lambda:InvokeFunction', resource: schedule.target.arn, context: {} };
    if (!decide?.(request)) {
      this.invocations.push({ ...base, error: 'AccessDenied' });
    } else if (!run) {
      this.invocations.push({ ...base, error: 'ResourceNotFoundException' });
    } else {
      this.ctx.spawn(
        async () => {
          await run(input);
          this.invocations.push(base);
        },
        (error) => this.invocations.push({ ...base, error: (error as Error)?.name ?? 'Error' }),
      );
    }
    if (schedule.actionAfterCompletion === 'DELETE')
      this.schedules.delete(this.key(schedule.group, schedule.name));
  }

  readonly actions = {
    CreateSchedule: (input: CreateScheduleCommandInput) => {
      const group = input.GroupName ?? 'default';
      if (!input.Name || !NAME.test(input.Name)) {
        throw fail('ValidationException', `Invalid schedule name: ${input.Name ?? ''}`);
      }
      if (!this.groups.has(group))
        throw fail('ResourceNotFoundException', `Schedule group ${group} does not exist.`);
      if (this.schedules.has(this.key(group, input.Name))) {
        throw fail('ConflictException', `Schedule ${input.Name} already exists.`);
      }
      const match = AT.exec(input.ScheduleExpression ?? '');
      if (!match) {
        throw fail(
          'ValidationException',
          `The sandbox models at(...) expressions only: ${input.ScheduleExpression ?? ''}`,
        );
      }
      if (Date.parse(`${match[1]}Z`) <= this.ctx.clock.now()) {
        throw fail('ValidationException', 'The schedule expression must be in the future.');
      }
      const timezone = input.ScheduleExpressionTimezone ?? 'UTC';
      if (timezone !== 'UTC') throw fail('ValidationException', `The sandbox models the UTC timezone only`);
      if (!input.FlexibleTimeWindow?.Mode)
        throw fail('ValidationException', 'FlexibleTimeWindow is required');
      const target = input.Target;
      if (!target?.Arn || !target.RoleArn)
        throw fail('ValidationException', 'Target Arn and RoleArn are required');
      if (!UNIVERSAL.test(target.Arn) && !FUNCTION.test(target.Arn)) {
        throw fail(
          'ValidationException',
          `The sandbox models universal and Lambda function targets only: ${target.Arn}`,
        );
      }
      try {
        JSON.parse(target.Input ?? '{}');
      } catch {
        throw fail('ValidationException', 'Target Input must be well-formed JSON');
      }
      const arn = `arn:aws:scheduler:${this.ctx.region}:${this.ctx.accountId}:schedule/${group}/${input.Name}`;
      this.schedules.set(this.key(group, input.Name), {
        name: input.Name,
        group,
        arn,
        expression: input.ScheduleExpression as string,
        timezone,
        at: Date.parse(`${match[1]}Z`),
        target: { arn: target.Arn, roleArn: target.RoleArn, input: target.Input ?? '{}' },
        actionAfterCompletion: input.ActionAfterCompletion === 'DELETE' ? 'DELETE' : 'NONE',
        state: input.State === 'DISABLED' ? 'DISABLED' : 'ENABLED',
        createdAt: this.ctx.clock.now(),
      });
      return { ScheduleArn: arn };
    },

    GetSchedule: (input: GetScheduleCommandInput) => {
      const schedule = this.schedules.get(this.key(input.GroupName, input.Name));
      if (!schedule) throw fail('ResourceNotFoundException', `Schedule ${input.Name ?? ''} does not exist.`);
      return {
        Arn: schedule.arn,
        Name: schedule.name,
        GroupName: schedule.group,
        ScheduleExpression: schedule.expression,
        ScheduleExpressionTimezone: schedule.timezone,
        State: schedule.state,
        ActionAfterCompletion: schedule.actionAfterCompletion,
        FlexibleTimeWindow: { Mode: 'OFF' },
        Target: { Arn: schedule.target.arn, RoleArn: schedule.target.roleArn, Input: schedule.target.input },
        CreationDate: new Date(schedule.createdAt),
        LastModificationDate: new Date(schedule.createdAt),
      };
    },

    DeleteSchedule: (input: DeleteScheduleCommandInput) => {
      const key = this.key(input.GroupName, input.Name);
      if (!this.schedules.has(key)) {
        throw fail('ResourceNotFoundException', `Schedule ${input.Name ?? ''} does not exist.`);
      }
      this.schedules.delete(key);
      return {};
    },
  };

  /** `at(...)` of a schedule, as an ISO time, for assertions. */
  static timeOf(schedule: ScheduleRecord): string {
    return iso(schedule.at);
  }
}
