/**
 * How contenders for one pool stop colliding. Pure, so the spread can be tested.
 *
 * Every host walks the pool round robin from its own hint; processes on one host share the hint, and hosts
 * that start at the same moment often reach the same next free address. The first try takes the first free
 * candidate (plain round robin, as host-local does); after each lost `cas=0` write a contender picks at
 * random among a window of free candidates (8 after the first loss, doubling with each further one) and
 * waits a jittered, growing delay, so a storm of N contenders spreads over N addresses in a few rounds.
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
