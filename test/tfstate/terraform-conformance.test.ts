import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  addressesFromDescribe,
  instanceFromDescribe,
  volumesFromDescribe,
} from '../../lambdas/shared/tfstate/describe';
import { moveState } from '../../lambdas/shared/tfstate/mv';
import { reconcileState } from '../../lambdas/shared/tfstate/reconcile';
import { readState, writeState } from '../../lambdas/shared/tfstate/state';

/**
 * `understudy tfstate mv` (and the layout reconcile writes) against `terraform state mv` itself, on the same file, byte for byte: the
 * layout, the sorting and the dependency clearing are Terraform's only if Terraform writes the same.
 * Runs where a `terraform` binary is on PATH (this machine has one); elsewhere the suite is skipped.
 */

const terraformVersion = (() => {
  const probe = spawnSync('terraform', ['version', '-json'], { encoding: 'utf8' });
  if (probe.status !== 0) return undefined;
  return (JSON.parse(probe.stdout) as { terraform_version?: string }).terraform_version;
})();

const FIXTURE = readFileSync(join(__dirname, '../fixtures/tfstate/core/modules.tfstate'), 'utf8');

/**
 * What differs for reasons outside `mv`: Terraform stamps its own version, and releases before 1.12 do
 * not write `identity_schema_version`.
 */
const normalise = (text: string): string =>
  text
    .replace(/"terraform_version": "[^"]*"/, '"terraform_version": "x"')
    .replace(/,\n\s*"identity_schema_version": \d+(?=\n)/g, '')
    .replace(/\n\s*"identity_schema_version": \d+,(?=\n)/g, '');

const terraformMv = (
  from: string,
  to: string,
  start = FIXTURE,
  ...more: (readonly [string, string])[]
): { text?: string; refused?: string } => {
  const dir = mkdtempSync(join(tmpdir(), 'understudy-tf-mv-'));
  const file = join(dir, 'terraform.tfstate');
  writeFileSync(file, start);
  try {
    for (const [a, b] of [[from, to] as const, ...more]) {
      execFileSync('terraform', ['state', 'mv', `-state=${file}`, '-backup=-', a, b], {
        cwd: dir,
        encoding: 'utf8',
        env: {
          ...process.env,
          TF_IN_AUTOMATION: '1',
          CHECKPOINT_DISABLE: '1',
          TF_CLI_CONFIG_FILE: '/dev/null',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    }
    return { text: readFileSync(file, 'utf8') };
  } catch (error) {
    return { refused: String((error as { stderr?: string }).stderr ?? error) };
  }
};

const ourMv = (from: string, to: string): { text?: string; refused?: string } => {
  try {
    return { text: writeState(moveState(readState(FIXTURE), from, to).state) };
  } catch (error) {
    return { refused: (error as Error).message };
  }
};

const describeWithTerraform = terraformVersion ? describe : describe.skip;

describeWithTerraform(`state mv, compared with terraform ${terraformVersion ?? '(not installed)'}`, () => {
  it.each([
    ['a module with its descendants', 'module.ec2-instance', 'module.ec2-instance-backup'],
    ['a keyed module instance', 'module.web[1]', 'module.web[2]'],
    ['a resource into a module', 'null_resource.solo', 'module.ec2-instance.null_resource.solo'],
    ['a resource renamed in place', 'terraform_data.watch', 'terraform_data.observer'],
    ['one count instance to a new resource', 'null_resource.many[1]', 'null_resource.single'],
    ['an index-less resource to a keyed instance', 'null_resource.solo', 'null_resource.many[5]'],
    [
      'a for_each instance to another key',
      'module.ec2-instance.module.child.null_resource.disk["a"]',
      'module.ec2-instance.module.child.null_resource.disk["c"]',
    ],
  ])('moves %s exactly as Terraform does', (_, from, to) => {
    const theirs = terraformMv(from, to);
    const ours = ourMv(from, to);

    expect(theirs.refused).toBeUndefined();
    expect(ours.refused).toBeUndefined();
    expect(normalise(ours.text ?? '')).toBe(normalise(theirs.text ?? ''));
  });

  it('writes a reconciled state exactly as Terraform lays it out', () => {
    const dir = join(__dirname, '../fixtures/tfstate/reconcile');
    const reconciled = writeState(
      reconcileState(readState(readFileSync(join(dir, 'v5-root-count.tfstate'), 'utf8')), {
        instanceAddress: 'aws_instance.web[0]',
        instance: instanceFromDescribe(
          JSON.parse(readFileSync(join(dir, 'v5-describe-instances.json'), 'utf8')),
        ),
        addresses: addressesFromDescribe(
          JSON.parse(readFileSync(join(dir, 'v5-describe-addresses.json'), 'utf8')),
        ),
        volumes: volumesFromDescribe(JSON.parse(readFileSync(join(dir, 'v5-describe-volumes.json'), 'utf8'))),
      }).state,
    );
    // A move there and back makes Terraform read the file and write all of it again, in its own layout.
    const rewritten = terraformMv('aws_eip.web', 'aws_eip.moved', reconciled, [
      'aws_eip.moved',
      'aws_eip.web',
    ]);

    expect(rewritten.refused).toBeUndefined();
    const serial = (text: string) => text.replace(/"serial": \d+/, '"serial": 0');
    // Terraform rebuilds check_results from a Go map, so the order of their objects varies run to run:
    // everything before them must be identical, and they must hold the same results.
    const [oursBefore, oursChecks] = normalise(serial(reconciled)).split('\n  "check_results":');
    const [theirsBefore, theirsChecks] = normalise(serial(rewritten.text ?? '')).split(
      '\n  "check_results":',
    );
    expect(theirsBefore).toBe(oursBefore);
    type Check = { config_addr: string; objects: { object_addr: string }[] };
    const results = (text: string | undefined) =>
      (JSON.parse(`{"c":${text ?? 'null'}`) as { c: Check[] }).c
        .map((r) => ({
          ...r,
          objects: [...r.objects].sort((a, b) => a.object_addr.localeCompare(b.object_addr)),
        }))
        .sort((a, b) => a.config_addr.localeCompare(b.config_addr));
    expect(results(theirsChecks)).toEqual(results(oursChecks));
  });

  it.each([
    ['onto an existing module', 'module.ec2-instance', 'module.ec2-instance-old'],
    ['onto an existing resource instance', 'null_resource.many[0]', 'null_resource.many[1]'],
    ['a managed resource onto a data source', 'null_resource.solo', 'data.null_resource.solo'],
    ['a resource that does not exist', 'null_resource.nowhere', 'null_resource.elsewhere'],
  ])('refuses to move %s, as Terraform does', (_, from, to) => {
    expect(terraformMv(from, to).refused).toBeDefined();
    expect(ourMv(from, to).refused).toBeDefined();
  });
});
