import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import type { TargetConfig } from '../lambdas/shared/config';
import { acknowledgeWildcards, type JustifiedStatement } from './nag-findings';
import { pascalCase } from './steps';

/**
 * What certbot's Route 53 plugin needs on the instance for dns-01, and no more: find the hosted zone,
 * write and remove the one TXT record `_acme-challenge.<domain>` in the target's zone, and wait for
 * Route 53 to report the change in sync. One managed policy per dns-01 target; the user attaches it to
 * the role of that target's instances (the stack outputs each ARN).
 */

/** The record Let's Encrypt looks up; Route 53 compares names lowercased and without the final dot. */
export const acmeChallengeName = (domain: string): string => `_acme-challenge.${domain.toLowerCase()}`;

export const dns01Statements = (stack: Stack, target: TargetConfig): JustifiedStatement[] => {
  const zone = target.tls.hostedZoneId;
  if (target.tls.mode !== 'dns-01' || zone === undefined) {
    throw new Error(`target ${target.name}: a dns-01 policy needs tls.mode "dns-01" and tls.hostedZoneId`);
  }
  const route53 = (resource: string, resourceName: string) =>
    stack.formatArn({ service: 'route53', region: '', account: '', resource, resourceName });
  return [
    {
      statement: new iam.PolicyStatement({
        sid: 'AnswerAcmeChallenge',
        actions: ['route53:ChangeResourceRecordSets'],
        resources: [route53('hostedzone', zone)],
        conditions: {
          'ForAllValues:StringEquals': {
            'route53:ChangeResourceRecordSetsNormalizedRecordNames': [acmeChallengeName(target.domain)],
            'route53:ChangeResourceRecordSetsRecordTypes': ['TXT'],
          },
        },
      }),
    },
    {
      statement: new iam.PolicyStatement({
        sid: 'WaitForChangeInSync',
        actions: ['route53:GetChange'],
        resources: [route53('change', '*')],
      }),
      wildcardReason:
        'a Route 53 change id is issued by ChangeResourceRecordSets at run time; GetChange only reads the status of a change',
    },
    {
      statement: new iam.PolicyStatement({
        sid: 'FindHostedZone',
        actions: ['route53:ListHostedZones'],
        resources: ['*'],
      }),
      wildcardReason:
        'route53:ListHostedZones has no resource-level permissions (Service Authorization Reference); certbot lists zones to find the one that holds the domain, and reading the list changes nothing',
    },
  ];
};

export interface Dns01PoliciesProps {
  readonly targets: readonly TargetConfig[];
}

/** One managed policy per target whose TLS mode is dns-01, keyed by target name. */
export class Dns01Policies extends Construct {
  readonly policies: Readonly<Record<string, iam.ManagedPolicy>>;

  constructor(scope: Construct, id: string, props: Dns01PoliciesProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const policies: Record<string, iam.ManagedPolicy> = {};
    for (const target of props.targets.filter((t) => t.tls.mode === 'dns-01')) {
      const justified = dns01Statements(stack, target);
      const policy = new iam.ManagedPolicy(this, pascalCase(target.name), {
        description: `Understudy dns-01 for ${target.domain}: certbot on target ${target.name}'s instances may set ${acmeChallengeName(target.domain)} TXT in hosted zone ${target.tls.hostedZoneId}`,
        statements: justified.map((j) => j.statement),
      });
      acknowledgeWildcards(policy, justified);
      policies[target.name] = policy;
    }
    this.policies = policies;
  }
}
