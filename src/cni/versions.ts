/**
 * The CNI spec versions this plugin serves: `=0.4.0 || ^1.0.0`, as the seed says. A 1.x version newer than
 * those listed is served in the formats of 1.0.0 (a minor version of the spec only adds fields and commands),
 * and each answer carries the config's own version.
 */
import { CniError, ErrorCode } from './errors';

/** The spec versions this plugin was written against; VERSION lists them (and the asked one, when newer). */
export const supportedVersions = ['0.4.0', '1.0.0', '1.1.0'] as const;

/** A cniVersion this plugin serves: "0.4.0" or any "1.x.y". */
export type CniVersion = string & { readonly __served: unique symbol };

/** The support line, as the error for any other version says it. */
export const supportLine = '=0.4.0 || ^1.0.0';

/** Used for errors printed before the config's own version is known. */
export const fallbackVersion = '1.0.0' as CniVersion;

const servedPattern = /^(?:0\.4\.0|1\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*))$/;

/** Narrows a config's cniVersion, or fails with code 1 as the spec asks. */
export function checkVersion(version: string): CniVersion {
  if (servedPattern.test(version)) return version as CniVersion;
  throw new CniError(
    ErrorCode.IncompatibleVersion,
    `incompatible CNI version ${JSON.stringify(version)}`,
    `this plugin supports ${supportLine} (${supportedVersions.join(', ')} and later 1.x)`,
  );
}

/** What VERSION lists when asked in `asked`: the known versions, and the asked one when it is a later 1.x. */
export function versionsFor(asked: CniVersion): string[] {
  return (supportedVersions as readonly string[]).includes(asked) ? [...supportedVersions] : [...supportedVersions, asked];
}
