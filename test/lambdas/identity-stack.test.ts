import { AWS_IDENTITY_CERTIFICATES } from '../../lambdas/signal/aws-identity-certificates';
import { IDENTITY_KEYS_VARIABLE, parseIdentityKeysVariable } from '../../lambdas/signal/identity';
import { exampleConfig, logicalId, synthesize } from '../lib/stack-fixture';

/** readinessAgent.identityCertificates reaches the signal function, and only it, as the certificates' keys. */

type Resources = Record<
  string,
  { Type: string; Properties: { Environment?: { Variables: Record<string, unknown> } } }
>;
const functionVariables = (resources: Resources) =>
  Object.entries(resources)
    .filter(([, resource]) => resource.Type === 'AWS::Lambda::Function')
    .map(([id, resource]) => [id, resource.Properties.Environment?.Variables ?? {}] as const);

describe('the identity certificates the config adds', () => {
  it('reach the signal function only, as the public keys of the certificates', () => {
    const certificate = AWS_IDENTITY_CERTIFICATES['ap-east-1'] ?? '';
    const config = {
      ...exampleConfig(),
      readinessAgent: { identityCertificates: { 'ap-east-9': certificate } },
    };
    const { stack, template } = synthesize({ config });
    const withKeys = functionVariables(template.toJSON().Resources as Resources).filter(
      ([, variables]) => variables[IDENTITY_KEYS_VARIABLE] !== undefined,
    );

    expect(withKeys.map(([id]) => id)).toEqual([logicalId(stack.lambdas.steps.signal.fn)]);
    const keys = parseIdentityKeysVariable(String(withKeys[0]?.[1][IDENTITY_KEYS_VARIABLE]));
    expect(Object.keys(keys)).toEqual(['ap-east-9']);
  });

  it('leave every function without the variable when the config adds none', () => {
    const { template } = synthesize();
    const all = functionVariables(template.toJSON().Resources as Resources);

    expect(all.length).toBeGreaterThan(0);
    expect(all.filter(([, variables]) => IDENTITY_KEYS_VARIABLE in variables)).toEqual([]);
  });
});
