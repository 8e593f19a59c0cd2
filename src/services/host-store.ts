/**
 * What this host remembers between invocations, under ipam.data_dir (default /var/lib/cni/ipam-da-consul):
 *
 *   <data_dir>/<pool>/last_reserved_ip          {"pool": <CreateIndex of ipam/<pool>>, "ip": "<last address handed out>"}
 *   <data_dir>/<pool>/containers/<id>/<ifname>  the address given to that container and interface
 *
 * Hints only, never a second source of truth: Consul decides. The first makes allocation round robin (an
 * address just released is not handed straight out again) and lets ADD start where free addresses are;
 * the second lets a repeated ADD find its address without reading the pool. Both are checked against Consul.
 * Losing them (a new host, a wiped disk) costs one longer search, never a wrong answer.
 */
import * as fs from 'node:fs';
import { join } from 'node:path';

// These files are a few bytes on local disk: synchronous calls cost microseconds, while the first
// asynchronous one would start libuv's thread pool and each would hand off to it (~1–2 ms of every ADD).
// The functions stay async so that callers need not care.
const mkdir = async (path: string, options: fs.MakeDirectoryOptions) => void fs.mkdirSync(path, options);
const readFile = async (path: string, encoding: BufferEncoding) => fs.readFileSync(path, encoding);
const rename = async (from: string, to: string) => fs.renameSync(from, to);
const rm = async (path: string, options: fs.RmOptions) => fs.rmSync(path, options);
const rmdir = async (path: string) => fs.rmdirSync(path);
const writeFile = async (path: string, data: string, options?: fs.WriteFileOptions) => fs.writeFileSync(path, data, options);

/** The host's memory of one pool, for one container and interface. */
export interface HostMemory {
  /** The last address this host handed out from the pool, if the pool is the one it was handed out from. */
  readonly lastReserved?: string;
  /** The address this host gave to the container and interface, if it remembers one. */
  readonly held?: string;
}

/** Names are validated before they get here (pool names and container IDs have no "/" or ".."). */
const poolDir = (dataDir: string, pool: string) => join(dataDir, pool);
const heldFile = (dataDir: string, pool: string, containerId: string, ifname: string) => join(poolDir(dataDir, pool), 'containers', containerId, ifname);
const hintFile = (dataDir: string, pool: string) => join(poolDir(dataDir, pool), 'last_reserved_ip');

async function readText(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

/** Writes through a temporary file and a rename, so a reader never sees half a file. */
async function writeAtomically(path: string, content: string): Promise<void> {
  const dir = join(path, '..');
  await mkdir(dir, { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, content);
  await rename(temporary, path);
}

/** Reads what this host remembers; a pool re-created since (another CreateIndex) starts afresh. */
export async function recall(dataDir: string, pool: string, poolIdentity: number, containerId: string, ifname: string): Promise<HostMemory> {
  const [hintText, held] = await Promise.all([readText(hintFile(dataDir, pool)), readText(heldFile(dataDir, pool, containerId, ifname))]);
  let lastReserved: string | undefined;
  try {
    const hint = JSON.parse(hintText ?? 'null') as { pool?: unknown; ip?: unknown } | null;
    if (hint?.pool === poolIdentity && typeof hint.ip === 'string') lastReserved = hint.ip;
  } catch {
    // An unreadable hint is no hint.
  }
  return { ...(lastReserved ? { lastReserved } : {}), ...(held ? { held } : {}) };
}

/** Notes the address about to be claimed for a container, before the write to Consul, so a retried ADD finds it even if this one dies. */
export function rememberHeld(dataDir: string, pool: string, containerId: string, ifname: string, ip: string): Promise<void> {
  return writeAtomically(heldFile(dataDir, pool, containerId, ifname), `${ip}\n`);
}

/** Moves the round-robin hint forward. */
export function rememberLastReserved(dataDir: string, pool: string, poolIdentity: number, ip: string): Promise<void> {
  return writeAtomically(hintFile(dataDir, pool), `${JSON.stringify({ pool: poolIdentity, ip })}\n`);
}

/** Forgets a container's address (on DEL). Missing files are fine. */
export async function forgetHeld(dataDir: string, pool: string, containerId: string, ifname: string): Promise<void> {
  await rm(heldFile(dataDir, pool, containerId, ifname), { force: true });
  // The container's folder goes too once its last interface is gone; rmdir refuses a folder that is not empty.
  await rmdir(join(heldFile(dataDir, pool, containerId, ifname), '..')).catch(() => undefined);
}

/** Reads only the held address, for DEL (which does not need the pool's identity). */
export function recallHeld(dataDir: string, pool: string, containerId: string, ifname: string): Promise<string | undefined> {
  return readText(heldFile(dataDir, pool, containerId, ifname));
}

/** The marker a process on this host holds while it claims an address, so its neighbours pick another. */
const claimFile = (dataDir: string, pool: string, ip: string) => join(poolDir(dataDir, pool), 'claiming', ip);

/**
 * Marks an address as being claimed by this process (an exclusive create), so that ADDs running at the same
 * moment on this host do not all race for the same next address in Consul. False when another live process of
 * this host holds it. A marker left by a process that died is taken over. Any other file-system trouble only
 * means no coordination: the claim goes ahead, and Consul's cas=0 still decides.
 */
export async function markClaiming(dataDir: string, pool: string, ip: string): Promise<boolean> {
  const file = claimFile(dataDir, pool, ip);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await mkdir(join(file, '..'), { recursive: true });
      await writeFile(file, String(process.pid), { flag: 'wx' });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') return true;
      const holder = Number(await readText(file));
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && isAlive(holder)) return false;
      await rm(file, { force: true });
    }
  }
  return false;
}

/** Drops this process's marker once its claim is decided. */
export async function unmarkClaiming(dataDir: string, pool: string, ip: string): Promise<void> {
  await rm(claimFile(dataDir, pool, ip), { force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
