// Each test process's Temporal runtime logs warnings and errors only, so a passing run stays
// short and a failure stands out. TEST_TEMPORAL_LOG_LEVEL=INFO brings the worker logs back.
import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';

const level = (process.env['TEST_TEMPORAL_LOG_LEVEL'] ?? 'WARN') as LogLevel;
Runtime.install({ logger: new DefaultLogger(level) });
