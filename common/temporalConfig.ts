/**
 * Where the Temporal service is: Temporal's standard environment configuration
 * (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*,
 * TEMPORAL_PROFILE and the TOML config file), defaulting to the embedded dev
 * server on 127.0.0.1:7233. Used by the worker and the tool alike.
 */
import { loadClientConnectConfig } from '@temporalio/envconfig';
import type { NativeConnectionOptions } from '@temporalio/worker';
import { DEFAULT_TEMPORAL_ADDRESS } from './env.js';

export interface TemporalTarget {
  connectionOptions: NativeConnectionOptions;
  namespace: string;
}

export function temporalTarget(overrides: { address?: string; namespace?: string } = {}): TemporalTarget {
  const loaded = loadClientConnectConfig();
  return {
    connectionOptions: {
      ...loaded.connectionOptions,
      address: overrides.address ?? loaded.connectionOptions.address ?? DEFAULT_TEMPORAL_ADDRESS,
    },
    namespace: overrides.namespace ?? loaded.namespace ?? 'default',
  };
}
