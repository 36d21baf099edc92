// The Temporal server's generated config: PostgreSQL datastores with the pools asked for, every
// service on its own loopback port, and ports the server can store.
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_POOLS,
  freeTemporalServerPorts,
  postgresEndpoint,
  temporalDynamicConfig,
  devServerDynamicConfigArgs,
  TEMPORAL_DYNAMIC_CONFIG,
  temporalServerConfig,
  type TemporalServerPorts,
} from '../../src/stack/temporal-server.js';
import { findTemporalServer, missingTemporalServerParts } from '../../src/stack/tools.js';

const ports: TemporalServerPorts = {
  frontendGrpc: 21001,
  frontendHttp: 21002,
  frontendMembership: 21003,
  historyGrpc: 21004,
  historyMembership: 21005,
  matchingGrpc: 21006,
  matchingMembership: 21007,
  workerGrpc: 21008,
  workerMembership: 21009,
  metrics: 21010,
};

function config(overrides: Partial<Parameters<typeof temporalServerConfig>[0]> = {}) {
  // Written as JSON (which YAML reads); parse it back as the server would see it.
  return JSON.parse(
    JSON.stringify(
      temporalServerConfig({
        ports,
        postgres: { host: '127.0.0.1', port: 5433, user: 'owner', password: 'p"w:d' },
        databases: { default: 'stack_temporal', visibility: 'stack_temporal_visibility' },
        pools: DEFAULT_POOLS,
        historyShards: 4,
        dynamicConfigFile: '/tmp/stack/config/dynamicconfig.yaml',
        logLevel: 'warn',
        ...overrides,
      }),
    ),
  ) as {
    persistence: {
      defaultStore: string;
      visibilityStore: string;
      numHistoryShards: number;
      datastores: Record<string, { sql: Record<string, unknown> }>;
    };
    services: Record<string, { rpc: Record<string, unknown> }>;
    clusterMetadata: { clusterInformation: { active: { rpcAddress: string } } };
    dynamicConfigClient: { filepath: string };
    global: { metrics: { prometheus: { listenAddress: string } } };
  };
}

describe('the Temporal server config', () => {
  it('keeps history and visibility in their own PostgreSQL databases with small pools', () => {
    const { persistence } = config({
      pools: {
        default: { maxConns: 3, maxIdleConns: 2 },
        visibility: { maxConns: 1, maxIdleConns: 1 },
      },
    });
    expect(persistence.numHistoryShards).toBe(4);
    const main = persistence.datastores[persistence.defaultStore]!.sql;
    const visibility = persistence.datastores[persistence.visibilityStore]!.sql;
    expect(main).toMatchObject({
      pluginName: 'postgres12',
      databaseName: 'stack_temporal',
      connectAddr: '127.0.0.1:5433',
      user: 'owner',
      password: 'p"w:d',
      maxConns: 3,
      maxIdleConns: 2,
    });
    expect(visibility).toMatchObject({
      pluginName: 'postgres12',
      databaseName: 'stack_temporal_visibility',
      maxConns: 1,
      maxIdleConns: 1,
    });
  });

  it('puts every service on loopback on the ports given, and names the frontend as the cluster address', () => {
    const c = config();
    expect(c.services['frontend']!.rpc).toEqual({
      grpcPort: 21001,
      httpPort: 21002,
      membershipPort: 21003,
      bindOnLocalHost: true,
    });
    expect(c.services['history']!.rpc).toMatchObject({ grpcPort: 21004, membershipPort: 21005 });
    expect(c.services['matching']!.rpc).toMatchObject({ grpcPort: 21006, membershipPort: 21007 });
    expect(c.services['worker']!.rpc).toMatchObject({ grpcPort: 21008, membershipPort: 21009 });
    expect(c.clusterMetadata.clusterInformation.active.rpcAddress).toBe('127.0.0.1:21001');
    expect(c.global.metrics.prometheus.listenAddress).toBe('127.0.0.1:21010');
    expect(c.dynamicConfigClient.filepath).toBe('/tmp/stack/config/dynamicconfig.yaml');
    expect(temporalDynamicConfig()).toContain('limit.maxIDLength:');
  });

  it('runs both local servers with the same dynamic config: tasks written to one partition', () => {
    const file = temporalDynamicConfig();
    expect(file).toContain('matching.numTaskqueueWritePartitions:\n  - value: 1\n');
    // Reads keep the default, so tasks written to other partitions earlier are still delivered.
    expect(file).not.toContain('matching.numTaskqueueReadPartitions');
    const args = devServerDynamicConfigArgs();
    for (const [key, value] of Object.entries(TEMPORAL_DYNAMIC_CONFIG)) {
      expect(file).toContain(`${key}:\n  - value: ${String(value)}\n`);
      expect(args).toContain(`${key}=${String(value)}`);
    }
    expect(args.filter((a) => a === '--dynamic-config-value')).toHaveLength(
      Object.keys(TEMPORAL_DYNAMIC_CONFIG).length,
    );
  });

  it('picks distinct free ports below 32768 (membership ports are stored as smallint)', async () => {
    const picked = Object.values(await freeTemporalServerPorts());
    expect(new Set(picked).size).toBe(picked.length);
    for (const port of picked) {
      expect(port).toBeGreaterThan(1024);
      expect(port).toBeLessThan(32_768);
    }
  });

  it('reads host, port and credentials out of a postgres URL', () => {
    expect(postgresEndpoint('postgres://owner:p%40ss@db.internal:6543/postgres')).toEqual({
      host: 'db.internal',
      port: 6543,
      user: 'owner',
      password: 'p@ss',
    });
    expect(postgresEndpoint('postgres://postgres@127.0.0.1/postgres')).toEqual({
      host: '127.0.0.1',
      port: 5432,
      user: 'postgres',
      password: '',
    });
  });
});

describe('the Temporal server tools', () => {
  it('refuses a TEMPORAL_SERVER_DIR that lacks the binaries or the schema, naming what is missing', () => {
    expect(() =>
      findTemporalServer({ TEMPORAL_SERVER_DIR: '/nonexistent/temporal-server' }),
    ).toThrow(
      /TEMPORAL_SERVER_DIR=\/nonexistent\/temporal-server lacks .*temporal-server.*temporal-sql-tool/,
    );
    expect(
      missingTemporalServerParts({
        dir: '/nonexistent',
        server: '/nonexistent/temporal-server',
        sqlTool: '/nonexistent/temporal-sql-tool',
        schemaDir: '/nonexistent/schema/postgresql/v12',
      }),
    ).toHaveLength(4);
  });
});
