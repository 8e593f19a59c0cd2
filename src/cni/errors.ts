/**
 * Every error this plugin can report, in one place.
 *
 * CNI reserves codes below 100 for well-known meanings; plugins own 100 and up.
 * https://github.com/containernetworking/cni/blob/main/SPEC.md#error
 */
export const ErrorCode = {
  /** The config's cniVersion is not one this plugin speaks. */
  IncompatibleVersion: 1,
  /** A field in the config is not supported. */
  UnsupportedField: 2,
  /** CNI_COMMAND, CNI_CONTAINERID, CNI_IFNAME ... are missing or malformed. */
  InvalidEnvironment: 4,
  /** Could not read stdin or a file we depend on. */
  IoFailure: 5,
  /** Stdin is not JSON. */
  DecodingFailure: 6,
  /** The config (ipam.* or prevResult.*) is JSON but not valid. */
  InvalidConfig: 7,
  /** No Consul server answered, there is no leader, or Consul answered 5xx: the runtime should retry. */
  TryAgainLater: 11,
  /** STATUS: the plugin cannot serve ADD now (no Consul server with a leader). */
  PluginNotAvailable: 50,

  /** The pool key ipam/<name> does not exist in Consul KV. */
  PoolNotFound: 100,
  /** The pool key ipam/<name> does not hold a JSON array of valid IP Ranges. */
  InvalidPool: 101,
  /** A key in ipam/<name>/ read by the plugin is not a valid Allocation. */
  InvalidAllocation: 102,
  /** The requested IP is not usable in the pool. */
  RequestedIpNotInPool: 103,
  /** Every address of the pool is allocated. */
  PoolFull: 104,
  /** Other hosts took every candidate address before we could write one (the CAS retry budget ran out). */
  AllocationRace: 105,
  /** Consul refused or failed a KV read or write for a reason retrying will not fix. */
  KvFailure: 106,
  /** Consul's ACLs denied the request (ipam.consul_token is missing or lacks rights on ipam/). */
  PermissionDenied: 107,
  /** CHECK: an address of prevResult is not allocated to this container in Consul. */
  AllocationMismatch: 108,
  /** Anything not foreseen above: a bug, to be reported with the details. */
  Unexpected: 109,
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** The error a CNI plugin prints on stdout; `cniVersion` is filled in when it is printed. */
export class CniError extends Error {
  override readonly name = 'CniError';

  constructor(
    readonly code: ErrorCode,
    msg: string,
    readonly details = '',
  ) {
    super(msg);
  }

  /** The JSON object the CNI spec asks for. */
  toJSON(cniVersion: string): { cniVersion: string; code: number; msg: string; details?: string } {
    return this.details
      ? { cniVersion, code: this.code, msg: this.message, details: this.details }
      : { cniVersion, code: this.code, msg: this.message };
  }
}

/** Turns anything caught into a CniError, so nothing leaves a machine as a bare exception or stack trace. */
export function toCniError(error: unknown): CniError {
  if (error instanceof CniError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new CniError(ErrorCode.Unexpected, 'unexpected failure', message);
}
