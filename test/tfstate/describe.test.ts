import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  addressesFromDescribe,
  instanceFromDescribe,
  volumesFromDescribe,
} from '../../lambdas/shared/tfstate/describe';
import { refusal } from './refusal';

const DIR = join(__dirname, '../fixtures/tfstate/reconcile');
type Json = Record<string, unknown>;
const json = (name: string): Json => JSON.parse(readFileSync(join(DIR, name), 'utf8')) as Json;

const describeInstances = () => json('v5-describe-instances.json');
/** The instance object inside describe-instances output, for tests that bend it. */
const bareInstance = (): Json => {
  const reservations = describeInstances().Reservations as { Instances: Json[] }[];
  const instance = reservations[0]?.Instances[0];
  if (!instance) throw new Error('fixture without an instance');
  return instance;
};
const withInstances = (...instances: Json[]) => ({
  Reservations: [{ ReservationId: 'r-0a7b6c5d4e3f21098', Instances: instances }],
});

describe('describe-instances output', () => {
  it('yields the one instance, with the CLI timestamps turned into Dates', () => {
    const instance = instanceFromDescribe(describeInstances());

    expect(instance.InstanceId).toBe('i-0f9e8d7c6b5a49382');
    expect(instance.LaunchTime).toEqual(new Date('2026-09-14T07:02:11Z'));
    expect(instance.BlockDeviceMappings?.[0]?.Ebs?.AttachTime).toEqual(new Date('2026-09-14T07:02:12Z'));
    expect(instance.NetworkInterfaces?.[0]?.Attachment?.AttachTime).toBeInstanceOf(Date);
  });

  it('keeps fields it does not know about', () => {
    const instance = instanceFromDescribe(describeInstances()) as Json;

    expect(instance.BootMode).toBe('uefi-preferred');
    expect(instance.NetworkPerformanceOptions).toEqual({ BandwidthWeighting: 'default' });
  });

  it('accepts a bare instance object and SDK Date values', () => {
    const bare = { ...bareInstance(), LaunchTime: new Date('2026-09-14T07:02:11Z') };

    const instance = instanceFromDescribe(bare);

    expect(instance.InstanceId).toBe('i-0f9e8d7c6b5a49382');
    expect(instance.LaunchTime).toEqual(new Date('2026-09-14T07:02:11Z'));
  });

  it('refuses output holding two instances, saying how to narrow it', () => {
    const error = refusal(() =>
      instanceFromDescribe(
        withInstances(bareInstance(), { ...bareInstance(), InstanceId: 'i-0aaaaaaaaaaaaaaa1' }),
        'new.json',
      ),
    );

    expect(error.reason).toBe('InvalidDescribeOutput');
    expect(error.message).toBe(
      'new.json is not usable describe-instances output: Reservations[].Instances: expected exactly one instance, found 2 (filter with --instance-ids)',
    );
  });

  it('refuses output holding no instance', () => {
    expect(refusal(() => instanceFromDescribe({ Reservations: [] })).message).toContain('found 0');
  });

  it('refuses an instance without InstanceId, naming the field', () => {
    const { InstanceId: _dropped, ...instance } = bareInstance();

    const error = refusal(() => instanceFromDescribe(withInstances(instance), 'new.json'));

    expect(error.reason).toBe('InvalidDescribeOutput');
    expect(error.message).toMatch(
      /^new\.json is not usable describe-instances output: Reservations\[0\]\.Instances\[0\]\.InstanceId: /,
    );
  });

  it('refuses a field of the wrong type, naming its path', () => {
    const instance = { ...bareInstance(), Placement: { AvailabilityZone: 5 } };

    expect(refusal(() => instanceFromDescribe(withInstances(instance))).message).toContain(
      'Reservations[0].Instances[0].Placement.AvailabilityZone: ',
    );
  });

  it('refuses a timestamp that is not one', () => {
    const instance = { ...bareInstance(), LaunchTime: 'yesterday' };

    expect(refusal(() => instanceFromDescribe(instance)).message).toContain(
      'LaunchTime: "yesterday" is not a timestamp',
    );
  });

  it('refuses something that is neither describe-instances output nor an instance', () => {
    const error = refusal(() => instanceFromDescribe(json('v5-describe-addresses.json'), 'addresses.json'));

    expect(error.message).toBe(
      'addresses.json is not usable describe-instances output: (top level): expected "Reservations" or an instance object with "InstanceId"',
    );
  });
});

describe('describe-addresses output', () => {
  it('yields every address', () => {
    const addresses = addressesFromDescribe(json('v6-describe-addresses.json'));

    expect(addresses.map((address) => address.AllocationId)).toEqual([
      'eipalloc-0b1e0000000000001',
      'eipalloc-0c3a0000000000002',
    ]);
    expect(addresses[0]).toMatchObject({
      AssociationId: 'eipassoc-0b1e00000000000b2',
      NetworkBorderGroup: 'us-east-1',
    });
  });

  it('refuses an empty list', () => {
    const error = refusal(() => addressesFromDescribe({ Addresses: [] }, 'eip.json'));

    expect(error.reason).toBe('InvalidDescribeOutput');
    expect(error.message).toBe(
      'eip.json is not usable describe-addresses output: Addresses: expected at least one address',
    );
  });

  it('refuses an address without an allocation id (EC2-Classic), naming the field', () => {
    const { AllocationId: _dropped, ...address } = (
      json('v5-describe-addresses.json').Addresses as Json[]
    )[0] as Json;

    expect(refusal(() => addressesFromDescribe({ Addresses: [address] })).message).toContain(
      'Addresses[0].AllocationId: ',
    );
  });
});

describe('describe-volumes output', () => {
  it('yields every volume with its creation time as a Date', () => {
    const volumes = volumesFromDescribe(json('v5-describe-volumes.json'));

    expect(volumes.map((volume) => [volume.VolumeId, volume.Size])).toEqual([
      ['vol-0b11d5555eeee6666', 30],
      ['vol-0b11d7777ffff8888', 100],
    ]);
    expect(volumes[0]?.CreateTime).toEqual(new Date('2026-09-14T07:02:11.902Z'));
  });

  it('refuses a size that is not a number, naming the field', () => {
    const volume = { ...((json('v5-describe-volumes.json').Volumes as Json[])[0] as Json), Size: '30' };

    const error = refusal(() => volumesFromDescribe({ Volumes: [volume] }, 'vols.json'));

    expect(error.reason).toBe('InvalidDescribeOutput');
    expect(error.message).toMatch(/^vols\.json is not usable describe-volumes output: Volumes\[0\]\.Size: /);
  });
});
