// ip6addr ships no types; these cover the part of its API this project uses.
declare module 'ip6addr' {
  interface ToStringOptions {
    format?: 'auto' | 'v4' | 'v4-mapped' | 'v6';
    zeroElide?: boolean;
    zeroPad?: boolean;
  }
  export interface Addr {
    kind(): 'ipv4' | 'ipv6';
    toString(options?: ToStringOptions): string;
    offset(num: number): Addr | null;
    compare(other: Addr | string): number;
  }
  export interface CIDR {
    contains(input: Addr | string): boolean;
    first(): Addr;
    last(): Addr;
    broadcast(): Addr; // throws for IPv6
    address(): Addr;
    prefixLength(): number;
    toString(options?: ToStringOptions): string;
  }
  export function parse(input: string): Addr;
  export function createCIDR(cidr: string | Addr, prefixLength?: number): CIDR;
  export function compare(a: Addr | string, b: Addr | string): number;
}
