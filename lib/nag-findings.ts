import { Stack, Validations } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type { IConstruct } from 'constructs';

/** A statement and, when it holds a wildcard, why the wildcard cannot be narrowed. */
export interface JustifiedStatement {
  readonly statement: iam.PolicyStatement;
  /**
   * Becomes the acknowledgement of each AwsSolutions-IAM5 finding the statement raises.
   * @default - none: a statement with a wildcard and no reason fails synth
   */
  readonly wildcardReason?: string;
}

/** A policy field that CloudFormation accepts as one value or a list, as a list. */
export const asList = <T>(value: T | T[] | undefined): T[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

/**
 * A template value as one string, intrinsics written `<Ref>` / `<Resource.Attribute>`. cdk-nag names an
 * IAM5 finding after the resource flattened this way; the acknowledgement id has to match it exactly.
 */
export const flatten = (value: unknown): string => {
  if (typeof value === 'string') return value.replace(/\$\{/g, '<').replace(/\}/g, '>');
  if (value !== null && typeof value === 'object') {
    const node = value as Record<string, unknown>;
    const join = node['Fn::Join'];
    if (Array.isArray(join)) {
      const [delimiter, parts] = join as [string, unknown[]];
      return parts.map(flatten).join(delimiter);
    }
    if ('Ref' in node) return `<${flatten(node.Ref)}>`;
    const getAtt = node['Fn::GetAtt'];
    if (Array.isArray(getAtt)) return `<${flatten(getAtt[0])}.${flatten(getAtt[1])}>`;
  }
  return JSON.stringify(value);
};

/** The AwsSolutions-IAM5 finding ids a statement will raise. */
export const wildcardFindings = (scope: IConstruct, statement: iam.PolicyStatement): string[] => {
  const json = Stack.of(scope).resolve(statement.toStatementJson()) as {
    Action?: unknown;
    Resource?: unknown;
  };
  return [
    ...asList(json.Action)
      .map(flatten)
      .filter((a) => a.includes('*'))
      .map((a) => `AwsSolutions-IAM5[Action::${a}]`),
    ...asList(json.Resource)
      .map(flatten)
      .filter((r) => r.includes('*'))
      .map((r) => `AwsSolutions-IAM5[Resource::${r}]`),
  ];
};

/**
 * Acknowledges, on `scope`, each wildcard finding the statements raise, with the reasons of the
 * statements that raise it. Nothing is acknowledged by pattern: a new wildcard needs a new reason.
 */
export const acknowledgeWildcards = (scope: IConstruct, statements: readonly JustifiedStatement[]): void => {
  const reasons = new Map<string, string[]>();
  for (const { statement, wildcardReason } of statements) {
    for (const id of wildcardFindings(scope, statement)) {
      if (wildcardReason === undefined) {
        throw new Error(
          `${scope.node.path}: statement "${statement.sid ?? statement.actions.join(',')}" raises ${id}: ` +
            'narrow the resource or action, or give the statement a wildcardReason',
        );
      }
      reasons.set(id, [...(reasons.get(id) ?? []), wildcardReason]);
    }
  }
  for (const [id, why] of reasons) {
    Validations.of(scope).acknowledge({ id, reason: [...new Set(why)].join('; ') });
  }
};
