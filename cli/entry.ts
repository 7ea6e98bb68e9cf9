/**
 * What `bin/ohbackup` runs: Node's compile cache on, then the command line
 * (main.ts). Most of a short command's start is compiling its modules (the
 * Temporal client's generated protobuf code above all); with the cache, later
 * runs read V8's compiled code instead. Static imports would load before this
 * runs, hence the dynamic import. Per user, not Node's default under /tmp,
 * which other users share; NODE_DISABLE_COMPILE_CACHE=1 turns it off.
 */
import module from 'node:module';
import os from 'node:os';
import path from 'node:path';

// Node 22.1 and later; the cache is only a speed-up, so any failure to open it is ignored (it reports, never throws).
module.enableCompileCache?.(path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'ohbackup', 'node-compile-cache'));
await import('./main.js');
