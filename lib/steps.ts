/**
 * The one table of workflow steps, free of CDK imports so the sandbox and the bundle script read it too. Each step is a folder `lambdas/<name>/handler.ts` exporting `handler`;
 * the state machine refers to a step's function through the placeholder `${<Pascal>FunctionArn}`.
 */
export interface StepSpec {
  /** Folder name under `lambdas/`, kebab-case. */
  readonly name: string;
  /** One line for the function's description. */
  readonly description: string;
  /**
   * Kept at or below the Task's `TimeoutSeconds` in the ASL, so that Step Functions never gives up on a
   * task that Lambda is still running (a test holds the two together).
   */
  readonly timeoutSeconds: number;
  /**
   * Whether the state machine invokes it. The signal function is invoked by the agent-event rule only, so
   * it has no placeholder and the state machine gets no right to invoke it.
   */
  readonly invokedByStateMachine: boolean;
  /** Lambda memory; more only where a step holds large documents (a Terraform state) in memory. */
  readonly memoryMb?: number;
}

export const STEPS = [
  {
    name: 'preflight',
    description: 'validates the run, resolves the AMI, takes the lock and adopts the current box',
    timeoutSeconds: 120,
    invokedByStateMachine: true,
  },
  {
    name: 'launch',
    description: 'clones the current box onto the new AMI',
    timeoutSeconds: 120,
    invokedByStateMachine: true,
  },
  {
    name: 'await-running',
    description: 'polls the candidate until it is running',
    timeoutSeconds: 60,
    invokedByStateMachine: true,
  },
  {
    name: 'await-readiness',
    description: "stores the readiness task token until the agent's event completes it",
    timeoutSeconds: 60,
    invokedByStateMachine: true,
  },
  {
    name: 'signal',
    description: "turns the readiness agent's events into task success, failure or heartbeat",
    timeoutSeconds: 60,
    invokedByStateMachine: false,
  },
  {
    name: 'pack-certificate',
    description:
      "packs the old box's certificate, key and renewal config for the new box through SSM (restore)",
    timeoutSeconds: 120,
    invokedByStateMachine: true,
  },
  {
    name: 'prepare',
    description: 'prepares TLS and checks the app locally on the candidate through SSM',
    timeoutSeconds: 120,
    invokedByStateMachine: true,
  },
  {
    name: 'await-command',
    description: 'polls an SSM command until it ends',
    timeoutSeconds: 60,
    invokedByStateMachine: true,
  },
  {
    name: 'switch',
    description: 'moves the Elastic IP onto the candidate',
    timeoutSeconds: 60,
    invokedByStateMachine: true,
  },
  {
    name: 'certificate',
    description: 'runs certbot (http-01) on the candidate through SSM',
    timeoutSeconds: 120,
    invokedByStateMachine: true,
  },
  {
    name: 'hook',
    description: "sends a target's lifecycle hook commands to the new or the old box through SSM",
    timeoutSeconds: 120,
    invokedByStateMachine: true,
  },
  {
    name: 'request-approval',
    description: 'stores the approval task token and announces that the switch waits for a human',
    timeoutSeconds: 60,
    invokedByStateMachine: true,
  },
  {
    name: 'probe',
    description: 'probes the site through the Elastic IP, then bakes',
    timeoutSeconds: 300,
    invokedByStateMachine: true,
  },
  {
    name: 'reconcile',
    description: 'brings the Terraform state in S3 in line with the new server, under the backend locks',
    // Waiting for a running `terraform apply` to release its lock (up to 600 s) plus the work itself.
    timeoutSeconds: 900,
    invokedByStateMachine: true,
    // The state is parsed and written whole; peak memory is about ten times its size (npm run bench).
    memoryMb: 1024,
  },
  {
    name: 'rollback',
    description: 'moves the Elastic IP back, verifies it and parks the failed candidate',
    timeoutSeconds: 300,
    invokedByStateMachine: true,
  },
  {
    name: 'retire',
    description: 'stops the old box and tags it for the rollback window',
    timeoutSeconds: 120,
    invokedByStateMachine: true,
  },
  {
    name: 'start-retired',
    description: "rollback within the window: cancels the retired box's end-of-window schedule and starts it",
    timeoutSeconds: 60,
    invokedByStateMachine: true,
  },
  {
    name: 'await-restored',
    description: 'polls the restored box (running, status checks, SSM agent) and sends its local app check',
    timeoutSeconds: 60,
    invokedByStateMachine: true,
  },
  {
    name: 'revert-restore',
    description: 'undoes a failed rollback within the window: EIP back, the retired box stopped again',
    timeoutSeconds: 300,
    invokedByStateMachine: true,
  },
  {
    name: 'finish',
    description: 'releases the lock, cleans up, writes the run record and publishes the outcome',
    timeoutSeconds: 120,
    invokedByStateMachine: true,
  },
] as const satisfies readonly StepSpec[];

export type StepName = (typeof STEPS)[number]['name'];

export const STEP_NAMES: readonly StepName[] = STEPS.map((s) => s.name);

/** `await-command` → `AwaitCommand`; used for construct ids and ASL placeholders alike. */
export const pascalCase = (kebab: string): string =>
  kebab
    .split('-')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');

/** The ASL placeholder name (without `${}`) for a step's function ARN. */
/** The trigger function's folder (lib/triggers.ts): a function of the stack, not a workflow step. */
export const TRIGGER_FOLDER = 'trigger';

/** The one ASL placeholder that is not a function: the topic the AnnounceOutcome state publishes to. */
export const NOTIFICATION_TOPIC_PLACEHOLDER = 'NotificationTopicArn';

export const placeholderFor = (step: StepName): string => `${pascalCase(step)}FunctionArn`;
