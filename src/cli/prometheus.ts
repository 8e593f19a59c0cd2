/**
 * Pool use in the Prometheus text exposition format, for node_exporter's textfile collector.
 * https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
 */

/** One pool's figures; size and free are absent when the pool key is invalid. */
export interface PoolFigures {
  readonly name: string;
  readonly allocated: number;
  readonly size?: bigint;
  readonly free?: bigint;
}

/** A label value as the format wants it: backslash, double quote and line feed escaped. */
export function labelValue(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

const metrics: ReadonlyArray<{ name: string; help: string; value: (pool: PoolFigures) => bigint | number | undefined }> = [
  { name: 'consul_ipam_pool_size_addresses', help: 'Addresses ADD can hand out in the pool (rangeStart..rangeEnd without network, broadcast and gateway).', value: (p) => p.size },
  { name: 'consul_ipam_pool_allocated_addresses', help: 'Allocation keys under ipam/<pool>/ named after an address.', value: (p) => p.allocated },
  { name: 'consul_ipam_pool_free_addresses', help: 'Addresses of the size not allocated yet.', value: (p) => p.free },
  { name: 'consul_ipam_pool_valid', help: 'Whether the plugin can read the pool key ipam/<pool> (1) or refuses it (0).', value: (p) => (p.size === undefined ? 0 : 1) },
];

/** Every metric's HELP and TYPE lines, then one sample per pool; exact integers, as IPv6 pools exceed 2^53. */
export function renderPrometheus(pools: readonly PoolFigures[]): string {
  return metrics
    .flatMap((metric) => [
      `# HELP ${metric.name} ${metric.help}`,
      `# TYPE ${metric.name} gauge`,
      ...pools.flatMap((pool) => {
        const value = metric.value(pool);
        return value === undefined ? [] : [`${metric.name}{pool="${labelValue(pool.name)}"} ${value.toString()}`];
      }),
    ])
    .join('\n');
}
