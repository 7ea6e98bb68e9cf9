/**
 * Finds the `temporal` CLI that runs the embedded dev server (engine/goTool.ts:
 * $TEMPORAL_CLI, PATH, `$(go env GOPATH)/bin`, else built once with
 * `go install`; v1.5.1: newer tags carry a replace directive and cannot be
 * `go install`ed).
 */
import { GoToolMissing, findGoTool, type GoTool } from '../engine/goTool.js';

const TEMPORAL_CLI_MODULE = 'github.com/temporalio/cli/cmd/temporal@v1.5.1';

export const TEMPORAL_CLI: GoTool = {
  name: 'temporal',
  module: TEMPORAL_CLI_MODULE,
  envVar: 'TEMPORAL_CLI',
  hint:
    'Or install it from https://docs.temporal.io/cli, or point ohbackup at a running Temporal service with ' +
    'TEMPORAL_ADDRESS=host:port and run `ohbackup worker`.',
};

export { GoToolMissing as TemporalCliMissing };

/** The path of a usable `temporal` binary; builds it when allowed and needed. */
export async function findTemporalCli(opts: { build?: boolean; log?: (line: string) => void } = {}): Promise<string> {
  return findGoTool(TEMPORAL_CLI, opts);
}
