/** Tag keys Understudy writes; IAM conditions in lib/ scope mutating calls by them. */
export const Tags = {
  target: 'understudy:target',
  execution: 'understudy:execution',
  role: 'understudy:role',
  retireAfter: 'understudy:retire-after',
} as const;

export type InstanceRole = 'candidate' | 'serving' | 'failed' | 'retired';

/** The state machine's own TimeoutSeconds (statemachine/replace.asl.json); a test keeps them equal. */
export const EXECUTION_TIMEOUT_SECONDS = 43_200;

/** A target lock outlives the longest possible run by this margin before another run may take it over. */
export const LOCK_LEASE_SECONDS = EXECUTION_TIMEOUT_SECONDS + 3_600;

/** SSM parameter names under the stack's prefix. */
export const parameterNames = (prefix: string) => ({
  target: (name: string) => `${prefix}/targets/${name}`,
  token: (instanceId: string) => `${prefix}/tokens/${instanceId}`,
  /** The approval gate's task token (SecureString), one per target: a target runs one replacement at a time. */
  approval: (target: string) => `${prefix}/approvals/${target}`,
  earlyEvent: (instanceId: string) => `${prefix}/events/${instanceId}`,
  /** The AMI id of the golden image Understudy builds for a target (`image.build`), written by Image Builder. */
  image: (target: string) => `${prefix}/images/${target}`,
});

/** S3 keys in the runs bucket. */
export const runKeys = {
  lock: (target: string) => `locks/${target}.json`,
  record: (target: string, executionName: string) => `runs/${target}/${executionName}.json`,
};

/** This release; written into the Terraform locks Understudy takes (a test keeps it equal to package.json). */
export const UNDERSTUDY_VERSION = '0.1.0';
