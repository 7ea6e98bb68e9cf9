/**
 * Where the Temporal service is: Temporal's standard environment configuration
 * (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS,
 * TEMPORAL_TLS_CLIENT_CERT_PATH / _KEY_PATH / _SERVER_CA_CERT_PATH (or _DATA),
 * TEMPORAL_TLS_SERVER_NAME, TEMPORAL_GRPC_META_*, and a TOML profile from
 * TEMPORAL_CONFIG_FILE or ~/.config/temporalio/temporal.toml chosen by
 * TEMPORAL_PROFILE), defaulting to the embedded dev server on 127.0.0.1:7233.
 * Used by the worker and the tool alike: an API key turns TLS on unless
 * TEMPORAL_TLS=false says otherwise.
 */
import { loadClientConnectConfig } from '@temporalio/envconfig';
import type { NativeConnectionOptions } from '@temporalio/worker';
import { DEFAULT_TEMPORAL_ADDRESS } from './env.js';

export interface TemporalTarget {
  connectionOptions: NativeConnectionOptions;
  namespace: string;
}

export function temporalTarget(overrides: { address?: string; namespace?: string } = {}, env: NodeJS.ProcessEnv = process.env): TemporalTarget {
  const overrideEnvVars = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
  const loaded = loadClientConnectConfig({ overrideEnvVars });
  return {
    connectionOptions: {
      ...loaded.connectionOptions,
      address: overrides.address ?? loaded.connectionOptions.address ?? DEFAULT_TEMPORAL_ADDRESS,
    },
    namespace: overrides.namespace ?? loaded.namespace ?? 'default',
  };
}
