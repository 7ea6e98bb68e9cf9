/** Files and bytes done so far, reported at most every 250 ms (and whenever `emit` is called). */
export const PROGRESS_EVERY_MS = 250;

export interface FilesAndBytes {
  files: number;
  bytes: number;
}

export class ProgressMeter<P extends FilesAndBytes = FilesAndBytes> {
  files = 0;
  bytes = 0;
  protected lastEmit = 0;
  constructor(private readonly report?: (p: P) => void) {}

  add(files: number, bytes: number): void {
    this.files += files;
    this.bytes += bytes;
    if (Date.now() - this.lastEmit >= PROGRESS_EVERY_MS) this.emit();
  }

  emit(): void {
    if (!this.report) return;
    this.lastEmit = Date.now();
    this.report(this.snapshot());
  }

  protected snapshot(): P {
    return { files: this.files, bytes: this.bytes } as P;
  }
}
