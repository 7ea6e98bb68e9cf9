import { describeCode, type ErrorInfo } from './errors.js';

/** The reference's BusinessError: an Error with a numeric `code` and optional `data` (the bundle name). */
export class BusinessError<T = void> extends Error {
  readonly code: number;
  readonly data?: T;
  constructor(code: number, message?: string, data?: T) {
    super(message ?? describeCode(code));
    this.name = 'BusinessError';
    this.code = code;
    if (data !== undefined) this.data = data;
  }

  static from<T>(info: ErrorInfo, data?: T): BusinessError<T> {
    return new BusinessError<T>(info.code, info.message, data);
  }
}
