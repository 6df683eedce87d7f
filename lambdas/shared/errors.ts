/**
 * The one list of error names shared by the handlers and the state machine's Retry/Catch.
 *
 * Names are set explicitly on every error: bundles are minified, so a class name cannot be trusted
 * to survive. `test/statemachine` checks that every `ErrorEquals` in the ASL is in this list.
 */
export const ErrorNames = {
  /** The execution input or the target configuration is invalid. Never retried. */
  InvalidInput: 'InvalidInput',
  /** The target cannot be replaced faithfully or safely (shape, AMI, EIP, egress). Never retried. */
  PreflightRefused: 'PreflightRefused',
  /** Another execution holds the target's lock. */
  LockHeld: 'LockHeld',
  /** This execution no longer holds the lock it took (lease lost). */
  LockLost: 'LockLost',
  /** RunInstances refused the clone (capacity, permissions, parameters). */
  LaunchFailed: 'LaunchFailed',
  /** The candidate is not `running` yet; retried by the state machine as a poll. */
  InstanceNotReady: 'InstanceNotReady',
  /** The candidate reached a state it cannot come back from (terminated, stopped). */
  InstanceLost: 'InstanceLost',
  /** The readiness agent reported a cloud-init failure (sent with SendTaskFailure). */
  ReadinessFailed: 'ReadinessFailed',
  /** The SSM agent on an instance is not Online yet; retried as a poll. */
  AgentNotOnline: 'AgentNotOnline',
  /** An SSM command is still running (or not visible yet); retried as a poll. */
  CommandPending: 'CommandPending',
  /** An SSM command ended in any state but Success. */
  CommandFailed: 'CommandFailed',
  /** An operator answered the approval gate with `understudy reject` (sent with SendTaskFailure). */
  ApprovalRejected: 'ApprovalRejected',
  /** AssociateAddress did not leave the EIP on the expected instance. */
  SwitchFailed: 'SwitchFailed',
  /** The probe through the EIP did not reach its consecutive successes before the deadline. */
  ProbeFailed: 'ProbeFailed',
  /** The bake period saw too many consecutive failures. */
  BakeFailed: 'BakeFailed',
  /** Retire could not stop or label the old server; the replacement itself stands. */
  RetireFailed: 'RetireFailed',
  /** The rollback could not restore service; a human must finish (commands in the message). */
  RollbackFailed: 'RollbackFailed',
  /** A transient AWS error that the handler chose to surface for a state-machine retry. */
  Transient: 'Transient',
} as const;

export type ErrorName = (typeof ErrorNames)[keyof typeof ErrorNames];

export const ALL_ERROR_NAMES: readonly string[] = Object.values(ErrorNames);

/** Names produced by Step Functions or Lambda themselves, which the ASL may also match. */
export const PLATFORM_ERROR_NAMES: readonly string[] = [
  'States.ALL',
  'States.TaskFailed',
  'States.Timeout',
  'States.HeartbeatTimeout',
  'States.Runtime',
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.ClientExecutionTimeoutException',
  'Lambda.TooManyRequestsException',
  'Lambda.Unknown',
  // A function that ran past its own timeout (Lambda's errorType since the 2023 runtimes).
  'Sandbox.Timedout',
  // What a handler throws when middy gives up just before that timeout (@middy/core's timeoutEarly).
  'TimeoutError',
];

/** Base class: a named, cause-carrying error whose `name` is what the ASL matches. */
export class UnderstudyError extends Error {
  constructor(name: ErrorName, message: string, options?: ErrorOptions & { readonly field?: string }) {
    super(message, options);
    this.name = name;
    if (options?.field) this.field = options.field;
  }

  /** The input or config field the error is about, when there is one. */
  readonly field?: string;
}

export const invalidInput = (field: string, message: string): UnderstudyError =>
  new UnderstudyError(ErrorNames.InvalidInput, `${field}: ${message}`, { field });

export const refused = (message: string, options?: ErrorOptions & { field?: string }): UnderstudyError =>
  new UnderstudyError(ErrorNames.PreflightRefused, message, options);

/**
 * A maker of one named error, for a step that raises it from several places.
 *
 * @example const launchFailed = failure(ErrorNames.LaunchFailed); throw launchFailed('no instance', cause);
 */
export const failure =
  (name: ErrorName) =>
  (message: string, cause?: unknown): UnderstudyError =>
    new UnderstudyError(name, message, cause === undefined ? undefined : { cause });

export const isUnderstudyError = (error: unknown, name?: ErrorName): error is UnderstudyError =>
  error instanceof Error &&
  ALL_ERROR_NAMES.includes(error.name) &&
  (name === undefined || error.name === name);
