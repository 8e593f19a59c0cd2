/**
 * How contenders for one pool stop colliding. Pure, so the spread can be tested.
 *
 * Every host walks the pool round robin from its own hint; processes on one host share the hint (they mark
 * the address each is claiming, so they never race each other), and hosts that start at the same moment
 * often reach the same next free address. The first try takes the first free candidate (plain round robin,
 * as host-local does). After each lost `cas=0` write a contender jumps a random distance ahead of its hint
 * (up to 32, 64, 128, ... candidates), picks at random among the free candidates it finds there, and waits a
 * jittered, growing delay: the contenders of a storm scatter over a range that doubles each round instead of
 * fighting over the same few addresses again.
 */

/** Index of the free candidate to try, given how many writes this invocation has lost so far. */
export function spreadIndex(freeCount: number, lost: number, random: () => number = Math.random): number {
  if (freeCount <= 1 || lost === 0) return 0;
  const window = Math.min(freeCount, 2 ** (lost + 2));
  return Math.floor(random() * window);
}

/** Milliseconds to wait after the `lost`-th lost write: random in [0, 5·2^lost), at most 250. */
export function backoffDelay(lost: number, random: () => number = Math.random): number {
  return Math.floor(random() * Math.min(250, 5 * 2 ** lost));
}

/** How many candidates to skip past the hint before looking, given the writes lost so far: 0 on the first try. */
export function jumpAhead(lost: number, random: () => number = Math.random, windowSize = 32): number {
  if (lost === 0) return 0;
  return Math.floor(random() * Math.min(4096, windowSize * 2 ** (lost - 1)));
}

/**
 * Where a host with no hint starts in a pool: a position derived from its host_id, spread evenly over the
 * pool. Hosts then walk round robin from their own part of the pool, so they rarely reach for the same
 * address: contention stays among one host's own processes (which mark their claims) instead of spanning
 * the cluster, which is what Calico gets from per-host blocks, with nothing but the one-key-per-address
 * layout. The same host_id comes back to the same place after losing data_dir. `span` is the pool's first
 * range (ranges are used in order); one smaller than `homeMinimumSpan` keeps host-local's order (every host
 * from rangeStart): few hosts share it, and listing it is cheap.
 */
export function homePosition(hostId: string, span: bigint): bigint {
  if (span < homeMinimumSpan) return 0n;
  // The 64-bit hash scaled to the span (multiply, keep the high bits): even for a /48, past 2^64 positions.
  return (hostHash(hostId) * span) >> 64n;
}

/** A first range with fewer positions than this starts every host at rangeStart, and is walked in order. */
export const homeMinimumSpan = 1024n;

const mask64 = (1n << 64n) - 1n;

/**
 * FNV-1a (64 bits) of the UTF-8 bytes, then SplitMix64's finaliser: FNV alone leaves host names that differ
 * in their last character ("node-1", "node-2") within a hair of each other in the high bits that pick the
 * position. A non-cryptographic hash on purpose: loading node:crypto would cost every ADD its start-up.
 */
export function hostHash(hostId: string): bigint {
  let hash = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(hostId, 'utf8')) hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & mask64;
  hash = ((hash ^ (hash >> 30n)) * 0xbf58476d1ce4e5b9n) & mask64;
  hash = ((hash ^ (hash >> 27n)) * 0x94d049bb133111ebn) & mask64;
  return hash ^ (hash >> 31n);
}
