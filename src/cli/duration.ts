/**
 * Durations on the command line, written as Go and Consul write them ("10m", "90s", "1h30m", "0s"), so an
 * operator uses one notation for both tools. https://pkg.go.dev/time#ParseDuration (without ns and µs:
 * nothing here is that short).
 */
import { UsageError } from './cli-errors';

const unitMs = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** Milliseconds of a duration such as "10m" or "1h30m"; a UsageError naming the option and the text otherwise. */
export function parseDuration(option: string, text: string): number {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (text === '' || parts.map((part) => part[0]).join('') !== text) {
    throw new UsageError(`${option} ${JSON.stringify(text)} is not a duration: expected a number and a unit (ms, s, m, h), like 10m, 90s, 1h30m or 0s`);
  }
  return Math.round(parts.reduce((sum, [, amount, unit]) => sum + Number(amount) * unitMs[unit as keyof typeof unitMs], 0));
}

/** "2h 5m 3s", "45s", "0s": an age or a wait for people, to the second. */
export function describeDuration(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  const [h, m, s] = [Math.floor(seconds / 3600), Math.floor((seconds % 3600) / 60), seconds % 60];
  const parts = [h > 0 ? `${h}h` : '', m > 0 ? `${m}m` : '', s > 0 || seconds === 0 ? `${s}s` : ''].filter(Boolean);
  return parts.join(' ');
}
