/** What a device's worker is told about its device: where its data and its own state live. */
export interface DeviceConfig {
  /** The device's data root: one folder per bundle (api.md §7). */
  dataRoot: string;
  /** The worker's state folder; capability files for tools are left in its transfer/ area. */
  stateDir: string;
}
