/** `import { backup } from 'ohbackup'` */
export * as backup from './backup.js';
