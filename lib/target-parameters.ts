import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import type { TargetConfig } from '../lambdas/shared/config';
import { parameterNames } from '../lambdas/shared/constants';

export interface TargetParametersProps {
  /** SSM prefix of the stack, e.g. `/understudy/Understudy`. */
  readonly parameterPrefix: string;
  /** The validated targets; each is stored as JSON for preflight to load by name. */
  readonly targets: readonly TargetConfig[];
}

const STANDARD_LIMIT_BYTES = 4096;
const ADVANCED_LIMIT_BYTES = 8192;

/**
 * One String parameter per target at `<prefix>/targets/<name>`, holding its validated configuration
 * (defaults filled in), so that the workflow runs with what synth checked.
 */
export class TargetParameters extends Construct {
  readonly parameters: Readonly<Record<string, ssm.StringParameter>>;

  constructor(scope: Construct, id: string, props: TargetParametersProps) {
    super(scope, id);
    const names = parameterNames(props.parameterPrefix);
    const parameters: Record<string, ssm.StringParameter> = {};
    for (const target of props.targets) {
      const value = JSON.stringify(storedTarget(target, props.parameterPrefix));
      const bytes = Buffer.byteLength(value, 'utf8');
      if (bytes > ADVANCED_LIMIT_BYTES) {
        throw new Error(
          `target "${target.name}" is ${bytes} bytes as JSON, over the ${ADVANCED_LIMIT_BYTES}-byte limit of an SSM ` +
            'parameter: shorten its settings (for example health.bodyContains)',
        );
      }
      parameters[target.name] = new ssm.StringParameter(this, `Target-${target.name}`, {
        parameterName: names.target(target.name),
        stringValue: value,
        description: `Understudy target ${target.name}`,
        // Advanced parameters cost money; only a target too big for a standard one gets it.
        tier: bytes > STANDARD_LIMIT_BYTES ? ssm.ParameterTier.ADVANCED : ssm.ParameterTier.STANDARD,
      });
    }
    this.parameters = parameters;
  }
}

/**
 * What the workflow reads for a target. A target whose image Understudy builds (`image.build`) is
 * stored as one that brings its own image through the parameter the image pipeline writes, so that
 * preflight resolves both the same way and knows nothing of the build.
 */
export const storedTarget = (target: TargetConfig, parameterPrefix: string): TargetConfig =>
  target.image.build === undefined
    ? target
    : { ...target, image: { ssmParameter: parameterNames(parameterPrefix).image(target.name) } };
