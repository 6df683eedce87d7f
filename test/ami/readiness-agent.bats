#!/usr/bin/env bats
# The readiness agent (ami/readiness-agent/understudy-readiness) against fake cloud-init, curl (IMDSv2)
# and aws (EventBridge PutEvents) commands from test/ami/fakes; jq is the real one.
# bats runs every test in its own process, so a test's exports cannot leak into the next one.
# shellcheck disable=SC2030,SC2031

setup() {
  AGENT="$BATS_TEST_DIRNAME/../../ami/readiness-agent/understudy-readiness"
  UNIT="$BATS_TEST_DIRNAME/../../ami/readiness-agent/understudy-readiness.service"
  export PATH="$BATS_TEST_DIRNAME/fakes:$PATH"
  export FAKE_STATE="$BATS_TEST_TMPDIR/fake"
  export FAKE_IMDS_DIR="$BATS_TEST_TMPDIR/imds"
  mkdir -p "$FAKE_STATE" "$FAKE_IMDS_DIR/meta-data/placement" "$FAKE_IMDS_DIR/dynamic/instance-identity" \
    "$BATS_TEST_TMPDIR/tmp"
  INSTANCE_ID=i-0abc123def4567890
  printf '%s' "$INSTANCE_ID" >"$FAKE_IMDS_DIR/meta-data/instance-id"
  printf 'eu-west-3' >"$FAKE_IMDS_DIR/meta-data/placement/region"
  IDENTITY_DOCUMENT=$'{\n  "accountId" : "123456789012",\n  "imageId" : "ami-0feedfacecafe0001",\n  "instanceId" : "i-0abc123def4567890",\n  "region" : "eu-west-3"\n}'
  printf '%s' "$IDENTITY_DOCUMENT" >"$FAKE_IMDS_DIR/dynamic/instance-identity/document"
  SIGNATURE_LINE_1="dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgaXMgbG9uZw"
  SIGNATURE_LINE_2="c2Vjb25kIGxpbmUgb2YgdGhlIGZha2Ugc2lnbmF0dXJl=="
  printf '%s\n%s' "$SIGNATURE_LINE_1" "$SIGNATURE_LINE_2" >"$FAKE_IMDS_DIR/dynamic/instance-identity/signature"

  export UNDERSTUDY_AGENT_CONFIG="$BATS_TEST_TMPDIR/agent.env"
  printf 'EVENT_BUS_NAME=understudy-test\n' >"$UNDERSTUDY_AGENT_CONFIG"
  export UNDERSTUDY_STATE_DIR="$BATS_TEST_TMPDIR/var-lib-understudy"
  export UNDERSTUDY_BOOT_ID_FILE="$BATS_TEST_TMPDIR/boot_id"
  echo "6f1c2a57-0d2e-4b8a-9a41-1f0c7c0e5a01" >"$UNDERSTUDY_BOOT_ID_FILE"
  export UNDERSTUDY_PROGRESS_INTERVAL=0.2 UNDERSTUDY_RETRY_BASE=0.01 UNDERSTUDY_IMDS_RETRY_DELAY=0.01
  export TMPDIR="$BATS_TEST_TMPDIR/tmp"
  unset EVENT_BUS_NAME UNDERSTUDY_ON_RECOVERABLE_ERRORS UNDERSTUDY_PUT_ATTEMPTS UNDERSTUDY_IMDS_ATTEMPTS
  unset FAKE_CLOUD_INIT_JSON FAKE_CLOUD_INIT_EXIT FAKE_CLOUD_INIT_WAIT FAKE_IMDS_DOWN_TIMES
  unset FAKE_AWS_FAIL_TIMES FAKE_AWS_REJECT_TIMES FAKE_AWS_ECHO_INPUT
}

# Entries the fake bus accepted, one JSON object per line (Detail parsed).
events() { cat "$FAKE_STATE/events.jsonl" 2>/dev/null || true; }
final_events() { events | jq -c 'select(.DetailType != "Instance Progress")'; }
count() { if [[ -z "$1" ]]; then echo 0; else wc -l <<<"$1" | tr -d ' '; fi; }
put_calls() { grep -c '"put-events"' "$FAKE_STATE/aws.calls" 2>/dev/null || echo 0; }

cloud_init_reports() { # <exit code> <status json>
  export FAKE_CLOUD_INIT_EXIT="$1"
  export FAKE_CLOUD_INIT_JSON="$BATS_TEST_TMPDIR/status.json"
  printf '%s\n' "$2" >"$FAKE_CLOUD_INIT_JSON"
}

DEGRADED='{"status": "done", "extended_status": "degraded done", "errors": [],
  "recoverable_errors": {"WARNING": ["Failed to set locale en_GB.UTF-8"], "DEPRECATED": ["Key apt_reboot_if_required is deprecated"]}}'

@test "a clean cloud-init run (exit 0) puts exactly one Instance Ready event with the contract's detail" {
  cloud_init_reports 0 '{"status": "done", "extended_status": "done", "errors": [], "recoverable_errors": {}}'
  run "$AGENT"
  [ "$status" -eq 0 ]
  final="$(final_events)"
  [ "$(count "$final")" -eq 1 ]
  [ "$(jq -r .Source <<<"$final")" = understudy.agent ]
  [ "$(jq -r .DetailType <<<"$final")" = "Instance Ready" ]
  [ "$(jq -r .EventBusName <<<"$final")" = understudy-test ]
  [ "$(jq -r .Region <<<"$final")" = eu-west-3 ]
  [ "$(jq -c '.Detail | {instanceId, status, exitCode, errors}' <<<"$final")" = \
    '{"instanceId":"i-0abc123def4567890","status":"done","exitCode":0,"errors":[]}' ]
  grep -qx 'status --wait --format json' "$FAKE_STATE/cloud-init.log"
}

@test "the final event carries the identity document and signature exactly as IMDS served them" {
  run "$AGENT"
  [ "$status" -eq 0 ]
  final="$(final_events)"
  [ "$(jq -r .Detail.identity.document <<<"$final")" = "$IDENTITY_DOCUMENT" ]
  [ "$(jq -r .Detail.identity.signature <<<"$final")" = "$(printf '%s\n%s' "$SIGNATURE_LINE_1" "$SIGNATURE_LINE_2")" ]
}

@test "IMDS is read with IMDSv2: a session token first, then every GET carries it" {
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(head -n 1 "$FAKE_STATE/curl.log")" = "PUT /latest/api/token token=no" ]
  [ "$(grep -c '^GET .* token=no$' "$FAKE_STATE/curl.log")" -eq 0 ]
  grep -qx 'GET /latest/meta-data/instance-id token=yes' "$FAKE_STATE/curl.log"
  grep -qx 'GET /latest/meta-data/placement/region token=yes' "$FAKE_STATE/curl.log"
  grep -qx 'GET /latest/dynamic/instance-identity/document token=yes' "$FAKE_STATE/curl.log"
  grep -qx 'GET /latest/dynamic/instance-identity/signature token=yes' "$FAKE_STATE/curl.log"
}

@test "cloud-init exit 1 puts Instance Failed carrying cloud-init's errors" {
  cloud_init_reports 1 '{"status": "error", "extended_status": "error - done",
    "errors": ["(\"scripts_user\", RuntimeError(\"Runparts: 1 failures (part-001) in 1 attempted commands\"))"],
    "recoverable_errors": {}}'
  run "$AGENT"
  [ "$status" -eq 0 ]
  final="$(final_events)"
  [ "$(count "$final")" -eq 1 ]
  [ "$(jq -r .DetailType <<<"$final")" = "Instance Failed" ]
  [ "$(jq -r .Detail.exitCode <<<"$final")" = 1 ]
  [ "$(jq -r .Detail.status <<<"$final")" = "error - done" ]
  [ "$(jq -r '.Detail.errors[0]' <<<"$final")" = \
    '("scripts_user", RuntimeError("Runparts: 1 failures (part-001) in 1 attempted commands"))' ]
}

@test "cloud-init exit 2 under the default policy (fail) puts Instance Failed with the recoverable errors" {
  cloud_init_reports 2 "$DEGRADED"
  run "$AGENT"
  [ "$status" -eq 0 ]
  final="$(final_events)"
  [ "$(jq -r .DetailType <<<"$final")" = "Instance Failed" ]
  [ "$(jq -r .Detail.exitCode <<<"$final")" = 2 ]
  [ "$(jq -r .Detail.status <<<"$final")" = "degraded done" ]
  [ "$(jq -c .Detail.errors <<<"$final")" = \
    '["WARNING: Failed to set locale en_GB.UTF-8","DEPRECATED: Key apt_reboot_if_required is deprecated"]' ]
}

@test "cloud-init exit 2 under policy fail set explicitly puts Instance Failed" {
  printf 'EVENT_BUS_NAME=understudy-test\nUNDERSTUDY_ON_RECOVERABLE_ERRORS=fail\n' >"$UNDERSTUDY_AGENT_CONFIG"
  cloud_init_reports 2 "$DEGRADED"
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(final_events | jq -r .DetailType)" = "Instance Failed" ]
}

@test "cloud-init exit 2 under policy accept puts Instance Ready that still says exit 2 and lists the errors" {
  printf 'EVENT_BUS_NAME=understudy-test\nUNDERSTUDY_ON_RECOVERABLE_ERRORS=accept\n' >"$UNDERSTUDY_AGENT_CONFIG"
  cloud_init_reports 2 "$DEGRADED"
  run "$AGENT"
  [ "$status" -eq 0 ]
  final="$(final_events)"
  [ "$(jq -r .DetailType <<<"$final")" = "Instance Ready" ]
  [ "$(jq -r .Detail.exitCode <<<"$final")" = 2 ]
  [ "$(jq -r '.Detail.errors | length' <<<"$final")" = 2 ]
}

@test "a cloud-init that reports degraded with exit 0 (distro-patched) is treated as exit 2" {
  cloud_init_reports 0 "$DEGRADED"
  run "$AGENT"
  [ "$status" -eq 0 ]
  final="$(final_events)"
  [ "$(jq -r .DetailType <<<"$final")" = "Instance Failed" ]
  [ "$(jq -r .Detail.exitCode <<<"$final")" = 2 ]
}

@test "errors and recoverable errors are carried as strings, whatever their JSON type" {
  cloud_init_reports 1 '{"status": "error", "errors": ["plain", {"module": "cc_mounts"}, 42],
    "recoverable_errors": {"ERROR": ["bad \"quote\" and\nnewline"]}}'
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(final_events | jq -c .Detail.errors)" = \
    '["plain","{\"module\":\"cc_mounts\"}","42","ERROR: bad \"quote\" and\nnewline"]' ]
}

@test "cloud-init printing no JSON puts Instance Failed with a readable error" {
  export FAKE_CLOUD_INIT_EXIT=1 FAKE_CLOUD_INIT_JSON="$BATS_TEST_TMPDIR/status.txt"
  echo "Traceback (most recent call last):" >"$FAKE_CLOUD_INIT_JSON"
  run "$AGENT"
  [ "$status" -eq 0 ]
  final="$(final_events)"
  [ "$(jq -r .DetailType <<<"$final")" = "Instance Failed" ]
  [ "$(jq -r .Detail.status <<<"$final")" = unknown ]
  [ "$(jq -r '.Detail.errors[0]' <<<"$final")" = "cloud-init status did not print a JSON document (exit 1)" ]
}

@test "IMDS unavailable at first: the agent retries, then reports with the instance id and region" {
  export FAKE_IMDS_DOWN_TIMES=3
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(grep -c 'IMDS not available yet' <<<"$output")" -eq 3 ]
  final="$(final_events)"
  [ "$(jq -r .Detail.instanceId <<<"$final")" = "$INSTANCE_ID" ]
  [ "$(jq -r .Region <<<"$final")" = eu-west-3 ]
}

@test "IMDS that never answers: the agent gives up after the configured attempts without calling AWS" {
  export FAKE_IMDS_DOWN_TIMES=1000 UNDERSTUDY_IMDS_ATTEMPTS=4
  run "$AGENT"
  [ "$status" -eq 1 ]
  [[ "$output" == *"IMDS did not answer after 4 attempts"* ]]
  [ "$(put_calls)" -eq 0 ]
  [ ! -e "$FAKE_STATE/cloud-init.log" ]
}

@test "PutEvents failing then succeeding: the agent backs off, retries and the bus gets one final event" {
  export FAKE_AWS_FAIL_TIMES=2
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(put_calls)" -eq 3 ]
  [ "$(count "$(final_events)")" -eq 1 ]
  [[ "$output" == *"attempt 1 of 6 failed: the AWS CLI exited with 254: An error occurred (InternalException)"*"retrying in 10 ms"* ]]
  [[ "$output" == *"attempt 2 of 6 failed"*"retrying in 20 ms"* ]]
}

@test "PutEvents reporting FailedEntryCount then succeeding: the agent retries instead of trusting exit 0" {
  export FAKE_AWS_REJECT_TIMES=2
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(put_calls)" -eq 3 ]
  [ "$(count "$(final_events)")" -eq 1 ]
  [[ "$output" == *"FailedEntryCount 1 (InternalFailure)"* ]]
  [ -f "$UNDERSTUDY_STATE_DIR/final-event" ]
}

@test "PutEvents never succeeding: the agent gives up after the configured attempts, logs it and exits non-zero" {
  export FAKE_AWS_FAIL_TIMES=1000 UNDERSTUDY_PUT_ATTEMPTS=4
  run "$AGENT"
  [ "$status" -eq 1 ]
  [ "$(put_calls)" -eq 4 ]
  [[ "$output" == *"PutEvents (Instance Ready) failed 4 time(s), giving up"* ]]
  [[ "$output" == *"could not put the Instance Ready event on understudy-test"* ]]
  [ ! -e "$UNDERSTUDY_STATE_DIR/final-event" ]
}

@test "after giving up, a later run (nothing was recorded) sends the final event" {
  export FAKE_AWS_FAIL_TIMES=2 UNDERSTUDY_PUT_ATTEMPTS=2
  run "$AGENT"
  [ "$status" -eq 1 ]
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(count "$(final_events)")" -eq 1 ]
}

@test "progress events are put while cloud-init waits, each with status running, and stop when it ends" {
  export FAKE_CLOUD_INIT_WAIT=1.5 UNDERSTUDY_PROGRESS_INTERVAL=0.25
  run "$AGENT"
  [ "$status" -eq 0 ]
  progress="$(events | jq -c 'select(.DetailType == "Instance Progress")')"
  [ "$(count "$progress")" -ge 2 ]
  [ "$(count "$progress")" -le 6 ]
  [ "$(jq -c '.Detail' <<<"$progress" | sort -u)" = '{"instanceId":"i-0abc123def4567890","status":"running","errors":[]}' ]
  [ "$(events | tail -n 1 | jq -r .DetailType)" = "Instance Ready" ]
  [ "$(count "$(final_events)")" -eq 1 ]
}

@test "no progress event is sent when cloud-init has already finished" {
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(events | jq -c 'select(.DetailType == "Instance Progress")')" = "" ]
}

@test "a second run after a final event sends nothing" {
  run "$AGENT"
  [ "$status" -eq 0 ]
  calls_after_first="$(put_calls)"
  run "$AGENT"
  [ "$status" -eq 0 ]
  [[ "$output" == *"already sent (Instance Ready); nothing to do"* ]]
  [ "$(put_calls)" -eq "$calls_after_first" ]
  [ "$(grep -c . "$FAKE_STATE/cloud-init.log")" -eq 1 ]
}

@test "a new boot, or the image's marker seen from another instance, reports again" {
  run "$AGENT"
  [ "$status" -eq 0 ]
  echo "0d6b7c8e-1111-4c2d-8e9f-222233334444" >"$UNDERSTUDY_BOOT_ID_FILE"
  run "$AGENT"
  [ "$status" -eq 0 ]
  printf 'i-0bbbbbbbbbbbbbbbb' >"$FAKE_IMDS_DIR/meta-data/instance-id"
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(count "$(final_events)")" -eq 3 ]
}

@test "the signature and identity document never appear in the logs, even when the AWS CLI quotes its input" {
  export FAKE_AWS_FAIL_TIMES=2 FAKE_AWS_ECHO_INPUT=1
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(grep -c 'PutEvents (Instance Ready) attempt .* (message withheld: it quotes the event)' <<<"$output")" -eq 2 ]
  [[ "$output" != *"$SIGNATURE_LINE_1"* ]]
  [[ "$output" != *"$SIGNATURE_LINE_2"* ]]
  [[ "$output" != *"ami-0feedfacecafe0001"* ]]
  [[ "$output" != *"AQAEAfakeSessionToken"* ]]
}

@test "EVENT_BUS_NAME missing: the agent refuses to start and touches nothing" {
  : >"$UNDERSTUDY_AGENT_CONFIG"
  run "$AGENT"
  [ "$status" -eq 1 ]
  [[ "$output" == *"EVENT_BUS_NAME is not set"* ]]
  [ ! -e "$FAKE_STATE/curl.log" ]
  [ ! -e "$FAKE_STATE/aws.calls" ]
}

@test "an unknown recoverable-errors policy is refused" {
  export UNDERSTUDY_ON_RECOVERABLE_ERRORS=ignore
  run "$AGENT"
  [ "$status" -eq 1 ]
  [[ "$output" == *"UNDERSTUDY_ON_RECOVERABLE_ERRORS must be fail or accept (got 'ignore')"* ]]
}

@test "the configuration file is read as data: quotes are stripped and command substitutions never run" {
  printf '%s\n' '# comment' 'EVENT_BUS_NAME="understudy-quoted"' \
    "UNDERSTUDY_ON_RECOVERABLE_ERRORS='accept'" "NOT_A_SETTING=\$(touch $BATS_TEST_TMPDIR/pwned)" \
    >"$UNDERSTUDY_AGENT_CONFIG"
  cloud_init_reports 2 "$DEGRADED"
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ ! -e "$BATS_TEST_TMPDIR/pwned" ]
  [[ "$output" == *"ignoring the unknown setting NOT_A_SETTING"* ]]
  final="$(final_events)"
  [ "$(jq -r .EventBusName <<<"$final")" = understudy-quoted ]
  [ "$(jq -r .DetailType <<<"$final")" = "Instance Ready" ]
}

@test "the environment overrides the configuration file" {
  export EVENT_BUS_NAME=understudy-from-env
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(final_events | jq -r .EventBusName)" = understudy-from-env ]
}

@test "the unit runs once after cloud-init and multi-user, stays active and never restarts" {
  grep -qx 'After=cloud-init.target multi-user.target network-online.target' "$UNIT"
  grep -qx 'Type=oneshot' "$UNIT"
  grep -qx 'RemainAfterExit=yes' "$UNIT"
  grep -qx 'Restart=no' "$UNIT"
  grep -qx 'WantedBy=multi-user.target' "$UNIT"
  grep -qx 'ExecStart=/usr/local/bin/understudy-readiness' "$UNIT"
}
