/**
 * Entry point of the single executable (scripts/build-sea.mjs): every program in one file, each run under
 * the name it is invoked as, so an install is one file and links (`ipam-delegated -> ipam-da-consul`), as
 * busybox does. A runtime execs `/opt/cni/bin/ipam-delegated`, which becomes argv[0]: Node keeps it as
 * process.argv0 (process.execPath is the file the link points to, whatever its name).
 *
 * Each program is imported only once chosen, so a run loads only its own code, as the per-program scripts do.
 * The `-verbose` names are the verbose flavour, the name the original's releases give it: the entry modules
 * read the flavour from the global IPAM_DA_CONSUL_FLAVOUR, which the per-program builds replace by a constant
 * and this one leaves to be set here, before the import.
 */
import { basename } from 'node:path';

const programs: Record<string, () => Promise<unknown>> = {
  'ipam-da-consul': () => import('./ipam-da-consul'),
  'ipam-delegated': () => import('./ipam-delegated'),
  'ipam-ds-static': () => import('./ipam-ds-static'),
  'consul-ipam': () => import('./cli/consul-ipam'),
};
/** The programs that have a verbose flavour (the operator CLI has one flavour only). */
const withVerbose = ['ipam-da-consul', 'ipam-delegated', 'ipam-ds-static'];

/** Every name the executable answers to. */
const programNames: readonly string[] = [...Object.keys(programs), ...withVerbose.map((name) => `${name}-verbose`)];

/** The program and flavour a name stands for, or undefined for a name that is none of them. */
function programFor(invokedAs: string): { program: string; flavour: 'standard' | 'verbose' } | undefined {
  const name = basename(invokedAs);
  if (Object.hasOwn(programs, name)) return { program: name, flavour: 'standard' };
  const plain = name.replace(/-verbose$/, '');
  return plain !== name && withVerbose.includes(plain) ? { program: plain, flavour: 'verbose' } : undefined;
}

const chosen = programFor(process.argv0);
if (chosen === undefined) {
  process.stderr.write(
    `${basename(process.argv0)}: this executable runs as the program it is named after; run it through a link named ${programNames.join(', ')}\n`,
  );
  process.exitCode = 2;
} else {
  (globalThis as { IPAM_DA_CONSUL_FLAVOUR?: string }).IPAM_DA_CONSUL_FLAVOUR = chosen.flavour;
  void programs[chosen.program]!();
}
