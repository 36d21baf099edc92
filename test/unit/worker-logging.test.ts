// The Temporal SDK's log calls become pino JSON lines naming their source; NODE_ENV picks the format.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, logFormat } from '../../src/logger.js';
import { coreLogLevel, temporalLogger } from '../../src/worker-logging.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { lines, logger: createLogger({ level: 'trace', nodeEnv: 'production', destination }) };
}

describe('temporalLogger', () => {
  it('writes SDK and native messages as pino lines with their source and component', () => {
    const { lines, logger } = capture();
    const sdk = temporalLogger(logger);
    sdk.info('Worker state changed', { sdkComponent: 'worker', state: 'RUNNING' });
    sdk.log('WARN', 'slow poll', { sdkComponent: 'core', target: 'temporal_sdk_core' });
    sdk.debug('no component');
    expect(lines).toMatchObject([
      {
        level: 30,
        msg: 'Worker state changed',
        source: 'temporal-sdk',
        component: 'worker',
        state: 'RUNNING',
      },
      {
        level: 40,
        msg: 'slow poll',
        source: 'temporal-core',
        component: 'core',
        target: 'temporal_sdk_core',
      },
      { level: 20, msg: 'no component', source: 'temporal-sdk', component: 'worker' },
    ]);
    expect(lines[0]).not.toHaveProperty('sdkComponent');
  });

  it('serialises an error as err, with its message and stack', () => {
    const { lines, logger } = capture();
    temporalLogger(logger).error('activity failed', {
      sdkComponent: 'activity',
      error: new Error('boom'),
    });
    expect(lines[0]).toMatchObject({ level: 50, component: 'activity', err: { message: 'boom' } });
    expect(String((lines[0]!['err'] as { stack: string }).stack)).toContain('Error: boom');
  });

  it('keeps the redaction of the pino logger it writes to', () => {
    const { lines, logger } = capture();
    temporalLogger(logger).info('with a token', { sdkComponent: 'activity', token: 'abc' });
    expect(lines[0]).toMatchObject({ token: '[redacted]' });
  });
});

describe('coreLogLevel', () => {
  it('keeps the native runtime at WARN unless LOG_LEVEL asks for less', () => {
    expect(coreLogLevel('debug')).toBe('WARN');
    expect(coreLogLevel('info')).toBe('WARN');
    expect(coreLogLevel('error')).toBe('ERROR');
    expect(coreLogLevel('silent')).toBe('ERROR');
  });
});

describe('logFormat (NODE_ENV)', () => {
  it('is pretty only in development on a terminal', () => {
    expect(logFormat('development', true)).toBe('pretty');
    expect(logFormat('development', false)).toBe('json');
    expect(logFormat('production', true)).toBe('json');
    expect(logFormat('test', true)).toBe('json');
  });
});
