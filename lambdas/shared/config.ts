import { X509Certificate } from 'node:crypto';
import { z } from 'zod';

/**
 * `understudy.config.json`: read by the CDK app at synth time and, per target, by the workflow at run
 * time (the stack stores each target's block in an SSM parameter). Every value that can reach a shell
 * command, a tag or an S3 key is held to a strict pattern here, so it is refused before anything runs.
 */

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const URL_PATH = /^\/[A-Za-z0-9._~\-/]*$/;
// The local part starts with a letter or digit: certbot reads `-m -x@example.com` as an option, not an address.
const EMAIL = /^[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
// One line of printable text: `grep -F` reads each line of its pattern as a pattern of its own, so a
// newline (an empty line matches every body) would pass the local check whatever the app answers.
const PRINTABLE_LINE = /^\P{Cc}+$/u;
const TARGET_NAME = /^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/;
const SSM_PARAMETER_NAME = /^\/[A-Za-z0-9_.\-/]{1,1010}$/;

export const TargetNameSchema = z
  .string()
  .regex(
    TARGET_NAME,
    'use 1-32 lowercase letters, digits or dashes, starting and ending with a letter or digit',
  );

export const ImageIdSchema = z
  .string()
  .regex(/^ami-[0-9a-f]{8,17}$/, 'use an AMI id such as ami-0123456789abcdef0');

/**
 * The golden image Understudy builds for a target with EC2 Image Builder (lib/golden-image.ts): nginx,
 * certbot with its nginx and Route 53 plugins, the SSM agent and the readiness agent on a current
 * Debian or Amazon Linux. Its AMI id lands in an SSM parameter the stack names.
 */
export const ImageBuildSchema = z
  .object({
    /** The parent image, always the latest release from AWS's public SSM parameter. */
    parentImage: z.enum(['al2023', 'debian-12'], { error: 'use "al2023" or "debian-12"' }).default('al2023'),
    architecture: z.enum(['x86_64', 'arm64'], { error: 'use "x86_64" or "arm64"' }).default('x86_64'),
    /** Instance types the build may use; match the architecture. */
    instanceTypes: z
      .array(z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9]+$/, 'use an instance type such as t3.small'))
      .min(1)
      .max(5)
      .optional(),
    /** An EventBridge Scheduler cron for rebuilds (e.g. weekly patches); without it, builds run on demand. */
    scheduleCron: z
      .string()
      .regex(/^cron\([^()]{9,100}\)$/, 'use a schedule expression such as cron(0 3 ? * SUN *)')
      .optional(),
    /**
     * How many of the newest images (AMIs and their snapshots) the image lifecycle policy keeps; older
     * ones are deleted unless an instance was launched from them recently or they carry understudy:keep=true.
     */
    keepImages: z
      .number({ error: 'use a whole number of images from 1 to 1000' })
      .int('use a whole number of images from 1 to 1000')
      .min(1, 'keep at least 1 image: the newest is the one the workflow launches')
      .max(1000, 'Image Builder counts up to 1000 images')
      .default(5),
  })
  .strict();

export const ImageSourceSchema = z
  .object({
    imageId: ImageIdSchema.optional(),
    ssmParameter: z
      .string()
      .regex(SSM_PARAMETER_NAME, 'use a parameter name starting with "/", e.g. /golden/web/ami')
      .optional(),
    build: ImageBuildSchema.optional(),
  })
  .strict()
  .refine((s) => [s.imageId, s.ssmParameter, s.build].filter((source) => source !== undefined).length === 1, {
    message:
      'set exactly one of imageId, ssmParameter (bring your own image) or build (Understudy builds it)',
  });

export const ReadinessSchema = z
  .object({
    /** Upper bound from launch to the agent's final event. */
    timeoutSeconds: z.number().int().min(60).max(86_400).default(900),
    /** Longest silence allowed from the agent; it sends progress every 30 s once started. */
    heartbeatSeconds: z.number().int().min(60).max(86_400).default(300),
    /** cloud-init exit 2 means "recoverable errors"; whether that is good enough is the target's call. */
    onRecoverableErrors: z.enum(['fail', 'accept']).default('fail'),
  })
  .strict()
  .refine((r) => r.heartbeatSeconds < r.timeoutSeconds, {
    message: 'heartbeatSeconds must be less than timeoutSeconds',
    path: ['heartbeatSeconds'],
  });

export const TLS_MODES = ['restore', 'dns-01', 'http-01', 'none'] as const;
export type TlsMode = (typeof TLS_MODES)[number];

export const TlsSchema = z
  .object({
    /**
     * `restore`: the old box's live certificate, key and renewal config move to the new box before the
     * switch (no certificate is requested). `dns-01`: certbot with the Route 53 plugin on the new box
     * before the switch. `http-01`: certbot after the switch (the manual procedure's order, the
     * fallback). `none`: plain HTTP. Left out: `restore` when the old box serves a valid certificate
     * (preflight checks), otherwise the run is refused until a mode is chosen.
     */
    mode: z.enum(TLS_MODES, { error: 'use "restore", "dns-01", "http-01" or "none"' }).optional(),
    email: z.string().regex(EMAIL, 'use a plain e-mail address for the ACME account').optional(),
    /** dns-01: the Route 53 hosted zone of the domain; the instance role may change only its _acme-challenge record. */
    hostedZoneId: z
      .string()
      .regex(/^Z[A-Z0-9]{1,32}$/, 'use the hosted zone id, such as Z0123456789ABCDEFGHIJ')
      .optional(),
  })
  .strict()
  .refine((t) => (t.mode !== 'http-01' && t.mode !== 'dns-01') || t.email !== undefined, {
    message: 'http-01 and dns-01 need an email for the ACME account',
    path: ['email'],
  })
  .refine((t) => t.mode !== 'dns-01' || t.hostedZoneId !== undefined, {
    message: "dns-01 needs the domain's Route 53 hostedZoneId",
    path: ['hostedZoneId'],
  });

export const HealthSchema = z
  .object({
    path: z.string().regex(URL_PATH, 'use an absolute path of plain characters, e.g. /healthz').default('/'),
    expectStatus: z.number().int().min(100).max(599).default(200),
    /** Substring the body must contain. */
    bodyContains: z
      .string()
      .min(1)
      .max(256)
      .regex(
        PRINTABLE_LINE,
        'use one line of printable text, without tabs, newlines or other control characters',
      )
      .optional(),
    consecutiveSuccesses: z.number().int().min(1).max(50).default(3),
    intervalSeconds: z.number().int().min(1).max(60).default(5),
    deadlineSeconds: z.number().int().min(10).max(3600).default(300),
    requestTimeoutSeconds: z.number().int().min(1).max(60).default(5),
    bakeSeconds: z.number().int().min(0).max(86_400).default(300),
    bakeFailureThreshold: z.number().int().min(1).max(100).default(3),
    certificateMinDaysLeft: z.number().int().min(0).max(365).default(14),
  })
  .strict();

export const RollbackSchema = z
  .object({
    /** How long the old box stays stopped (not terminated) after a successful replacement. */
    windowHours: z
      .number()
      .min(0)
      .max(24 * 90)
      .default(24),
    /** What happens to a candidate that failed. */
    failedCandidate: z.enum(['stop', 'terminate']).default('stop'),
  })
  .strict();

/**
 * What happens to what a target's runs leave behind, beyond the rollback window of retired boxes.
 * Leave it out to keep failed candidates until they are removed by hand.
 */
export const RetentionSchema = z
  .object({
    /**
     * A failed candidate that was stopped (`rollback.failedCandidate: "stop"`, kept for a post-mortem)
     * is terminated by the target's next successful run once it is older than this many days.
     */
    failedCandidateDays: z.number().int().min(1).max(3650).optional(),
  })
  .strict();

/**
 * Where the target's Terraform state lives and which resource is the server, so a replacement can bring
 * the state back in sync (design §4). Mirrors the S3 backend's settings; leave it out when the server is
 * not managed by Terraform.
 */
export const TerraformSchema = z
  .object({
    /** The backend's `bucket` and `key`, as `s3://<bucket>/<key>`. */
    state: z
      .string()
      .max(1100)
      .regex(
        /^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/(?!\/)(?!.*\/\/)[A-Za-z0-9!_.*'()/:=@+-]*[A-Za-z0-9!_.*'():=@+-]$/,
        'use s3://<bucket>/<key> with the backend\'s bucket and key (the key must not start or end with "/" or contain "//")',
      ),
    /** The Terraform workspace; other than `default`, the object is `<workspaceKeyPrefix>/<workspace>/<key>`. */
    workspace: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,90}$/, 'use the workspace name: letters, digits, "_" or "-"')
      .default('default'),
    workspaceKeyPrefix: z
      .string()
      .regex(
        /^(?!\/)[A-Za-z0-9!_.*'():=@+/-]{0,200}(?<!\/)$/,
        'use the backend\'s workspace_key_prefix (default "env:"), without a leading or trailing "/"',
      )
      .default('env:'),
    /** The `aws_instance` address, e.g. `module.web.aws_instance.this` or `aws_instance.web[0]`. */
    instanceAddress: z
      .string()
      .max(512)
      .regex(
        /^(module\.[A-Za-z_][A-Za-z0-9_-]*(\[(\d+|"[^"\\]*")\])?\.)*aws_instance\.[A-Za-z_][A-Za-z0-9_-]*(\[(\d+|"[^"\\]*")\])?$/,
        'use the Terraform address of the aws_instance, e.g. module.web.aws_instance.this or aws_instance.web["blue"]',
      ),
    /** The backend's `region`, when the bucket and table are not in the stack's region. */
    region: z
      .string()
      .regex(/^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$/, 'use an AWS region name such as eu-west-1')
      .optional(),
    /** `use_lockfile` of the backend: take the `<key>.tflock` object lock (Terraform 1.10+). */
    useLockfile: z.boolean().default(true),
    /** `dynamodb_table` of the backend: take its lock item and keep its `-md5` digest in step. */
    dynamodbTable: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{3,255}$/, 'use the DynamoDB table name of the backend')
      .optional(),
    /** How long to wait for a lock someone else holds (a running `terraform apply`), like `-lock-timeout`. */
    lockTimeoutSeconds: z.number().int().min(0).max(600).default(120),
    /** The KMS key the state bucket encrypts with (SSE-KMS), so the workflow may read and write it. */
    kmsKeyArn: z
      .string()
      .regex(
        /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/,
        'use the full key ARN, arn:aws:kms:<region>:<account>:key/<id>',
      )
      .optional(),
  })
  .strict()
  .refine((t) => t.useLockfile || t.dynamodbTable !== undefined, {
    message: 'take at least one lock like the backend does: keep useLockfile true or set dynamodbTable',
    path: ['useLockfile'],
  });

/**
 * Triggers (issue 6): what, besides an operator, may start a replacement of a target. Each automatic
 * trigger is opt-in; lib/triggers.ts deploys the rules and schedules, lambdas/trigger turns their events
 * into executions, and preflight holds them to `maintenanceWindows` (lambdas/shared/window.ts).
 */
export const TRIGGER_KINDS = ['imageParameter', 'imageBuilder', 'schedule', 'selfHeal'] as const;
export type TriggerKind = (typeof TRIGGER_KINDS)[number];

export const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

const TIME_OF_DAY = /^([01]\d|2[0-3]):[0-5]\d$/;

/** An IANA zone the runtime knows (Scheduler and the window check read the same names). */
const isTimeZone = (zone: string): boolean => {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
};

export const TimeZoneSchema = z
  .string()
  .max(64)
  .refine(isTimeZone, { message: 'use an IANA time zone such as UTC or Europe/Berlin' });

/**
 * A weekly window: on each of `days`, from `start` to `end` local time in `timezone`. An `end` at or
 * before `start` runs past midnight into the next day (it still belongs to the day it started on).
 */
export const MaintenanceWindowSchema = z
  .object({
    days: z
      .array(z.enum(WEEKDAYS, { error: 'use mon, tue, wed, thu, fri, sat or sun' }))
      .min(1, 'name at least one day')
      .max(7),
    start: z.string().regex(TIME_OF_DAY, 'use a 24-hour time such as 02:00'),
    end: z.string().regex(TIME_OF_DAY, 'use a 24-hour time such as 06:00'),
    timezone: TimeZoneSchema.default('UTC'),
  })
  .strict()
  .refine((w) => w.start !== w.end, {
    message: 'end must differ from start (a window of no length would refuse every trigger)',
    path: ['end'],
  });
export type MaintenanceWindow = z.infer<typeof MaintenanceWindowSchema>;

export const TriggersSchema = z
  .object({
    /** A Create or Update of the target's image parameter (`image.ssmParameter` or the built image's). */
    imageParameter: z.boolean().default(false),
    /** An image of the target's Image Builder pipeline becoming AVAILABLE (`image.build` only). */
    imageBuilder: z.boolean().default(false),
    /** An EventBridge Scheduler schedule that replaces the box with the configured image. */
    schedule: z
      .object({
        expression: z
          .string()
          .regex(
            /^(cron\([^()]{9,100}\)|rate\([1-9]\d{0,3} (minute|minutes|hour|hours|day|days)\))$/,
            'use a schedule expression such as cron(0 3 ? * SUN *) or rate(7 days)',
          ),
        timezone: TimeZoneSchema.default('UTC'),
      })
      .strict()
      .optional(),
    /**
     * Replace the box when its EC2 status checks have failed for `impairedMinutes` (checked every 5
     * minutes on whichever instance holds the Elastic IP at that moment).
     */
    selfHeal: z
      .object({
        impairedMinutes: z.number().int().min(5).max(1440).default(10),
        /** A broken box is replaced at once by default; true holds self-healing to the windows too. */
        onlyInMaintenanceWindows: z.boolean().default(false),
      })
      .strict()
      .optional(),
    /** When set, automatic triggers outside every window are deferred to the next opening (preflight refuses any that still arrive outside). */
    maintenanceWindows: z.array(MaintenanceWindowSchema).min(1).max(10).optional(),
  })
  .strict();
export type TriggersConfig = z.infer<typeof TriggersSchema>;

/** Cross-field rules of a target's triggers, reported under `path` (e.g. targets[0].triggers). */
const checkTriggers = (target: TargetConfig, path: (string | number)[], ctx: z.RefinementCtx): void => {
  const triggers = target.triggers;
  if (!triggers) return;
  const { ssmParameter, build } = target.image;
  if (triggers.imageParameter && ssmParameter === undefined && build === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: [...path, 'imageParameter'],
      message: 'needs an image parameter to watch: set image.ssmParameter or image.build',
    });
  }
  if (triggers.imageBuilder && build === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: [...path, 'imageBuilder'],
      message: 'needs the image pipeline Understudy builds: set image.build',
    });
  }
  // restore reads the certificate on the old box through SSM, which a box with failing status checks
  // rarely answers: every self-healing run would be refused by preflight.
  if (triggers.selfHeal && (target.tls.mode === undefined || target.tls.mode === 'restore')) {
    ctx.addIssue({
      code: 'custom',
      path: [...path, 'selfHeal'],
      message:
        'a self-healing run cannot restore the certificate from a broken box: set tls.mode to "dns-01", "http-01" or "none"',
    });
  }
};

/**
 * Operator-provided shell run through SSM Run Command around the switch, e.g. stopping queue workers on
 * the old box and starting them on the new one so singleton work never runs twice. These lines are
 * shell by design and run as given (under bash with `set -euo pipefail`): validation only keeps each
 * one a single printable line of bounded length, so a line cannot smuggle in another command through a
 * newline or a NUL that a reviewer of the config would not see.
 */
const HookLineSchema = z
  .string()
  .min(1)
  .max(1024)
  .regex(
    PRINTABLE_LINE,
    'use one line of printable text, without tabs, newlines or other control characters',
  );
const HookLinesSchema = z.array(HookLineSchema).min(1).max(20);

export const HooksSchema = z
  .object({
    /** On the new box before the switch; a failure rolls back with nothing switched. */
    beforeSwitch: z.object({ newBox: HookLinesSchema }).strict().optional(),
    /**
     * Once the probe and bake passed: the old box's lines first, then the new box's. A failure rolls back
     * like a failed probe (the new box may be serving without its workers); lines that already ran are
     * not undone.
     */
    afterSwitch: z
      .object({ oldBox: HookLinesSchema.optional(), newBox: HookLinesSchema.optional() })
      .strict()
      .refine((a) => a.oldBox !== undefined || a.newBox !== undefined, {
        message: 'give oldBox or newBox commands, or leave afterSwitch out',
      })
      .optional(),
  })
  .strict();

/** A human's go-ahead before the switch, answered with `understudy approve|reject <target>`. */
export const ApprovalSchema = z
  .object({
    required: z.boolean(),
    /** Unanswered this long, the run rolls back; below the execution's own 12-hour limit. */
    timeoutSeconds: z.number().int().min(60).max(21_600).default(3_600),
  })
  .strict();

export const TargetSchema = z
  .object({
    name: TargetNameSchema,
    /** The Elastic IP that fronts the service. */
    allocationId: z
      .string()
      .regex(/^eipalloc-[0-9a-f]{8,17}$/, 'use an allocation id such as eipalloc-0123abcd'),
    domain: z.string().regex(HOSTNAME, 'use a lowercase DNS name such as www.example.com'),
    image: ImageSourceSchema,
    /** Extra EBS volumes or instance store: refused unless the new box may start with fresh ones. */
    dataVolumes: z.enum(['refuse', 'fresh']).default('refuse'),
    readiness: ReadinessSchema.default({
      timeoutSeconds: 900,
      heartbeatSeconds: 300,
      onRecoverableErrors: 'fail',
    }),
    tls: TlsSchema.default({}),
    health: HealthSchema.default(HealthSchema.parse({})),
    rollback: RollbackSchema.default({ windowHours: 24, failedCandidate: 'stop' }),
    retention: RetentionSchema.optional(),
    terraform: TerraformSchema.optional(),
    triggers: TriggersSchema.optional(),
    /** Labels that select targets into fleet groups (`groups[].targets: { tag: ... }`); not EC2 tags. */
    tags: z
      .record(
        z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'use 1-64 letters, digits, "_", ".", ":" or "-"'),
        z.string().regex(/^[A-Za-z0-9_.:-]{0,64}$/, 'use up to 64 letters, digits, "_", ".", ":" or "-"'),
      )
      .optional(),
    hooks: HooksSchema.optional(),
    approval: ApprovalSchema.optional(),
  })
  .strict();

export const NotificationsSchema = z
  .object({
    emails: z.array(z.string().regex(EMAIL, 'use a plain e-mail address')).max(20).default([]),
  })
  .strict();

/**
 * Fleet waves (issue 6): a named set of targets the fleet state machine replaces, at most
 * `maxConcurrency` at a time, failing once more than `toleratedFailurePercentage` of them failed. The
 * set is a list of target names, or every target whose config `tags` carry `tag.key` = `tag.value`
 * (config labels, resolved from this file when the run starts, not EC2 tags read at run time).
 */
export const GroupSchema = z
  .object({
    name: TargetNameSchema,
    targets: z.union(
      [
        z.array(TargetNameSchema).min(1, 'name at least one target').max(100),
        z
          .object({ tag: z.object({ key: z.string().min(1).max(64), value: z.string().max(64) }).strict() })
          .strict(),
      ],
      { error: 'use a list of target names or { "tag": { "key": ..., "value": ... } }' },
    ),
    /** How many targets are replaced at the same time (the size of a wave). */
    maxConcurrency: z.number().int('use a whole number').min(1).max(100).default(1),
    /** The fleet fails once more than this share of its targets failed; 0 stops at the first failure. */
    toleratedFailurePercentage: z.number().min(0).max(100).default(0),
  })
  .strict();
export type GroupConfig = z.infer<typeof GroupSchema>;

export interface GroupedConfig {
  readonly targets: readonly { readonly name: string; readonly tags?: Readonly<Record<string, string>> }[];
  readonly groups?: readonly GroupConfig[];
}

/** The target names a group selects: the listed order, or config order for a tag. */
export const groupTargets = (config: GroupedConfig, group: GroupConfig): string[] => {
  const selector = group.targets;
  if (Array.isArray(selector)) return [...selector];
  const { key, value } = (selector as { tag: { key: string; value: string } }).tag;
  return config.targets.filter((t) => t.tags?.[key] === value).map((t) => t.name);
};

/** An issue at `<list>[i].name` for every entry whose name an earlier entry already has. */
const flagDuplicateNames = (
  entries: readonly { readonly name: string }[],
  list: 'targets' | 'groups',
  what: 'target' | 'group',
  ctx: z.RefinementCtx,
): void => {
  const seen = new Set<string>();
  entries.forEach((entry, i) => {
    if (seen.has(entry.name)) {
      ctx.addIssue({
        code: 'custom',
        path: [list, i, 'name'],
        message: `duplicate ${what} name "${entry.name}"`,
      });
    }
    seen.add(entry.name);
  });
};

/** Every group's targets are configured, its name is unique, and a tag selects at least one target. */
const checkGroups = (config: GroupedConfig, ctx: z.RefinementCtx): void => {
  const names = new Set(config.targets.map((t) => t.name));
  flagDuplicateNames(config.groups ?? [], 'groups', 'group', ctx);
  (config.groups ?? []).forEach((group, i) => {
    const selector = group.targets;
    if (Array.isArray(selector)) {
      selector.forEach((name, j) => {
        if (!names.has(name)) {
          ctx.addIssue({
            code: 'custom',
            path: ['groups', i, 'targets', j],
            message: `no target "${name}": declare it under targets or remove it from the group`,
          });
        }
      });
    } else if (groupTargets(config, group).length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['groups', i, 'targets', 'tag'],
        message: 'no target carries this tag in its tags: tag at least one target or fix the selector',
      });
    }
  });
};

const REGION = /^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$/;

/** An RSA certificate as PEM text, the form AWS publishes its instance identity certificates in. */
const isRsaCertificate = (pem: string): boolean => {
  try {
    const key = new X509Certificate(pem).publicKey;
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    return key.asymmetricKeyType === 'rsa' && bits >= 1024 && bits <= 4096;
  } catch {
    return false;
  }
};

/** At most this many: each key travels in the signal function's environment, which Lambda caps at 4 KB. */
const MAX_IDENTITY_CERTIFICATES = 4;

/**
 * Stack-wide settings of the readiness agent's hand-off. Its final event carries the instance identity
 * document and AWS's signature of it; the signal function accepts it only when the signature verifies
 * with AWS's certificate for the document's Region, built into each release. `identityCertificates`
 * adds certificates per Region on top of those: for a Region newer than the release, or a certificate
 * AWS rotated to before a release carries it.
 */
export const ReadinessAgentSchema = z
  .object({
    identityCertificates: z
      .record(
        z.string(),
        z.string().max(8_192).refine(isRsaCertificate, {
          message:
            "use the Region's RSA certificate as AWS publishes it (PEM, -----BEGIN CERTIFICATE-----), with a 1024- to 4096-bit key",
        }),
      )
      .superRefine((certificates, ctx) => {
        // Checked here rather than as the record's key schema, whose message would not name the fix.
        for (const region of Object.keys(certificates)) {
          if (!REGION.test(region)) {
            ctx.addIssue({
              code: 'custom',
              path: [region],
              message: 'use an AWS region name such as eu-west-1',
            });
          }
        }
        if (Object.keys(certificates).length > MAX_IDENTITY_CERTIFICATES) {
          ctx.addIssue({
            code: 'custom',
            message: `name at most ${MAX_IDENTITY_CERTIFICATES} regions: the keys travel in the signal function's 4 KB environment`,
          });
        }
      })
      .default({}),
  })
  .strict();
export type ReadinessAgentConfig = z.infer<typeof ReadinessAgentSchema>;

export const ConfigSchema = z
  .object({
    $schema: z.string().optional(),
    notifications: NotificationsSchema.default({ emails: [] }),
    readinessAgent: ReadinessAgentSchema.optional(),
    targets: z.array(TargetSchema).min(1, 'declare at least one target'),
    groups: z.array(GroupSchema).max(50).optional(),
  })
  .strict()
  .superRefine((config, ctx) => {
    checkGroups(config, ctx);
    flagDuplicateNames(config.targets, 'targets', 'target', ctx);
    config.targets.forEach((t, i) => {
      checkTriggers(t, ['targets', i, 'triggers'], ctx);
    });
  });

export type TargetConfig = z.infer<typeof TargetSchema>;
export type TerraformConfig = z.infer<typeof TerraformSchema>;
export type UnderstudyConfig = z.infer<typeof ConfigSchema>;

/** A zod issue path as the user writes it under `root`, e.g. `targets[0].domain`; `(root)` when empty. */
export const issuePath = (path: readonly PropertyKey[], root = ''): string =>
  path.reduce<string>(
    (acc, part) =>
      typeof part === 'number' ? `${acc}[${part}]` : acc ? `${acc}.${String(part)}` : String(part),
    root,
  ) || '(root)';

/** One line per problem, each naming the field path and the fix, e.g. `targets[0].domain: use a lowercase DNS name`. */
export const formatIssues = (error: z.ZodError, root = ''): string[] =>
  error.issues.map((issue) => {
    const path = issuePath(issue.path, root);
    const message =
      issue.code === 'unrecognized_keys'
        ? `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}: remove ${issue.keys.length > 1 ? 'them' : 'it'}`
        : issue.code === 'invalid_type' && issue.message.endsWith('received undefined')
          ? `missing: add this ${issue.expected} field`
          : issue.code === 'invalid_type'
            ? `${issue.message.replace(/^Invalid input: /, '')}: change it to a ${issue.expected}`
            : issue.message;
    return `${path}: ${message}`;
  });

export class ConfigError extends Error {
  constructor(
    readonly problems: string[],
    source: string,
  ) {
    super(`${source} is invalid:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

export const parseConfig = (raw: unknown, source = 'understudy.config.json'): UnderstudyConfig => {
  const result = ConfigSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(formatIssues(result.error), source);
  return result.data;
};
