#!/usr/bin/env bats
# The readiness agent (ami/readiness-agent/understudy-readiness) against fake cloud-init, curl (IMDSv2)
# and aws (EventBridge PutEvents) commands from test/ami/fakes; jq is the real one.
# bats runs every test in its own process, so a test's exports cannot leak into the next one.
# shellcheck disable=SC2030,SC2031

setup() {
  AGENT="$BATS_TEST_DIRNAME/../../ami/readiness-agent/understudy-readiness"
  UNIT="$BATS_TEST_DIRNAME/../../ami/readiness-agent/understudy-readiness.service"
  PROGRESS_UNIT="$BATS_TEST_DIRNAME/../../ami/readiness-agent/understudy-readiness-progress.service"
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
  # The image's settings file; absent unless a test writes it.
  export UNDERSTUDY_IMAGE_CONFIG="$BATS_TEST_TMPDIR/agent.image.env"
  export UNDERSTUDY_CLOUD_INIT_RESULT="$BATS_TEST_TMPDIR/result.json"
  export UNDERSTUDY_STATE_DIR="$BATS_TEST_TMPDIR/var-lib-understudy"
  export UNDERSTUDY_BOOT_ID_FILE="$BATS_TEST_TMPDIR/boot_id"
  echo "6f1c2a57-0d2e-4b8a-9a41-1f0c7c0e5a01" >"$UNDERSTUDY_BOOT_ID_FILE"
  # Long enough that no in-process progress event lands in a test that does not ask for one.
  export UNDERSTUDY_PROGRESS_INTERVAL=60 UNDERSTUDY_RETRY_BASE=0.01 UNDERSTUDY_IMDS_RETRY_DELAY=0.01
  export TMPDIR="$BATS_TEST_TMPDIR/tmp"
  unset EVENT_BUS_NAME UNDERSTUDY_ON_RECOVERABLE_ERRORS UNDERSTUDY_PUT_ATTEMPTS UNDERSTUDY_IMDS_ATTEMPTS
  unset FAKE_CLOUD_INIT_JSON FAKE_CLOUD_INIT_EXIT FAKE_CLOUD_INIT_WAIT FAKE_IMDS_DOWN_TIMES
  unset FAKE_CLOUD_INIT_NO_FORMAT FAKE_CLOUD_INIT_RUNNING_CALLS FAKE_CLOUD_INIT_FINAL_STATE FAKE_CLOUD_INIT_BEFORE
  unset FAKE_AWS_FAIL_TIMES FAKE_AWS_REJECT_TIMES FAKE_AWS_ECHO_INPUT
}

# Entries the fake bus accepted, one JSON object per line (Detail parsed).
events() { cat "$FAKE_STATE/events.jsonl" 2>/dev/null || true; }
final_events() { events | jq -c 'select(.DetailType != "Instance Progress")'; }
progress_events() { events | jq -c 'select(.DetailType == "Instance Progress")'; }
count() { if [[ -z "$1" ]]; then echo 0; else wc -l <<<"$1" | tr -d ' '; fi; }
# grep -Eq <pattern> <file> must not match. A bare `! grep` in a test never fails it (bats runs with
# set -e, which ignores negated commands); a function's return status does.
absent() { ! grep -Eq -- "$1" "$2"; }
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
  [ "$(jq -r .Detail.exitCode <<<"$final")" = 1 ]
  [ "$(jq -r '.Detail.errors[0]' <<<"$final")" = \
    "cloud-init status did not print a JSON document (cloud-init status exited 1)" ]
}

@test "empty stdout with exit 1 (a crash, its traceback on stderr) puts Instance Failed, not an empty detail" {
  export FAKE_CLOUD_INIT_EXIT=1 FAKE_CLOUD_INIT_JSON="$BATS_TEST_TMPDIR/empty"
  : >"$FAKE_CLOUD_INIT_JSON"
  run "$AGENT"
  [ "$status" -eq 0 ]
  final="$(final_events)"
  [ "$(count "$final")" -eq 1 ]
  [ "$(jq -r .DetailType <<<"$final")" = "Instance Failed" ]
  [ "$(jq -c '.Detail | {status, exitCode}' <<<"$final")" = '{"status":"unknown","exitCode":1}' ]
  [ "$(jq -r '.Detail.errors[0]' <<<"$final")" = \
    "cloud-init status did not print a JSON document (cloud-init status exited 1)" ]
}

@test "empty stdout with exit 2 (argparse's usage error) is Instance Failed with exit 1, even under policy accept" {
  printf 'EVENT_BUS_NAME=understudy-test\nUNDERSTUDY_ON_RECOVERABLE_ERRORS=accept\n' >"$UNDERSTUDY_AGENT_CONFIG"
  export FAKE_CLOUD_INIT_EXIT=2 FAKE_CLOUD_INIT_JSON="$BATS_TEST_TMPDIR/empty"
  : >"$FAKE_CLOUD_INIT_JSON"
  run "$AGENT"
  [ "$status" -eq 0 ]
  final="$(final_events)"
  [ "$(jq -r .DetailType <<<"$final")" = "Instance Failed" ]
  [ "$(jq -r .Detail.exitCode <<<"$final")" = 1 ]
  [ "$(jq -r '.Detail.errors[0]' <<<"$final")" = \
    "cloud-init status did not print a JSON document (cloud-init status exited 2)" ]
}

@test "two JSON documents, or one that is not an object, are no outcome either" {
  export FAKE_CLOUD_INIT_EXIT=0 FAKE_CLOUD_INIT_JSON="$BATS_TEST_TMPDIR/status.json"
  printf '{"status": "done", "errors": []}\n{"status": "done", "errors": []}\n' >"$FAKE_CLOUD_INIT_JSON"
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(final_events | jq -r .DetailType)" = "Instance Failed" ]
  rm -f "$UNDERSTUDY_STATE_DIR/final-event" "$FAKE_STATE/events.jsonl"
  printf '["done"]\n' >"$FAKE_CLOUD_INIT_JSON"
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(final_events | jq -r .DetailType)" = "Instance Failed" ]
}

@test "no cloud-init at all: Instance Failed, exit 1, rather than waiting or reporting ready" {
  mkdir -p "$BATS_TEST_TMPDIR/bin"
  ln -s "$BATS_TEST_DIRNAME/fakes/aws" "$BATS_TEST_DIRNAME/fakes/curl" "$BATS_TEST_TMPDIR/bin/"
  for tool in bash jq grep sed head tail cut tr mktemp rm mkdir mv date sleep cat wc stat env; do
    ln -s "$(command -v "$tool")" "$BATS_TEST_TMPDIR/bin/"
  done
  PATH="$BATS_TEST_TMPDIR/bin" run "$AGENT"
  [ "$status" -eq 0 ]
  final="$(final_events)"
  [ "$(jq -r .DetailType <<<"$final")" = "Instance Failed" ]
  [ "$(jq -r .Detail.exitCode <<<"$final")" = 1 ]
  [[ "$(jq -r '.Detail.errors[0]' <<<"$final")" == "cloud-init status --wait failed (cloud-init status exited 127)" ]]
}

@test "a cloud-init without status --format (before 22.4): waits with --wait --long, outcome from result.json" {
  export FAKE_CLOUD_INIT_NO_FORMAT=1 FAKE_CLOUD_INIT_EXIT=0
  printf '%s\n' '{"v1": {"datasource": "DataSourceEc2Local", "errors": []}}' >"$UNDERSTUDY_CLOUD_INIT_RESULT"
  run "$AGENT"
  [ "$status" -eq 0 ]
  [[ "$output" == *"its status has no JSON format"* ]]
  grep -qx 'status --wait --long' "$FAKE_STATE/cloud-init.log"
  absent '--format' "$FAKE_STATE/cloud-init.log"
  final="$(final_events)"
  [ "$(jq -r .DetailType <<<"$final")" = "Instance Ready" ]
  [ "$(jq -c '.Detail | {status, exitCode, errors}' <<<"$final")" = '{"status":"done","exitCode":0,"errors":[]}' ]
}

@test "before 22.4, exit 1 with result.json errors puts Instance Failed carrying them" {
  export FAKE_CLOUD_INIT_NO_FORMAT=1 FAKE_CLOUD_INIT_EXIT=1
  printf '%s\n' '{"v1": {"datasource": "DataSourceEc2Local",
    "errors": ["(\"scripts_user\", RuntimeError(\"Runparts: 1 failures\"))", {"x": 1}]}}' >"$UNDERSTUDY_CLOUD_INIT_RESULT"
  run "$AGENT"
  [ "$status" -eq 0 ]
  final="$(final_events)"
  [ "$(jq -r .DetailType <<<"$final")" = "Instance Failed" ]
  [ "$(jq -c '.Detail | {status, exitCode, errors}' <<<"$final")" = \
    '{"status":"error","exitCode":1,"errors":["(\"scripts_user\", RuntimeError(\"Runparts: 1 failures\"))","{\"x\":1}"]}' ]
}

@test "before 22.4, errors in result.json fail the box even when the exit code is 0" {
  export FAKE_CLOUD_INIT_NO_FORMAT=1 FAKE_CLOUD_INIT_EXIT=0
  printf '%s\n' '{"v1": {"errors": ["cc_mounts failed"]}}' >"$UNDERSTUDY_CLOUD_INIT_RESULT"
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(final_events | jq -c '[.DetailType, .Detail.exitCode]')" = '["Instance Failed",1]' ]
}

@test "before 22.4, a missing or empty result.json is Instance Failed" {
  export FAKE_CLOUD_INIT_NO_FORMAT=1 FAKE_CLOUD_INIT_EXIT=0
  run "$AGENT"
  [ "$status" -eq 0 ]
  final="$(final_events)"
  [ "$(jq -c '[.DetailType, .Detail.status, .Detail.exitCode]' <<<"$final")" = '["Instance Failed","unknown",1]' ]
  [[ "$(jq -r '.Detail.errors[0]' <<<"$final")" == "cloud-init finished without a readable $UNDERSTUDY_CLOUD_INIT_RESULT"* ]]
  rm -f "$UNDERSTUDY_STATE_DIR/final-event" "$FAKE_STATE/events.jsonl"
  : >"$UNDERSTUDY_CLOUD_INIT_RESULT"
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(final_events | jq -r .DetailType)" = "Instance Failed" ]
}

@test "before 22.4, exit 2 is a usage error, not recoverable errors: Instance Failed under policy accept" {
  printf 'EVENT_BUS_NAME=understudy-test\nUNDERSTUDY_ON_RECOVERABLE_ERRORS=accept\n' >"$UNDERSTUDY_AGENT_CONFIG"
  export FAKE_CLOUD_INIT_NO_FORMAT=1 FAKE_CLOUD_INIT_EXIT=2
  printf '%s\n' '{"v1": {"errors": []}}' >"$UNDERSTUDY_CLOUD_INIT_RESULT"
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(final_events | jq -c '[.DetailType, .Detail.exitCode]')" = '["Instance Failed",1]' ]
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
  export UNDERSTUDY_PROGRESS_INTERVAL=1
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
  [ "$(grep -c -- '--wait' "$FAKE_STATE/cloud-init.log")" -eq 1 ]
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
  # Nor on any command line: the entries reach the CLI as a file only the agent may read.
  [ "$(grep -c 'file://' "$FAKE_STATE/aws.calls")" -eq 3 ]
  absent "$SIGNATURE_LINE_1" "$FAKE_STATE/aws.calls"
  absent "ami-0feedfacecafe0001" "$FAKE_STATE/aws.calls"
  [ "$(sort -u "$FAKE_STATE/aws.entries-modes")" = 600 ]
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

@test "the image's settings file names the bus; the box's agent.env overrides it key by key" {
  printf 'EVENT_BUS_NAME=understudy-from-image\nUNDERSTUDY_ON_RECOVERABLE_ERRORS=fail\n' >"$UNDERSTUDY_IMAGE_CONFIG"
  printf 'UNDERSTUDY_ON_RECOVERABLE_ERRORS=accept\n' >"$UNDERSTUDY_AGENT_CONFIG"
  cloud_init_reports 2 "$DEGRADED"
  run "$AGENT"
  [ "$status" -eq 0 ]
  final="$(final_events)"
  [ "$(jq -r .EventBusName <<<"$final")" = understudy-from-image ]
  [ "$(jq -r .DetailType <<<"$final")" = "Instance Ready" ]
  printf 'EVENT_BUS_NAME=understudy-from-user-data\n' >"$UNDERSTUDY_AGENT_CONFIG"
  echo "0d6b7c8e-1111-4c2d-8e9f-222233334444" >"$UNDERSTUDY_BOOT_ID_FILE"
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(final_events | tail -n 1 | jq -c '[.EventBusName, .DetailType]')" = '["understudy-from-user-data","Instance Failed"]' ]
}

@test "the image's settings alone are enough: no agent.env on the box" {
  printf 'EVENT_BUS_NAME=understudy-from-image\n' >"$UNDERSTUDY_IMAGE_CONFIG"
  rm -f "$UNDERSTUDY_AGENT_CONFIG"
  run "$AGENT"
  [ "$status" -eq 0 ]
  [ "$(final_events | jq -r .EventBusName)" = understudy-from-image ]
}

# --- --progress: the companion unit that sends heartbeats while cloud-init runs ------------------------

@test "--progress puts Instance Progress while cloud-init runs, stops when it is done, and never a final event" {
  export FAKE_CLOUD_INIT_RUNNING_CALLS=4 UNDERSTUDY_PROGRESS_INTERVAL=0.05
  run "$AGENT" --progress
  [ "$status" -eq 0 ]
  [[ "$output" == *"cloud-init is not running (status: done); no more progress events"* ]]
  progress="$(progress_events)"
  [ "$(count "$progress")" -eq 4 ]
  [ "$(jq -c '.Detail' <<<"$progress" | sort -u)" = '{"instanceId":"i-0abc123def4567890","status":"running","errors":[]}' ]
  [ "$(jq -r .Region <<<"$progress" | sort -u)" = eu-west-3 ]
  [ "$(final_events)" = "" ]
  [ ! -e "$UNDERSTUDY_STATE_DIR/final-event" ]
  # It only asks; waiting is the final unit's job.
  absent '--wait' "$FAKE_STATE/cloud-init.log"
}

@test "--progress stops on any status but running: error and degraded too" {
  export FAKE_CLOUD_INIT_RUNNING_CALLS=1 FAKE_CLOUD_INIT_FINAL_STATE=error UNDERSTUDY_PROGRESS_INTERVAL=0.05
  run "$AGENT" --progress
  [ "$status" -eq 0 ]
  [ "$(count "$(progress_events)")" -eq 1 ]
  [ "$(final_events)" = "" ]
}

@test "--progress with cloud-init already done sends nothing and does not even ask IMDS" {
  run "$AGENT" --progress
  [ "$status" -eq 0 ]
  [ ! -e "$FAKE_STATE/aws.calls" ]
  [ ! -e "$FAKE_STATE/curl.log" ]
}

@test "--progress waits while cloud-init has not started, then reports while it runs" {
  export FAKE_CLOUD_INIT_BEFORE="not run" FAKE_CLOUD_INIT_RUNNING_CALLS=2 UNDERSTUDY_PROGRESS_INTERVAL=0.05
  run "$AGENT" --progress
  [ "$status" -eq 0 ]
  [[ "$output" == *"cloud-init has not started yet"* ]]
  [ "$(count "$(progress_events)")" -eq 2 ]
}

@test "--progress waits for the configuration that user data writes while cloud-init runs" {
  rm -f "$UNDERSTUDY_AGENT_CONFIG"
  export FAKE_CLOUD_INIT_RUNNING_CALLS=40 UNDERSTUDY_PROGRESS_INTERVAL=0.05
  "$AGENT" --progress >"$BATS_TEST_TMPDIR/progress.log" 2>&1 &
  pid=$!
  sleep 0.6
  [ ! -e "$FAKE_STATE/aws.calls" ]
  printf 'EVENT_BUS_NAME=understudy-late\n' >"$UNDERSTUDY_AGENT_CONFIG"
  wait "$pid"
  grep -q "no EVENT_BUS_NAME yet; waiting for $UNDERSTUDY_AGENT_CONFIG" "$BATS_TEST_TMPDIR/progress.log"
  progress="$(progress_events)"
  [ "$(count "$progress")" -ge 1 ]
  [ "$(count "$progress")" -lt 40 ]
  [ "$(jq -r .EventBusName <<<"$progress" | sort -u)" = understudy-late ]
  [ "$(final_events)" = "" ]
}

@test "--progress stops once the final event of this boot was sent" {
  run "$AGENT"
  [ "$status" -eq 0 ]
  export FAKE_CLOUD_INIT_RUNNING_CALLS=10 UNDERSTUDY_PROGRESS_INTERVAL=0.05
  run "$AGENT" --progress
  [ "$status" -eq 0 ]
  [[ "$output" == *"the final event for this boot was already sent; no more progress events"* ]]
  [ "$(progress_events)" = "" ]
  [ "$(count "$(final_events)")" -eq 1 ]
}

@test "--progress gives a failed PutEvents one try per interval and keeps going" {
  export FAKE_AWS_FAIL_TIMES=1 FAKE_CLOUD_INIT_RUNNING_CALLS=3 UNDERSTUDY_PROGRESS_INTERVAL=0.05
  run "$AGENT" --progress
  [ "$status" -eq 0 ]
  [ "$(put_calls)" -eq 3 ]
  [ "$(count "$(progress_events)")" -eq 2 ]
}

@test "an unknown argument is refused" {
  run "$AGENT" --final
  [ "$status" -eq 1 ]
  [[ "$output" == *"usage: understudy-readiness [--progress]"* ]]
  [ ! -e "$FAKE_STATE/curl.log" ]
}

# --- units ---------------------------------------------------------------------------------------------

# The value of each line "<key>=..." of a unit, one per line.
unit_values() { sed -n "s/^$2=//p" "$1"; }

@test "the final unit runs once after cloud-init and multi-user, stays active and never restarts" {
  [ "$(unit_values "$UNIT" After)" = 'cloud-init.target multi-user.target network-online.target' ]
  [ "$(unit_values "$UNIT" Wants)" = 'network-online.target' ]
  [ "$(unit_values "$UNIT" Before)" = '' ]
  [ "$(unit_values "$UNIT" Type)" = oneshot ]
  [ "$(unit_values "$UNIT" RemainAfterExit)" = yes ]
  [ "$(unit_values "$UNIT" Restart)" = no ]
  [ "$(unit_values "$UNIT" WantedBy)" = multi-user.target ]
  [ "$(unit_values "$UNIT" ExecStart)" = /usr/local/bin/understudy-readiness ]
}

@test "the progress unit starts with the network, not after cloud-init, and cannot hold up boot" {
  # Any After= on cloud-init would start it with nothing left to report, and an ordering after
  # cloud-final (itself after multi-user.target) would form a cycle with WantedBy=multi-user.target.
  [ "$(unit_values "$PROGRESS_UNIT" After)" = network-online.target ]
  absent '^(After|Requires|BindsTo|Requisite|PartOf)=.*cloud-' "$PROGRESS_UNIT"
  [ "$(unit_values "$PROGRESS_UNIT" Before)" = '' ]
  [ "$(unit_values "$PROGRESS_UNIT" Wants)" = network-online.target ]
  [ "$(unit_values "$PROGRESS_UNIT" Type)" = simple ]
  [ "$(unit_values "$PROGRESS_UNIT" Restart)" = no ]
  [ "$(unit_values "$PROGRESS_UNIT" WantedBy)" = multi-user.target ]
  [ "$(unit_values "$PROGRESS_UNIT" ExecStart)" = "$(unit_values "$UNIT" ExecStart) --progress" ]
}
