import type { Instance } from '@aws-sdk/client-ec2';
import type { ProbeVerdict } from '../shared/probe';
import type { Plan } from '../shared/schemas';

/** The Elastic IP as preflight read it: it is on `instanceId`, the box serving now. */
export interface ServingAddress {
  readonly instanceId: string;
  readonly publicIp: string;
  readonly associationId?: string;
}

/**
 * What every plan says about the box serving now, its Elastic IP and how the service answered before
 * the run: the replacement's old box and the rollback's newer box are described alike.
 */
export const servingPlanFields = (
  serving: Instance,
  eip: ServingAddress,
  allocationId: string,
  baseline: ProbeVerdict,
): Pick<Plan, 'old' | 'eip' | 'baseline'> => ({
  old: {
    instanceId: eip.instanceId,
    // A replacement refuses a box without these before it plans; a rollback plans with what is left.
    imageId: serving.ImageId ?? 'unknown',
    instanceType: serving.InstanceType ?? 'unknown',
    subnetId: serving.SubnetId ?? 'unknown',
    ...(serving.PrivateIpAddress ? { privateIpAddress: serving.PrivateIpAddress } : {}),
    ...(serving.Placement?.AvailabilityZone ? { availabilityZone: serving.Placement.AvailabilityZone } : {}),
  },
  eip: {
    allocationId,
    publicIp: eip.publicIp,
    ...(eip.associationId ? { associationId: eip.associationId } : {}),
  },
  baseline: {
    healthy: baseline.healthy,
    detail: baseline.detail,
    ...(baseline.status !== undefined ? { status: baseline.status } : {}),
  },
});
