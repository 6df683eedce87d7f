import { formatIndexKey, formatModulePath, type ResourceAddress } from './address';
import type { IndexKey, InstanceV4, ResourceV4, StateV4 } from './state';

/**
 * Lookups by address. The state's `module` strings are Terraform's canonical spelling
 * (`ModuleInstance.String()`), so comparing them with the formatted address is exact and avoids parsing
 * every resource of a large state.
 */

export const sameKey = (a: IndexKey | undefined, b: IndexKey | undefined): boolean => a === b;

export function findResource(state: StateV4, address: ResourceAddress): ResourceV4 | undefined {
  const module = formatModulePath(address.module);
  return state.resources.find(
    (resource) =>
      resource.name === address.name &&
      resource.type === address.type &&
      resource.mode === address.mode &&
      (resource.module ?? '') === module,
  );
}

export function findInstance(
  state: StateV4,
  address: ResourceAddress,
): { resource: ResourceV4; instance: InstanceV4 } | undefined {
  const resource = findResource(state, address);
  if (!resource) return undefined;
  const instance = resource.instances.find(
    (candidate) => candidate.deposed === undefined && sameKey(candidate.index_key, address.key),
  );
  return instance ? { resource, instance } : undefined;
}

/** The address `terraform state list` prints for this object, e.g. `module.a[0].aws_instance.web["x"]`. */
export function instanceAddressOf(resource: ResourceV4, instance: InstanceV4): string {
  const module = resource.module ? `${resource.module}.` : '';
  const data = resource.mode === 'data' ? 'data.' : '';
  const key = instance.index_key === undefined ? '' : formatIndexKey(instance.index_key);
  return `${module}${data}${resource.type}.${resource.name}${key}`;
}
