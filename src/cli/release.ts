/**
 * `release NAME IP`: deletes one allocation key with `?cas=<ModifyIndex read>`, so an address that was
 * released and handed to another container in the meantime is left alone.
 * https://developer.hashicorp.com/consul/api-docs/kv#delete-key
 */
import { canonicalIp } from '../cni/codecs';
import { CniError } from '../cni/errors';
import { allocationKey, oldAllocationKey, parseAllocation, type Allocation } from '../services/kv-layout';
import { OperationFailure, UsageError } from './cli-errors';
import type { Command } from './command';
import { checkPoolName } from './pool-read';

/** `consul-ipam release NAME IP [--target ID]` */
export const releaseCommand: Command = {
  words: ['release'],
  args: ['NAME', 'IP'],
  options: ['target'],
  summary: 'free one allocated address (check-and-set delete)',
  help: `Deletes ipam/NAME/IP, the allocation of IP in pool NAME, so the plugin may hand the address out again.
The key is read, then deleted only if it has not changed since: an address re-allocated in the meantime is
never released by mistake. Releasing does not touch the container that still uses the address.
To release the leaked addresses a consul-ipam check report lists: consul-ipam release --from-report REPORT
(see consul-ipam release --from-report REPORT --help).

Options:
  --target ID  release only if the address is allocated to this container (its CNI container ID)

Example:
  consul-ipam release web 10.0.21.100 --target 4f0c2a9e`,

  async run({ args, values, connect }) {
    const name = checkPoolName(args[0]);
    const text = args[1];
    if (text === undefined || text === '') throw new UsageError('the IP to release is missing');
    const ip = canonicalIp(text);
    if (ip === undefined) throw new UsageError(`${JSON.stringify(text)} is not an IP address`);
    if (values.target === '') throw new UsageError('--target needs a container ID, got an empty string');

    const kv = await connect();
    // An allocation a release before RFC 5952 keys made may be under the address's old spelling: read only when the key is absent.
    const oldKey = oldAllocationKey(name, ip);
    const canonical = await kv.get(allocationKey(name, ip));
    const entry = canonical ?? (oldKey === undefined ? undefined : await kv.get(oldKey));
    const key = entry?.key ?? allocationKey(name, ip);
    if (entry === undefined) throw new OperationFailure('not-found', `${ip} is not allocated in pool ${name}: there is no key ${key} in Consul KV`);

    let allocation: Allocation | undefined;
    try {
      allocation = parseAllocation(name, key, entry.value).allocation;
    } catch (error) {
      if (values.target !== undefined) {
        throw new OperationFailure(
          'refused',
          `${key} holds no valid Allocation, so its target cannot be compared with --target ${values.target}; nothing released`,
          error instanceof CniError ? error.message : String(error),
        );
      }
    }
    if (values.target !== undefined && allocation?.target !== values.target) {
      throw new OperationFailure('refused', `${ip} in pool ${name} is allocated to ${allocation?.target}, not to ${values.target}; nothing released`);
    }
    if (!(await kv.deleteCas(key, entry.modifyIndex))) {
      throw new OperationFailure(
        'conflict',
        `${key} changed while this command ran (it is no longer at index ${entry.modifyIndex}); nothing released`,
        'see consul-ipam pool show and run the command again',
      );
    }
    const where = allocation === undefined ? '' : [allocation.ifname, allocation.host === undefined ? undefined : `on ${allocation.host}`].filter(Boolean).join(' ');
    const owner = allocation === undefined ? 'held no valid Allocation' : `was allocated to ${allocation.target}${where === '' ? '' : ` (${where})`}`;
    return {
      text: `released ${ip} from pool ${name}: it ${owner}`,
      json: { pool: name, ip, released: true, ...(allocation === undefined ? {} : { allocation }) },
    };
  },
};
