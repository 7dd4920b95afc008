/** "198.51.100.7:80" or "[2001:db8::7]:80": an address and port as one token, the way URLs and logs write them. */
export function formatEndpoint(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`
}
