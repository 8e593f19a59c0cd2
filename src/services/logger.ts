/**
 * Logging, configured in this one place. Nothing here ever writes to stdout: stdout carries only the CNI result.
 *
 * - Warnings and errors always go to stderr (the seed's rule).
 * - The verbose flavour also writes everything from debug up to a file (default /var/log/cni/ipam-da-consul.log).
 *
 * log4js is loaded on the first message that is actually written, so a run that logs nothing (most runs of
 * the standard flavour) does not pay for loading it.
 */
import type { Appender, Logger as Log4jsLogger } from 'log4js';

/** The logger every service receives through its input. */
export interface Log {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  /** Flushes the file appender; call before the process exits. */
  shutdown(): Promise<void>;
}

export interface LogOptions {
  /** The category, shown in each line: the executable's name. */
  readonly name: string;
  /** When set, debug and up go to this file as well. */
  readonly file?: string;
}

export const defaultVerboseLogFile = '/var/log/cni/ipam-da-consul.log';

/** Creates the logger. Secrets must never be passed to it: callers log token presence, never tokens. */
export function createLog({ name, file }: LogOptions): Log {
  let logger: Log4jsLogger | undefined;
  let log4js: typeof import('log4js') | undefined;
  const get = (): Log4jsLogger => {
    if (logger) return logger;
    // A synchronous require keeps logging synchronous; the bundler keeps it lazy.
    log4js = require('log4js') as typeof import('log4js');
    const appenders: Record<string, Appender> = {
      stderr: { type: 'stderr', layout: { type: 'pattern', pattern: '%d{ISO8601} %p %c[%z] %m' } },
      warnings: { type: 'logLevelFilter', appender: 'stderr', level: 'warn' },
    };
    const used = ['warnings'];
    if (file) {
      appenders.file = { type: 'file', filename: file, layout: { type: 'pattern', pattern: '%d{ISO8601} %p %c[%z] %m' } };
      used.push('file');
    }
    try {
      log4js.configure({ appenders, categories: { default: { appenders: used, level: file ? 'debug' : 'warn' } } });
      logger = log4js.getLogger(name);
    } catch (error) {
      // A log file that cannot be opened must not fail the container: log to stderr only, and say so.
      delete appenders.file;
      log4js.configure({ appenders, categories: { default: { appenders: ['warnings'], level: 'warn' } } });
      logger = log4js.getLogger(name);
      logger.warn(`cannot open log file ${file}: ${(error as Error).message}; logging warnings to stderr only`);
    }
    return logger;
  };
  const quiet = file === undefined;
  return {
    debug: (message) => (quiet ? undefined : get().debug(message)),
    info: (message) => (quiet ? undefined : get().info(message)),
    warn: (message) => get().warn(message),
    error: (message) => get().error(message),
    shutdown: () => new Promise((resolve) => (log4js ? log4js.shutdown(() => resolve()) : resolve())),
  };
}

/** A logger that drops everything, for tests and tools that do not log. */
export const silentLog: Log = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  shutdown: async () => undefined,
};
