import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';

/**
 * Per-target locks (`locks/<target>.json`, conditional writes) and run records (`runs/...`). Versioned,
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
      ],
    });

    Validations.of(this.bucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        'only the Understudy functions read or write this bucket and CloudTrail records their calls; an access-log ' +
        'bucket would add a second bucket holding nothing the run records and the trail do not already show',
    });
  }
}
