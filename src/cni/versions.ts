import { CniError, ErrorCode } from './errors';

/** The CNI spec versions whose config and result formats this plugin reads and writes. */
export const supportedVersions = ['0.4.0', '1.0.0', '1.1.0'] as const;

export type CniVersion = (typeof supportedVersions)[number];

/** Used for errors printed before the config's own version is known. */
export const fallbackVersion: CniVersion = '1.0.0';

/** Narrows a config's cniVersion, or fails with code 1 as the spec asks. */
export function checkVersion(version: string): CniVersion {
  if ((supportedVersions as readonly string[]).includes(version)) return version as CniVersion;
  throw new CniError(
    ErrorCode.IncompatibleVersion,
    `incompatible CNI version ${JSON.stringify(version)}`,
    `this plugin supports ${supportedVersions.join(', ')}`,
  );
}
