/**
 * What this host remembers between invocations, under ipam.data_dir (default /var/lib/cni/ipam-da-consul):
 *
 *   <data_dir>/<pool>/last_reserved_ip          {"pool": <CreateIndex of ipam/<pool>>, "ip": "<last address handed out>", "free": <n>}
 *   <data_dir>/<pool>/pool                      {"createIndex": <n>, "modifyIndex": <n>, "value": "<ipam/<pool> as last read>"}
 *   <data_dir>/<pool>/containers/<id>/<ifname>  the address given to that container and interface [and its key's ModifyIndex]
 *   <data_dir>/<pool>/claiming/<ip>             "<pid> <start time> <boot id>" of the process claiming <ip>, or that took it
 *
 * Hints only, never a second source of truth: Consul decides. The first makes allocation round robin (an
 * address just released is not handed straight out again) and lets ADD start where free addresses are;
 * the second lets a repeated ADD find its address without reading the pool; the third keeps ADDs running at
 * once on this host off each other's address (a won address keeps its marker until this host releases it).
 * The hint's `free` (how many addresses after it the last read of Consul found free) and the copy of the pool
 * key let the next ADD claim the next address in one request, guarded by the pool key's ModifyIndex
 * (take-next.ts). Losing them (a new host, a wiped disk) costs one longer search, never a wrong answer.
 *
 * Every file here is input, like stdin: a crashed process, another program, a full disk or someone with write
 * access may have left anything in it. Each is read at most `maxFileBytes`, only when it is a regular file
 * (never through a symlink, never a FIFO or a device), and decoded with the codecs stdin uses; what does not
 * decode is passed over with a warning naming the file, and replaced the next time the file is written. Writes
 * and deletes never go through a symlink or a non-directory below data_dir (data_dir itself is the operator's
 * choice and may be one): a planted symlink cannot make the plugin, which runs as root, touch a file elsewhere.
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { canonicalIp } from '../cni/codecs';
import { rangeAllocating, rangeHolding, type AddressRange } from './ip-math';

// These files are a few bytes on local disk: synchronous calls cost microseconds, while the first
// asynchronous one would start libuv's thread pool and each would hand off to it (~1–2 ms of every ADD).
// The functions stay async so that callers need not care. (Being synchronous, no two of them interleave
// within one process: only other processes race with them.)

/** The largest host file read; ours are under 100 bytes, so anything longer is not ours. */
export const maxFileBytes = 512;

/** Where problems with host files are reported (the command's logger). */
export interface Warn {
  warn(message: string): void;
}

/** The pool as the host's hints need it: its name, identity (CreateIndex of ipam/<pool>) and ranges. */
export interface PoolHints {
  readonly name: string;
  readonly identity: number;
  readonly ranges: readonly AddressRange[];
}

/** The host's memory of one pool, for one container and interface. */
export interface HostMemory {
  /** The last address this host handed out from the pool, if the pool is the one it was handed out from. */
  readonly lastReserved?: string;
  /** How many addresses right after lastReserved the last read of Consul found free (absent: none known). */
  readonly freeAfter?: number;
  /** The address this host gave to the container and interface, if it remembers one, with its range. */
  readonly held?: { readonly ip: string; readonly range: AddressRange };
}

// ---------------------------------------------------------------------------
// Paths

/**
 * One path segment below data_dir. Pool names, container IDs and interface names are validated long before
 * they get here, but GC takes them from Consul KV: whatever their source, none may climb out of data_dir.
 */
function segment(name: string): string {
  if (name === '' || name === '.' || name === '..' || name.length > 255 || /[/\u0000]/.test(name)) {
    throw new Error(`${JSON.stringify(name.slice(0, 80))} is not a file name under the data dir`);
  }
  return name;
}

const heldPath = (pool: string, containerId: string, ifname: string) => ({ dirs: [segment(pool), 'containers', segment(containerId)], name: segment(ifname) });
const hintPath = (pool: string) => ({ dirs: [segment(pool)], name: 'last_reserved_ip' });
const poolCopyPath = (pool: string) => ({ dirs: [segment(pool)], name: 'pool' });
const claimDirs = (pool: string) => [segment(pool), 'claiming'];

/**
 * The folder data_dir/<dirs...>, made when missing, each level checked to be a real folder (not a symlink,
 * not a file) before anything is written or deleted in it. With `create: false`, undefined when a level is missing.
 */
function hostDir(dataDir: string, dirs: readonly string[], create = true): string | undefined {
  // Each folder is looked at before it is made: mkdir(2) takes its parent's lock even when the folder exists,
  // and in a storm a hundred processes of this host would queue on that of data_dir and of the pool's folder.
  if (create && !fs.existsSync(dataDir)) fs.mkdirSync(dataDir, { recursive: true });
  let dir = dataDir;
  for (const name of dirs) {
    dir = join(dir, name);
    let stat = lstatIfThere(dir, create);
    if (stat === 'missing') {
      if (!create) return undefined;
      try {
        fs.mkdirSync(dir);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      stat = fs.lstatSync(dir);
    }
    if (!stat.isDirectory()) throw new Error(`${dir} is ${stat.isSymbolicLink() ? 'a symlink' : 'not a directory'}: nothing is written or deleted through it`);
  }
  return dir;
}

/** lstat, or `missing` when nothing is there (or, when not about to create it, a level above is not a folder). */
function lstatIfThere(path: string, create: boolean): fs.Stats | 'missing' {
  try {
    return fs.lstatSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || (!create && code === 'ENOTDIR')) return 'missing';
    throw error;
  }
}

// ---------------------------------------------------------------------------
// Reading and writing one file

/** What reading a host file gave: its text, nothing (missing: a normal case), or why it is unusable. */
type Read = { readonly text: string } | { readonly missing: true } | { readonly problem: string };

/**
 * Reads at most maxFileBytes of a regular file, never through a symlink (O_NOFOLLOW) and without blocking on a
 * FIFO (O_NONBLOCK). A huge file is not slurped: it is reported as too large after one small read.
 */
function readHostFile(path: string, limit = maxFileBytes): Read & { ino?: number; mtimeMs?: number } {
  let fd: number;
  try {
    fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { missing: true };
    return { problem: code === 'ELOOP' ? 'it is a symlink' : `it cannot be read (${code ?? (error as Error).message})` };
  }
  try {
    const stat = fs.fstatSync(fd);
    const { ino, mtimeMs } = stat;
    if (!stat.isFile()) return { problem: 'it is not a regular file', ino, mtimeMs };
    const buffer = Buffer.alloc(limit + 1);
    const length = fs.readSync(fd, buffer, 0, buffer.length, 0);
    if (length > limit) return { problem: `it is larger than ${limit} bytes`, ino, mtimeMs };
    return { text: buffer.subarray(0, length).toString('utf8'), ino, mtimeMs };
  } catch (error) {
    return { problem: `it cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})` };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes `content` to a temporary file of this process in `dir`, created exclusively (O_EXCL: an existing file
 * or symlink there is never opened, so never written through). A leftover of a dead process with the same PID is removed first.
 */
function writeTemporary(dir: string, name: string, content: string): string {
  const temporary = join(dir, `.${name}.${process.pid}.tmp`);
  for (let attempt = 0; ; attempt++) {
    try {
      fs.writeFileSync(temporary, content, { flag: 'wx', mode: 0o644 });
      return temporary;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw error;
      fs.rmSync(temporary, { recursive: true, force: true });
    }
  }
}

/**
 * Removes a file this process made, if it is still there. `rmSync` would do it too, but it loads Node's rimraf
 * module on every ADD; folders (never ours to make at these names) are left to `rmSync` where they may occur.
 */
function removeFile(path: string): void {
  try {
    fs.unlinkSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

/** Puts `temporary` in place of `target` atomically; whatever held the name (a folder, a symlink: not ours) is replaced, never followed. */
function replace(temporary: string, target: string): void {
  try {
    fs.renameSync(temporary, target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOTDIR') throw error;
    fs.rmSync(target, { recursive: true, force: true }); // rm removes a symlink itself, never what it points to
    fs.renameSync(temporary, target);
  }
}

/** Writes through a temporary file and a rename, so a reader never sees half a file. */
function writeAtomically(dataDir: string, dirs: readonly string[], name: string, content: string): void {
  const dir = hostDir(dataDir, dirs)!;
  const temporary = writeTemporary(dir, name, content);
  try {
    replace(temporary, join(dir, name));
  } catch (error) {
    removeFile(temporary);
    throw error;
  }
}

// ---------------------------------------------------------------------------
// Hints

/** The largest `free` a hint may give: a window of candidates is 32 (choose-ip.ts); anything far above is not ours. */
const maxFreeAfter = 1024;

/** Why a host file is unusable. */
interface Problem {
  readonly problem: string;
}

/** A host file's JSON object, or why it is none. */
function jsonObject(text: string): { readonly json: Record<string, unknown> } | Problem {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { problem: 'it is not JSON' };
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return { problem: 'it is not a JSON object' };
  return { json: json as Record<string, unknown> };
}

/** Decodes the round-robin hint; no address for a hint of another incarnation of the pool (not a problem). */
function decodeHint(text: string, pool: PoolHints): { ip?: string; free?: number; otherIncarnation?: true } | Problem {
  const read = jsonObject(text);
  if ('problem' in read) return read;
  const { pool: identity, ip, free } = read.json;
  if (!Number.isInteger(identity)) return { problem: 'its "pool" is not the CreateIndex of a pool key' };
  if (free !== undefined && !(Number.isInteger(free) && (free as number) >= 0 && (free as number) <= maxFreeAfter)) {
    return { problem: `its "free" ${JSON.stringify(free)?.slice(0, 60)} is not a count from 0 to ${maxFreeAfter}` };
  }
  if (identity !== pool.identity) return { otherIncarnation: true }; // the pool was deleted and made again since: start afresh
  const address = typeof ip === 'string' ? canonicalIp(ip) : undefined;
  if (address === undefined || address !== ip) return { problem: `its "ip" ${JSON.stringify(ip)?.slice(0, 60)} is not an IP address in canonical text` };
  if (rangeAllocating(pool.ranges, address) === undefined) return { problem: `${address} is not in the ranges of pool ${pool.name}` };
  return { ip: address, ...(typeof free === 'number' && free > 0 ? { free } : {}) };
}

/** A container's note, decoded: the address, and the ModifyIndex of its key when this host wrote it in one request. */
export interface Note {
  readonly ip: string;
  readonly modifyIndex?: number;
}

/** Decodes a container's note: one address in canonical text, then its key's ModifyIndex if known, as rememberHeld writes it. */
function decodeHeld(text: string): Note | Problem {
  const line = text.endsWith('\n') ? text.slice(0, -1) : text;
  const [address = '', index, ...rest] = line.split(' ');
  const ip = canonicalIp(address);
  if (ip === undefined || ip !== address) return { problem: `${JSON.stringify(address.slice(0, 60))} is not an IP address in canonical text` };
  if (index === undefined) return { ip };
  const modifyIndex = /^[1-9]\d{0,15}$/.test(index) ? Number(index) : NaN;
  if (rest.length > 0 || !Number.isSafeInteger(modifyIndex)) return { problem: `${JSON.stringify(line.slice(0, 80))} is not an address and the ModifyIndex of its key` };
  return { ip, modifyIndex };
}

/** Reads and decodes one host file; a problem is warned about, naming the file, and the file counts as absent. */
function recallFile<T extends object>(path: string, decode: (text: string) => T | Problem, log: Warn, limit = maxFileBytes): T | undefined {
  const read = readHostFile(path, limit);
  if ('missing' in read) return undefined;
  const decoded = 'text' in read ? decode(read.text) : { problem: read.problem };
  if (!('problem' in decoded)) return decoded;
  log.warn(`ignoring host file ${path}: ${decoded.problem} (it is replaced when next written)`);
  return undefined;
}

/** The note of a container, decoded; undefined when none is remembered or the note is unusable. */
function readNote(dataDir: string, pool: string, containerId: string, ifname: string, log: Warn): Note | undefined {
  let path;
  try {
    path = heldPath(pool, containerId, ifname);
  } catch {
    return undefined; // a name that cannot be a file (a container ID of over 255 characters) has no note
  }
  return recallFile(join(dataDir, ...path.dirs, path.name), decodeHeld, log);
}

const readHeld = (dataDir: string, pool: string, containerId: string, ifname: string, log: Warn): string | undefined => readNote(dataDir, pool, containerId, ifname, log)?.ip;

/** Reads what this host remembers; a pool re-created since (another CreateIndex) starts afresh. */
export async function recall(dataDir: string, pool: PoolHints, containerId: string, ifname: string, log: Warn): Promise<HostMemory> {
  const { dirs, name } = hintPath(pool.name);
  const hint = recallFile(join(dataDir, ...dirs, name), (text) => decodeHint(text, pool), log);
  if (hint?.otherIncarnation) sweepGoneMarkers(dataDir, pool.name);
  const lastReserved = hint?.ip;
  const heldIp = readHeld(dataDir, pool.name, containerId, ifname, log);
  const range = heldIp === undefined ? undefined : rangeHolding(pool.ranges, heldIp);
  if (heldIp !== undefined && range === undefined) {
    log.warn(`ignoring host file ${join(dataDir, ...heldPath(pool.name, containerId, ifname).dirs, ifname)}: ${heldIp} is not in the subnets of pool ${pool.name}`);
  }
  return {
    ...(lastReserved ? { lastReserved, ...(hint?.free ? { freeAfter: hint.free } : {}) } : {}),
    ...(heldIp && range ? { held: { ip: heldIp, range } } : {}),
  };
}

/** Reads only the held address, for DEL (which does not read the pool key): an address, decoded, or undefined. */
export async function recallHeld(dataDir: string, pool: string, containerId: string, ifname: string, log: Warn): Promise<string | undefined> {
  return readHeld(dataDir, pool, containerId, ifname, log);
}

/** Reads the whole note, for DEL's release in one request (release-noted.ts). */
export async function recallNote(dataDir: string, pool: string, containerId: string, ifname: string, log: Warn): Promise<Note | undefined> {
  return readNote(dataDir, pool, containerId, ifname, log);
}

/**
 * Notes the address about to be claimed for a container, before the write to Consul, so a retried ADD finds it
 * even if this one dies; again with its key's ModifyIndex once a claim in one request tells it, so that DEL can
 * release it in one request too.
 */
export async function rememberHeld(dataDir: string, pool: string, containerId: string, ifname: string, ip: string, modifyIndex?: number): Promise<void> {
  const { dirs, name } = heldPath(pool, containerId, ifname);
  writeAtomically(dataDir, dirs, name, `${ip}${modifyIndex === undefined ? '' : ` ${modifyIndex}`}\n`);
}

/** Moves the round-robin hint forward; `free`: how many addresses right after `ip` the last read found free. */
export async function rememberLastReserved(dataDir: string, pool: string, poolIdentity: number, ip: string, free = 0): Promise<void> {
  const { dirs, name } = hintPath(pool);
  writeAtomically(dataDir, dirs, name, `${JSON.stringify({ pool: poolIdentity, ip, ...(free > 0 ? { free: Math.min(free, maxFreeAfter) } : {}) })}\n`);
}

/** The pool key as this host last read it: what a claim in one request (take-next.ts) computes from and guards on. */
export interface PoolCopy {
  readonly createIndex: number;
  readonly modifyIndex: number;
  /** The key's value as Consul returned it, decoded again (readPoolDefinition) at each use. */
  readonly value: string;
}

/** The largest pool copy read back: a pool key of several hundred ranges. */
export const maxPoolCopyBytes = 64 * 1024;

/** Keeps a copy of the pool key as read from Consul. */
export async function rememberPool(dataDir: string, pool: string, copy: PoolCopy): Promise<void> {
  const { dirs, name } = poolCopyPath(pool);
  writeAtomically(dataDir, dirs, name, `${JSON.stringify({ createIndex: copy.createIndex, modifyIndex: copy.modifyIndex, value: copy.value })}\n`);
}

/** The copy of the pool key this host kept, its indexes decoded (the value is decoded by the caller, as a pool key is); undefined when none is usable. */
export async function recallPool(dataDir: string, pool: string, log: Warn): Promise<PoolCopy | undefined> {
  const { dirs, name } = poolCopyPath(pool);
  return recallFile(join(dataDir, ...dirs, name), decodePoolCopy, log, maxPoolCopyBytes);
}

function decodePoolCopy(text: string): PoolCopy | Problem {
  const read = jsonObject(text);
  if ('problem' in read) return read;
  const { createIndex, modifyIndex, value } = read.json;
  const isIndex = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) > 0;
  if (!isIndex(createIndex) || !isIndex(modifyIndex) || modifyIndex < createIndex) return { problem: 'its "createIndex" and "modifyIndex" are not the indexes of a key' };
  if (typeof value !== 'string') return { problem: 'its "value" is not the text of a pool key' };
  return { createIndex, modifyIndex, value };
}

/** Forgets a container's address (on DEL). Missing files are fine; a symlink on the way is an error, and nothing is deleted. */
export async function forgetHeld(dataDir: string, pool: string, containerId: string, ifname: string): Promise<void> {
  const { dirs, name } = heldPath(pool, containerId, ifname);
  const dir = hostDir(dataDir, dirs, false);
  if (dir === undefined) return;
  fs.rmSync(join(dir, name), { recursive: true, force: true });
  // The container's folder goes too once its last interface is gone; rmdir refuses a folder that is not empty.
  try {
    fs.rmdirSync(dir);
  } catch {
    // Another interface of the container is still noted.
  }
}

// ---------------------------------------------------------------------------
// Claim markers

/**
 * A process, as a marker names it: PID, start time (field 22 of /proc/<pid>/stat, in clock ticks since boot)
 * and boot ID. A PID alone is reused; the three together name one process, once, ever.
 */
const markerPattern = /^(\d{1,10}) (\d{1,20}) ([0-9a-f-]{1,64})\n$/;
const bootIdFile = '/proc/sys/kernel/random/boot_id';

/** Field 22 of /proc/<pid>/stat: the process's start time; undefined when the process does not exist (or /proc cannot say). */
function startTimeOf(pid: number): string | undefined {
  const read = readHostFile(`/proc/${pid}/stat`, 4096);
  if (!('text' in read)) return undefined;
  // Field 2, the command name, is in parentheses and may hold spaces and parentheses: count from the last ")".
  const fields = read.text.slice(read.text.lastIndexOf(')') + 2).split(' ');
  const start = fields[22 - 3];
  return start !== undefined && /^\d+$/.test(start) ? start : undefined;
}

let ownMarker: string | undefined;
let bootId: string | undefined;

/** A running process as a marker names it (the content of its markers); undefined when no such process runs. */
export function markerFor(pid: number): string | undefined {
  if (bootId === undefined) {
    const boot = readHostFile(bootIdFile);
    bootId = 'text' in boot && /^[0-9a-f-]{1,64}\n$/.test(boot.text) ? boot.text.trim() : '0';
  }
  const start = startTimeOf(pid) ?? (isAlive(pid) ? '0' : undefined);
  return start === undefined ? undefined : `${pid} ${start} ${bootId}\n`;
}

/** This process as a marker names it. */
function self(): string {
  ownMarker ??= markerFor(process.pid)!;
  return ownMarker;
}

/** Whether the process a marker names is running: same boot, and that PID started at that time. */
function isRunning(content: string): boolean {
  const match = markerPattern.exec(content);
  if (!match) return false; // not a marker at all (garbage, an older format): nobody holds it
  const [, pidText, start, boot] = match;
  self();
  if (boot !== bootId) return false; // written before this boot
  const pid = Number(pidText);
  if (start === '0') return isAlive(pid); // written where /proc could not say
  return startTimeOf(pid) === start;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** link(2): puts a second name on the file, failing with EEXIST (false here) when the name is taken. Atomic. */
function linkExclusively(existing: string, name: string): boolean {
  try {
    fs.linkSync(existing, name);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/** What holds a marker name: the file's inode and time, and whether the process it names runs; undefined when the name is free. */
function holderOf(path: string): { ino?: number; mtimeMs: number; content?: string; running: boolean } | undefined {
  const read = readHostFile(path);
  if ('missing' in read) return undefined;
  if (!('text' in read)) {
    let { ino, mtimeMs } = read;
    if (ino === undefined || mtimeMs === undefined) {
      try {
        ({ ino, mtimeMs } = fs.lstatSync(path)); // a symlink is judged by the link itself, never by what it points to
      } catch {
        return undefined;
      }
    }
    return { ino, mtimeMs, running: false };
  }
  return { ino: read.ino, mtimeMs: read.mtimeMs!, content: read.text, running: isRunning(read.text) };
}

/**
 * What marking an address gave: `marked`, this process holds it now; `held`, a running process of this host is
 * claiming it (its claim is decided within milliseconds, and may fail); `taken`, a process of this host that is
 * gone may have taken it after the caller read Consul.
 */
export type Mark = 'marked' | 'held' | 'taken';

/**
 * File times on Linux lag the clock by up to a tick; markers are judged against times read from the clock, with this margin.
 */
const timestampMarginMs = 50;

/** How a marker found in place is judged: `stale` when it may be taken over. */
function judge(holder: NonNullable<ReturnType<typeof holderOf>>, mine: string, readAt: number): Mark | 'stale' {
  if (holder.content === mine) return 'marked';
  if (holder.running) return 'held';
  // Touched at or after the read (or in the future: a clock stepped back, a planted file), the read may predate
  // the claim. Before it, the read was sent after Consul answered the claim, and saw its outcome.
  return holder.mtimeMs >= readAt - timestampMarginMs ? 'taken' : 'stale';
}

/**
 * Whether an address carries the marker of a running process of this host, as far as one readdir and the marker's
 * PID tell (a PID reused since counts as running): chooseIp's windows look past those, which its neighbours are
 * claiming at this very moment. Only a shortcut: markClaiming judges a marker fully before any claim.
 */
export function neighbourMarks(dataDir: string, pool: string): (ip: string) => boolean {
  let dir: string | undefined;
  let names: Set<string>;
  try {
    dir = hostDir(dataDir, claimDirs(pool), false);
    names = new Set(dir === undefined ? [] : fs.readdirSync(dir));
  } catch {
    return () => false; // an unreadable folder: no shortcut
  }
  if (dir === undefined || names.size === 0) return () => false;
  const marks = dir;
  const judged = new Map<string, boolean>();
  return (ip) => {
    if (!names.has(ip)) return false;
    let running = judged.get(ip);
    if (running === undefined) {
      const read = readHostFile(join(marks, segment(ip)), 128);
      const match = 'text' in read ? markerPattern.exec(read.text) : null;
      running = match !== null && isAlive(Number(match[1]));
      judged.set(ip, running);
    }
    return running;
  };
}

/**
 * Marks an address as being claimed by this process, so that ADDs running at the same moment on this host do
 * not race each other for it in Consul. `readAt` is when the caller sent the read of Consul that found it free
 * (ms since the epoch).
 *
 * A claim that may have been applied keeps its marker (keepClaimed) until this host releases the address
 * (forgetClaimed): were it dropped, a neighbour that read the pool before that write would find the name free
 * and send a write it has already lost to its own host. So a marker whose process is gone is judged by its time
 * (see `judge`): touched since `readAt`, the address is `taken` without asking Consul again; touched well before,
 * the read (Consul's reads are consistent) already reflects that claim and found the address free since, so the
 * marker is taken over.
 *
 * The marker appears whole or not at all: its content is written to a temporary file first and link(2)ed into
 * place, which fails when the name is taken (a neighbour never reads an empty marker, so never takes a live
 * one for stale). A stale marker (or one that is not a marker at all) is taken over under a takeover lock,
 * `claiming/<ip>.takeover`, made the same way: of several processes finding the same stale marker, one replaces
 * it (rename: the name is never free meanwhile), the others see a running holder. chooseIp calls this only once
 * no candidate is without a marker (markFirstUnmarked takes those first). Any other file-system trouble
 * only means no coordination: the claim goes ahead, and Consul's cas=0 still decides.
 */
export async function markClaiming(dataDir: string, pool: string, ip: string, readAt: number): Promise<Mark> {
  let temporary: string | undefined;
  try {
    const dir = hostDir(dataDir, claimDirs(pool))!;
    const marker = join(dir, segment(ip));
    const mine = self();
    for (let attempt = 0; attempt < 3; attempt++) {
      // Judged before anything is written: in a storm, most candidates a process tries are a neighbour's.
      const holder = holderOf(marker);
      const judged = holder === undefined ? undefined : judge(holder, mine, readAt);
      if (judged !== undefined && judged !== 'stale') return judged;
      temporary ??= writeTemporary(dir, ip, mine);
      if (judged === 'stale') return takeOver(dir, ip, marker, temporary, mine, readAt);
      if (linkExclusively(temporary, marker)) return 'marked';
      // Marked meanwhile: judge the new holder.
    }
    return 'held';
  } catch {
    return 'marked';
  } finally {
    if (temporary !== undefined) removeFile(temporary);
  }
}

/**
 * Marks the first of `ips`, in order, that carries no marker at all: link(2) alone, one failed call per name
 * taken, nothing read or judged. In a storm on one host most candidates carry a neighbour's marker, and judging
 * each (markClaiming: the marker and the /proc entry of its process, a dozen calls) cost more CPU than the rest
 * of the search. A marker left in place is judged only by markClaiming, when no name here is free. Undefined when
 * every name is taken, or on any other file-system trouble (markClaiming then decides).
 */
export async function markFirstUnmarked(dataDir: string, pool: string, ips: readonly string[]): Promise<string | undefined> {
  if (ips.length === 0) return undefined;
  let temporary: string | undefined;
  try {
    const dir = hostDir(dataDir, claimDirs(pool))!;
    temporary = writeTemporary(dir, ips[0]!, self());
    for (const ip of ips) if (linkExclusively(temporary, join(dir, segment(ip)))) return ip;
    return undefined;
  } catch {
    return undefined;
  } finally {
    if (temporary !== undefined) removeFile(temporary);
  }
}

/** Replaces a stale marker by this process's, holding the takeover lock and judging the marker again under it. */
function takeOver(dir: string, ip: string, marker: string, temporary: string, mine: string, readAt: number): Mark {
  const lock = join(dir, `${ip}.takeover`);
  if (!linkExclusively(temporary, lock)) {
    const holder = holderOf(lock);
    if (holder?.running !== false) return 'held'; // another process is taking this marker over (or just did)
    // A lock left by a process killed in the microseconds of a takeover: remove it, once, and leave the address
    // for the next pick (this call does not race on for it).
    removeIfSame(lock, holder.ino);
    return 'held';
  }
  try {
    // Another process may have taken the marker over, claimed and gone since it was judged: judged afresh.
    const now = holderOf(marker);
    if (now === undefined) return linkExclusively(temporary, marker) ? 'marked' : 'held';
    const judged = judge(now, mine, readAt);
    if (judged !== 'stale') return judged;
    replace(temporary, marker);
    return 'marked';
  } finally {
    removeFile(lock);
  }
}

/**
 * Deletes `path` if it is still the file (inode) judged stale: rename it aside, check, and put back what turns out
 * not to be it. (Linux has no "unlink if this inode". Only if a process dies holding a takeover lock, another
 * replaces that lock, and a third takes the name in the microseconds before it is put back, can two processes
 * take one stale marker over; Consul's cas=0 still gives the address to one of them.)
 */
function removeIfSame(path: string, ino: number | undefined): void {
  const aside = `${path}.${process.pid}.stale`;
  try {
    fs.renameSync(path, aside);
  } catch {
    return;
  }
  if (fs.lstatSync(aside).ino !== ino) linkExclusively(aside, path);
  fs.rmSync(aside, { recursive: true, force: true });
}

/**
 * Drops the markers of gone processes touched before now: on a pool deleted and made again, every won
 * claim they kept belongs to the old pool. Left in place, each would hold its address back until the walk found
 * no unmarked one (markFirstUnmarked), and round robin would not start afresh. Running claimers' are left alone.
 */
function sweepGoneMarkers(dataDir: string, pool: string): void {
  const before = Date.now();
  try {
    const dir = hostDir(dataDir, claimDirs(pool), false);
    if (dir === undefined) return;
    for (const name of fs.readdirSync(dir)) {
      if (canonicalIp(name) !== name) continue; // temporaries and takeover locks: not markers
      const marker = join(dir, name);
      const holder = holderOf(marker);
      if (holder !== undefined && !holder.running && holder.mtimeMs < before - timestampMarginMs) removeIfSame(marker, holder.ino);
    }
  } catch {
    // Only a cleanup: markers left in place are judged when met.
  }
}

/** This process's marker of an address in `pool`, and whether it is there: its path, or undefined. */
function ownMarkerPath(dataDir: string, pool: string, ip: string): string | undefined {
  const dir = hostDir(dataDir, claimDirs(pool), false);
  if (dir === undefined) return undefined;
  const marker = join(dir, segment(ip));
  const read = readHostFile(marker);
  return 'text' in read && read.text === self() ? marker : undefined;
}

/**
 * Keeps this process's marker once a claim may have been applied, touched now: Consul has answered it, so a
 * neighbour's read sent from now on reflects it, and one sent before sees the marker as `taken` (markClaiming).
 */
export async function keepClaimed(dataDir: string, pool: string, ip: string): Promise<void> {
  const marker = ownMarkerPath(dataDir, pool, ip);
  const now = new Date();
  if (marker !== undefined) fs.lutimesSync(marker, now, now);
}

/** Drops this process's marker once its claim is known lost; a marker that is no longer ours is left alone. */
export async function unmarkClaiming(dataDir: string, pool: string, ip: string): Promise<void> {
  const marker = ownMarkerPath(dataDir, pool, ip);
  if (marker !== undefined) removeFile(marker);
}

/**
 * Drops the marker of an address this host released (DEL, GC, ADD's rollback) with a delete sent at `releasedAt`,
 * so that markers of won addresses do not pile up: this process's own, or one whose process is gone and that was
 * touched before the release (a claim made since keeps its marker). A running claimer's is left alone.
 */
export async function forgetClaimed(dataDir: string, pool: string, ip: string, releasedAt: number): Promise<void> {
  const dir = hostDir(dataDir, claimDirs(pool), false);
  if (dir === undefined) return;
  const marker = join(dir, segment(ip));
  const holder = holderOf(marker);
  if (holder === undefined) return;
  if (holder.content === self()) removeFile(marker);
  else if (!holder.running && holder.mtimeMs < releasedAt - timestampMarginMs) removeIfSame(marker, holder.ino);
}
