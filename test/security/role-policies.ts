import type { Template } from 'aws-cdk-lib/assertions';
import { asList } from '../../lib/nag-findings';
import type { PolicyStatement } from './iam-eval';

/**
 * The identity-policy statements a synthesized template attaches to one role, with every intrinsic
 * resolved to a plain string: pseudo parameters to the account and region given, and `Ref` /
 * `Fn::GetAtt` of the stack's own resources to the names the test's deployment gives them (the
 * sandbox's bucket, topic, state machine...). A reference nobody named resolves to `unresolved:<id>`,
 * which matches no real ARN: a grant that depends on it cannot allow anything by accident.
 */

export interface Names {
  readonly region: string;
  readonly accountId: string;
  /** `Ref` value by logical id. */
  readonly refs: Readonly<Record<string, string>>;
  /** `Fn::GetAtt` value by `<logicalId>.<attribute>`. */
  readonly attributes: Readonly<Record<string, string>>;
  /** Literal renames applied to every resolved string, e.g. the stack's SSM prefix to the deployment's. */
  readonly renames?: readonly (readonly [string, string])[];
}

const rename = (text: string, names: Names) =>
  (names.renames ?? []).reduce((out, [from, to]) => out.split(from).join(to), text);

const resolve = (value: unknown, names: Names): unknown => {
  if (typeof value === 'string') return rename(value, names);
  if (typeof value === 'boolean' || typeof value === 'number') return value;
  if (Array.isArray(value)) return value.map((v) => resolve(v, names));
  if (value === null || typeof value !== 'object') return value;
  const node = value as Record<string, unknown>;
  const join = node['Fn::Join'];
  if (Array.isArray(join)) {
    const [delimiter, parts] = join as [string, unknown[]];
    return parts.map((p) => String(resolve(p, names))).join(delimiter);
  }
  if (typeof node.Ref === 'string') {
    const pseudo: Record<string, string> = {
      'AWS::Partition': 'aws',
      'AWS::URLSuffix': 'amazonaws.com',
      'AWS::Region': names.region,
      'AWS::AccountId': names.accountId,
    };
    return rename(pseudo[node.Ref] ?? names.refs[node.Ref] ?? `unresolved:${node.Ref}`, names);
  }
  const getAtt = node['Fn::GetAtt'];
  if (Array.isArray(getAtt)) {
    const id = `${String(getAtt[0])}.${String(getAtt[1])}`;
    return rename(names.attributes[id] ?? `unresolved:${id}`, names);
  }
  return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, resolve(v, names)]));
};

const attachedTo = (roles: unknown, roleLogicalId: string) =>
  asList<unknown>(roles as unknown[]).some((r) => (r as { Ref?: string }).Ref === roleLogicalId);

/**
 * Every statement that reaches the role: AWS::IAM::Policy and customer ManagedPolicy resources naming it,
 * and the role's inline policies. AWS managed policies are not in the template and are not counted.
 */
export const policyOfRole = (template: Template, roleLogicalId: string, names: Names): PolicyStatement[] => {
  const documents: unknown[] = [];
  for (const type of ['AWS::IAM::Policy', 'AWS::IAM::ManagedPolicy']) {
    for (const resource of Object.values(template.findResources(type))) {
      if (attachedTo(resource.Properties.Roles, roleLogicalId))
        documents.push(resource.Properties.PolicyDocument);
    }
  }
  const role = template.toJSON().Resources?.[roleLogicalId] as
    | { Properties?: { Policies?: { PolicyDocument: unknown }[] } }
    | undefined;
  if (!role) throw new Error(`role-policies: no resource ${roleLogicalId} in the template`);
  for (const inline of role.Properties?.Policies ?? []) documents.push(inline.PolicyDocument);
  return documents.flatMap((d) =>
    asList((resolve(d, names) as { Statement: PolicyStatement | PolicyStatement[] }).Statement),
  );
};
