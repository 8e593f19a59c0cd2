/**
 * The network config a runtime sends on stdin, as this delegate reads it.
 *
 * Unknown keys are ignored everywhere, never rejected: the same `ipam` object carries the settings of the
 * other delegates in the chain (`delegates`, `pools`, `nomad_servers`, ...).
 */
import { hostname } from 'node:os';
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/Either';
import { Count, HttpUrl, IpAddress, IpWithPrefix, KeySegment, Milliseconds, NetworkName, nonEmptyArray } from './codecs';
import { parseConfigObject, readVersion } from './config-object';
import { invalidConfigError, problemText } from './decode-report';
import { CniError, ErrorCode } from './errors';
import { choosePools, readPerContainerRequest } from './per-container';
import { Pools, requestedIpOf } from './pool';
import type { CniVersion } from './versions';

/** The `ipam` section: how to reach Consul and how hard to try. */
const IpamSettings = t.intersection(
  [
    t.type({ consul_servers: nonEmptyArray(HttpUrl, 'a non-empty array of http(s) URLs') }, 'an object'),
    t.partial({
      consul_token: t.string,
      consul_token_file: t.string,
      consul_ca_file: t.string,
      consul_cert_file: t.string,
      consul_key_file: t.string,
      connect_timeout_ms: Milliseconds,
      request_timeout_ms: Milliseconds,
      cas_retries: Count,
      data_dir: t.string,
      gc: t.boolean,
      host_id: KeySegment,
      all_pools: t.boolean,
    }),
  ],
  'an object',
);

const ResultIp = t.intersection([t.type({ address: IpWithPrefix }, 'an IP config'), t.partial({ gateway: IpAddress }, 'an IP config')], 'an IP config');

/** The part of prevResult we use; other fields (interfaces, routes, dns...) are passed over. */
const PrevResult = t.partial({ pools: t.unknown, ips: t.array(ResultIp, 'an array of IP configs') }, 'an object');

/**
 * CNI 1.1 GC: the attachments the runtime still has; this network's other allocations of this host may go. The
 * spec first called the key `cni.dev/attachments`, now `cni.dev/valid-attachments`; libcni ≥ 1.2.3 sends both.
 */
const ValidAttachments = t.array(t.type({ containerID: t.string, ifname: t.string }, 'an attachment {containerID, ifname}'), 'an array of attachments');
const attachmentKeys = ['cni.dev/valid-attachments', 'cni.dev/attachments'] as const;

const NetworkConfig = t.intersection(
  [
    t.type({ cniVersion: t.string, ipam: IpamSettings }, 'an object'),
    t.partial({ name: t.string, isDefaultGateway: t.boolean, prevResult: PrevResult, [attachmentKeys[0]]: ValidAttachments, [attachmentKeys[1]]: ValidAttachments }),
  ],
  'an object',
);

/** A pool selected by the chain: its name and, for a static IP, the address requested. */
export interface PoolRequest {
  readonly name: string;
  readonly requestedIp?: string;
}

/** An address of a previous result ("10.0.21.5/23"). */
export interface PrevIp {
  readonly ip: string;
  readonly prefix: number;
}

/** How to reach Consul: the ipam.consul_* settings. */
export interface ConsulOptions {
  readonly servers: readonly string[];
  readonly token?: string;
  readonly tokenFile?: string;
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
}

/** What every command needs from stdin: how to reach Consul, and who this host is. */
export interface ClusterConfig {
  readonly cniVersion: CniVersion;
  readonly networkName: string;
  /** The network's `name` when it is one by the spec's rule: ADD records it in each allocation, GC collects by it. */
  readonly network?: string;
  readonly consul: ConsulOptions;
  readonly casRetries: number;
  readonly dataDir: string;
  readonly gc: boolean;
  /** Written beside `target` in each allocation: GC releases only this host's allocations. */
  readonly hostId: string;
}

/** What ADD, DEL and CHECK need from stdin, decoded and checked. */
export interface DelegateConfig extends ClusterConfig {
  /** The first pool selected (IPAM_POOL's first, else prevResult.pools[0]): the server is picked by its key. */
  readonly pool: PoolRequest;
  /**
   * The pools ADD takes an address from, in order: only the first, as the original did (the rest logged at
   * warn), or with `ipam.all_pools` one from each selected pool (dual-stack). Each carries the config's own
   * `requested-ip` for it; without `all_pools`, the container's static IP replaces the first's.
   */
  readonly pools: readonly PoolRequest[];
  /** `ipam.all_pools`. */
  readonly allPools: boolean;
  /** Selected pools ADD leaves alone (not `all_pools`): logged at warn. */
  readonly extraPools: number;
  /**
   * With `all_pools`: the static IP this container asks for (CNI_ARGS IP=, args.cni.ips, runtimeConfig.ips).
   * ADD gives it to the first selected pool whose subnets hold it, once it has read them (see load-pools).
   */
  readonly staticIp?: string;
  /**
   * Every pool prevResult.pools lists, IPAM_POOL or not: DEL releases and CHECK verifies in all of them, as
   * Nomad sends no CNI_ARGS on DEL and cannot say which pool ADD picked.
   */
  readonly listedPools: readonly string[];
  /** prevResult.ips: on DEL and CHECK, the runtime's cached ADD result. */
  readonly prevIps: readonly PrevIp[];
  /** The network config's `isDefaultGateway` (bridge's): bridge adds the default route, so the result carries none. */
  readonly bridgeAddsDefaultRoute: boolean;
}

export const defaults = {
  // Three dead servers must not hold a container start for more than a few seconds; LAN connects take < 1 ms.
  connectTimeoutMs: 1000,
  requestTimeoutMs: 5000,
  casRetries: 8,
  dataDir: '/var/lib/cni/ipam-da-consul',
} as const;

/** Decodes what every command reads; every failure is a CniError naming the field and value. */
function decodeNetworkConfig(stdin: string): { cluster: ClusterConfig; config: t.TypeOf<typeof NetworkConfig> } {
  const raw = parseConfigObject(stdin);
  const cniVersion = readVersion(raw);

  const decoded = NetworkConfig.decode(raw);
  if (isLeft(decoded)) throw invalidConfigError(decoded.left, '');
  const { ipam, name } = decoded.right;
  const cluster: ClusterConfig = {
    cniVersion,
    networkName: name ?? '',
    ...(NetworkName.is(name) ? { network: name } : {}),
    consul: {
      servers: ipam.consul_servers,
      token: ipam.consul_token,
      tokenFile: ipam.consul_token_file,
      caFile: ipam.consul_ca_file,
      certFile: ipam.consul_cert_file,
      keyFile: ipam.consul_key_file,
      connectTimeoutMs: ipam.connect_timeout_ms ?? defaults.connectTimeoutMs,
      requestTimeoutMs: ipam.request_timeout_ms ?? defaults.requestTimeoutMs,
    },
    casRetries: ipam.cas_retries ?? defaults.casRetries,
    dataDir: ipam.data_dir ?? defaults.dataDir,
    gc: ipam.gc ?? true,
    hostId: ipam.host_id ?? hostname(),
  };
  return { cluster, config: decoded.right };
}

/** STATUS (and GC): the cluster settings, and the pools a selector named, if any. */
export interface MaintenanceConfig extends ClusterConfig {
  readonly pools: readonly string[];
}

/** An attachment the runtime still has: GC keeps its allocations. */
export interface Attachment {
  readonly containerId: string;
  readonly ifname: string;
}

/** GC: also the network being collected, and the attachments to keep. */
export interface GcConfig extends MaintenanceConfig {
  /** The network's `name`: GC collects only allocations whose `network` is this. */
  readonly network: string;
  /** cni.dev/valid-attachments and cni.dev/attachments together. */
  readonly validAttachments: readonly Attachment[];
}

/** Parses stdin for STATUS, where prevResult.pools is optional (checked when present). */
export function parseMaintenanceConfig(stdin: string): MaintenanceConfig {
  return decodeMaintenance(stdin).maintenance;
}

/**
 * Parses stdin for GC. The network's `name` is required (GC collects that network's allocations only), and so is
 * the list of live attachments, under either key: without it nothing can be told stale. An empty list is a list:
 * everything of this network on this host may go.
 */
export function parseGcConfig(stdin: string): GcConfig {
  const { maintenance, config } = decodeMaintenance(stdin);
  if (maintenance.network === undefined) throw invalidConfig('name', config.name, NetworkName.name);
  const lists = attachmentKeys.map((key) => config[key]).filter((list) => list !== undefined);
  if (lists.length === 0) {
    throw new CniError(
      ErrorCode.InvalidConfig,
      `invalid network config: missing ${attachmentKeys[0]}: GC needs the runtime's live attachments to tell which allocations are stale`,
      `neither ${attachmentKeys.join(' nor ')} is present; nothing was released`,
    );
  }
  const seen = new Map<string, Attachment>();
  for (const { containerID, ifname } of lists.flat()) seen.set(`${containerID}\u0000${ifname}`, { containerId: containerID, ifname });
  return { ...maintenance, network: maintenance.network, validAttachments: [...seen.values()] };
}

function decodeMaintenance(stdin: string): { maintenance: MaintenanceConfig; config: t.TypeOf<typeof NetworkConfig> } {
  const { cluster, config } = decodeNetworkConfig(stdin);
  let pools: string[] = [];
  if (config.prevResult?.pools !== undefined) {
    const decoded = Pools.decode(config.prevResult.pools);
    if (isLeft(decoded)) throw invalidConfigError(decoded.left, 'prevResult.pools');
    pools = decoded.right.map((pool) => pool.name);
  }
  return { maintenance: { ...cluster, pools }, config };
}

/**
 * Parses stdin for ADD, DEL and CHECK, with the per-container requests of CNI_ARGS (`IP=`, `IPAM_POOL=`)
 * and of the config (`args.cni.ips`, `runtimeConfig.ips`; not read when `staticIp` is false, as on DEL);
 * every failure is a CniError naming the field and value.
 */
export function parseConfig(stdin: string, args: ReadonlyMap<string, string> = new Map(), staticIp = true): DelegateConfig {
  const { cluster, config } = decodeNetworkConfig(stdin);
  const { prevResult } = config;
  const pools = Pools.decode(prevResult?.pools);
  if (isLeft(pools)) throw invalidConfigError(pools.left, 'prevResult.pools');
  const perContainer = readPerContainerRequest(config, args, staticIp);
  const allPools = config.ipam.all_pools ?? false;
  const chosen = choosePools(pools.right, perContainer.pools);
  const requests = chosen.map((entry, index): PoolRequest => {
    const requestedIp = requestedIpOf(entry, `prevResult.pools[${index}]`);
    return requestedIp === undefined ? { name: entry.name } : { name: entry.name, requestedIp };
  });
  const ownIp = perContainer.ip?.address;
  // The container's own request wins over the address the network config asks for. Without all_pools the
  // one pool used is the first; with it, which pool the address fits is known only once the pools are read.
  const [first] = requests;
  const taken = allPools ? requests : [ownIp === undefined ? first! : { name: first!.name, requestedIp: ownIp }];

  return {
    ...cluster,
    pool: taken[0]!,
    pools: taken,
    allPools,
    extraPools: requests.length - taken.length,
    ...(allPools && ownIp !== undefined ? { staticIp: ownIp } : {}),
    listedPools: [...new Set(pools.right.map((entry) => entry.name))],
    prevIps: (prevResult?.ips ?? []).map((entry) => entry.address),
    bridgeAddsDefaultRoute: config.isDefaultGateway === true,
  };
}

function invalidConfig(path: string, actual: unknown, expected: string): CniError {
  return new CniError(ErrorCode.InvalidConfig, `invalid network config: ${problemText({ path, expected, actual })}`);
}
