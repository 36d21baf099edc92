// Each test process's Temporal runtime logs errors only (many tests make activities fail on
// purpose, and each such attempt is a warning), so a passing run stays short and a failure stands
// out. TEST_TEMPORAL_LOG_LEVEL=WARN or INFO brings the worker logs back.
import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';

const level = (process.env['TEST_TEMPORAL_LOG_LEVEL'] ?? 'ERROR') as LogLevel;
Runtime.install({ logger: new DefaultLogger(level) });
