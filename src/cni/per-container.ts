/**
 * What the runtime asks for one container, beside the network config every container of the network
 * shares: a static IP and a choice of pool.
 *
 * A static IP comes, as host-local takes it, from any of three places:
 * - `CNI_ARGS` `IP=<address>`: what `podman run --ip` sends and what a Nomad job's `cni { args }` can carry;
 * - `args.cni.ips` in the config (https://github.com/containernetworking/cni/blob/main/CONVENTIONS.md#args-in-network-config);
 * - `runtimeConfig.ips`, the `ips` capability, in CIDR form as libcni passes it
 *   (https://github.com/containernetworking/cni/blob/main/CONVENTIONS.md#well-known-capabilities).
 * A pool is chosen with `CNI_ARGS` `IPAM_POOL=<name>[,<name>...]`, among the pools the config lists.
 */
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/Either';
import { canonicalIp, KeySegment } from './codecs';
import { showValue } from './decode-report';
import { CniError, ErrorCode } from './errors';

/** The per-container choices, decoded: a canonical address, and pool names in the order asked. */
export interface PerContainerRequest {
  readonly ip?: { readonly address: string; readonly source: string };
  readonly pools?: readonly string[];
}

/** The parts of the config that may carry per-container input; everything else is someone else's. */
const PerContainerFields = t.partial({
  args: t.partial({ cni: t.partial({ ips: t.unknown }) }),
  runtimeConfig: t.partial({ ips: t.unknown }),
});

/** "10.0.0.5" or "10.0.0.5/24" (the prefix length is the pool's business, as host-local ignores it). */
function addressOf(text: unknown): string | undefined {
  if (typeof text !== 'string') return undefined;
  const [address, prefix, extra] = text.split('/');
  if (extra !== undefined || (prefix !== undefined && !/^\d{1,3}$/.test(prefix))) return undefined;
  const ip = canonicalIp(address ?? '');
  if (ip === undefined || (prefix !== undefined && Number(prefix) > (ip.includes(':') ? 128 : 32))) return undefined;
  return ip;
}

/**
 * One source's addresses: none, or exactly one (one pool, one address: dual-stack is not supported here).
 * The same address twice is one: podman 4.3's reload sends `runtimeConfig.ips` with the address repeated.
 */
function oneAddress(source: string, values: readonly unknown[], code: ErrorCode): string | undefined {
  const addresses = [
    ...new Set(
      values.map((value) => {
        const ip = addressOf(value);
        if (ip === undefined) throw new CniError(code, `invalid ${source}: expected an IP address (like 10.0.0.5 or 10.0.0.5/24), got ${showValue(value)}`);
        return ip;
      }),
    ),
  ];
  if (addresses.length > 1) {
    throw new CniError(code, `invalid ${source}: expected one IP address, got ${addresses.length}`, `${addresses.join(', ')}: one container takes one address from one pool`);
  }
  return addresses[0];
}

function listAt(source: string, value: unknown): readonly unknown[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new CniError(ErrorCode.InvalidConfig, `invalid network config: expected an array of IP addresses at ${source}, got ${showValue(value)}`);
  return value;
}

/**
 * Reads the per-container requests from CNI_ARGS and the config object. Two sources that name different
 * addresses are an invalid config (7); a malformed CNI_ARGS value is an invalid environment (4).
 * Without `staticIp` only IPAM_POOL is read: DEL releases whatever the container holds, so a bad static IP
 * must not make it fail and leak the address (Nomad never retries a DEL).
 */
export function readPerContainerRequest(config: unknown, args: ReadonlyMap<string, string>, staticIp = true): PerContainerRequest {
  const pools = readPools(args);
  if (!staticIp) return pools ? { pools } : {};
  const decoded = PerContainerFields.decode(config);
  const fields = isLeft(decoded) ? {} : decoded.right;
  const rawIp = args.get('IP');
  const candidates: Array<{ address: string; source: string }> = [];
  const add = (source: string, address: string | undefined): void => {
    if (address !== undefined) candidates.push({ address, source });
  };
  add('CNI_ARGS IP', rawIp === undefined || rawIp === '' ? undefined : oneAddress('CNI_ARGS IP', rawIp.split(','), ErrorCode.InvalidEnvironment));
  add('args.cni.ips', oneAddress('args.cni.ips', listAt('args.cni.ips', fields.args?.cni?.ips), ErrorCode.InvalidConfig));
  add('runtimeConfig.ips', oneAddress('runtimeConfig.ips', listAt('runtimeConfig.ips', fields.runtimeConfig?.ips), ErrorCode.InvalidConfig));
  const [first, ...others] = candidates;
  const disagreeing = others.find((other) => other.address !== first?.address);
  if (first !== undefined && disagreeing !== undefined) {
    throw new CniError(
      ErrorCode.InvalidConfig,
      `invalid network config: ${first.source} and ${disagreeing.source} ask for different addresses`,
      `${first.source} is ${first.address}, ${disagreeing.source} is ${disagreeing.address}`,
    );
  }

  return { ...(first ? { ip: first } : {}), ...(pools ? { pools } : {}) };
}

/** CNI_ARGS IPAM_POOL: pool names that will become key segments, so checked as such. */
function readPools(args: ReadonlyMap<string, string>): string[] | undefined {
  const raw = args.get('IPAM_POOL');
  if (raw === undefined || raw === '') return undefined;
  const pools = raw.split(',');
  const bad = pools.find((name) => isLeft(KeySegment.decode(name)));
  if (bad !== undefined) {
    throw new CniError(ErrorCode.InvalidEnvironment, `invalid CNI_ARGS IPAM_POOL ${JSON.stringify(raw)}: expected pool names separated by ",", got ${JSON.stringify(bad)}`);
  }
  return pools;
}

/**
 * The pools in IPAM_POOL's order, each one the config lists; without IPAM_POOL, the config's own order.
 * A name the config does not list is an error naming both: a container never reaches a pool its network
 * was not given.
 */
export function choosePools<P extends { readonly name: string }>(listed: readonly P[], asked: readonly string[] | undefined): P[] {
  if (asked === undefined) return [...listed];
  return asked.map((name) => {
    const pool = listed.find((entry) => entry.name === name);
    if (pool === undefined) {
      throw new CniError(
        ErrorCode.InvalidConfig,
        `CNI_ARGS IPAM_POOL names pool ${name}, which the network config does not list`,
        `IPAM_POOL is ${asked.join(',')}; the config lists ${listed.map((entry) => entry.name).join(', ')}`,
      );
    }
    return pool;
  });
}
