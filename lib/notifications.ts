import { RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';

export interface NotificationsProps {
  /**
   * Addresses subscribed to every message; each must confirm the subscription e-mail AWS sends.
   * @default - no subscription (subscribe to the topic yourself)
   */
  readonly emails?: readonly string[];
}

/**
 * The run's outcome, progress and warning messages, and the state machine's alarms, on one topic.
 *
 * The topic is encrypted with a customer managed key rather than `alias/aws/sns`: CloudWatch alarm
 * actions cannot publish to a topic encrypted with the AWS managed key, whose key policy cannot be
 * changed to admit `cloudwatch.amazonaws.com`.
 */
export class Notifications extends Construct {
  readonly topic: sns.Topic;
  readonly key: kms.Key;

  constructor(scope: Construct, id: string, props: NotificationsProps = {}) {
    super(scope, id);

    this.key = new kms.Key(this, 'Key', {
      description: 'Understudy notifications topic encryption',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowCloudWatchAlarmsToPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
        resources: ['*'],
      }),
    );

    this.topic = new sns.Topic(this, 'Topic', {
      displayName: 'Understudy',
      masterKey: this.key,
      enforceSSL: true,
    });

    for (const email of props.emails ?? []) {
      this.topic.addSubscription(new subscriptions.EmailSubscription(email));
    }
  }
}
