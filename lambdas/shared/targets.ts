import { GetParameterCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { awsCall, hasCode } from './aws-errors';
import { formatIssues, type TargetConfig, TargetSchema } from './config';
import { parameterNames } from './constants';
import { invalidInput } from './errors';

/** A parameter's value, or undefined when it does not exist. */
export const parameterValue = async (ssm: SSMClient, name: string): Promise<string | undefined> => {
  try {
    const out = await awsCall('GetParameter', () => ssm.send(new GetParameterCommand({ Name: name })));
    return out.Parameter?.Value ?? '';
  } catch (error) {
    if (hasCode(error, 'ParameterNotFound')) return undefined;
    throw error;
  }
};

/**
 * The target as the stack stored it (defaults filled in, a built image as its parameter). Every refusal
 * names `field`, the member of the caller's input that carried the name.
 */
export const loadTargetConfig = async (
  ssm: SSMClient,
  prefix: string,
  name: string,
  field: string,
): Promise<TargetConfig> => {
  const parameter = parameterNames(prefix).target(name);
  const value = await parameterValue(ssm, parameter);
  if (value === undefined) {
    throw invalidInput(
      field,
      `unknown target ${name} (no ${parameter}); configured targets are listed in understudy.config.json: add it there and redeploy the stack`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(value);
  } catch {
    throw invalidInput(
      field,
      `the configuration of target ${name} (${parameter}) is not JSON; redeploy the stack`,
    );
  }
  const parsed = TargetSchema.safeParse(raw);
  if (!parsed.success) {
    throw invalidInput(
      field,
      `the configuration of target ${name} (${parameter}) is invalid: ${formatIssues(parsed.error, `targets[${name}]`).join('; ')}; fix understudy.config.json and redeploy`,
    );
  }
  if (parsed.data.name !== name) {
    throw invalidInput(
      field,
      `${parameter} describes target ${parsed.data.name}, not ${name}; redeploy the stack`,
    );
  }
  return parsed.data;
};
