import { join } from 'node:path';
import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { BUNDLE } from './bundling';
import { pascalCase, STEPS, type StepName } from './steps';

/** The stack's bundling of every function (lib/bundling.ts's settings, for NodejsFunction). */
export const NODEJS_BUNDLING: nodejs.BundlingOptions = {
  format: BUNDLE.format === 'esm' ? nodejs.OutputFormat.ESM : nodejs.OutputFormat.CJS,
  minify: BUNDLE.minify,
  sourceMap: BUNDLE.sourcemap,
  target: BUNDLE.target,
  mainFields: [...BUNDLE.mainFields],
  // The SDK is bundled too: the runtime's copy changes under us, and the bundle must carry the exact
  // client the sandbox was tested with.
  externalModules: [],
  banner: BUNDLE.banner,
  forceDockerBundling: false,
};

/** What every function's runtime needs besides its own settings. */
export const RUNTIME_ENVIRONMENT = {
  POWERTOOLS_SERVICE_NAME: 'understudy',
  POWERTOOLS_LOG_LEVEL: 'INFO',
  // Step outputs hold task tokens and presigned URLs: traces record errors and ids, never a response
  // (lambdas/shared/tracer.ts).
  POWERTOOLS_TRACER_CAPTURE_RESPONSE: 'false',
  // The bundles are minified: without this, stack traces name mangled symbols in one long line.
  NODE_OPTIONS: '--enable-source-maps',
} as const;

/**
 * Tracing (ACTIVE) writes its X-Ray wildcard into the role's default policy: acknowledged there only,
 * so a wildcard added anywhere else under the role is still reported.
 */
export const acknowledgeTracing = (role: iam.Role): void => {
  Validations.of(role.node.findChild('DefaultPolicy')).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason:
      'xray:PutTraceSegments and xray:PutTelemetryRecords (added by tracing: ACTIVE) have no resource-level permissions',
  });
};

/** The variables every step reads with `readEnv`; nothing else is passed. */
export interface StepEnvironment {
  /** SSM prefix of this stack's parameters, e.g. `/understudy/Understudy`. */
  readonly parameterPrefix: string;
  readonly runsBucketName: string;
  readonly topicArn: string;
  readonly eventBusName: string;
}

export interface StepLambdasProps {
  readonly environment: StepEnvironment;
}

/** One `<step>/handler.ts` per step. */
const LAMBDAS_ROOT = join(__dirname, '..', 'lambdas');

export interface StepLambda {
  readonly fn: nodejs.NodejsFunction;
  /** The function's own role: it starts with nothing but writing its log group and X-Ray traces. */
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;
}

/**
 * One Lambda function per workflow step, each with its own role, log group and timeout. The roles start
 * empty: `StepPermissions` gives each exactly what its step calls.
 */
export class StepLambdas extends Construct {
  readonly steps: Readonly<Record<StepName, StepLambda>>;

  constructor(scope: Construct, id: string, props: StepLambdasProps) {
    super(scope, id);

    const built: Partial<Record<StepName, StepLambda>> = {};
    for (const step of STEPS) {
      const id = pascalCase(step.name);
      const logGroup = new logs.LogGroup(this, `${id}Logs`, {
        retention: logs.RetentionDays.THREE_MONTHS,
        removalPolicy: RemovalPolicy.RETAIN,
      });
      const role = new iam.Role(this, `${id}Role`, {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        description: `Understudy ${step.name} step`,
      });
      // Written by hand instead of AWSLambdaBasicExecutionRole, which allows every log group in the account.
      logGroup.grantWrite(role);

      const fn = new nodejs.NodejsFunction(this, `${id}Function`, {
        entry: join(LAMBDAS_ROOT, step.name, 'handler.ts'),
        handler: 'handler',
        description: `Understudy: ${step.description}`,
        runtime: lambda.Runtime.NODEJS_24_X,
        architecture: lambda.Architecture.ARM_64,
        memorySize: 'memoryMb' in step ? step.memoryMb : 256,
        timeout: Duration.seconds(step.timeoutSeconds),
        role,
        logGroup,
        tracing: lambda.Tracing.ACTIVE,
        environment: {
          PARAMETER_PREFIX: props.environment.parameterPrefix,
          RUNS_BUCKET: props.environment.runsBucketName,
          TOPIC_ARN: props.environment.topicArn,
          EVENT_BUS_NAME: props.environment.eventBusName,
          ...RUNTIME_ENVIRONMENT,
        },
        bundling: NODEJS_BUNDLING,
      });
      acknowledgeTracing(role);
      built[step.name] = { fn, role, logGroup };
    }
    this.steps = built as Record<StepName, StepLambda>;
  }
}
