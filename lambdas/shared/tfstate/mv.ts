import {
  type Address,
  formatAddress,
  formatModulePath,
  type ModuleAddress,
  type ModuleStep,
  parseAddress,
  parseModulePath,
  parseResourceAddress,
  type ResourceAddress,
} from './address';
import { tfStateError } from './errors';
import { findResource } from './lookup';
import {
  compareInstances,
  compareResources,
  type IndexKey,
  type InstanceV4,
  nextSerial,
  type ResourceV4,
  type StateV4,
} from './state';

/**
 * `terraform state mv SOURCE DESTINATION` on one state (`internal/command/state_mv.go`): the same
 * expansion of the source, the same refusals, the same clearing of `dependencies`, one new serial.
 * Every refusal is thrown before anything is built; the input state is never mutated and every object
 * the move does not touch is reused as is.
 */

export interface MoveResult {
  readonly state: StateV4;
  readonly moved: readonly { readonly from: string; readonly to: string }[];
}

/** Decides whether a `dependencies` entry (a config resource address) touches a moved address. */
type DependencyTest = (dependency: ResourceAddress) => boolean;

const moduleNames = (steps: readonly ModuleStep[]): string => steps.map((step) => step.name).join('.');

/** `ConfigResource.String()` compared by value: module names without keys, mode, type, name. */
const configKey = (address: ResourceAddress): string =>
  `${moduleNames(address.module)}|${address.mode}|${address.type}|${address.name}`;

const sameStep = (a: ModuleStep, b: ModuleStep): boolean => a.name === b.name && a.key === b.key;

export function moveState(state: StateV4, from: string, to: string): MoveResult {
  const source = parseAddress(from);
  const destination = parseAddress(to);
  if (source.kind === 'module') return moveModule(state, source, destination);

  const resource = findResource(state, source);
  if (!resource) {
    throw tfStateError(
      'AddressNotFound',
      `Cannot move ${formatAddress(source)}: does not match anything in the current state.`,
    );
  }
  // An index-less source naming a resource that has a no-key instance means that instance, which is
  // what lets `aws_instance.foo` move to `aws_instance.bar[1]`.
  if (source.key === undefined && !resource.instances.some((instance) => instance.index_key === undefined)) {
    return moveResource(state, source, resource, destination);
  }
  return moveInstance(state, source, resource, destination);
}

function moveModule(state: StateV4, source: ModuleAddress, destination: Address): MoveResult {
  const sourceText = formatModulePath(source.module);
  if (destination.kind !== 'module') {
    throw tfStateError(
      'KindMismatch',
      `Cannot move ${sourceText} to ${formatAddress(destination)}: the target must also be a module.`,
    );
  }
  const destinationText = formatModulePath(destination.module);

  // The source module instance and every descendant: module strings equal to the source or extending
  // it by whole steps (confirmed on the parsed path, so a key that merely starts alike never matches).
  const renamed = new Map<string, string>();
  const existing = new Set<string>();
  for (const resource of state.resources) {
    const module = resource.module ?? '';
    existing.add(module);
    if (renamed.has(module)) continue;
    if (module === sourceText || (module.startsWith(`${sourceText}.`) && isWithin(module, source.module))) {
      renamed.set(module, destinationText + module.slice(sourceText.length));
    }
  }
  if (renamed.size === 0) {
    throw tfStateError(
      'AddressNotFound',
      `Cannot move ${sourceText}: does not match anything in the current state.`,
    );
  }
  for (const target of renamed.values()) {
    if (existing.has(target)) {
      throw tfStateError(
        'DestinationExists',
        `Error moving state: destination module already exists (${target} is already in the state).`,
      );
    }
  }

  const resources = state.resources.map((resource) => {
    const target = renamed.get(resource.module ?? '');
    return target === undefined ? resource : { ...resource, module: target };
  });
  resources.sort(compareResources);

  // `ModuleInstance.TargetContains(ConfigResource)`: a module address contains a dependency only when
  // none of its steps has a key and the dependency's module names start with its names.
  const containers = [...renamed.keys()]
    .map(parseModulePath)
    .filter((steps) => steps.every((step) => step.key === undefined))
    .map((steps) => steps.map((step) => step.name));
  const touches: DependencyTest = (dependency) =>
    containers.some(
      (names) =>
        dependency.module.length >= names.length &&
        names.every((name, i) => dependency.module[i]?.name === name),
    );

  const moved = [...renamed.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([fromModule, toModule]) => ({ from: fromModule, to: toModule }));
  return finish(state, clearDependencies(resources, touches), moved);
}

const isWithin = (module: string, prefix: readonly ModuleStep[]): boolean => {
  const steps = parseModulePath(module);
  return steps.length > prefix.length && prefix.every((step, i) => sameStep(step, steps[i] as ModuleStep));
};

function checkKinds(from: ResourceAddress, to: ResourceAddress): void {
  const pair = `${formatAddress(from)} to ${formatAddress(to)}`;
  if (from.mode !== to.mode) {
    throw tfStateError(
      'KindMismatch',
      `Cannot move ${pair}: a ${from.mode} resource can be moved only to another ${from.mode} resource address.`,
    );
  }
  if (from.type !== to.type) {
    throw tfStateError('KindMismatch', `Cannot move ${pair}: resource types don't match.`);
  }
}

/** The state's `module` field for a module path: absent for the root module. */
const placed = (resource: ResourceV4, module: readonly ModuleStep[], name: string): ResourceV4 => {
  const { module: _old, ...rest } = resource;
  const text = formatModulePath(module);
  return text === '' ? { ...rest, name } : { module: text, ...rest, name };
};

function moveResource(
  state: StateV4,
  source: ResourceAddress,
  resource: ResourceV4,
  destination: Address,
): MoveResult {
  if (destination.kind !== 'resource' || destination.key !== undefined) {
    throw tfStateError(
      'KindMismatch',
      `Cannot move ${formatAddress(source)} to ${formatAddress(destination)}: the source is a whole resource (not a resource instance) so the target must also be a whole resource.`,
    );
  }
  checkKinds(source, destination);
  if (findResource(state, destination)) {
    throw tfStateError(
      'DestinationExists',
      `Cannot move to ${formatAddress(destination)}: there is already a resource at that address in the current state.`,
    );
  }
  const renamed = placed(resource, destination.module, destination.name);
  const resources = state.resources.map((candidate) => (candidate === resource ? renamed : candidate));
  resources.sort(compareResources);
  const sourceKey = configKey(source);
  return finish(
    state,
    clearDependencies(resources, (dependency) => configKey(dependency) === sourceKey),
    [{ from: formatAddress(source), to: formatAddress(destination) }],
  );
}

const withKey = (instance: InstanceV4, key: IndexKey | undefined): InstanceV4 => {
  const { index_key: _old, ...rest } = instance;
  return key === undefined ? rest : { index_key: key, ...rest };
};

function moveInstance(
  state: StateV4,
  source: ResourceAddress,
  resource: ResourceV4,
  destination: Address,
): MoveResult {
  const sourceText = formatAddress(source);
  if (destination.kind !== 'resource') {
    throw tfStateError(
      'KindMismatch',
      `Cannot move ${sourceText} to ${formatAddress(destination)}: the target must also be a resource instance.`,
    );
  }
  // Current and deposed objects of the instance travel together, as `rs.Instances[key]` does.
  const objects = resource.instances.filter((instance) => instance.index_key === source.key);
  if (objects.length === 0) {
    throw tfStateError(
      'AddressNotFound',
      `Cannot move ${sourceText}: the current state does not contain ${sourceText}.`,
    );
  }
  checkKinds(source, destination);
  const targetResource = findResource(state, destination);
  const sameResource = targetResource === resource;
  if (targetResource?.instances.some((instance) => instance.index_key === destination.key)) {
    throw tfStateError(
      'DestinationExists',
      `Cannot move to ${formatAddress(destination)}: there is already a resource instance at that address in the current state.`,
    );
  }

  const arriving = objects.map((instance) => withKey(instance, destination.key));
  const remaining = resource.instances.filter((instance) => instance.index_key !== source.key);
  const replacements = new Map<ResourceV4, ResourceV4 | null>();
  if (sameResource) {
    replacements.set(resource, {
      ...resource,
      instances: [...remaining, ...arriving].sort(compareInstances),
    });
  } else {
    // An emptied source resource leaves the state (`RemoveResourceIfEmpty`).
    replacements.set(resource, remaining.length === 0 ? null : { ...resource, instances: remaining });
    if (targetResource) {
      replacements.set(targetResource, {
        ...targetResource,
        instances: [...targetResource.instances, ...arriving].sort(compareInstances),
      });
    }
  }

  const resources: ResourceV4[] = [];
  for (const candidate of state.resources) {
    const replacement = replacements.get(candidate);
    if (replacement === undefined) resources.push(candidate);
    else if (replacement !== null) resources.push(replacement);
  }
  if (!targetResource) {
    // A new resource takes the source's provider configuration, as if the whole resource had moved.
    const module = formatModulePath(destination.module);
    resources.push({
      ...(module === '' ? {} : { module }),
      mode: destination.mode,
      type: destination.type,
      name: destination.name,
      provider: resource.provider,
      instances: arriving.sort(compareInstances),
    });
  }
  resources.sort(compareResources);

  const sourceKey = configKey(source);
  return finish(
    state,
    clearDependencies(resources, (dependency) => configKey(dependency) === sourceKey),
    [{ from: sourceText, to: formatAddress(destination) }],
  );
}

/**
 * Terraform drops the whole `dependencies` list of every current object that names, or is named by,
 * a moved address, so that the next apply records them afresh. Deposed objects keep theirs.
 */
function clearDependencies(resources: ResourceV4[], touches: DependencyTest): ResourceV4[] {
  const verdicts = new Map<string, boolean>();
  const touched = (dependency: string): boolean => {
    let verdict = verdicts.get(dependency);
    if (verdict === undefined) {
      verdict = touchesParsed(dependency, touches);
      verdicts.set(dependency, verdict);
    }
    return verdict;
  };
  return resources.map((resource) => {
    let instances: InstanceV4[] | undefined;
    resource.instances.forEach((instance, i) => {
      if (instance.deposed !== undefined || !instance.dependencies?.some(touched)) return;
      instances ??= [...resource.instances];
      const { dependencies: _cleared, ...rest } = instance;
      instances[i] = rest;
    });
    return instances ? { ...resource, instances } : resource;
  });
}

const touchesParsed = (dependency: string, touches: DependencyTest): boolean => {
  let address: ResourceAddress;
  try {
    address = parseResourceAddress(dependency);
  } catch {
    // Terraform would refuse to load such a state; here an unreadable entry is simply not a match.
    return false;
  }
  return touches(address);
};

const finish = (
  state: StateV4,
  resources: ResourceV4[],
  moved: { from: string; to: string }[],
): MoveResult => ({
  state: { ...state, serial: nextSerial(state.serial), resources },
  moved,
});
