import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { TRANSFER_PREFIX } from '../lambdas/shared/tls';

/**
 * Per-target locks (`locks/<target>.json`, conditional writes), run records (`runs/...`) and, for a
 * few minutes per restore run, the certificate transfer (`tls/<execution>/...`). Versioned,
 * so a lock overwritten by a takeover or a record rewritten by a retry can still be inspected.
 */
export class RunsBucket extends Construct {
  readonly bucket: s3.Bucket;

  constructor(scope: Construct, id: string) {
    super(scope, id);

    this.bucket = new s3.Bucket(this, 'Bucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      versioned: true,
      enforceSSL: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      // Locks and run records outlive the stack: they are the history of every replacement.
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [
        {
          id: 'expire-old-versions',
          // How long an overwritten or deleted lock or run record stays recoverable.
          noncurrentVersionExpiration: Duration.days(90),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
        {
          // Backstop for Finish, which deletes every version of each run's certificate transfer (a
          // private key) once the run ends. A run that died before Finish leaves it: current for a
          // day, then noncurrent for another, so about two days (plus the lifecycle's own delay).
          id: 'expire-certificate-transfers',
          prefix: TRANSFER_PREFIX,
          expiration: Duration.days(1),
          noncurrentVersionExpiration: Duration.days(1),
        },
        {
          // What is left of a transfer once its versions expired: a lone delete marker.
          id: 'remove-certificate-transfer-markers',
          prefix: TRANSFER_PREFIX,
          expiredObjectDeleteMarker: true,
        },
      ],
    });

    Validations.of(this.bucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        'only the Understudy functions read or write this bucket and CloudTrail records their calls; an access-log ' +
        'bucket would add a second bucket holding nothing the run records and the trail do not already show',
    });
  }

  /**
   * The certificate transfer (a private key) is readable and writable by the two roles that sign its
   * presigned URLs, and by no one else in the account, whatever their IAM policies allow (ReadOnlyAccess
   * grants s3:GetObject on *). A presigned request is authorised as the role that signed it, so the
   * boxes' URLs keep working; deleting (Finish) is not denied.
   */
  onlyTransferRoles(roles: readonly iam.IRole[]): void {
    this.bucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CertificateTransferOnlyForItsSigners',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['s3:GetObject', 's3:GetObjectVersion', 's3:PutObject'],
        resources: [this.bucket.arnForObjects(`${TRANSFER_PREFIX}*`)],
        conditions: { ArnNotEquals: { 'aws:PrincipalArn': roles.map((role) => role.roleArn) } },
      }),
    );
  }
}
