// Runs before every test file: a region for SDK clients, quiet structured logs, no tracing.
process.env.AWS_REGION ??= 'eu-west-1';
process.env.POWERTOOLS_LOG_LEVEL ??= 'SILENT';
process.env.POWERTOOLS_DEV ??= 'false';
// No X-Ray daemon here; a test that exercises tracing turns it on for its own isolated modules.
process.env.POWERTOOLS_TRACE_ENABLED ??= 'false';
