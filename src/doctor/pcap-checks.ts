import { readdir, readFile } from 'node:fs/promises'
import { networkInterfaces } from 'node:os'
import { loadCapAddon, type CapModule } from '../monitor/pcap-source.js'
import { firstLine, guardCheck, CHECK_TIMEOUT_MS, type Check } from './checks.js'

/**
 * What `monitor: pcap` needs beyond CAP_NET_RAW (kernel-checks): the `cap` addon (libpcap), and an interface worth
 * capturing on. Nothing is opened: libpcap is only asked which devices it sees.
 */

export interface LinkFacts {
  readonly name: string
  readonly operstate: string // /sys/class/net/NAME/operstate: up, down, unknown (lo, tun), dormant...
  readonly addresses: readonly string[]
}

/** Every pcap check, in display order. Never throws. */
export async function pcapChecks(): Promise<Check[]> {
  const guard = (id: string, onError: 'fail' | 'warn', body: () => Promise<Check> | Check) =>
    guardCheck({ id, monitor: 'pcap', timeoutMs: CHECK_TIMEOUT_MS, onError }, body)
  let devices: string[] | null = null
  const addon = await guard('pcap.addon', 'fail', () => {
    const check = addonCheck()
    devices = check.devices
    return check.check
  })
  const links = await guard('pcap.interfaces', 'warn', async () => interfacesCheck(await loadLinks(), devices))
  return [...addon, ...links]
}

function addonCheck(): { readonly check: Check; readonly devices: string[] | null } {
  const base = { id: 'pcap.addon', monitor: 'pcap' } as const
  let cap: CapModule
  try {
    cap = loadCapAddon()
  } catch (err) {
    const check: Check = {
      ...base,
      status: 'fail',
      summary: 'the cap addon (libpcap) does not load',
      detail: firstLine((err as Error).message),
      fix: 'apt-get install libpcap-dev build-essential python3, then npm ci (or npm rebuild cap)',
    }
    return { check, devices: null }
  }
  // pcap_findalldevs only reads the interface list: no capture is opened.
  const devices = cap.Cap.deviceList().map((d) => String(d.name))
  return { check: { ...base, status: 'ok', summary: `the cap addon loads; libpcap sees ${devices.length} devices` }, devices }
}

async function loadLinks(): Promise<LinkFacts[]> {
  const addresses = networkInterfaces()
  const names = await readdir('/sys/class/net').catch(() => Object.keys(addresses))
  return Promise.all(
    names.sort().map(async (name) => ({
      name,
      operstate: (await readFile(`/sys/class/net/${name}/operstate`, 'utf8').catch(() => 'unknown')).trim(),
      addresses: (addresses[name] ?? []).map((a) => a.address),
    })),
  )
}

function isUp(link: LinkFacts): boolean {
  // lo and point-to-point devices report "unknown" while working; an address says they are in use.
  return link.operstate === 'up' || (link.operstate === 'unknown' && link.addresses.length > 0)
}

/**
 * Whether some non-loopback interface is up, with each interface's state and addresses in the detail, and the
 * devices libpcap lists (null when the addon did not load). Pure.
 */
export function interfacesCheck(links: readonly LinkFacts[], pcapDevices: readonly string[] | null): Check {
  const base = { id: 'pcap.interfaces', monitor: 'pcap' } as const
  const lines = links.map((l) => {
    const seen = pcapDevices === null || pcapDevices.includes(l.name) ? '' : ', not listed by libpcap'
    return `${l.name}: ${l.operstate}${l.addresses.length > 0 ? `, ${l.addresses.join(' ')}` : ''}${seen}`
  })
  const detail = lines.join('\n')
  const up = links.filter((l) => l.name !== 'lo' && isUp(l)).map((l) => l.name)
  if (up.length > 0) return { ...base, status: 'ok', summary: `interfaces up: ${up.join(', ')} (or capture on "any")`, detail }
  return {
    ...base,
    status: 'warn',
    summary: 'no interface but loopback is up: a capture would see nothing from outside',
    detail,
    fix: 'bring the outside interface up: ip link set DEV up',
  }
}
