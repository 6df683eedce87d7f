import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseResourceAddress } from '../../lambdas/shared/tfstate/address';
import { findInstance, findResource, instanceAddressOf } from '../../lambdas/shared/tfstate/lookup';
import { moveState } from '../../lambdas/shared/tfstate/mv';
import {
  type InstanceV4,
  type ResourceV4,
  readState,
  type StateV4,
  writeState,
} from '../../lambdas/shared/tfstate/state';
import { refusal } from './refusal';

const fixture = (name: string) => readFileSync(join(__dirname, '../fixtures/tfstate/core', name), 'utf8');
const TEXT = fixture('modules.tfstate');
const load = () => readState(TEXT);

const deepFreeze = <T>(value: T): T => {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
};

const addresses = (state: StateV4) =>
  state.resources.flatMap((r) =>
    r.instances.map((i) => `${instanceAddressOf(r, i)}${i.deposed ? ` (deposed ${i.deposed})` : ''}`),
  );
const resourceAt = (state: StateV4, address: string): ResourceV4 | undefined =>
  findResource(state, parseResourceAddress(address));
const instanceAt = (state: StateV4, address: string): InstanceV4 | undefined =>
  findInstance(state, parseResourceAddress(address))?.instance;

describe('moveState: module to module', () => {
  it('moves the module and all its descendants, re-sorts, clears touching dependencies: the file Terraform writes', () => {
    const { state, moved } = moveState(load(), 'module.ec2-instance', 'module.ec2-instance-backup');
    expect(writeState(state)).toBe(fixture('modules-after-module-mv.tfstate'));
    expect(moved).toEqual([
      { from: 'module.ec2-instance', to: 'module.ec2-instance-backup' },
      { from: 'module.ec2-instance.module.child', to: 'module.ec2-instance-backup.module.child' },
    ]);
  });

  it('leaves a sibling module whose name merely starts the same way untouched', () => {
    const before = load();
    const old = resourceAt(before, 'module.ec2-instance-old.null_resource.server');
    const { state } = moveState(before, 'module.ec2-instance', 'module.ec2-instance-backup');
    expect(resourceAt(state, 'module.ec2-instance-old.null_resource.server')).toBe(old);
  });

  it('keeps type, name, provider, keys, attributes of the moved resources', () => {
    const before = load();
    const disk = resourceAt(before, 'module.ec2-instance.module.child.null_resource.disk') as ResourceV4;
    const { state } = moveState(before, 'module.ec2-instance', 'module.ec2-instance-backup');
    const after = resourceAt(
      state,
      'module.ec2-instance-backup.module.child.null_resource.disk',
    ) as ResourceV4;
    expect(after.provider).toBe(disk.provider);
    expect(after.instances.map((i) => i.index_key)).toEqual(['a', 'b']);
    expect(after.instances.map((i) => i.attributes)).toEqual(disk.instances.map((i) => i.attributes));
  });

  it('moves one keyed module instance only, and keeps dependencies on the module as Terraform does', () => {
    const before = load();
    const { state, moved } = moveState(before, 'module.web[1]', 'module.web[2]');
    expect(moved).toEqual([{ from: 'module.web[1]', to: 'module.web[2]' }]);
    expect(resourceAt(state, 'module.web[0].null_resource.server')).toBe(
      resourceAt(before, 'module.web[0].null_resource.server'),
    );
    expect(resourceAt(state, 'module.web[1].null_resource.server')).toBeUndefined();
    expect(resourceAt(state, 'module.web[2].null_resource.server')).toBeDefined();
    // A keyed module instance never "contains" a config dependency (ModuleInstance.TargetContains).
    expect(instanceAt(state, 'terraform_data.watch_web')?.dependencies).toEqual([
      'module.web.null_resource.server',
    ]);
  });

  it('moves a module into a keyed instance of another module and sorts it in place', () => {
    const { state } = moveState(load(), 'module.ec2-instance-old', 'module.web[10]');
    const modules = state.resources.map((r) => r.module ?? '');
    expect(modules.slice(-3)).toEqual(['module.web[0]', 'module.web[10]', 'module.web[1]']);
    expect(instanceAt(state, 'module.web[10].null_resource.server')?.dependencies).toEqual([
      'null_resource.many',
    ]);
  });

  it('refuses when the destination module exists', () => {
    for (const [from, to] of [
      ['module.ec2-instance', 'module.ec2-instance-old'],
      ['module.web[0]', 'module.web[1]'],
      ['module.ec2-instance', 'module.ec2-instance'],
    ] as const) {
      const error = refusal(() => moveState(load(), from, to));
      expect(error.reason).toBe('DestinationExists');
      expect(error.message).toContain('destination module already exists');
    }
  });

  it('refuses to move a module to a resource address', () => {
    const error = refusal(() => moveState(load(), 'module.ec2-instance', 'null_resource.server'));
    expect(error.reason).toBe('KindMismatch');
    expect(error.message).toBe(
      'Cannot move module.ec2-instance to null_resource.server: the target must also be a module.',
    );
  });

  it('refuses a module that is not in the state', () => {
    const error = refusal(() => moveState(load(), 'module.web', 'module.site'));
    expect(error.reason).toBe('AddressNotFound');
    expect(error.message).toContain('Cannot move module.web: does not match anything in the current state.');
  });
});

describe('moveState: resources', () => {
  it('renames a whole resource with its keyed instances and provider, clearing dependencies that name it', () => {
    const before = load();
    const many = resourceAt(before, 'null_resource.many') as ResourceV4;
    const { state, moved } = moveState(before, 'null_resource.many', 'null_resource.lots');
    expect(moved).toEqual([{ from: 'null_resource.many', to: 'null_resource.lots' }]);
    expect(resourceAt(state, 'null_resource.many')).toBeUndefined();
    const lots = resourceAt(state, 'null_resource.lots') as ResourceV4;
    expect(lots.provider).toBe('provider["registry.terraform.io/hashicorp/null"].secondary');
    expect(lots.instances).toEqual(many.instances);
    expect(instanceAt(state, 'module.ec2-instance-old.null_resource.server')).not.toHaveProperty(
      'dependencies',
    );
    expect(instanceAt(state, 'module.web[0].null_resource.server')?.dependencies).toEqual([
      'null_resource.solo',
    ]);
    expect(state.resources.map((r) => r.name).slice(1, 3)).toEqual(['lots', 'solo']);
  });

  it('moves a whole resource into a module', () => {
    const { state } = moveState(load(), 'null_resource.many', 'module.web[0].null_resource.many');
    const moved = resourceAt(state, 'module.web[0].null_resource.many');
    expect(moved?.module).toBe('module.web[0]');
    expect(moved?.instances).toHaveLength(3);
    expect(
      writeState(state).indexOf(
        '"module": "module.web[0]",\n      "mode": "managed",\n      "type": "null_resource",\n      "name": "many"',
      ),
    ).toBeGreaterThan(0);
  });

  it('moves a resource out of a module to the root, dropping the module key', () => {
    const { state } = moveState(
      load(),
      'module.ec2-instance-old.null_resource.server',
      'null_resource.server_old',
    );
    const moved = resourceAt(state, 'null_resource.server_old');
    expect(moved).toBeDefined();
    expect(moved).not.toHaveProperty('module');
  });

  it('refuses when a resource exists at the destination', () => {
    const error = refusal(() => moveState(load(), 'null_resource.many', 'null_resource.solo'));
    expect(error.reason).toBe('DestinationExists');
    expect(error.message).toBe(
      'Cannot move to null_resource.solo: there is already a resource at that address in the current state.',
    );
  });

  it('refuses to move a whole resource to an instance address', () => {
    const error = refusal(() => moveState(load(), 'null_resource.many', 'null_resource.lots[0]'));
    expect(error.reason).toBe('KindMismatch');
    expect(error.message).toContain(
      'the source is a whole resource (not a resource instance) so the target must also be a whole resource',
    );
  });

  it('refuses different types and different modes', () => {
    const types = refusal(() => moveState(load(), 'null_resource.solo', 'terraform_data.solo'));
    expect(types.reason).toBe('KindMismatch');
    expect(types.message).toBe(
      "Cannot move null_resource.solo to terraform_data.solo: resource types don't match.",
    );
    const modes = refusal(() =>
      moveState(load(), 'data.aws_caller_identity.current', 'aws_caller_identity.current'),
    );
    expect(modes.reason).toBe('KindMismatch');
    expect(modes.message).toContain('a data resource can be moved only to another data resource address');
    const managed = refusal(() => moveState(load(), 'null_resource.many', 'data.null_resource.many'));
    expect(managed.message).toContain(
      'a managed resource can be moved only to another managed resource address',
    );
  });

  it('refuses a resource that is not in the state', () => {
    const error = refusal(() => moveState(load(), 'null_resource.nope', 'null_resource.other'));
    expect(error.reason).toBe('AddressNotFound');
    expect(error.message).toBe(
      'Cannot move null_resource.nope: does not match anything in the current state.',
    );
  });
});

describe('moveState: instances', () => {
  it('re-keys one instance with its deposed object and leaves the sibling instance untouched', () => {
    const before = load();
    const sibling = instanceAt(before, 'null_resource.many[0]');
    const { state, moved } = moveState(before, 'null_resource.many[1]', 'null_resource.many[5]');
    expect(moved).toEqual([{ from: 'null_resource.many[1]', to: 'null_resource.many[5]' }]);
    expect(instanceAt(state, 'null_resource.many[0]')).toBe(sibling);
    expect(addresses(state).filter((a) => a.startsWith('null_resource.many'))).toEqual([
      'null_resource.many[0]',
      'null_resource.many[5]',
      'null_resource.many[5] (deposed 5f3e9a1b)',
    ]);
    const arrived = instanceAt(state, 'null_resource.many[5]');
    expect(arrived?.attributes).toEqual(instanceAt(before, 'null_resource.many[1]')?.attributes);
    // Its own dependencies do not name the moved address, so they stay.
    expect(arrived?.dependencies).toEqual(['null_resource.solo']);
  });

  it('treats an index-less source with a no-key instance as an instance move (aws_instance.foo -> aws_instance.bar[1])', () => {
    const before = load();
    const { state, moved } = moveState(before, 'null_resource.solo', 'null_resource.many[2]');
    expect(moved).toEqual([{ from: 'null_resource.solo', to: 'null_resource.many[2]' }]);
    expect(resourceAt(state, 'null_resource.solo')).toBeUndefined();
    const many = resourceAt(state, 'null_resource.many') as ResourceV4;
    expect(many.provider).toBe('provider["registry.terraform.io/hashicorp/null"].secondary');
    expect(many.instances.map((i) => [i.index_key, i.deposed ?? null])).toEqual([
      [0, null],
      [1, null],
      [1, '5f3e9a1b'],
      [2, null],
    ]);
  });

  it('clears dependencies on every current object touching the moved address and keeps them on deposed ones', () => {
    const { state } = moveState(load(), 'null_resource.solo', 'null_resource.many[2]');
    const many = resourceAt(state, 'null_resource.many') as ResourceV4;
    expect(many.instances.filter((i) => !i.deposed).map((i) => i.dependencies)).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
    expect(many.instances.find((i) => i.deposed)?.dependencies).toEqual(['null_resource.solo']);
    expect(instanceAt(state, 'module.web[1].null_resource.server')).not.toHaveProperty('dependencies');
    expect(instanceAt(state, 'terraform_data.watch')?.dependencies).toEqual([
      'module.ec2-instance.null_resource.server',
    ]);
  });

  it('moves an instance into a new resource, copying the provider and dropping the key', () => {
    const { state } = moveState(load(), 'null_resource.many[0]', 'module.web[0].null_resource.single');
    const single = resourceAt(state, 'module.web[0].null_resource.single') as ResourceV4;
    expect(single.provider).toBe('provider["registry.terraform.io/hashicorp/null"].secondary');
    expect(single.instances).toHaveLength(1);
    expect(single.instances[0]).not.toHaveProperty('index_key');
    expect(resourceAt(state, 'null_resource.many')?.instances.map((i) => i.index_key)).toEqual([1, 1]);
    const text = writeState(state);
    expect(text).toContain(
      '"module": "module.web[0]",\n      "mode": "managed",\n      "type": "null_resource",\n      "name": "single",\n      "provider": "provider[\\"registry.terraform.io/hashicorp/null\\"].secondary",',
    );
  });

  it('removes a source resource emptied by the move', () => {
    const first = moveState(
      load(),
      'module.ec2-instance.module.child.null_resource.disk["a"]',
      'null_resource.disk["a"]',
    );
    const second = moveState(
      first.state,
      'module.ec2-instance.module.child.null_resource.disk["b"]',
      'null_resource.disk["b"]',
    );
    expect(resourceAt(second.state, 'module.ec2-instance.module.child.null_resource.disk')).toBeUndefined();
    expect(resourceAt(second.state, 'null_resource.disk')?.instances.map((i) => i.index_key)).toEqual([
      'a',
      'b',
    ]);
    expect(second.state.serial).toBe(10);
  });

  it('refuses when an instance exists at the destination', () => {
    const error = refusal(() => moveState(load(), 'null_resource.many[0]', 'null_resource.many[1]'));
    expect(error.reason).toBe('DestinationExists');
    expect(error.message).toBe(
      'Cannot move to null_resource.many[1]: there is already a resource instance at that address in the current state.',
    );
  });

  it('refuses an instance move to a module', () => {
    const error = refusal(() => moveState(load(), 'null_resource.solo', 'module.solo'));
    expect(error.reason).toBe('KindMismatch');
    expect(error.message).toContain('the target must also be a resource instance');
  });

  it('refuses an instance that is not in the state', () => {
    const error = refusal(() => moveState(load(), 'null_resource.many[7]', 'null_resource.many[8]'));
    expect(error.reason).toBe('AddressNotFound');
    expect(error.message).toContain('does not contain null_resource.many[7]');
  });
});

describe('moveState: the result', () => {
  it('adds one to the serial and reuses lineage, outputs and check_results', () => {
    const before = load();
    const { state } = moveState(before, 'null_resource.many[1]', 'null_resource.many[5]');
    expect(state.serial).toBe(9);
    expect(state.lineage).toBe(before.lineage);
    expect(state.outputs).toBe(before.outputs);
    expect(state.check_results).toBe(before.check_results);
    expect(state.terraform_version).toBe(before.terraform_version);
  });

  it('never mutates the input and reuses every object it does not change', () => {
    const before = deepFreeze(load());
    const snapshot = JSON.stringify(before);
    const { state } = moveState(before, 'null_resource.many[1]', 'null_resource.many[5]');
    expect(JSON.stringify(before)).toBe(snapshot);
    expect(writeState(before)).toBe(TEXT);
    const untouched = [
      'module.web[0].null_resource.server',
      'data.aws_caller_identity.current',
      'terraform_data.watch',
    ];
    for (const address of untouched) expect(resourceAt(state, address)).toBe(resourceAt(before, address));
  });

  it('reads the fixture as Terraform wrote it', () => {
    expect(writeState(load())).toBe(TEXT);
  });
});
